"""The device runtime alone: copied with an export to a folder of its own, in an interpreter
where paddle, paddleseg, paddleslim and paddleseg_ext cannot be imported."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from helpers import BLOCKER, MIN_AGREEMENT, RUNTIME_DIR, read_labels


def runtime_files() -> list[str]:
    found = []
    for root, _, names in os.walk(RUNTIME_DIR):
        found += [os.path.join(root, n) for n in names if n.endswith(".py")]
    return sorted(found)


@pytest.fixture(scope="module")
def board(runtime_case, tmp_path_factory) -> str:
    """A folder holding only a copy of deploy/python and of the export."""
    root = str(tmp_path_factory.mktemp("board"))
    shutil.copytree(RUNTIME_DIR, os.path.join(root, "runtime"),
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    shutil.copytree(os.path.join(runtime_case, "export"), os.path.join(root, "model"))
    return root


def run_blocked(board: str, script: str, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONPATH"] = str(BLOCKER)
    return subprocess.run(
        [sys.executable, os.path.join(board, "runtime", script), *args],
        cwd=board, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_every_runtime_file_parses_as_python_3_8():
    files = runtime_files()
    assert len(files) >= 8, files
    for path in files:
        with open(path) as f:
            tree = ast.parse(f.read(), filename=path, feature_version=(3, 8))
        for node in ast.walk(tree):
            # Library calls newer than 3.8 that the parser does not catch.
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                if node.func.id == "zip" and any(k.arg == "strict" for k in node.keywords):
                    pytest.fail(f"{path}:{node.lineno}: zip(strict=) needs Python 3.10")
            if isinstance(node, ast.Attribute) and node.attr in ("removeprefix", "removesuffix"):
                pytest.fail(f"{path}:{node.lineno}: str.{node.attr} needs Python 3.9")


def test_the_blocker_blocks():
    proc = subprocess.run([sys.executable, "-c", "import paddle"], capture_output=True,
                          text=True, env=dict(os.environ, PYTHONPATH=str(BLOCKER)))  # fmt: skip
    assert proc.returncode == 1 and "paddle is not installed on this device" in proc.stderr


@pytest.mark.parametrize("source", ["images", "images/img1.png", "video.avi"])
def test_infer_without_paddle_matches_paddle_inference(source, board, runtime_case, tmp_path):
    out = tmp_path / "out"
    proc = run_blocked(board, "infer.py", "--model_dir", "model", "--image_path",
                       os.path.join(runtime_case, source), "--save_dir", str(out),
                       "--cpu_only")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert re.search(r"image\(s\), onnxruntime: mean [0-9.]+ ms", proc.stdout)
    reference = np.load(os.path.join(runtime_case, "reference.npz"))
    labels = read_labels(str(out / "labels"))
    expected = {k for k in reference.files if k.startswith("video/") == source.endswith(".avi")}
    if source.endswith(".png"):
        expected = {"img1.png"}
    assert set(labels) == expected
    for name, got in labels.items():
        assert got.shape == reference[name].shape and got.dtype == np.uint8
        assert (got == reference[name]).mean() >= MIN_AGREEMENT, name
        assert f"{name}: " in proc.stdout
    assert len(np.unique(np.concatenate([v.ravel() for v in labels.values()]))) > 1


def test_benchmark_without_paddle(board):
    proc = run_blocked(board, "benchmark.py", "model", "--backend", "onnxruntime",
                       "--warmup", "1", "--repeats", "3", "--cpu_only")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    values = dict(re.findall(r"^(init|first|min|max|avg) *= ([0-9.]+)$", proc.stdout, re.M))
    assert set(values) == {"init", "first", "min", "max", "avg"}
    assert 0 < float(values["min"]) <= float(values["avg"]) <= float(values["max"])


def test_a_backend_that_is_not_installed_is_named(board):
    proc = run_blocked(board, "benchmark.py", "model", "--backend", "paddle")
    assert proc.returncode == 2
    assert (
        proc.stderr.strip()
        .splitlines()[-1]
        .startswith(
            "error: --backend paddle needs the Python package 'paddle', which is not installed here"
        )
    )


def test_bad_inputs_are_named(board, tmp_path):
    proc = run_blocked(board, "infer.py", "--model_dir", str(tmp_path), "--image_path", ".")
    assert proc.returncode == 2
    assert (
        proc.stderr.strip()
        == f"error: deploy.yaml not found in {tmp_path} (export the model first)"
    )
    (tmp_path / "note.txt").write_text("x")
    proc = run_blocked(board, "infer.py", "--model_dir", "model", "--image_path",
                       str(tmp_path / "note.txt"))  # fmt: skip
    assert proc.returncode == 2 and "note.txt: not an image" in proc.stderr


def test_infer_applies_postprocessing(board, runtime_case, tmp_path):
    stats = tmp_path / "stats.json"
    # Every class but the background is too small to keep: all labels become 0.
    stats.write_text(json.dumps({"min_pixels": [None] + [10**9] * 5, "exclusive_pairs": []}))
    out = tmp_path / "out"
    proc = run_blocked(board, "infer.py", "--model_dir", "model", "--image_path",
                       os.path.join(runtime_case, "images"), "--save_dir", str(out),
                       "--cpu_only", "--postprocess", str(stats))  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    labels = read_labels(str(out / "labels"))
    assert len(labels) == 2 and all((v == 0).all() for v in labels.values())
