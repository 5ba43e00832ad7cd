"""SIGKILL at random moments of training, resumed with ``--resume_model auto`` every time.

Each run is killed at least ``KILLS`` times at seeded points: after a random iteration's log
line (plus a random fraction of a step), or while a checkpoint or ``best_model/`` is being
written (``paddle.save`` is slowed in the child so those moments can be hit). After every
kill: each checkpoint on disk loads into the model and optimizer; the next start resumes from
the newest complete one, with its iteration and lr state. At the end the weights, optimizer
state and ``best_model/`` equal those of an uninterrupted run bit for bit: on one CPU the
same kernels run in the same order, so resumption gives the same floats, not merely close
ones.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import paddle
import pytest
import yaml
from helpers import REPO, TINY_CONFIG, write_distill_configs

from paddleseg_ext.atomic import is_staging
from paddleseg_ext.config import build, load_config
from paddleseg_ext.core.checkpoint import (
    DISTILL_FILE,
    STATE_FILE,
    list_checkpoints,
    load_checkpoint,
)

pytestmark = pytest.mark.slow

ITERS = 24
SAVE_INTERVAL = 2
KILLS = 10
SAVE_DELAY = 0.1  # seconds added after each paddle.save in the child
# The child: tools/train.py with paddle.save slowed down, so a kill can land inside a save.
DRIVER = f"""
import runpy, sys, time
import paddle
_save = paddle.save
def slow_save(*args, **kwargs):
    _save(*args, **kwargs)
    time.sleep({SAVE_DELAY})
paddle.save = slow_save
sys.argv = [{str(REPO / "tools" / "train.py")!r}] + sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def _start(driver: Path, config: Path, save_dir: Path, log: Path) -> subprocess.Popen:
    args = [sys.executable, str(driver), "--config", str(config), "--save_dir", str(save_dir)]
    args += ["--iters", str(ITERS), "--save_interval", str(SAVE_INTERVAL), "--log_iters", "1"]
    args += ["--keep_checkpoint_max", "3", "--do_eval", "--resume_model", "auto"]
    with open(log, "w") as out:
        return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)


def _saving(save_dir: Path, started: float) -> bool:
    """Whether this run is writing or deleting a folder (leftovers of a killed run are
    removed at start-up, so only folders changed since ``started`` count)."""
    for entry in os.listdir(save_dir):
        try:
            if is_staging(entry):
                if (save_dir / entry).stat().st_mtime > started:
                    return True
        except FileNotFoundError:  # renamed or deleted since listed
            pass
    return False


def _logged(log: Path, text: str) -> bool:
    return text in log.read_text()


def _kill_when(proc: subprocess.Popen, ready, delay: float, timeout: float = 120.0) -> bool:
    """SIGKILLs ``proc`` ``delay`` seconds after ``ready()`` holds; False if it ended first."""
    deadline = time.time() + timeout
    while not ready():
        if proc.poll() is not None:
            return False
        assert time.time() < deadline, "training made no progress"
        time.sleep(0.005)
    time.sleep(delay)
    if proc.poll() is not None:
        return False
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return True


def _check_checkpoints(save_dir: Path, config: Path, distill: bool) -> int:
    """Every complete checkpoint loads; returns the newest iteration (0 for none)."""
    iters = list_checkpoints(str(save_dir))
    for entry in os.listdir(save_dir):
        # Anything named like a checkpoint is complete; the rest is marked as unfinished.
        if entry.startswith("iter_") and not is_staging(entry):
            assert int(entry[5:]) in iters, f"{entry} has no {STATE_FILE}"
    builder = build(load_config(str(config)))
    for it in iters:
        path = save_dir / f"iter_{it}"
        state = load_checkpoint(str(path), builder.model, builder.optimizer)
        assert state["iter"] == it
        assert paddle.load(str(path / "model.pdopt"))["LR_Scheduler"]["last_epoch"] == it
        if distill:
            assert paddle.load(str(path / DISTILL_FILE)), f"{path / DISTILL_FILE} is empty"
    if (save_dir / "best_model").exists():
        assert paddle.load(str(save_dir / "best_model" / "model.pdparams"))
        json.loads((save_dir / "best_model" / "metrics.json").read_text())
    return iters[-1] if iters else 0


def _arrays(path: Path) -> dict:
    return {k: np.asarray(v) for k, v in paddle.load(str(path)).items() if hasattr(v, "shape")}


def _assert_same_files(ours: Path, reference: Path, names: list[str]) -> None:
    for name in names:
        got, want = _arrays(ours / name), _arrays(reference / name)
        assert got.keys() == want.keys(), name
        for key in want:
            np.testing.assert_array_equal(got[key], want[key], err_msg=f"{name}: {key}")


def _kill_campaign(tmp_path: Path, config: Path, seed: int, distill: bool) -> None:
    driver = tmp_path / "train_slow_save.py"
    driver.write_text(DRIVER)
    reference = tmp_path / "reference"
    log = tmp_path / "reference.log"
    assert _start(driver, config, reference, log).wait() == 0, log.read_text()[-3000:]

    rng = random.Random(seed)
    save_dir = tmp_path / "killed"
    save_dir.mkdir()
    newest, kills, kinds = 0, 0, []
    while True:
        log = tmp_path / f"run_{kills}.log"
        proc = _start(driver, config, save_dir, log)
        if kills >= KILLS:
            assert proc.wait(timeout=300) == 0, log.read_text()[-3000:]
            break
        if kills % 3 == 0:  # inside a save: a folder is being written or deleted
            kind = "save"
            ready = functools.partial(_saving, save_dir, time.time())
            delay = rng.uniform(0, 2 * SAVE_DELAY)
        else:  # at a random step, a random fraction into the next one
            target = min(newest + rng.randint(1, 3), ITERS - 1)
            kind = f"iter {target}"
            ready = functools.partial(_logged, log, f"iter: {target}/{ITERS},")
            delay = rng.uniform(0, 0.3)
        killed = _kill_when(proc, ready, delay)
        assert killed, f"the run ended before the kill ({kind}):\n{log.read_text()[-3000:]}"
        kills += 1
        kinds.append(kind)
        previous, newest = newest, _check_checkpoints(save_dir, config, distill)
        assert newest >= previous, "a complete checkpoint was lost"
        if previous:
            assert f"continuing after iteration {previous}" in log.read_text()
    final_log = log.read_text()
    if newest:
        assert f"continuing after iteration {newest}" in final_log
    assert list_checkpoints(str(save_dir))[-1] == ITERS
    names = ["model.pdparams", "model.pdopt"] + ([DISTILL_FILE] if distill else [])
    _assert_same_files(save_dir / f"iter_{ITERS}", reference / f"iter_{ITERS}", names)
    _assert_same_files(save_dir / "best_model", reference / "best_model", ["model.pdparams"])
    got = json.loads((save_dir / "best_model" / "metrics.json").read_text())
    assert got == json.loads((reference / "best_model" / "metrics.json").read_text())
    assert sum(kind == "save" for kind in kinds) >= 3 and len(kinds) >= KILLS
    leftovers = [e for e in os.listdir(save_dir) if is_staging(e)]
    assert not leftovers, f"unfinished folders remain after a clean end: {leftovers}"


def test_training_survives_sigkill_anywhere(tmp_path):
    config = tmp_path / "tiny.yml"
    config.write_text(yaml.safe_dump(copy.deepcopy(TINY_CONFIG)))
    _kill_campaign(tmp_path, config, seed=0, distill=False)


def test_distillation_survives_sigkill_anywhere(tmp_path):
    config = write_distill_configs(tmp_path)
    _kill_campaign(tmp_path, config, seed=1, distill=True)
