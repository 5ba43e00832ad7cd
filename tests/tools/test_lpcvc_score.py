"""tools/lpcvc_score.py on hand-computed cases, run as a user would (a child process)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from helpers import BLOCKER, REPO
from PIL import Image


def save(folder, name, array, mode="L"):
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, dtype=np.uint8), mode=mode).save(folder / name)


def score(tmp_path, *extra):
    """Runs the tool with paddle & co. blocked; returns (exit code, stdout, stderr)."""
    proc = subprocess.run(
        [sys.executable, str(REPO / "tools" / "lpcvc_score.py"), "--pred_dir",
         str(tmp_path / "pred"), "--gt_dir", str(tmp_path / "gt"), *extra],
        capture_output=True, text=True, timeout=120,
        env={"PYTHONPATH": str(BLOCKER), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    return proc.returncode, proc.stdout, proc.stderr


def printed(stdout: str, key: str) -> float:
    line = next(line for line in stdout.splitlines() if line.startswith(key + ":"))
    return float(line.split(":")[1].split()[0])


def test_perfect_prediction_scores_one_and_absent_classes_are_skipped(tmp_path):
    gt = np.zeros((512, 512))
    gt[:, 256:] = 7  # classes 0 and 7 only: the 12 others are NaN and skipped
    save(tmp_path / "gt", "a.png", gt)
    save(tmp_path / "pred", "a.png", gt)
    code, out, err = score(tmp_path)
    assert code == 0, err
    assert printed(out, "mean Dice") == pytest.approx(1.0)


def test_predicted_but_absent_class_scores_zero(tmp_path):
    save(tmp_path / "gt", "a.png", np.zeros((512, 512)))
    pred = np.zeros((512, 512))
    pred[:, 256:] = 5
    save(tmp_path / "pred", "a.png", pred)
    # class 0: 2 * 131072 / (131072 + 262144) = 2/3; class 5: 0 -> mean 1/3.
    code, out, _ = score(tmp_path)
    assert code == 0 and printed(out, "mean Dice") == pytest.approx(1 / 3, abs=1e-6)


def test_mixed_sizes_are_scored_at_512_and_images_are_averaged(tmp_path):
    gt = np.zeros((256, 256))
    gt[:128] = 2  # top half class 2 at 256
    save(tmp_path / "gt", "a.png", gt)
    pred = np.zeros((512, 512))
    pred[:384] = 2  # 3/4 of the image class 2 at 512
    save(tmp_path / "pred", "a.png", pred)
    # At 512: gt class 2 = 256 rows, pred = 384 rows. class 2: 2*256/(384+256) = 0.8;
    # class 0: 2*128/(128+256) = 2/3. Image a: 0.7333...; image b (perfect): 1.
    save(tmp_path / "gt", "b.png", np.ones((512, 512)))
    save(tmp_path / "pred", "b.png", np.ones((256, 256)))
    code, out, _ = score(tmp_path)
    assert code == 0
    assert printed(out, "images") == 2
    assert printed(out, "mean Dice") == pytest.approx(((0.8 + 2 / 3) / 2 + 1) / 2, abs=1e-6)


def test_three_channel_ground_truth_is_read_from_channel_0(tmp_path):
    labels = np.zeros((512, 512))
    labels[100:300, 50:400] = 9
    rgb = np.stack([labels, np.full_like(labels, 3), np.full_like(labels, 11)], axis=-1)
    save(tmp_path / "gt", "a.png", rgb, mode="RGB")
    save(tmp_path / "pred", "a.png", labels)
    code, out, _ = score(tmp_path)
    assert code == 0 and printed(out, "mean Dice") == pytest.approx(1.0)


def test_score_is_dice_over_mean_seconds(tmp_path):
    for name in ("a.png", "b.png"):
        save(tmp_path / "gt", name, np.zeros((512, 512)))
        save(tmp_path / "pred", name, np.zeros((512, 512)))
    code, out, _ = score(tmp_path, "--time_s", "0.5")
    assert code == 0
    assert printed(out, "mean time") == pytest.approx(0.25)
    assert printed(out, "score") == pytest.approx(1.0 / 0.25)


def test_missing_and_extra_predictions_are_named(tmp_path):
    save(tmp_path / "gt", "a.png", np.zeros((8, 8)))
    save(tmp_path / "gt", "b.png", np.zeros((8, 8)))
    save(tmp_path / "pred", "a.png", np.zeros((8, 8)))
    code, _, err = score(tmp_path)
    assert code == 2
    assert err.strip() == f"error: no prediction for {tmp_path / 'gt' / 'b.png'} (1 missing)"
    save(tmp_path / "pred", "b.png", np.zeros((8, 8)))
    save(tmp_path / "pred", "c.png", np.zeros((8, 8)))
    code, _, err = score(tmp_path)
    assert code == 2
    assert err.strip() == (
        f"error: prediction {tmp_path / 'pred' / 'c.png'} has no ground truth (1 extra)"
    )


def test_ids_outside_the_classes_are_named(tmp_path):
    save(tmp_path / "gt", "a.png", np.full((8, 8), 14))
    save(tmp_path / "pred", "a.png", np.zeros((8, 8)))
    code, _, err = score(tmp_path)
    assert code == 2 and err.startswith("error: a.png: ") and "14" in err
