"""Importing paddleseg_ext: Paddle's ccache warning is silenced in every tool; scikit-learn
(imported by PaddleSeg for ``auc_roc`` only) is loaded on first use, and both PaddleSeg's
function and a user's import still work; deploy/ never imports paddleseg_ext."""

import ast
import subprocess
import sys

from helpers import REPO

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


def test_no_tool_prints_paddles_ccache_warning():
    """Paddle warns at import that ccache is missing; paddleseg_ext silences it, which works
    only when a tool imports paddle through paddleseg_ext."""
    tools = sorted((REPO / "tools").glob("*.py"))
    assert len(tools) >= 10
    procs = {
        tool.name: subprocess.Popen(
            [sys.executable, str(tool), "--help"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for tool in tools
    }
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, f"{name}: {err[-2000:]}"
        assert out.startswith("usage:"), name
        assert "ccache" not in err, f"{name}: {err}"


def test_deploy_imports_nothing_from_the_training_side():
    """What a board runs (deploy/) never imports paddleseg_ext; the reverse is allowed."""
    offenders = []
    for path in sorted((REPO / "deploy").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            if any(name.split(".")[0] == "paddleseg_ext" for name in names):
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert len(list((REPO / "deploy").rglob("*.py"))) >= 15
    assert not offenders, offenders
