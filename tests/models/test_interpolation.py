"""Resizes as interpolation matrix products (``models.layers.resizes_as_matmuls``): the
values of Paddle's bilinear resize, and the Paddle program the export traces with them."""

from collections import Counter

import numpy as np
import paddle
import paddle.nn.functional as F
import pytest

from paddleseg_ext.config import build as build_components
from paddleseg_ext.config import load_config
from paddleseg_ext.export.graph import ExportModel, trace_paddle
from paddleseg_ext.models.interpolation import RESIZE_MAX_MACS, resize_macs
from paddleseg_ext.models.layers import resize, resizes_as_matmuls

CASES = [((5, 5), (36, 36)), ((9, 7), (36, 20)), ((18, 18), (36, 36)), ((9, 11), (6, 8))]


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("size_in, size_out", CASES)
def test_matmul_resize_equals_bilinear_interpolate(size_in, size_out, align_corners):
    x = paddle.to_tensor(np.random.default_rng(0).standard_normal((2, 3, *size_in)), "float32")
    expected = F.interpolate(x, size=list(size_out), mode="bilinear", align_corners=align_corners)
    assert resize_macs(*size_in, *size_out) <= RESIZE_MAX_MACS
    with resizes_as_matmuls():
        got = resize(x, list(size_out), align_corners)
    np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=0, atol=1e-5)


def test_costly_or_dynamic_resizes_and_the_default_stay_bilinear():
    x = paddle.to_tensor(np.random.default_rng(1).standard_normal((1, 3, 64, 64)), "float32")
    expected = F.interpolate(x, size=[288, 288], mode="bilinear")
    assert resize_macs(64, 64, 288, 288) > RESIZE_MAX_MACS
    with resizes_as_matmuls():
        assert np.array_equal(resize(x, [288, 288]).numpy(), expected.numpy())
        dynamic = paddle.to_tensor([36, 36], "int32")
        small = F.interpolate(x[:, :, :5, :5], size=dynamic, mode="bilinear")
        assert np.array_equal(resize(x[:, :, :5, :5], dynamic).numpy(), small.numpy())
    small = x[:, :, :5, :5]
    assert np.array_equal(  # outside the block: Paddle's resize, bit for bit
        resize(small, [36, 36]).numpy(),
        F.interpolate(small, size=[36, 36], mode="bilinear").numpy(),
    )


def test_the_students_paddle_program_keeps_only_the_large_resizes():
    """TopFormer's eight injections of the global tokens become matrix products; the input
    resize (512 -> 288) and the logits' upsampling (36 -> 512), over the cost limit, stay
    Paddle's bilinear_interp."""
    model = build_components(load_config("configs/lpcvc/topformer_tiny_lpcvc_288.yml", "val")).model
    model.eval()

    def resize_ops() -> Counter:
        layer = ExportModel(model, "argmax", False)
        trace_paddle(layer, [1, 3, 512, 512])
        ops = layer.forward.concrete_program.main_program.global_block().ops
        return Counter(op.name() for op in ops if op.name() == "pd_op.bilinear_interp")

    assert resize_ops()["pd_op.bilinear_interp"] == 10
    with resizes_as_matmuls():
        assert resize_ops()["pd_op.bilinear_interp"] == 2
