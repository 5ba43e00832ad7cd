"""The device runtime and a packaged solution on CPython 3.6, the 2023 LPCVC Jetson Nano's
Python (``make py36-env``: numpy 1.19.5, opencv-python-headless 4.6.0.66, onnxruntime 1.10.0):
they run there and give this interpreter's labels on every image, post-processing included.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess

import numpy as np
import pytest
from helpers import MIN_AGREEMENT, REPO, RUNTIME_DIR, read_labels, run_device_python
from seg_runtime.solution import build_solution

PY36 = REPO / ".venv-py36" / "bin" / "python"
needs_py36 = pytest.mark.skipif(
    not (REPO / ".venv-py36" / ".installed").is_file(),
    reason="needs the CPython 3.6 environment (make py36-env: pyenv's 3.6.15)",
)
# What runs on the Nano: every module a solution packs, and the two scripts.
NANO_FILES = sorted(
    [RUNTIME_DIR / "infer.py", RUNTIME_DIR / "benchmark.py"]
    + list((RUNTIME_DIR / "seg_runtime").glob("*.py"))
)


def py36(*args: str, cwd: str) -> subprocess.CompletedProcess:
    return run_device_python(PY36, *args, cwd=cwd)


def test_nano_files_keep_to_python_3_6():
    """Python 3.6 syntax, and no postponed annotations (3.7+) that would hide 3.9+ forms."""
    assert len(NANO_FILES) >= 14
    for path in NANO_FILES:
        source = path.read_text()
        tree = ast.parse(source, filename=str(path), feature_version=(3, 6))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "__future__":
                pytest.fail(f"{path}:{node.lineno}: from __future__ import is 3.7+ here")
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [getattr(node, "module", None) or ""] + [a.name for a in node.names]
                if "dataclasses" in names or "cached_property" in names:
                    pytest.fail(f"{path}:{node.lineno}: {names} is not in Python 3.6")


@needs_py36
def test_solution_on_python_3_6(changing_solution, board, tmp_path):
    pyz, expected = changing_solution
    proc = py36(str(pyz), "-i", board["images"], "-o", str(tmp_path / "out"), cwd=str(tmp_path))
    assert re.fullmatch(r"[0-9]+\.[0-9]+\n", proc.stdout), proc.stdout
    labels = read_labels(str(tmp_path / "out"))
    assert set(labels) == set(expected)
    for name, want in expected.items():
        assert np.array_equal(labels[name], want), name


@needs_py36
def test_exact_label_head_solution_on_python_3_6(exact_export, board, tmp_path):
    """A solution of an ``--output_op exact`` export: the labels come from the runtime's
    exact head under Python 3.6 and agree with the in-graph head's as any two exports must."""
    pyz = tmp_path / "solution.pyz"
    build_solution(exact_export, str(pyz))
    py36(str(pyz), "-i", board["images"], "-o", str(tmp_path / "out"), cwd=str(tmp_path))
    labels = read_labels(str(tmp_path / "out"))
    assert set(labels) == set(board["reference"])
    for name, want in board["reference"].items():
        assert (labels[name] == want).mean() >= MIN_AGREEMENT, name


@needs_py36
def test_infer_and_benchmark_on_python_3_6(board):
    out = os.path.join(board["root"], "out_py36")
    proc = py36("runtime/infer.py", "--model_dir", "model", "--image_path", "images",
                "--save_dir", out, cwd=board["root"])  # fmt: skip
    assert re.search(r"^machine: x86_64, .*; backend: onnxruntime 1\.10\.0 ", proc.stdout, re.M)
    labels = read_labels(os.path.join(out, "labels"))
    assert set(labels) == set(board["reference"])
    for name, want in board["reference"].items():
        assert np.array_equal(labels[name], want), name
    proc = py36("runtime/benchmark.py", "model", "--warmup", "1", "--repeats", "2",
                cwd=board["root"])  # fmt: skip
    assert re.search(r"^avg   = [0-9.]+$", proc.stdout, re.M), proc.stdout
