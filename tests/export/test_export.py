"""Export to Paddle Inference + ONNX: parity with the dygraph model, errors, no installs."""

from __future__ import annotations

import glob
import importlib.metadata
import os
import sys

import cv2
import numpy as np
import paddle
import pytest
import yaml
from seg_runtime import DeployInfo, OrtRunner, PaddleRunner, SegPredictor, load_deploy, to_labels

from paddleseg_ext.config import ConfigError, build, load_config
from paddleseg_ext.core.checkpoint import load_weights
from paddleseg_ext.export import (
    ExportModel,
    export,
    outputs_labels,
    parse_formats,
    prepare_model,
)
from paddleseg_ext.models import VIMWrapper

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG_DIRS = ("lpcvc", "camvid", "ade20k", "fastsegformer")
DEMO_CONFIG = os.path.join(REPO, "configs", "demo", "fastscnn_shapes.yml")
# Smallest input side each model type exports correctly: Fast-SCNN's pyramid pooling
# (bins 1, 2, 3, 6 at 1/32) needs a 1/32 map of at least 6 pixels for ONNX AveragePool.
MIN_SIDE = {"FastSCNN": 192}
DEFAULT_SIDE = 128

TOPFORMER_TINY = {
    "type": "TopFormerSeg",
    "num_classes": 6,
    "backbone": {"type": "TopFormerBackbone", "preset": "tiny"},
}
MOBILESEG_TINY_VIM = {
    "type": "MobileSegExt",
    "num_classes": 6,
    "backbone": {"type": "StrideFormerBackbone", "preset": "tiny"},
    "upsample": "vim",
}


def dataset_configs() -> list[str]:
    """Every config under the ``CONFIG_DIRS`` folders (not their _base_ folders)."""
    found = []
    for name in CONFIG_DIRS:
        found += glob.glob(os.path.join(REPO, "configs", name, "*.yml"))
    return sorted(found)


def dygraph_output(config: str, weights: str, output_op: str, x: np.ndarray) -> np.ndarray:
    """The output of the config's dygraph model with ``weights`` and the export's output op."""
    cfg = load_config(config, "val")
    model = build(cfg).model
    load_weights(model, weights)
    model = prepare_model(model, output_op, cfg.dic["model"]["num_classes"])
    layer = ExportModel(model, output_op, outputs_labels(model))
    layer.eval()
    with paddle.no_grad():
        return layer(paddle.to_tensor(x)).numpy()


def check_parity(
    config: str, weights: str, save_dir: str, shape: list[int], verify: bool = False
) -> dict[str, float]:
    """Exports with argmax, runs both backends on one random input, returns their agreement."""
    result = export(
        load_config(config, "val"),
        save_dir,
        model_path=weights,
        input_shape=shape,
        verify=verify,
    )
    if verify:  # the export's own check: labels and logits against dygraph
        assert result.passed and set(result.checks) == {"paddle_inference", "onnxruntime"}
        for check in result.checks.values():
            assert check["label_agreement"] >= 0.999
            assert 0 <= check["max_abs_diff"] < 1e-3
    assert sorted(os.listdir(save_dir)) == [
        "deploy.yaml",
        "model.json",
        "model.onnx",
        "model.pdiparams",
    ]
    assert result.files["model"] == "model.json"
    x = np.random.default_rng(1).standard_normal([1, 3, *shape[2:]]).astype("float32")
    reference = dygraph_output(config, weights, "argmax", x)
    onnx_out = OrtRunner(os.path.join(save_dir, "model.onnx"))(x)
    paddle_out = PaddleRunner(
        os.path.join(save_dir, "model.json"), os.path.join(save_dir, "model.pdiparams")
    )(x)
    agreement = {}
    for name, out in (("onnxruntime", onnx_out), ("paddle", paddle_out)):
        assert out.shape == reference.shape, name
        agreement[name] = float((to_labels(out) == to_labels(reference)).mean())
    return agreement


def test_dataset_configs_exist() -> None:
    found = dataset_configs()
    assert found, f"no configs under configs/{{{','.join(CONFIG_DIRS)}}}"


@pytest.mark.slow
@pytest.mark.parametrize("config", dataset_configs(), ids=lambda p: os.path.relpath(p, REPO))
def test_config_export_parity(config: str, tmp_path, make_weights) -> None:
    model_type = load_config(config, "val").dic["model"]["type"]
    side = MIN_SIDE.get(model_type, DEFAULT_SIDE)
    weights = make_weights(config, str(tmp_path / "model.pdparams"))
    agreement = check_parity(config, weights, str(tmp_path / "out"), [1, 3, side, side])
    assert agreement["onnxruntime"] >= 0.999, agreement
    assert agreement["paddle"] >= 0.999, agreement


@pytest.mark.slow
def test_demo_export_check_and_deploy_yaml(tmp_path, make_weights) -> None:
    """The demo config, with the export's own check (labels and logits vs dygraph)."""
    weights = make_weights(DEMO_CONFIG, str(tmp_path / "model.pdparams"))
    out = str(tmp_path / "out")
    agreement = check_parity(DEMO_CONFIG, weights, out, [1, 3, 192, 192], verify=True)
    assert min(agreement.values()) >= 0.999, agreement
    deploy = load_deploy(out)
    assert deploy.formats == {
        "paddle": {"float": {"model": "model.json", "params": "model.pdiparams"}},
        "onnx": {"float": "model.onnx"},
    }
    assert deploy.meta["model_type"] == "FastSCNN" and deploy.input_shape == [1, 3, 192, 192]
    assert deploy.output_op == "argmax" and deploy.meta["output_dtype"] == "int32"
    assert deploy.transforms == [{"type": "Normalize"}]
    assert deploy.class_names == ["background", "disc", "rectangle", "triangle", "ring", "cross"]


@pytest.mark.slow
def test_dynamic_shape_vim_export(tmp_path, make_config, make_weights) -> None:
    """MobileSegExt with VIM, dynamic H/W: one ONNX model serves two sizes exactly."""
    config = make_config(MOBILESEG_TINY_VIM)
    weights = make_weights(config, str(tmp_path / "model.pdparams"))
    out = str(tmp_path / "out")
    export(
        load_config(config, "val"),
        out,
        model_path=weights,
        input_shape=[1, 3, -1, -1],
        output_op="vim",
        formats="onnx",
        verify=False,
    )
    assert sorted(os.listdir(out)) == ["deploy.yaml", "model.onnx"]
    runner = OrtRunner(os.path.join(out, "model.onnx"))
    for side in (96, 160):
        x = np.random.default_rng(side).standard_normal([1, 3, side, side]).astype("float32")
        labels = runner(x)
        assert labels.dtype == np.int32 and labels.shape == (1, 1, side, side)
        reference = dygraph_output(config, weights, "vim", x)
        assert (labels == reference).mean() >= 0.999


@pytest.mark.slow
def test_export_check_and_vim_switch(tmp_path, make_config, make_weights) -> None:
    """--output_op vim on a bilinear TopFormerSeg: labels equal bilinear + argmax."""
    config = make_config(TOPFORMER_TINY)
    weights = make_weights(config, str(tmp_path / "model.pdparams"))
    before = {(d.metadata["Name"], d.version) for d in importlib.metadata.distributions()}
    result = export(
        load_config(config, "val"),
        str(tmp_path / "out"),
        model_path=weights,
        input_shape=[1, 3, 128, 128],
        output_op="vim",
    )
    after = {(d.metadata["Name"], d.version) for d in importlib.metadata.distributions()}
    assert after == before, "exporting changed the installed distributions"
    assert result.passed
    assert set(result.checks) == {"paddle_inference", "onnxruntime"}
    for check in result.checks.values():
        assert check["label_agreement"] >= 0.999 and check["max_abs_diff"] is None
    x = np.random.default_rng(2).standard_normal([1, 3, 128, 128]).astype("float32")
    vim_labels = OrtRunner(os.path.join(str(tmp_path / "out"), "model.onnx"))(x)
    argmax_labels = dygraph_output(config, weights, "argmax", x)
    assert (vim_labels == argmax_labels).mean() >= 0.999


@pytest.mark.slow
def test_exact_export_gives_the_labels_of_the_full_head(tmp_path, make_config, make_weights):
    """--output_op exact: low-resolution logits in the graph, labels made by the runtime,
    equal to those of the argmax export (which upsamples in the graph) on both backends."""
    config = make_config(TOPFORMER_TINY)
    weights = make_weights(config, str(tmp_path / "model.pdparams"))
    outs = {}
    for op in ("argmax", "exact"):
        outs[op] = str(tmp_path / op)
        result = export(load_config(config, "val"), outs[op], model_path=weights,
                        input_shape=[1, 3, 96, 128], output_op=op)  # fmt: skip
        assert result.passed, result.checks
    deploy = load_deploy(outs["exact"])
    assert deploy.output_op == "exact" and deploy.align_corners is False
    assert deploy.meta["output_dtype"] == "float32"
    logits = OrtRunner(os.path.join(outs["exact"], "model.onnx"))(
        np.zeros([1, 3, 96, 128], np.float32)
    )
    assert logits.shape == (1, 6, 12, 16)  # the head's 1/8 resolution
    rng = np.random.default_rng(3)
    images = [cv2.resize(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8), (150, 110))
              for _ in range(3)]  # fmt: skip
    for backend in ("onnxruntime", "paddle"):
        full, exact = (SegPredictor(outs[op], backend) for op in ("argmax", "exact"))
        for image in images:
            assert (full(image)[0] == exact(image)[0]).mean() >= 0.999, backend


@pytest.mark.slow
def test_softmax_export_logit_difference(tmp_path, make_config, make_weights) -> None:
    config = make_config(TOPFORMER_TINY)
    weights = make_weights(config, str(tmp_path / "model.pdparams"))
    result = export(
        load_config(config, "val"),
        str(tmp_path / "out"),
        model_path=weights,
        input_shape=[1, 3, 64, 64],
        output_op="softmax",
        formats=["onnx"],
    )
    check = result.checks["onnxruntime"]
    assert check["label_agreement"] >= 0.999
    assert check["max_abs_diff"] < 1e-4
    assert load_deploy(str(tmp_path / "out")).meta["output_dtype"] == "float32"


def test_polygraphy_autoinstall_disabled() -> None:
    import paddleseg_ext.export  # noqa: F401

    assert os.environ["POLYGRAPHY_AUTOINSTALL_DEPS"] == "0"


@pytest.mark.parametrize(
    "model, output_op, message",
    [
        (None, "vim", "FastSCNN has no VIM support"),
        (None, "exact", "FastSCNN has no `upsample` layer to stop before"),
        ({**MOBILESEG_TINY_VIM}, "softmax", "softmax needs logits"),
        (None, "median", "unknown --output_op"),
    ],
)
def test_unsupported_output_op(model, output_op, message, tmp_path, make_config) -> None:
    config = make_config(model) if model else DEMO_CONFIG
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match=message):
        export(load_config(config, "val"), str(out), output_op=output_op)
    assert not out.exists(), "nothing may be written before the checks"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"formats": "paddle,tflite"}, r"unknown export format\(s\) \['tflite'\]"),
        ({"formats": ""}, "unknown export format"),
        ({"formats": "onnx,lite", "output_op": "vim"}, "lite: --output_op vim cannot be converted"),
        ({"input_shape": [1, 3, 64]}, "needs 4 values"),
        ({"input_shape": [1, 1, 64, 64]}, "3-channel"),
        ({"input_shape": [1, 3, 0, 64]}, "positive or -1"),
    ],
)
def test_bad_arguments(kwargs, message, tmp_path) -> None:
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match=message):
        export(load_config(DEMO_CONFIG, "val"), str(out), **kwargs)
    assert not out.exists()


def test_parse_formats_keeps_order_and_dedups() -> None:
    assert parse_formats("onnx, paddle,onnx") == ("onnx", "paddle")


def test_vim_wraps_stock_segmentor() -> None:
    """A stock decode_head(backbone(x)) model gets VIMWrapper; labels = argmax of logits."""
    from paddleseg.cvlibs import manager

    backbone = manager.BACKBONES["TopTransformer_Tiny"]()
    stock = manager.MODELS["TopFormer"](num_classes=6, backbone=backbone, head_use_dw=True)
    stock.eval()
    x = paddle.randn([1, 3, 64, 64])
    with paddle.no_grad():
        logits = stock(x)[0]
        wrapped = prepare_model(stock, "vim", 6)
        assert isinstance(wrapped, VIMWrapper) and outputs_labels(wrapped)
        wrapped.eval()
        labels = wrapped(x)[0]
    assert labels.dtype == paddle.int32
    assert (labels.numpy()[:, 0] == logits.numpy().argmax(1)).mean() >= 0.999


def test_cli_reports_config_errors(monkeypatch, capsys, tmp_path) -> None:
    sys.path.insert(0, os.path.join(REPO, "tools"))
    try:
        import export as export_tool
    finally:
        sys.path.pop(0)
    from paddleseg_ext.cli import run

    argv = ["export.py", "--config", DEMO_CONFIG, "--save_dir", str(tmp_path / "o")]
    monkeypatch.setattr(sys, "argv", argv + ["--output_op", "vim"])
    with pytest.raises(SystemExit) as exc:
        run(export_tool.main)
    assert exc.value.code == 2
    assert "error: --output_op vim: FastSCNN has no VIM support" in capsys.readouterr().err
    monkeypatch.setattr(sys, "argv", argv + ["--formats", "paddle,coreml"])
    with pytest.raises(SystemExit) as exc:
        run(export_tool.main)
    assert exc.value.code == 2
    assert "unknown export format" in capsys.readouterr().err


def test_deploy_yaml_is_plain_yaml(tmp_path) -> None:
    deploy = DeployInfo([1, 3, 8, 8], 2, [{"type": "Normalize"}], "argmax")
    deploy.set_model("onnx", "float", "model.onnx")
    with open(deploy.write(str(tmp_path))) as f:  # plain types only: safe_load reads it
        assert yaml.safe_load(f) == {"Deploy": {
            "version": 2, "formats": {"onnx": {"float": "model.onnx"}},
            "transforms": [{"type": "Normalize"}], "input_shape": [1, 3, 8, 8],
            "num_classes": 2, "output_op": "argmax",
        }}  # fmt: skip


@pytest.mark.slow
def test_unconvertible_model_reports_paddle2onnx_error(tmp_path) -> None:
    """paddle2onnx aborts on adaptive pooling with a dynamic size; the caller survives."""
    with pytest.raises(RuntimeError, match="Adaptive only support static input shape"):
        export(
            load_config(DEMO_CONFIG, "val"),
            str(tmp_path / "out"),
            input_shape=[1, 3, -1, -1],
            formats="onnx",
            verify=False,
        )


def test_check_input_never_downloads(monkeypatch, make_config) -> None:
    """A stock dataset with no local folder (ADE20K downloads then) gives random input."""
    import paddleseg.datasets.ade as ade

    from paddleseg_ext.export import sample_input

    def no_download(*args, **kwargs):
        raise AssertionError("the export check tried to download a dataset")

    monkeypatch.setattr(ade, "download_file_and_uncompress", no_download)
    config = load_config(
        os.path.join(REPO, "configs", "ade20k", "topformer_tiny_ade20k_512.yml"), "val"
    )
    config.dic["val_dataset"]["dataset_root"] = "/nonexistent/ADEChallengeData2016"
    x, source = sample_input(config, [2, 3, 64, -1])
    assert source == "random" and x.shape == (2, 3, 64, 256)
    x, source = sample_input(load_config(DEMO_CONFIG, "val"), [1, 3, -1, 96])
    assert source.startswith("val image") and x.shape == (1, 3, 128, 96)


def test_compare_outputs() -> None:
    from paddleseg_ext.export import compare_outputs

    logits = np.zeros((1, 3, 10, 10), dtype="float32")
    logits[:, 1] = 1.0
    other = logits.copy()
    other[0, 2, 0, :4] = 2.0  # 4 of 100 pixels change class
    check = compare_outputs(logits, other)
    assert check["label_agreement"] == pytest.approx(0.96)
    assert check["max_abs_diff"] == pytest.approx(2.0)
    labels = np.ones((1, 1, 10, 10), dtype="int32")
    assert compare_outputs(labels, labels) == {"label_agreement": 1.0, "max_abs_diff": None}


def test_cli_exits_1_on_disagreement(monkeypatch, capsys, tmp_path) -> None:
    sys.path.insert(0, os.path.join(REPO, "tools"))
    try:
        import export as export_tool
    finally:
        sys.path.pop(0)
    from paddleseg_ext.export import ExportResult

    failing = ExportResult(
        str(tmp_path),
        {},
        {"onnxruntime": {"label_agreement": 0.9, "max_abs_diff": None}},
        passed=False,
    )
    monkeypatch.setattr(export_tool, "export", lambda *args, **kwargs: failing)
    with pytest.raises(SystemExit) as exc:
        export_tool.main(["--config", DEMO_CONFIG, "--save_dir", str(tmp_path)])
    assert exc.value.code == 1
    assert "less than 99.9% of pixels" in capsys.readouterr().err
