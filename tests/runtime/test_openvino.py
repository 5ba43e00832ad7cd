"""``--backend openvino``: OpenVINO's CPU runtime on the export's ONNX model, with the labels
of onnxruntime, without PaddlePaddle."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import pytest
from helpers import BLOCKER, MIN_AGREEMENT
from seg_runtime import SegPredictor, create_runner, read_image

openvino = pytest.importorskip("openvino", reason="the OpenVINO backend needs openvino")


def board_images(board) -> list[str]:
    return sorted(os.listdir(board["images"]))


def test_labels_equal_onnxruntime_on_the_board_images(board):
    predictor = SegPredictor(os.path.join(board["root"], "model"), "openvino", threads=2)
    for name in board_images(board):
        labels, latency = predictor(read_image(os.path.join(board["images"], name)))
        reference = board["reference"][name]
        assert labels.shape == reference.shape and labels.dtype == np.int64
        assert (labels == reference).mean() >= MIN_AGREEMENT, name
        assert latency > 0


def test_exact_export_labels_equal_onnxruntime(exact_export, board):
    ours = SegPredictor(exact_export, "openvino")
    reference = SegPredictor(exact_export, "onnxruntime")
    for name in board_images(board):
        image = read_image(os.path.join(board["images"], name))
        assert (ours(image)[0] == reference(image)[0]).mean() >= MIN_AGREEMENT, name


def test_logits_match_onnxruntime(exact_export):
    x = np.random.default_rng(0).standard_normal((1, 3, 96, 96)).astype(np.float32)
    ours = create_runner(exact_export, "openvino")(x)
    reference = create_runner(exact_export, "onnxruntime")(x)
    assert ours.shape == reference.shape
    np.testing.assert_allclose(ours, reference, atol=1e-4 * np.abs(reference).max())


def test_benchmark_names_openvino_without_paddle(board):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONPATH"] = str(BLOCKER)
    proc = subprocess.run(
        [sys.executable, os.path.join(board["root"], "runtime", "benchmark.py"), "model",
         "--backend", "openvino", "--warmup", "1", "--repeats", "3"],
        cwd=board["root"], env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"backend: openvino {openvino.__version__}" in proc.stdout
    assert re.search(r"^avg *= [0-9.]+$", proc.stdout, re.M)
