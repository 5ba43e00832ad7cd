"""The runtime under CPython 3.10 (the Paddle Lite side environment, ``make lite-env``):
Paddle Lite's Python API on an x86 ``.nb``, and the runtime's own tests re-run there."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import numpy as np
import pytest
from helpers import BLOCKER, MIN_AGREEMENT, REPO, RUNTIME_DIR, read_labels
from seg_runtime import load_deploy

LITE_PYTHON = str(REPO / ".venv-lite" / "bin" / "python")
needs_side_env = pytest.mark.skipif(
    not (REPO / ".venv-lite" / ".installed").is_file(),
    reason="needs the Paddle Lite side environment (make lite-env: CPython 3.10)",
)


def side_env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    return env | extra


@pytest.fixture(scope="module")
def x86_board(runtime_case, tmp_path_factory) -> str:
    """deploy/python and the case's export plus an x86 ``model.nb`` made by opt."""
    from paddleseg_ext.export.lite import side_command

    root = str(tmp_path_factory.mktemp("x86_board"))
    shutil.copytree(RUNTIME_DIR, os.path.join(root, "runtime"),
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    model_dir = os.path.join(root, "model")
    shutil.copytree(os.path.join(runtime_case, "export"), model_dir)
    job = {
        "config": os.path.join(runtime_case, "model.yml"),
        "weights": os.path.join(runtime_case, "weights.pdparams"),
        "save_dir": model_dir,
        "input_shape": [1, 3, 96, 96],
        "output_op": "argmax",
        "valid_targets": "x86",
    }
    jobs = os.path.join(root, "jobs.json")
    with open(jobs, "w") as f:
        json.dump([job], f)
    proc = subprocess.run(side_command(jobs), capture_output=True, text=True, timeout=900,
                          cwd=REPO, env=side_env())  # fmt: skip
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["ok"], result
    deploy = load_deploy(model_dir)
    deploy.set_model("lite", "float", result["file"])
    deploy.write(model_dir)
    return root


@needs_side_env
@pytest.mark.slow
def test_lite_backend_without_paddle_matches_paddle_inference(x86_board, runtime_case, tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run(
        [LITE_PYTHON, os.path.join(x86_board, "runtime", "infer.py"), "--model_dir", "model",
         "--image_path", os.path.join(runtime_case, "images"), "--save_dir", str(out),
         "--backend", "lite"],
        cwd=x86_board, env=side_env(PYTHONPATH=str(BLOCKER)), capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "image(s), lite: mean" in proc.stdout
    reference = np.load(os.path.join(runtime_case, "reference.npz"))
    labels = read_labels(str(out / "labels"))
    assert set(labels) == {"img0.png", "img1.png"}
    for name, got in labels.items():
        assert (got == reference[name]).mean() >= MIN_AGREEMENT, name


@needs_side_env
@pytest.mark.slow
def test_runtime_tests_pass_under_python_3_10(runtime_case):
    """The runtime's tests, re-run by the side environment's interpreter (no PaddleSeg)."""
    here = os.path.dirname(os.path.abspath(__file__))
    proc = subprocess.run(
        [LITE_PYTHON, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         os.path.join(here, "test_standalone.py"), os.path.join(here, "test_preprocess.py")],
        cwd=REPO, capture_output=True, text=True, timeout=900,
        env=side_env(PYTHONPATH=str(RUNTIME_DIR), SEG_RUNTIME_CASE=runtime_case),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    summary = proc.stdout.strip().splitlines()[-1]
    assert "passed" in summary and "failed" not in summary, summary
    version = subprocess.run([LITE_PYTHON, "-c", "import sys; print(sys.version_info[:2])"],
                             capture_output=True, text=True).stdout  # fmt: skip
    assert version.strip() == "(3, 10)"
