"""Paddle Lite export (``--formats lite``): a ``model.nb`` for the arm target per config.

The conversion runs in the CPython 3.10 side environment made by ``make lite-env``; the
tests that convert are skipped, with the reason, where it is absent.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess

import numpy as np
import paddle
import pytest
from helpers import REPO
from seg_runtime import load_deploy

from paddleseg_ext.config import ConfigError, load_config
from paddleseg_ext.export import export
from paddleseg_ext.export import lite as DRIVER
from paddleseg_ext.export.lite import LITE_PYTHON_ENV, lite_python, side_command

REPO_ROOT = str(REPO)
CONFIG_DIRS = ("lpcvc", "camvid", "ade20k", "fastsegformer")
LITE_SIDE = 128
LITE_VENV_STAMP = os.path.join(REPO_ROOT, ".venv-lite", ".installed")

TOPFORMER_TINY_VIM = {
    "type": "TopFormerSeg",
    "num_classes": 6,
    "backbone": {"type": "TopFormerBackbone", "preset": "tiny"},
    "upsample": "vim",
}


def lite_skip_reason() -> str | None:
    """Why the Lite side environment cannot run here, or None when it can."""
    if os.environ.get(LITE_PYTHON_ENV):
        ok = os.access(lite_python(), os.X_OK)
        return None if ok else f"{LITE_PYTHON_ENV}={lite_python()} is not an interpreter"
    if os.path.isfile(LITE_VENV_STAMP) and os.access(lite_python(), os.X_OK):
        return None
    return (
        "no Paddle Lite side environment (.venv-lite, CPython 3.10 + paddlelite 2.13rc0): "
        "run `make lite-env`; it needs CPython 3.10 (pyenv versions/3.10.13, or PY310=...)"
    )


needs_lite = pytest.mark.skipif(lite_skip_reason() is not None, reason=str(lite_skip_reason()))


def shipped_configs() -> list[str]:
    """Every config under the shipped dataset folders (``CONFIG_DIRS``)."""
    found = []
    for name in CONFIG_DIRS:
        found += sorted(glob.glob(os.path.join(REPO_ROOT, "configs", name, "*.yml")))
    return found


def test_shipped_configs_found() -> None:
    for name in CONFIG_DIRS:
        assert glob.glob(os.path.join(REPO_ROOT, "configs", name, "*.yml")), name


@pytest.mark.slow
@needs_lite
def test_every_shipped_config_gives_nb(tmp_path) -> None:
    """One side-environment run converts all configs (random weights, 1x3x128x128)."""
    configs = shipped_configs()
    jobs = [
        {
            "config": config,
            "save_dir": str(tmp_path / os.path.splitext(os.path.basename(config))[0]),
            "input_shape": [1, 3, LITE_SIDE, LITE_SIDE],
            "output_op": "argmax",
            "check": True,
        }
        for config in configs
    ]
    jobs_file = tmp_path / "jobs.json"
    jobs_file.write_text(json.dumps(jobs))
    proc = subprocess.run(
        side_command(str(jobs_file)),
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=1800,
    )
    results = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(results) == len(configs), proc.stderr[-3000:]
    failed = {}
    for config, job, result in zip(configs, jobs, results, strict=True):
        name = os.path.relpath(config, REPO_ROOT)
        nb_file = os.path.join(job["save_dir"], "model.nb")
        if not result["ok"]:
            failed[name] = result["error"]
        elif not os.path.isfile(nb_file) or os.path.getsize(nb_file) == 0:
            failed[name] = "no model.nb"
        elif result["label_agreement"] < 0.999:
            failed[name] = f"legacy program label agreement {result['label_agreement']}"
    assert not failed, failed
    assert proc.returncode == 0


@pytest.mark.slow
@needs_lite
def test_export_formats_lite(tmp_path, make_config, make_weights) -> None:
    """``export(formats="lite")`` on a VIM model: model.nb and deploy.yaml, nothing else."""
    config = make_config(TOPFORMER_TINY_VIM)
    weights = make_weights(config, str(tmp_path / "model.pdparams"))
    out = str(tmp_path / "out")
    result = export(
        load_config(config, "val"),
        out,
        model_path=weights,
        input_shape=[1, 3, LITE_SIDE, LITE_SIDE],
        formats="lite",
    )
    assert sorted(os.listdir(out)) == ["deploy.yaml", "model.nb"]
    assert os.path.getsize(os.path.join(out, "model.nb")) > 0
    assert result.files["lite_model"] == "model.nb"
    deploy = load_deploy(out)
    assert deploy.formats == {"lite": {"float": "model.nb"}}
    assert deploy.output_op == "argmax" and deploy.meta["output_dtype"] == "int32"


TOPFORMER_TINY = {k: v for k, v in TOPFORMER_TINY_VIM.items() if k != "upsample"}


@pytest.mark.slow
@needs_lite
def test_export_lite_exact_label_head(tmp_path, make_config, make_weights) -> None:
    """``--output_op exact`` converts for Paddle Lite: its program ends at the head's logits
    (no resize or argmax), checked against the dygraph model by the side environment."""
    config = make_config(TOPFORMER_TINY)
    weights = make_weights(config, str(tmp_path / "model.pdparams"))
    out = str(tmp_path / "out")
    result = export(load_config(config, "val"), out, model_path=weights, output_op="exact",
                    input_shape=[1, 3, LITE_SIDE, LITE_SIDE], formats="lite")  # fmt: skip
    assert sorted(os.listdir(out)) == ["deploy.yaml", "model.nb"]
    assert result.passed
    deploy = load_deploy(out)
    assert deploy.output_op == "exact" and deploy.meta["output_dtype"] == "float32"


@pytest.mark.slow
@needs_lite
def test_export_lite_int8_through_paddleslim(tmp_path, make_config, make_weights) -> None:
    """``--formats lite --quantize int8``: model_int8.nb with int8 convolutions."""
    from helpers import load_tool  # noqa: PLC0415

    config = make_config(TOPFORMER_TINY)
    weights = make_weights(config, str(tmp_path / "model.pdparams"))
    out = str(tmp_path / "out")
    load_tool("export").main(
        ["--config", config, "--model_path", weights, "--save_dir", out, "--formats", "lite",
         "--quantize", "int8", "--calib_images", "4", "--input_shape", "1", "3", "64", "64",
         "--device", "cpu"]
    )  # fmt: skip
    assert sorted(os.listdir(out)) == ["deploy.yaml", "model.nb", "model_int8.nb"]
    deploy = load_deploy(out)
    assert deploy.formats["lite"] == {"float": "model.nb", "int8": "model_int8.nb"}
    assert deploy.model_file("lite") == "model.nb"  # the float model stays the default
    info = deploy.quantization["lite"]
    assert info["algo"] == "abs_max" and info["calibration_images"] == 4
    # The convolutions run in int8; the attention's matmuls stay float (no int8 kernel).
    assert info["kernels"]["int8"]["conv2d"] > 0 and info["kernels"]["int8"]["depthwise_conv2d"] > 0
    assert "matmul_v2" not in info["kernels"]["int8"] and info["kernels"]["float"]["matmul_v2"] > 0
    assert 0.0 < info["label_agreement"] <= 1.0


@pytest.mark.slow
@needs_lite
def test_lite_int8_agreement_is_measured_on_its_labels(tmp_path, make_config, make_weights):
    """The reported agreement equals the one computed here from both programs' labels."""
    from paddleseg_ext.config import build  # noqa: PLC0415
    from paddleseg_ext.core.checkpoint import load_weights  # noqa: PLC0415

    config = make_config(TOPFORMER_TINY)
    weights = make_weights(config, str(tmp_path / "model.pdparams"))
    cfg = load_config(config, "val")
    model = build(cfg).model
    load_weights(model, weights)
    rng = np.random.default_rng(0)
    batches = rng.standard_normal((3, 1, 3, 64, 64)).astype("float32")
    result = DRIVER.quantize_lite(cfg, model, [1, 3, 64, 64], "argmax", str(tmp_path / "out"),
                                  batches, "abs_max", eval_inputs=batches)  # fmt: skip
    labels = result["eval_labels"]
    assert labels["float"].shape == labels["int8"].shape == (3, 1, 64, 64)
    agreement = float((labels["float"] == labels["int8"]).mean())
    assert result["int8_label_agreement"] == pytest.approx(agreement, abs=1e-12)
    # The float legacy program is the model itself: its labels equal dygraph's.
    with paddle.no_grad():
        model.eval()
        logits = model(paddle.to_tensor(batches[0]))[0].numpy()
    assert (labels["float"][0] == logits.argmax(1)).mean() >= 0.999


def test_lite_refuses_vim_output_op(tmp_path, make_config) -> None:
    config = make_config(TOPFORMER_TINY_VIM)
    with pytest.raises(ConfigError, match="output_op vim"):
        export(load_config(config, "val"), str(tmp_path / "out"), formats="lite", output_op="vim")
    assert not os.path.exists(tmp_path / "out")


def test_lite_without_side_environment(tmp_path, make_config, monkeypatch) -> None:
    monkeypatch.setenv(LITE_PYTHON_ENV, str(tmp_path / "missing" / "python"))
    config = make_config(TOPFORMER_TINY_VIM)
    with pytest.raises(ConfigError, match="make lite-env"):
        export(load_config(config, "val"), str(tmp_path / "out"), formats="lite")
    assert not os.path.exists(tmp_path / "out")
