"""Preprocessing of deploy.yaml's transforms: formulas, label restoration, the input-size
rule, and parity with paddleseg.transforms on real CamVid images."""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest
from seg_runtime import Preprocessor, model_input_size, resize_to_input

CAMVID = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    "..", "shared", "data", "camvid",
)  # fmt: skip


def image(h=30, w=40, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_normalize_is_rgb_over_255_minus_mean_over_std():
    img = image()
    chw, steps = Preprocessor([{"type": "Normalize", "mean": [0.1, 0.2, 0.3],
                                "std": [0.5, 0.25, 2.0]}])(img)  # fmt: skip
    rgb = img[..., ::-1].astype(np.float64) / 255
    expected = ((rgb - [0.1, 0.2, 0.3]) / [0.5, 0.25, 2.0]).transpose(2, 0, 1)
    np.testing.assert_allclose(chw, expected, rtol=0, atol=1e-6)
    assert chw.dtype == np.float32 and steps == []


@pytest.mark.parametrize(
    ("spec", "size"),
    [
        ({"type": "Resize", "target_size": [50, 20]}, (20, 50)),
        ({"type": "Resize", "target_size": [50, 20], "size_divisor": 32}, (32, 64)),
        # keep_ratio: the long side fits 64, the short side fits 48 -> scale min(1.6, 1.6).
        ({"type": "Resize", "target_size": [64, 48], "keep_ratio": True}, (48, 64)),
        ({"type": "ResizeByLong", "long_size": 20}, (15, 20)),
        ({"type": "ResizeByShort", "short_size": 60}, (60, 80)),
        ({"type": "ResizeByShort", "short_size": 60, "max_size": 60}, (45, 60)),
        ({"type": "Padding", "target_size": [48, 36]}, (36, 48)),
    ],
)
def test_geometric_ops_and_their_undoing(spec, size):
    img = image(30, 40)
    chw, steps = Preprocessor([spec, {"type": "Normalize"}])(img)
    assert chw.shape == (3, *size)
    assert steps == [("padding" if spec["type"] == "Padding" else "resize", (30, 40))]
    labels = np.arange(size[0] * size[1], dtype=np.int32).reshape(size) % 7
    assert Preprocessor.restore(labels, steps).shape == (30, 40)


def test_padding_fills_bottom_right_and_restore_crops_it():
    img = image(3, 4)
    chw, steps = Preprocessor([{"type": "Padding", "target_size": [6, 5],
                                "im_padding_value": 10.0}])(img)  # fmt: skip
    np.testing.assert_array_equal(chw[:, :3, :4], img[..., ::-1].transpose(2, 0, 1))
    assert (chw[:, 3:, :] == 10).all() and (chw[:, :, 4:] == 10).all()
    labels = np.arange(30).reshape(5, 6)
    np.testing.assert_array_equal(Preprocessor.restore(labels, steps), labels[:3, :4])


def test_unsupported_or_bad_transforms_are_named():
    with pytest.raises(ValueError, match=r"transforms\[1\] 'RandomBlur' is not supported"):
        Preprocessor([{"type": "Normalize"}, {"type": "RandomBlur"}])
    with pytest.raises(ValueError, match="Resize.interp 'BICUBIC' is not one of"):
        Preprocessor([{"type": "Resize", "interp": "BICUBIC"}])
    with pytest.raises(ValueError, match=r"transforms\[0\] Normalize: .*unexpected keyword"):
        Preprocessor([{"type": "Normalize", "means": [0.5]}])
    with pytest.raises(ValueError, match="larger than Padding.target_size 8x8"):
        Preprocessor([{"type": "Padding", "target_size": [8, 8]}])(image(10, 10))


@pytest.mark.parametrize(
    ("hw", "shape", "expected"),
    [
        ((360, 480), [1, 3, 512, 512], (512, 512)),  # a fixed export size wins
        ((360, 480), [1, 3, -1, -1], (352, 480)),  # 11.25 strides -> 11
        ((376, 500), [-1, 3, -1, -1], (384, 512)),  # 11.75 -> 12, 15.6 -> 16
        ((10, 70), [1, 3, -1, 64], (32, 64)),  # at least one stride
    ],
)
def test_model_input_size_is_the_fixed_size_or_the_nearest_multiple_of_32(hw, shape, expected):
    assert model_input_size(*hw, shape) == expected
    chw = np.zeros((3, *hw), dtype=np.float32)
    assert resize_to_input(chw, shape).shape == (3, *expected)


TRANSFORM_SETS = [
    [{"type": "Resize", "target_size": [480, 360], "size_divisor": 32}, {"type": "Normalize"}],
    [{"type": "Resize", "target_size": [512, 512], "keep_ratio": True, "interp": "AREA"},
     {"type": "Normalize", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}],
    [{"type": "ResizeByShort", "short_size": 288}, {"type": "Normalize"}],
    [{"type": "ResizeByLong", "long_size": 320}, {"type": "Padding", "target_size": [320, 320]},
     {"type": "Normalize"}],
]  # fmt: skip


@pytest.mark.parametrize("transforms", TRANSFORM_SETS, ids=["resize32", "keep", "short", "pad"])
def test_matches_paddleseg_transforms_on_camvid(transforms):
    pytest.importorskip("paddleseg_ext", reason="the comparison needs PaddleSeg (main env)")
    if not os.path.isfile(os.path.join(CAMVID, "val.txt")):
        pytest.skip(f"needs the CamVid copy at {CAMVID}")
    from paddleseg.cvlibs import manager
    from paddleseg.transforms import Compose

    import paddleseg_ext  # noqa: F401  (PaddleSeg's transforms register on import)

    def paddleseg_compose():
        ops = []
        for spec in transforms:
            spec = dict(spec)
            ops.append(manager.TRANSFORMS[spec.pop("type")](**spec))
        return Compose(ops)

    with open(os.path.join(CAMVID, "val.txt")) as f:
        paths = [os.path.join(CAMVID, line.split()[0]) for line in f.read().splitlines()[:5]]
    ours = Preprocessor(transforms)
    worst = 0.0
    for path in paths:
        bgr = cv2.imread(path, cv2.IMREAD_COLOR)
        expected = paddleseg_compose()({"img": bgr.astype("float32"), "trans_info": []})["img"]
        got, _ = ours(bgr)
        assert got.shape == expected.shape
        worst = max(worst, float(np.abs(got - expected).max()))
    print(f"max |ours - paddleseg| = {worst:.3g}")
    # float32 rounding of values of magnitude <= ~2.7: a few ulps.
    assert worst <= 2e-6
