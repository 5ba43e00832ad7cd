"""Training under faults: a diverging loss, and samples that fail to load mid-training."""

from __future__ import annotations

import importlib

import numpy as np
import paddle
import pytest
from helpers import load_tool

from paddleseg_ext.config import load_config
from paddleseg_ext.core.checkpoint import list_checkpoints
from paddleseg_ext.core.train import TrainingDiverged, train

# The module, which ``paddleseg_ext.core.train`` (the function) hides.
train_module = importlib.import_module("paddleseg_ext.core.train")


@pytest.fixture
def nan_at_iteration_4(monkeypatch):
    """Makes the task loss NaN on the 4th training step."""
    real = train_module._total_loss
    calls = []

    def total_loss(*args):
        calls.append(None)
        loss = real(*args)
        return loss * float("nan") if len(calls) == 4 else loss

    monkeypatch.setattr(train_module, "_total_loss", total_loss)


def test_nan_loss_stops_with_the_iteration_and_keeps_the_last_good_checkpoint(
    tiny_config, tmp_path, nan_at_iteration_4
):
    cfg = load_config(str(tiny_config))
    with pytest.raises(TrainingDiverged) as err:
        train(cfg, save_dir=str(tmp_path), save_interval=1, log_iters=1)
    assert (
        f"loss is nan at iteration 4; training stopped before updating the weights. "
        f"Last good checkpoint: {tmp_path / 'iter_3'}" in str(err.value)
    )
    assert list_checkpoints(str(tmp_path)) == [1, 2, 3]
    for value in paddle.load(str(tmp_path / "iter_3" / "model.pdparams")).values():
        assert np.isfinite(np.asarray(value)).all()


def test_train_tool_reports_divergence_in_one_line(
    tiny_config, tmp_path, capsys, nan_at_iteration_4
):
    tool = load_tool("train")
    monkey_argv = [
        "--config",
        str(tiny_config),
        "--save_dir",
        str(tmp_path),
        "--save_interval",
        "2",
    ]
    with pytest.raises(SystemExit) as exit_info:
        # The tool's own error handling, as `python tools/train.py` runs it.
        from paddleseg_ext.cli import run  # noqa: PLC0415

        run(lambda _: tool.main(monkey_argv), (TrainingDiverged,))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"error: loss is nan at iteration 4; training stopped before updating the weights. "
        f"Last good checkpoint: {tmp_path / 'iter_2'} (lower the learning rate, check the data, "
        "then --resume_model auto)"
    ]
