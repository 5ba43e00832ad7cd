import hashlib
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import cv2
import numpy as np
import paddle
import paddleseg.transforms as T
import pytest
from paddleseg.cvlibs import manager

from paddleseg_ext.datasets import SyntheticShapes
from paddleseg_ext.datasets import shapes as shapes_mod
from paddleseg_ext.datasets.shapes import generate_synthetic_shapes

# Small parameter set: a fraction of a second to generate.
SMALL = {"num_train": 6, "num_val": 10, "image_size": 48, "seed": 0}


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_registered():
    assert manager.DATASETS["SyntheticShapes"] is SyntheticShapes
    assert SyntheticShapes.NUM_CLASSES == len(SyntheticShapes.CLASS_NAMES) == 6
    assert SyntheticShapes.IGNORE_INDEX == 255
    assert SyntheticShapes.CLASS_NAMES[0] == "background"


def test_generation_is_deterministic(tmp_path):
    a = _files(Path(generate_synthetic_shapes(str(tmp_path / "a"), **SMALL)))
    b = _files(Path(generate_synthetic_shapes(str(tmp_path / "b"), **SMALL)))
    # 16 images + 16 labels + 2 list files + meta.json
    assert len(a) == 2 * 16 + 3
    assert a == b
    c = _files(Path(generate_synthetic_shapes(str(tmp_path / "c"), **{**SMALL, "seed": 1})))
    assert c.keys() == a.keys()
    assert c["images/train/000000.png"] != a["images/train/000000.png"]


def test_list_files_and_labels(tmp_path):
    root = Path(generate_synthetic_shapes(str(tmp_path / "d"), **SMALL))
    for split, count in (("train", 6), ("val", 10)):
        lines = (root / f"{split}.txt").read_text().splitlines()
        assert lines == [
            f"images/{split}/{i:06d}.png labels/{split}/{i:06d}.png" for i in range(count)
        ]
        for line in lines:
            img_rel, label_rel = line.split(" ")
            img = cv2.imread(str(root / img_rel), cv2.IMREAD_UNCHANGED)
            label = cv2.imread(str(root / label_rel), cv2.IMREAD_UNCHANGED)
            assert img.shape == (48, 48, 3) and img.dtype == np.uint8
            assert label.shape == (48, 48) and label.dtype == np.uint8
            assert label.max() <= 5
    val = np.stack(
        [cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in sorted(root.glob("labels/val/*"))]
    )
    assert set(np.unique(val)) == {0, 1, 2, 3, 4, 5}
    assert sorted(os.listdir(tmp_path)) == [".d.lock", "d"]  # no temporary folder left


def test_default_size_class_shares():
    # the first 25 val images at the default 128 px: every class has a real share
    rng = np.random.default_rng([0, 1, 0])
    img, label = shapes_mod.render_sample(rng, 128, must_include=3)
    assert img.shape == (128, 128, 3) and label.shape == (128, 128)
    assert 3 in label
    labels = []
    for index in range(25):
        rng = np.random.default_rng([0, 1, index])
        labels.append(shapes_mod.render_sample(rng, 128, must_include=index % 5 + 1)[1])
    share = np.bincount(np.stack(labels).ravel(), minlength=6) / (25 * 128 * 128)
    assert share.shape == (6,)
    assert share[0] < 0.9 and (share[1:] > 0.01).all()


def test_cache_folder_and_single_generation(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PADDLESEG_EXT_CACHE", str(tmp_path / "cache"))
    ds = SyntheticShapes([], mode="val", **SMALL)
    digest = SyntheticShapes.params_hash(6, 10, 48, 0)
    expected_root = tmp_path / "cache" / f"synthetic_shapes_{digest}"
    assert ds.dataset_root == str(expected_root)
    assert capsys.readouterr().out == f"Generating 16 synthetic images into {expected_root} ...\n"
    # second use: already there, nothing printed, same folder
    train = SyntheticShapes([], mode="train", **SMALL)
    assert train.dataset_root == str(expected_root)
    assert capsys.readouterr().out == ""
    assert len(ds) == 10 and len(train) == 6
    # other parameters -> other folder
    assert SyntheticShapes.params_hash(6, 10, 48, 1) != digest


def test_items_through_paddleseg_transforms(tmp_path):
    root = str(tmp_path / "shapes")
    train = SyntheticShapes(
        [T.RandomHorizontalFlip(), T.Resize(target_size=(32, 32)), T.Normalize()],
        mode="train",
        dataset_root=root,
        **SMALL,
    )
    item = train[0]
    assert item["img"].shape == (3, 32, 32) and item["img"].dtype == np.float32
    assert item["label"].shape == (32, 32) and item["label"].max() <= 5

    val = SyntheticShapes([T.Normalize()], mode="val", dataset_root=root, **SMALL)
    item = val[3]
    label = cv2.imread(os.path.join(root, "labels/val/000003.png"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(item["label"], label[None])
    img = cv2.imread(os.path.join(root, "images/val/000003.png"))[:, :, ::-1]
    np.testing.assert_allclose(item["img"], (img.transpose(2, 0, 1) / 255.0 - 0.5) / 0.5, atol=1e-6)

    # batched by Paddle's DataLoader as PaddleSeg's training loop does
    loader = paddle.io.DataLoader(train, batch_size=4, shuffle=False, num_workers=0)
    batch = next(iter(loader))
    assert list(batch["img"].shape) == [4, 3, 32, 32]
    assert list(batch["label"].shape) == [4, 32, 32]


def test_errors(tmp_path):
    with pytest.raises(ValueError, match=r"mode must be one of \['train', 'val'\], got 'test'"):
        SyntheticShapes([], mode="test", dataset_root=str(tmp_path / "x"), **SMALL)
    root = generate_synthetic_shapes(str(tmp_path / "e"), **SMALL)
    with pytest.raises(FileExistsError, match="generated with .*'seed': 0.*not.*'seed': 5"):
        generate_synthetic_shapes(root, **{**SMALL, "seed": 5})
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("x")
    with pytest.raises(FileExistsError, match="exists and is not a SyntheticShapes dataset"):
        generate_synthetic_shapes(str(tmp_path / "other"), **SMALL)


def test_failed_generation_leaves_nothing(tmp_path, monkeypatch):
    real_write = shapes_mod._write_split

    def crash_on_val(root, split, *args):
        real_write(root, split, *args)
        if split == "val":
            raise KeyboardInterrupt  # as if the run were killed half-way

    monkeypatch.setattr(shapes_mod, "_write_split", crash_on_val)
    with pytest.raises(KeyboardInterrupt):
        generate_synthetic_shapes(str(tmp_path / "f"), **SMALL)
    assert sorted(os.listdir(tmp_path)) == [".f.lock"]

    # a leftover of a killed process (no cleanup ran) is removed by the next generation
    monkeypatch.setattr(shapes_mod, "_write_split", real_write)
    (tmp_path / ".f.tmp-stale" / "images").mkdir(parents=True)
    root = generate_synthetic_shapes(str(tmp_path / "f"), **SMALL)
    assert sorted(os.listdir(tmp_path)) == [".f.lock", "f"]
    assert len(_files(Path(root))) == 2 * 16 + 3


@pytest.mark.slow
def test_two_processes_generate_once(tmp_path):
    root = tmp_path / "shared" / "shapes"
    go = tmp_path / "go"
    params = {**SMALL, "num_train": 40}
    script = textwrap.dedent(
        f"""
        import os, sys, time
        from paddleseg_ext.datasets.shapes import generate_synthetic_shapes
        open(sys.argv[1], "w").close()
        while not os.path.exists({str(go)!r}):
            time.sleep(0.01)
        generate_synthetic_shapes({str(root)!r}, **{params!r})
        """
    )
    procs = []
    for i in range(2):
        ready = tmp_path / f"ready{i}"
        procs.append(
            (
                ready,
                subprocess.Popen(
                    [sys.executable, "-c", script, str(ready)],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                    text=True,
                ),
            )
        )
    # release both at once, after both finished their (slow) imports
    deadline = time.time() + 120
    while not all(ready.exists() for ready, _ in procs):
        assert time.time() < deadline, "worker processes did not start"
        assert all(p.poll() is None for _, p in procs), "a worker process died"
        time.sleep(0.05)
    go.touch()
    outputs = [p.communicate(timeout=120)[0] for _, p in procs]
    assert [p.returncode for _, p in procs] == [0, 0]
    assert "".join(outputs).count("Generating") == 1
    assert sorted(os.listdir(root.parent)) == [".shapes.lock", "shapes"]
    reference = generate_synthetic_shapes(str(tmp_path / "reference"), **params)
    assert _files(root) == _files(Path(reference))


def test_default_is_unchanged_by_the_class_count_option():
    # Drawn pixels and cache keys of the 6-class dataset predate the `num_classes` option:
    # cached datasets stay valid and regenerate byte-identically.
    digest = hashlib.sha1()
    for index in range(5):
        rng = np.random.default_rng([0, 1, index])
        img, label = shapes_mod.render_sample(rng, 64, must_include=index % 5 + 1)
        digest.update(img.tobytes())
        digest.update(label.tobytes())
    assert digest.hexdigest() == "8bee158e199b1d8210457b3dbe34df407990f8a9"
    assert SyntheticShapes.params_hash(6, 10, 48, 0) == "6a84af88c6a8"
    assert SyntheticShapes.params_hash(400, 100, 128, 0, num_classes=6) == "0a5911d31ce9"
    assert SyntheticShapes.params_hash(6, 10, 48, 0, num_classes=150) != "6a84af88c6a8"
    assert shapes_mod.class_names() == list(SyntheticShapes.CLASS_NAMES)


def test_many_class_styles_are_distinct():
    styles = [shapes_mod.class_style(c, 150) for c in range(1, 150)]
    assert len(set(styles)) == 149
    # the first classes cover every shape and texture
    assert {s[0] for s in styles[:20]} == set(shapes_mod._SHAPES)
    assert {s[1] for s in styles[:20]} == set(shapes_mod._TEXTURES)
    names = shapes_mod.class_names(150)
    assert len(set(names)) == 150 and names[0] == "background"
    assert manager.DATASETS["SyntheticShapes150"] is shapes_mod.SyntheticShapes150
    assert shapes_mod.SyntheticShapes150.CLASS_NAMES == tuple(names)
    with pytest.raises(ValueError):
        shapes_mod.class_style(150, 150)
    with pytest.raises(ValueError):
        generate_synthetic_shapes("unused", num_classes=shapes_mod.MAX_NUM_CLASSES + 1)


def test_many_class_variant_has_few_classes_per_image(tmp_path):
    ds = shapes_mod.SyntheticShapes150(
        [], mode="val", dataset_root=str(tmp_path / "s150"), num_train=1, num_val=149,
        image_size=48,
    )  # fmt: skip
    assert ds.num_classes == 150 and len(ds) == 149
    meta = json.loads((tmp_path / "s150" / "meta.json").read_text())
    assert meta["num_classes"] == 150
    labels = [
        cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
        for p in sorted((tmp_path / "s150").glob("labels/val/*"))
    ]
    counts = [len(np.unique(label)) for label in labels]
    # 2-5 shapes over the background, so at most 6 of the 150 classes per image
    assert max(counts) <= 6 and min(counts) >= 2
    # image i draws class i % 149 + 1 last (never occluded): the split holds every class
    assert set(np.unique(np.stack(labels))) == set(range(150))
