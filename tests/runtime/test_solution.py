"""tools/package_solution.py: the .pyz runs where only NumPy, OpenCV and onnxruntime exist,
prints one float, and its labels score with tools/lpcvc_score.py."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import cv2
import numpy as np
from helpers import BLOCKER, MIN_AGREEMENT, REPO


def blocked_env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    return env | {"PYTHONPATH": str(BLOCKER), "BLOCK_EXTRA": "yaml,PIL"}


def test_solution_runs_without_paddle_or_yaml_and_scores(runtime_case, tmp_path):
    stats = tmp_path / "stats.json"
    stats.write_text(json.dumps({"min_pixels": [None] * 6, "exclusive_pairs": []}))
    pyz = tmp_path / "solution.pyz"
    build = subprocess.run(
        [sys.executable, str(REPO / "tools" / "package_solution.py"), "--model_dir",
         os.path.join(runtime_case, "export"), "--postprocess", str(stats), "--out", str(pyz)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr
    images = os.path.join(runtime_case, "images")
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(pyz), "-i", images, "-o", str(out)],
                          capture_output=True, text=True, timeout=300, env=blocked_env(),
                          cwd=str(tmp_path))  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert re.fullmatch(r"[0-9]+\.[0-9]+", proc.stdout.strip()), proc.stdout
    assert len(proc.stdout.splitlines()) == 1 and float(proc.stdout) > 0
    reference = np.load(os.path.join(runtime_case, "reference.npz"))
    gt = tmp_path / "gt"
    gt.mkdir()
    for name in sorted(os.listdir(images)):
        labels = cv2.imread(str(out / name), cv2.IMREAD_UNCHANGED)
        image = cv2.imread(os.path.join(images, name), cv2.IMREAD_COLOR)
        assert labels.ndim == 2 and labels.dtype == np.uint8  # mode L
        assert labels.shape == image.shape[:2]
        assert (labels == reference[name]).mean() >= MIN_AGREEMENT, name
        cv2.imwrite(str(gt / name), reference[name].astype(np.uint8))
    score = subprocess.run(
        [sys.executable, str(REPO / "tools" / "lpcvc_score.py"), "--pred_dir", str(out),
         "--gt_dir", str(gt), "--num_classes", "6", "--time_s", proc.stdout.strip()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert score.returncode == 0, score.stderr
    dice = float(re.search(r"mean Dice: ([0-9.]+)", score.stdout).group(1))
    assert dice >= MIN_AGREEMENT
    assert re.search(r"^score: [0-9.]+$", score.stdout, re.M)


def test_packaging_errors_are_named(runtime_case, tmp_path):
    proc = subprocess.run(
        [sys.executable, str(REPO / "tools" / "package_solution.py"), "--model_dir",
         str(tmp_path), "--out", str(tmp_path / "s.pyz")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2
    assert (
        proc.stderr.strip()
        == f"error: deploy.yaml not found in {tmp_path} (export the model first)"
    )
