"""Valid-class interpolation: same labels as full upsampling + argmax, exportable to ONNX."""

import json

import numpy as np
import onnxruntime as ort
import paddle
import paddle.nn.functional as F
import paddle2onnx
import pytest
from paddleseg.models import TopFormer
from paddleseg.models.backbones.top_transformer import TopTransformer_Tiny

from paddleseg_ext.models.strideformer import MobileSegExt, StrideFormerBackbone
from paddleseg_ext.models.topformer import TopFormerBackbone, TopFormerSeg
from paddleseg_ext.models.vim import (
    LogitsUpsample,
    VIMWrapper,
    valid_class_interpolate,
    valid_class_mask,
)


def full_labels(logits, size, align_corners=False):
    up = F.interpolate(logits, size=size, mode="bilinear", align_corners=align_corners)
    return up.argmax(axis=1, keepdim=True).astype("int32").numpy()


def confident_logits(num_classes, h, w, batch=1, regions=6, seed=0):
    """Logits of a confident model: smooth scores of a few classes (their argmax is the
    nearest of `regions` centres), every other class far below with a little noise."""
    rng = np.random.default_rng(seed)
    logits = -5.0 + 0.1 * rng.standard_normal((batch, num_classes, h, w))
    yy, xx = np.meshgrid(np.linspace(0, 1, h), np.linspace(0, 1, w), indexing="ij")
    classes = rng.choice(num_classes, regions, replace=False)
    for (cy, cx), cls in zip(rng.uniform(0, 1, (regions, 2)), classes, strict=True):
        logits[:, cls] = 10.0 - 30.0 * ((yy - cy) ** 2 + (xx - cx) ** 2)
    return paddle.to_tensor(logits.astype("float32"))


@pytest.mark.parametrize(
    "num_classes, batch, low, size, align_corners",
    [
        (2, 1, (8, 8), (64, 64), False),
        (14, 2, (16, 16), (128, 128), False),
        (150, 1, (16, 12), (128, 96), False),
        (150, 2, (9, 7), (61, 50), False),  # non-integer scale
        (19, 1, (8, 8), (64, 64), True),
        (5, 1, (1, 6), (8, 48), False),  # a single row
    ],
)
def test_exact_vim_equals_full_upsampling_argmax(num_classes, batch, low, size, align_corners):
    # Random logits are the hard case: every pixel boundary is between different classes.
    logits = paddle.randn([batch, num_classes, *low])
    labels = valid_class_interpolate(logits, list(size), "exact", align_corners)
    assert labels.dtype == paddle.int32 and labels.shape == [batch, 1, *size]
    np.testing.assert_array_equal(labels.numpy(), full_labels(logits, list(size), align_corners))


def test_exact_vim_keeps_few_classes_on_confident_logits():
    logits = confident_logits(150, 64, 64)
    present = valid_class_mask(logits, "present")
    exact = valid_class_mask(logits, "exact")
    assert int(present.sum()) == 6
    assert bool((exact | ~present).all())  # a superset of the present classes
    assert int(exact.sum()) < 15
    labels = valid_class_interpolate(logits, [512, 512])
    np.testing.assert_array_equal(labels.numpy(), full_labels(logits, [512, 512]))


def test_exact_vim_keeps_every_class_that_can_win():
    # Random logits: most classes can win between pixels, so most are kept (no speed-up, but
    # the labels stay right; see test_exact_vim_equals_full_upsampling_argmax).
    logits = paddle.randn([1, 150, 32, 32])
    assert int(valid_class_mask(logits, "exact").sum()) > 140


def test_present_class_rule_is_not_exact():
    # The paper's rule keeps only argmax classes. Pixels (10, 0, 8) and (0, 10, 8): class 2
    # wins neither, but wins between them (3/8 of the way: (6.25, 3.75, 8)).
    logits = paddle.to_tensor([[[[10.0, 0.0]], [[0.0, 10.0]], [[8.0, 8.0]]]])  # (1, 3, 1, 2)
    full = full_labels(logits, [1, 8])
    assert 2 in full
    present = valid_class_interpolate(logits, [1, 8], "present").numpy()
    assert 2 not in present
    np.testing.assert_array_equal(valid_class_interpolate(logits, [1, 8], "exact").numpy(), full)


def test_present_class_rule_matches_on_confident_logits():
    logits = confident_logits(150, 32, 32, batch=2)
    labels = valid_class_interpolate(logits, [256, 256], "present")
    np.testing.assert_array_equal(labels.numpy(), full_labels(logits, [256, 256]))


def test_upsample_layer_switches_only_on_request():
    logits = paddle.randn([1, 2, 8, 8])
    vim = LogitsUpsample(2, "vim")  # 2 classes: no hidden threshold
    vim.eval()
    assert vim(logits, [32, 32]).shape == [1, 1, 32, 32]
    vim.train()  # training is unchanged: logits
    assert vim(logits, [32, 32]).shape == [1, 2, 32, 32]
    gated = LogitsUpsample(14, "vim", min_classes=30)  # explicit threshold
    gated.eval()
    assert gated(paddle.randn([1, 14, 8, 8]), [32, 32]).shape == [1, 14, 32, 32]
    with pytest.raises(ValueError):
        LogitsUpsample(2, "intepolate")


def test_wrapper_adds_vim_to_a_stock_paddleseg_model(randomize):
    inner = randomize(TopFormer(150, TopTransformer_Tiny(), head_use_dw=True))
    wrapped = VIMWrapper(inner, num_classes=150)
    x = paddle.randn([1, 3, 64, 64])
    wrapped.eval()
    labels = wrapped(x)[0]
    stock = inner(x)[0].argmax(axis=1, keepdim=True).astype("int32")
    np.testing.assert_array_equal(labels.numpy(), stock.numpy())
    wrapped.train()
    assert wrapped(x)[0].shape == [1, 150, 64, 64]
    with pytest.raises(TypeError):
        VIMWrapper(paddle.nn.Conv2D(3, 3, 1), num_classes=3)


def export_onnx(layer, input_spec, tmp_path):
    """to_static -> jit.save (PIR json) -> paddle2onnx -> onnxruntime session; also the ops."""
    static = paddle.jit.to_static(layer, input_spec=input_spec, full_graph=True)
    prefix = str(tmp_path / "model")
    paddle.jit.save(static, prefix)
    with open(prefix + ".json") as f:
        ops = {op.get("#", "") for op in _walk_ops(json.load(f))}  # e.g. "1.conv2d"
    # optimize_tool="none": the default ("polygraphy") pip-installs packages at run time.
    paddle2onnx.export(
        prefix + ".json",
        prefix + ".pdiparams",
        prefix + ".onnx",
        opset_version=13,
        optimize_tool="none",
    )
    return ort.InferenceSession(prefix + ".onnx", providers=["CPUExecutionProvider"]), ops


def _walk_ops(node):
    """Yields the ops of a PIR json program, nested blocks included."""
    if isinstance(node, dict):
        yield from node.get("ops", [])
        for value in node.values():
            yield from _walk_ops(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk_ops(value)


def test_vim_exports_to_onnx_with_a_dynamic_class_count(tmp_path):
    class Labels(paddle.nn.Layer):
        def forward(self, logits):
            size = paddle.shape(logits)[2:] * 8
            return valid_class_interpolate(logits, size)

    spec = [paddle.static.InputSpec([None, 150, None, None], "float32")]
    session, ops = export_onnx(Labels(), spec, tmp_path)
    assert not any("while" in op for op in ops), ops
    # One graph, inputs with different numbers of kept classes and sizes.
    for logits in [confident_logits(150, 16, 16), paddle.randn([2, 150, 8, 12])]:
        (labels,) = session.run(None, {session.get_inputs()[0].name: logits.numpy()})
        size = [logits.shape[2] * 8, logits.shape[3] * 8]
        np.testing.assert_array_equal(labels, full_labels(logits, size))


def student_with_vim():
    # The LPCVC student: internal 288x288 resize, fixed 5x5 token grid, any input size.
    backbone = TopFormerBackbone(
        "tiny", num_rows=8, depth=3, input_size=(288, 288), token_grid=(5, 5)
    )
    return TopFormerSeg(14, backbone, upsample="vim")


def mobileseg_with_vim():
    return MobileSegExt(14, StrideFormerBackbone("tiny"), upsample="vim")


@pytest.mark.slow  # to_static of a whole segmentor: about 5 s each
@pytest.mark.parametrize("build", [student_with_vim, mobileseg_with_vim])
def test_segmentor_with_vim_exports_and_onnxruntime_agrees(randomize, tmp_path, build):
    model = randomize(build())
    model.eval()
    x = paddle.randn([1, 3, 320, 256])
    expected = model(x)[0].numpy()
    spec = [paddle.static.InputSpec([None, 3, None, None], "float32")]
    session, ops = export_onnx(model, spec, tmp_path)
    assert not any("while" in op for op in ops)
    (labels,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    assert labels.dtype == np.int32 and labels.shape == (1, 1, 320, 256)
    # Equal except where the two best logits are within float noise of each other.
    model.upsample.use_vim = False
    logits = np.sort(model(x)[0].numpy(), axis=1)
    near_tie = (logits[:, -1] - logits[:, -2] < 1e-4)[:, None]
    assert np.all((labels == expected) | near_tie)
    assert (labels == expected).mean() > 0.999
