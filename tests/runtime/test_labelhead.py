"""seg_runtime.labelhead: the labels of full bilinear upsampling + argmax, interpolated only
where the four source pixels disagree, equal the full computation on real logits."""

from __future__ import annotations

import os

import numpy as np
import pytest
from helpers import MIN_AGREEMENT
from seg_runtime import OrtRunner, SegPredictor, read_image
from seg_runtime.labelhead import bilinear_taps, exact_labels, mixed_fraction, upsample_logits

SIZES = [(96, 96), (97, 131), (360, 480), (5, 7)]


@pytest.fixture(scope="module")
def real_logits(board, exact_export) -> list:
    """Head-resolution logits (6, 12, 12) of the board's images, run by onnxruntime."""
    predictor = SegPredictor(exact_export, "onnxruntime")
    runner = OrtRunner(os.path.join(exact_export, "model.onnx"))
    return [
        runner(predictor.preprocess(read_image(os.path.join(board["images"], name))))[0]
        for name in sorted(os.listdir(board["images"]))
    ]


@pytest.mark.parametrize("align_corners", [False, True])
def test_equals_full_upsampling_on_real_logits(real_logits, align_corners):
    assert len(real_logits) >= 3 and real_logits[0].shape == (6, 12, 12)
    interpolated = []
    for logits in real_logits:
        for size in SIZES:
            full = upsample_logits(logits, size, align_corners).argmax(axis=0)
            assert np.array_equal(exact_labels(logits, size, align_corners), full), size
            interpolated.append(mixed_fraction(logits, size, align_corners))
    # Both branches of the rule ran: some pixels interpolated, some copied.
    assert 0 < np.mean(interpolated) < 1


def test_ties_go_to_the_lower_class_as_argmax(real_logits):
    logits = real_logits[0].copy()
    top = logits.argmax(axis=0)
    logits[4] = logits[1]  # class 4 ties class 1 everywhere
    logits[2] = np.where(top == 0, logits[0], logits[2])  # class 2 ties class 0 where 0 wins
    logits[:, :3, :3] = 0.5  # a block where every class ties
    for size in SIZES:
        labels = exact_labels(logits, size)
        assert np.array_equal(labels, upsample_logits(logits, size).argmax(axis=0)), size
        assert not (labels == 4).any()


def test_matches_onnxruntime_resize_up_to_near_ties(real_logits):
    """An independent implementation: onnxruntime's Resize (linear, half_pixel) + ArgMax. Any
    pixel where it differs must be a near-tie of the two best classes."""
    pytest.importorskip("onnx", reason="building the reference graph needs onnx")
    from onnx import TensorProto, helper

    size = (97, 131)
    nodes = [
        helper.make_node("Resize", ["x", "", "", "sizes"], ["up"], mode="linear",
                         coordinate_transformation_mode="half_pixel"),
        helper.make_node("ArgMax", ["up"], ["y"], axis=1, keepdims=0),
    ]  # fmt: skip
    sizes = helper.make_tensor("sizes", TensorProto.INT64, [4], [1, 6, *size])
    graph = helper.make_graph(
        nodes, "resize_argmax", [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("y", TensorProto.INT64, None)], [sizes],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    runner = OrtRunner(model.SerializeToString(), providers=["CPUExecutionProvider"])
    differing = 0
    for logits in real_logits:
        ours = exact_labels(logits, size)
        theirs = runner(logits[np.newaxis])[0]
        full = np.sort(upsample_logits(logits, size), axis=0)
        gap = full[-1] - full[-2]
        assert (gap[ours != theirs] < 1e-5).all()
        differing += int((ours != theirs).sum())
    # The bound of any two implementations of one export (the export check's).
    assert differing <= (1 - MIN_AGREEMENT) * len(real_logits) * size[0] * size[1]


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("size_in, size_out", [(12, 96), (12, 97), (5, 3), (1, 4), (7, 7)])
def test_taps_are_the_interpolation_matrix(size_in, size_out, align_corners):
    """The taps against the export's interpolation matrices (paddleseg_ext.export)."""
    pytest.importorskip("paddleseg_ext", reason="the reference matrices are the training side's")
    from paddleseg_ext.models.interpolation import interpolation_matrix

    lo, hi, weight = bilinear_taps(size_in, size_out, align_corners)
    matrix = np.zeros((size_out, size_in))
    np.add.at(matrix, (np.arange(size_out), lo), 1 - weight.astype(np.float64))
    np.add.at(matrix, (np.arange(size_out), hi), weight.astype(np.float64))
    mode = "align_corners" if align_corners else "half_pixel"
    np.testing.assert_allclose(matrix, interpolation_matrix(size_in, size_out, mode), atol=1e-6)


def test_uniform_logits_interpolate_nothing():
    logits = np.zeros((3, 4, 5), np.float32)
    logits[2] = 1.0
    assert mixed_fraction(logits, (40, 50)) == 0.0
    assert (exact_labels(logits, (40, 50)) == 2).all()


MANY_SIZES = [(97, 131), (360, 480), (5, 7), (12, 10)]


@pytest.mark.parametrize("classes", [40, 150])
def test_many_classes_equal_full_upsampling(classes, monkeypatch):
    """Columns with one, two and more candidate classes (the last through every class):
    smooth fields where a few classes lead, plus noise that brings many close."""
    from seg_runtime import labelhead

    rng = np.random.default_rng(classes)
    smooth = rng.standard_normal((classes, 3, 3)).astype(np.float32)
    smooth = np.stack([cv2_resize(c, (11, 9)) for c in smooth]) * 4
    calls = []
    loop = labelhead._interpolated_argmax
    monkeypatch.setattr(
        labelhead, "_interpolated_argmax", lambda *a: calls.append(a[0].shape[1]) or loop(*a)
    )
    for noise in (0.05, 1.0):
        logits = smooth + noise * rng.standard_normal(smooth.shape).astype(np.float32)
        for size in MANY_SIZES:
            full = upsample_logits(logits, size).argmax(axis=0)
            assert np.array_equal(exact_labels(logits, size), full), (noise, size)
    assert calls, "no column had more than two candidate classes"


def test_near_ties_within_rounding_equal_full_upsampling():
    """Two classes an ulp apart at every source pixel: the candidate bounds must keep both."""
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((5, 8, 8)).astype(np.float32)
    logits[3] = np.nextafter(logits[1], rng.choice([-np.inf, np.inf], (8, 8)).astype(np.float32))
    logits[[0, 2, 4]] -= 10  # classes 1 and 3 lead everywhere
    assert set(np.unique(logits.argmax(axis=0))) == {1, 3}
    for size in [(97, 131), (64, 64), (13, 5)]:
        full = upsample_logits(logits, size).argmax(axis=0)
        assert np.array_equal(exact_labels(logits, size), full), size
        assert mixed_fraction(logits, size) > 0.5


def cv2_resize(plane: np.ndarray, size_wh) -> np.ndarray:
    import cv2

    return cv2.resize(plane, size_wh, interpolation=cv2.INTER_CUBIC)


def test_one_class_is_label_zero_everywhere():
    logits = np.random.default_rng(0).standard_normal((1, 4, 5)).astype(np.float32)
    assert mixed_fraction(logits, (9, 11)) == 0.0
    assert (exact_labels(logits, (9, 11)) == 0).all()
