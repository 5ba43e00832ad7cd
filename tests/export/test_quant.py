"""INT8 post-training quantization of the exported ONNX model (``--quantize int8``)."""

from __future__ import annotations

import os
import sys

import numpy as np
import onnx
import paddle
import pytest
from helpers import load_tool
from seg_runtime import OrtRunner, load_deploy

from paddleseg_ext.cli import run
from paddleseg_ext.config import ConfigError, load_config
from paddleseg_ext.export import sample_input
from paddleseg_ext.quant import INT8_FILE, calibration_batches, check_quant_request

TOPFORMER_TINY = {
    "type": "TopFormerSeg",
    "num_classes": 6,
    "backbone": {"type": "TopFormerBackbone", "preset": "tiny"},
}
SIDE = 128
# Random weights give near-constant labels, so the label agreement says little; the logits
# are compared instead. Measured on this model: correlation 0.998 between INT8 and float
# ONNX logits on a val image; 0.98 leaves room for other seeds and onnxruntime versions.
MIN_LOGIT_CORRELATION = 0.98


def weight_is_int8(model: onnx.ModelProto, node: onnx.NodeProto) -> bool:
    """Whether ``node``'s weight input is a DequantizeLinear of an int8 initializer."""
    producers = {out: n for n in model.graph.node for out in n.output}
    initializers = {init.name: init for init in model.graph.initializer}
    dq = producers.get(node.input[1])
    if dq is None or dq.op_type != "DequantizeLinear":
        return False
    weight = initializers.get(dq.input[0])
    return weight is not None and weight.data_type == onnx.TensorProto.INT8


def test_int8_export_cli(monkeypatch, tmp_path, make_config, make_weights) -> None:
    config = make_config(TOPFORMER_TINY)
    weights = make_weights(config, str(tmp_path / "w.pdparams"))
    # With its random classifier bias, one class wins every pixel by a margin no INT8
    # rounding reaches, and the label agreement below would be 1 however it is computed.
    state = paddle.load(weights)
    state["head.classifier.bias"] = paddle.zeros_like(state["head.classifier.bias"])
    paddle.save(state, weights)
    save_dir = str(tmp_path / "export")
    argv = ["export.py", "--config", config, "--model_path", weights, "--save_dir", save_dir]
    argv += ["--input_shape", "1", "3", str(SIDE), str(SIDE), "--output_op", "none"]
    argv += ["--formats", "onnx", "--quantize", "int8", "--calib_images", "3"]
    monkeypatch.setattr(sys, "argv", argv)
    run(load_tool("export").main)

    deploy = load_deploy(save_dir)
    assert deploy.formats["onnx"] == {"float": "model.onnx", "int8": INT8_FILE, "default": "int8"}
    assert deploy.model_file("onnx") == INT8_FILE  # what the runtime opens by default
    quant = deploy.quantization["onnx"]
    assert quant["calibration_images"] == 3 and quant["calibration_batches"] == 3

    int8_file = os.path.join(save_dir, INT8_FILE)
    model = onnx.load(int8_file)
    ops = [node.op_type for node in model.graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    convs = [node for node in model.graph.node if node.op_type == "Conv"]
    assert convs and all(weight_is_int8(model, node) for node in convs)
    float_size = os.path.getsize(os.path.join(save_dir, "model.onnx"))
    assert os.path.getsize(int8_file) < 0.5 * float_size

    x, _ = sample_input(load_config(config, "val"), [1, 3, SIDE, SIDE])
    reference = OrtRunner(os.path.join(save_dir, "model.onnx"))(x)
    quantized = OrtRunner(int8_file)(x)
    assert quantized.shape == reference.shape == (1, 6, SIDE, SIDE)
    correlation = np.corrcoef(reference.ravel(), quantized.ravel())[0, 1]
    assert correlation >= MIN_LOGIT_CORRELATION, correlation
    assert not np.array_equal(reference, quantized)  # the INT8 model really differs
    # The export's check ran the two models on this same input (the first val image, one
    # thread): its agreement is the fraction of pixels whose argmax over the logits matches
    # (0.90 with onnxruntime 1.32, so a wrong computation shows).
    agreement = float(np.mean(reference.argmax(axis=1) == quantized.argmax(axis=1)))
    assert quant["label_agreement"] == agreement


def test_calibration_batches(make_config) -> None:
    """Training images, val transforms (deterministic), fixed size, incomplete batch filled."""
    cfg = load_config(make_config(TOPFORMER_TINY), "val")
    first = list(calibration_batches(cfg, 3, [2, 3, 64, 96]))
    again = list(calibration_batches(cfg, 3, [2, 3, 64, 96]))
    assert [b.shape for b in first] == [(2, 3, 64, 96), (2, 3, 64, 96)]
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert np.array_equal(first[1][0], first[1][1])  # the third image, repeated
    dynamic = list(calibration_batches(cfg, 2, [-1, 3, -1, -1]))
    assert len(dynamic) == 2 and all(b.shape[0] == 1 and b.shape[2] % 32 == 0 for b in dynamic)


@pytest.mark.parametrize(
    "args, message",
    [
        (("int4", 8, ("onnx",), "argmax", None), "unknown --quantize"),
        (("int8", 0, ("onnx",), "argmax", None), "at least 1"),
        (("int8", 8, ("paddle",), "argmax", None), "add onnx or lite to --formats"),
        (("int8", 8, ("onnx",), "vim", None), "not supported with --output_op vim"),
        (("int8", 8, ("lite",), "argmax", None), "with --formats lite needs --model_path"),
    ],
)
def test_bad_quant_arguments(args, message, make_config) -> None:
    cfg = load_config(make_config(TOPFORMER_TINY), "val")
    with pytest.raises(ConfigError, match=message):
        check_quant_request(cfg, *args)


def test_cli_rejects_before_writing(monkeypatch, capsys, tmp_path, make_config) -> None:
    save_dir = tmp_path / "export"
    argv = ["export.py", "--config", make_config(TOPFORMER_TINY), "--save_dir", str(save_dir)]
    monkeypatch.setattr(sys, "argv", argv + ["--formats", "paddle", "--quantize", "int8"])
    with pytest.raises(SystemExit) as exc:
        run(load_tool("export").main)
    assert exc.value.code == 2
    assert "add onnx or lite to --formats" in capsys.readouterr().err
    assert not save_dir.exists()
    # Paddle Lite INT8 rebuilds the model from its weights: refused without --model_path.
    monkeypatch.setattr(sys, "argv", argv + ["--formats", "lite", "--quantize", "int8"])
    with pytest.raises(SystemExit) as exc:
        run(load_tool("export").main)
    assert exc.value.code == 2
    assert "--formats lite needs --model_path" in capsys.readouterr().err
    assert not save_dir.exists()
