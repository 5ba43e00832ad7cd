"""Training under faults: a diverging loss, bad samples at start-up and mid-training."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import paddle
import pytest
import yaml
from helpers import REPO, load_tool
from reliability.broken_dataset import TRAIN_LINES, write_broken_dataset, write_config

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


# Lines of broken_dataset.TRAIN_LINES trained on. #6 is left out: its out-of-range label
# value is found by the full check only, and would reach the loss.
TRAIN_SAMPLES = (0, 1, 2, 3, 4, 5, 7, 8, 9)
# Their positions that the start-up (cheap) check finds: #2 (missing), #3 (random bytes),
# #5 (size mismatch), #7 (RGB label) and #8 (duplicate of #0). #4 (position 4), cut short
# after an intact header, passes it and fails only when loaded.
STARTUP_BAD = (2, 3, 5, 6, 7)


def _train_config(tmp_path: Path, samples: tuple[int, ...]) -> Path:
    root = tmp_path / "data"
    write_broken_dataset(root)
    (root / "picked.txt").write_text("".join(TRAIN_LINES[i] + "\n" for i in samples))
    config = write_config(tmp_path / "train.yml", root, "picked.txt", "clean_val.txt")
    cfg = yaml.safe_load(config.read_text())
    # 32x24 images: resized to a size the model's stride-32 pyramid accepts.
    cfg["train_dataset"]["transforms"].insert(0, {"type": "Resize", "target_size": [64, 64]})
    config.write_text(yaml.safe_dump(cfg))
    return config


def _train_tool(config: Path, save_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    args = [sys.executable, str(REPO / "tools" / "train.py"), "--config", str(config)]
    args += ["--save_dir", str(save_dir), "--iters", "4", "--log_iters", "1", *extra]
    return subprocess.run(args, capture_output=True, text=True, timeout=300, cwd=REPO)


def test_training_refuses_a_dataset_with_bad_samples(tmp_path):
    config = _train_config(tmp_path, TRAIN_SAMPLES)
    result = _train_tool(config, tmp_path / "out")
    assert result.returncode == 2, result.stderr[-3000:]
    missing = tmp_path / "data" / "images" / "missing.png"
    assert result.stderr.splitlines() == [
        f"error: train_dataset: {len(STARTUP_BAD)} bad sample(s), first: {missing}: image not "
        "found (list them with tools/check_dataset.py --split train; or pass --skip_bad to "
        "train without these samples)"
    ]
    assert not (tmp_path / "out").exists(), "nothing is written before the check passes"


def test_skip_bad_trains_without_bad_samples_found_at_start_or_later(tmp_path):
    config = _train_config(tmp_path, TRAIN_SAMPLES)
    result = _train_tool(config, tmp_path / "out", "--skip_bad")
    assert result.returncode == 0, result.stderr[-3000:]
    log = result.stdout + result.stderr
    for position in STARTUP_BAD:
        assert f"--skip_bad: sample {position} is skipped: " in log
    truncated = tmp_path / "data" / "images" / "4.png"
    # Sample 4's list position is 4: it is found while loading, not by the start-up check.
    assert f"--skip_bad: sample 4 is skipped: cannot load {truncated}, " in log
    assert (tmp_path / "out" / "iter_4" / "model.pdparams").is_file()


@pytest.mark.parametrize("workers", [0, 2])
def test_a_sample_failing_mid_training_is_named(tmp_path, workers):
    config = _train_config(tmp_path, (0, 1, 4, 9))
    result = _train_tool(config, tmp_path / "out", "--num_workers", str(workers))
    assert result.returncode == 2, result.stderr[-3000:]
    image, label = tmp_path / "data" / "images" / "4.png", tmp_path / "data" / "labels" / "4.png"
    message = f"error: cannot load {image}, {label}: "
    if workers == 0:
        assert result.stderr.splitlines()[-1].startswith(message), result.stderr[-3000:]
        assert "Traceback" not in result.stderr
    else:  # Paddle's reader thread prints the worker's traceback, interleaved with our line
        assert result.stderr.count(message) == 1, result.stderr[-3000:]
