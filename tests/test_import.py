"""Importing paddleseg_ext: scikit-learn (imported by PaddleSeg for ``auc_roc`` only) is
loaded on first use, and both PaddleSeg's function and a user's import still work."""

import subprocess
import sys

SCRIPT = r"""
import sys
import numpy as np
import paddleseg_ext
from paddleseg.utils import metrics

assert "sklearn" not in sys.modules and "sklearn.metrics" not in sys.modules
rng = np.random.default_rng(0)
label = rng.integers(0, 2, (2, 1, 4, 5))
logits = rng.random((2, 2, 4, 5))
# AUC = the share of (positive, negative) pairs the positive's score ranks above.
score, y = logits[:, 1].ravel(), label.ravel()
pairs = score[y == 1][:, None] - score[y == 0][None, :]
expected = (pairs > 0).mean() + 0.5 * (pairs == 0).mean()
assert abs(metrics.auc_roc(logits, label, 2) - expected) < 1e-12
assert "sklearn.metrics" in sys.modules
import sklearn.metrics
assert sklearn.metrics.f1_score([0, 1, 1], [0, 1, 0]) == 2 / 3
print("ok")
"""


def test_sklearn_loads_on_first_use():
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "ok"
