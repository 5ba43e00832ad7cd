import cv2
import numpy as np
import paddleseg.transforms as T
import pytest
from paddleseg.cvlibs import manager
from PIL import Image
from seg_runtime.media import read_index_label

from paddleseg_ext.datasets import LPCVC2023

SIZE = 32


def _label(seed: int) -> np.ndarray:
    # 2x2 blocks of class ids, so a nearest 32 -> 16 resize (rows/cols 0, 2, 4, ...) keeps
    # exactly label[::2, ::2]
    rng = np.random.default_rng(seed)
    return np.kron(rng.integers(0, 14, size=(SIZE // 2, SIZE // 2)), np.ones((2, 2))).astype(
        np.uint8
    )


def _image(seed: int) -> np.ndarray:
    return np.random.default_rng(100 + seed).integers(0, 256, (SIZE, SIZE, 3)).astype(np.uint8)


@pytest.fixture
def lpcvc_root(tmp_path):
    """Challenge layout: IMG/{train,val}, GT_Updated/train, GT/val, same file stems."""
    for rel in ("IMG/train", "IMG/val", "GT_Updated/train", "GT/val"):
        (tmp_path / rel).mkdir(parents=True)
    # train_0000: grayscale GT
    Image.fromarray(_image(0)).save(tmp_path / "IMG/train/train_0000.png")
    Image.fromarray(_label(0), mode="L").save(tmp_path / "GT_Updated/train/train_0000.png")
    # train_0001: jpg image and a 3-channel GT whose channels 1 and 2 hold other values
    Image.fromarray(_image(1)).save(tmp_path / "IMG/train/train_0001.jpg", quality=95)
    rgb = np.stack([_label(1), 13 - _label(1), np.full((SIZE, SIZE), 200, np.uint8)], axis=2)
    Image.fromarray(rgb, mode="RGB").save(tmp_path / "GT_Updated/train/train_0001.png")
    # val
    Image.fromarray(_image(2)).save(tmp_path / "IMG/val/val_0001.png")
    Image.fromarray(_label(2), mode="L").save(tmp_path / "GT/val/val_0001.png")
    return tmp_path


def test_registered_with_challenge_classes():
    assert manager.DATASETS["LPCVC2023"] is LPCVC2023
    assert LPCVC2023.NUM_CLASSES == len(LPCVC2023.CLASS_NAMES) == 14
    assert LPCVC2023.IGNORE_INDEX == 255
    assert LPCVC2023.CLASS_NAMES[0] == "background"
    assert LPCVC2023.CLASS_NAMES[2] == "building_undamaged"
    assert LPCVC2023.CLASS_NAMES[13] == "vehicle"


def test_train_items_through_paddleseg_transforms(lpcvc_root):
    ds = LPCVC2023([T.Resize(target_size=(16, 16)), T.Normalize()], str(lpcvc_root), "train")
    assert len(ds) == 2
    assert ds.num_classes == 14 and ds.ignore_index == 255
    assert [p[0].rsplit("/", 1)[1] for p in ds.file_list] == ["train_0000.png", "train_0001.jpg"]
    for idx in range(2):
        item = ds[idx]
        assert item["img"].shape == (3, 16, 16)
        assert item["img"].dtype == np.float32
        # Normalize maps [0, 255] to [-1, 1]
        assert item["img"].min() >= -1.0 and item["img"].max() <= 1.0
        assert item["label"].shape == (16, 16)
        assert item["label"].dtype == np.uint8
        np.testing.assert_array_equal(item["label"], _label(idx)[::2, ::2])


def test_three_channel_gt_uses_channel_0(lpcvc_root):
    ds = LPCVC2023([], str(lpcvc_root), "train")
    label = ds[1]["label"]
    assert label.shape == (SIZE, SIZE)
    np.testing.assert_array_equal(label, _label(1))
    # the other channels differ everywhere, so reading them would fail the check above
    assert not np.any(label == 13 - _label(1))
    # image comes out RGB, CHW, unchanged without transforms
    np.testing.assert_array_equal(ds[0]["img"], _image(0).transpose(2, 0, 1).astype(np.float32))


def test_val_label_keeps_original_size(lpcvc_root):
    ds = LPCVC2023([T.Resize(target_size=(16, 16)), T.Normalize()], str(lpcvc_root), mode="VAL")
    assert ds.mode == "val" and len(ds) == 1
    item = ds[0]
    assert item["img"].shape == (3, 16, 16)
    # PaddleSeg's evaluation compares at the original size: (1, H, W), untransformed
    assert item["label"].shape == (1, SIZE, SIZE)
    np.testing.assert_array_equal(item["label"][0], _label(2))
    assert item["trans_info"] == [("resize", (SIZE, SIZE))]


def test_edge_maps(lpcvc_root):
    item = LPCVC2023([], str(lpcvc_root), "train", edge=True)[0]
    assert item["edge"].shape[-2:] == (SIZE, SIZE)
    assert set(np.unique(item["edge"])) <= {0, 1}
    assert item["edge"].any()


def test_read_index_label_palette_png(tmp_path):
    label = _label(3)
    img = Image.fromarray(label, mode="P")
    img.putpalette([v for i in range(256) for v in (i, 255 - i, 7)])
    img.save(tmp_path / "p.png")
    out = read_index_label(str(tmp_path / "p.png"))
    np.testing.assert_array_equal(out, label)
    out[0, 0] = 99  # writable: PaddleSeg transforms modify labels in place
    # OpenCV reading the same file would return the palette colours, not the ids
    assert not np.array_equal(cv2.imread(str(tmp_path / "p.png"))[:, :, 0], label)


def test_bad_mode(lpcvc_root):
    with pytest.raises(ValueError, match=r"mode must be one of \['train', 'val'\], got 'test'"):
        LPCVC2023([], str(lpcvc_root), "test")


def test_missing_folder_is_named(lpcvc_root):
    (lpcvc_root / "GT_Updated/train/train_0000.png").unlink()
    (lpcvc_root / "GT_Updated/train/train_0001.png").unlink()
    (lpcvc_root / "GT_Updated/train").rmdir()
    with pytest.raises(FileNotFoundError, match=r"folder .*GT_Updated/train, which does not"):
        LPCVC2023([], str(lpcvc_root), "train")
    # val does not need the train labels
    assert len(LPCVC2023([], str(lpcvc_root), "val")) == 1


def test_image_without_label_is_named(lpcvc_root):
    Image.fromarray(_image(4)).save(lpcvc_root / "IMG/val/val_0002.png")
    with pytest.raises(FileNotFoundError, match=r"IMG/val/val_0002.png has no label val_0002.png"):
        LPCVC2023([], str(lpcvc_root), "val")


def test_empty_image_folder(tmp_path):
    for rel in ("IMG/val", "GT/val"):
        (tmp_path / rel).mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"no .png/.jpg/.jpeg images in .*IMG/val"):
        LPCVC2023([], str(tmp_path), "val")
