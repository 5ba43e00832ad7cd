"""Distillation inside the training loop: logging, checkpoints, exact resume, export."""

import contextlib
import glob
import io
import re
import shutil
import subprocess
import sys

import numpy as np
import onnx
import paddle
import pytest
from helpers import REPO, write_distill_configs

from paddleseg_ext.config import build, load_config
from paddleseg_ext.core import train
from paddleseg_ext.core.checkpoint import load_checkpoint


def run(cfg_path, save_dir, **kwargs):
    log = io.StringIO()
    with contextlib.redirect_stdout(log):
        model = train(load_config(str(cfg_path)), save_dir=str(save_dir), save_interval=2,
                      log_iters=1, **kwargs)  # fmt: skip
    return model, log.getvalue()


def weights(path):
    return {k: np.asarray(v) for k, v in paddle.load(str(path)).items()}


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("distill")
    cfg = write_distill_configs(root)
    _, log = run(cfg, root / "out", use_vdl=True)
    return cfg, root / "out", log


def test_each_term_is_logged_and_sums_to_the_loss(full_run):
    _, _, log = full_run
    lines = [line for line in log.splitlines() if "[TRAIN]" in line]
    assert len(lines) == 4
    for line in lines:
        values = dict(re.findall(r"(\w+): (-?[0-9.]+)", line))
        total = float(values["task"]) + float(values["cwd"]) + float(values["nfd"])
        assert float(values["loss"]) == pytest.approx(total, abs=2e-4)
        assert float(values["cwd"]) > 0 and float(values["nfd"]) > 0
        assert re.search(r"teacher_share: \d+%", line)
    assert "Distilling TopFormerSeg" in log and "cwd x1.2, nfd x0.01" in log


def test_terms_are_written_to_visualdl(full_run):
    from visualdl import LogReader  # noqa: PLC0415

    _, out, _ = full_run
    reader = LogReader(file_path=glob.glob(str(out / "vdl" / "*"))[0])
    assert {"Train/loss", "Train/task", "Train/cwd", "Train/nfd"} <= set(
        reader.get_tags()["scalar"]
    )
    assert [rec.id for rec in reader.get_data("scalar", "Train/cwd")] == [1, 2, 3, 4]


def test_checkpoints_hold_the_plain_student_and_the_adapters_apart(full_run, tiny_config):
    _, out, _ = full_run
    student_keys = set(build(load_config(str(tiny_config))).model.state_dict())
    assert set(weights(out / "iter_4/model.pdparams")) == student_keys
    adapters = weights(out / "iter_4/distill.pdparams")
    assert set(adapters) == {
        "loss_func.1.align_func.align_op.weight",
        "loss_func.1.align_func.align_op.bias",
    }
    # 128 student channels mapped to the teacher's 128 by a 1x1 conv.
    assert adapters["loss_func.1.align_func.align_op.weight"].shape == (128, 128, 1, 1)


def test_resume_reproduces_the_uninterrupted_run(full_run, tmp_path):
    cfg, out, _ = full_run
    shutil.copytree(out / "iter_2", tmp_path / "iter_2")
    run(cfg, tmp_path, resume_model=str(tmp_path / "iter_2"))
    for name in ("model.pdparams", "distill.pdparams"):
        resumed, reference = weights(tmp_path / "iter_4" / name), weights(out / "iter_4" / name)
        for key in reference:
            np.testing.assert_allclose(resumed[key], reference[key], rtol=0, atol=1e-6, err_msg=key)
    # The adapters moved between the two checkpoints, so their restore was tested.
    before = weights(out / "iter_2/distill.pdparams")
    after = weights(out / "iter_4/distill.pdparams")
    assert any(not np.array_equal(before[k], after[k]) for k in before)


def test_resume_without_the_adapters_is_named(full_run, tmp_path):
    _, out, _ = full_run
    shutil.copytree(out / "iter_2", tmp_path / "iter_2")
    (tmp_path / "iter_2" / "distill.pdparams").unlink()
    with pytest.raises(FileNotFoundError, match="iter_2: distill.pdparams missing"):
        load_checkpoint(str(tmp_path / "iter_2"), None, None, distill=paddle.nn.Linear(1, 1))


def onnx_signature(path):
    graph = onnx.load(str(path)).graph
    return (
        [node.op_type for node in graph.node],
        sorted(tuple(init.dims) for init in graph.initializer),
        [tuple(d.dim_value for d in v.type.tensor_type.shape.dim) for v in graph.output],
    )


@pytest.mark.slow
def test_export_of_a_distilled_checkpoint_equals_a_plain_export(full_run, tiny_config, tmp_path):
    from paddleseg_ext.export import export  # noqa: PLC0415

    cfg, out, _ = full_run
    run(tiny_config, tmp_path / "plain")
    shape = [1, 3, 64, 64]
    for name, config, model_path in (
        ("distilled", cfg, out / "iter_4/model.pdparams"),
        ("plain", tiny_config, tmp_path / "plain/iter_6/model.pdparams"),
    ):
        # Apart from the training folders: an export replaces its whole directory.
        save_dir = str(tmp_path / f"{name}_export")
        export(load_config(str(config), "val"), save_dir, model_path=str(model_path),
               input_shape=shape, formats="onnx", verify=False)  # fmt: skip
    assert onnx_signature(tmp_path / "distilled_export/model.onnx") == onnx_signature(
        tmp_path / "plain_export/model.onnx"
    )


def test_train_tool_names_a_missing_teacher_file(tmp_path):
    cfg = write_distill_configs(tmp_path)
    (tmp_path / "teacher/model.pdparams").unlink()
    proc = subprocess.run(
        [sys.executable, "tools/train.py", "--config", str(cfg), "--device", "cpu",
         "--save_dir", str(tmp_path / "out")],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: distill.teacher.model_path: file not found: {tmp_path}/teacher/model.pdparams"
    )
    assert "Traceback" not in proc.stderr
