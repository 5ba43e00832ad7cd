"""The device runtime on an emulated aarch64 board (``make arm-env``: Debian's arm64 CPython
3.11 under qemu-user, one interpreter per onnxruntime version): ``infer.py``, ``benchmark.py``,
the packaged solution and post-processing give x86's labels on every run of a session.

The images are real: CamVid val (``../shared``, scaled to a quarter) and ``make demo``'s
SyntheticShapes. The x86 reference of each image is the first run of a fresh onnxruntime
session in this process (first runs are right on every release), so the bound is equality.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from helpers import CAMVID, REPO, RUNTIME_DIR, read_labels

ARM_ENV = REPO / ".arm-env"
INSTALLED = ARM_ENV / ".installed"
VERSIONS = INSTALLED.read_text().split() if INSTALLED.is_file() else []
NO_BOARD = (
    "needs the emulated aarch64 board (make arm-env: qemu-user-static and Debian's arm64 "
    "CPython 3.11, installed with apt-get as root)"
)
# The first release that reuses memory patterns right (measured: docs/deployment.md).
FIXED = (1, 19)


def release(version: str) -> tuple[int, int]:
    major, minor = version.split(".")[:2]
    return int(major), int(minor)


def over_versions(versions: list[str], reason: str):
    """Parametrizes a test over onnxruntime versions; one skipped case when there are none."""
    cases = versions or [pytest.param("none", marks=pytest.mark.skip(reason=reason))]
    return pytest.mark.parametrize("version", cases)


ort_versions = over_versions(VERSIONS, NO_BOARD)
faulty_ort_versions = over_versions(
    [v for v in VERSIONS if release(v) < FIXED], f"{NO_BOARD}, with an onnxruntime before 1.19"
)


def arm(version: str, *args: str, cwd: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    proc = subprocess.run(
        [str(ARM_ENV / "bin" / f"python-ort-{version}"), *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def board(runtime_case, tmp_path_factory) -> dict:
    """The runtime, the case's export, real images and their x86 labels.

    ``images/`` holds two CamVid val images (when ``../shared`` is there), two SyntheticShapes
    val images, and the first image again under a later name, so that a session runs it
    once first and once after the others.
    """
    import cv2
    from seg_runtime import SegPredictor, read_image

    from paddleseg_ext.datasets.shapes import generate_synthetic_shapes

    root = str(tmp_path_factory.mktemp("aarch64_board"))
    shutil.copytree(RUNTIME_DIR, os.path.join(root, "runtime"),
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    shutil.copytree(os.path.join(runtime_case, "export"), os.path.join(root, "model"))
    images = os.path.join(root, "images")
    os.makedirs(images)
    sources = []
    if (CAMVID / "val.txt").is_file():
        lines = (CAMVID / "val.txt").read_text().split("\n")[:2]
        sources += [("camvid", str(CAMVID / line.split()[0]), 4) for line in lines]
    shapes = generate_synthetic_shapes(
        os.path.join(root, "shapes"), num_train=1, num_val=2, image_size=128, seed=0
    )
    val = sorted(os.listdir(os.path.join(shapes, "images", "val")))
    sources += [("shapes", os.path.join(shapes, "images", "val", n), 1) for n in val]
    names = []
    for i, (kind, path, shrink) in enumerate(sources):
        image = cv2.imread(path, cv2.IMREAD_COLOR)
        h, w = image.shape[:2]
        image = cv2.resize(image, (w // shrink, h // shrink), interpolation=cv2.INTER_AREA)
        names.append(f"{i}_{kind}.png")
        cv2.imwrite(os.path.join(images, names[-1]), image)
    shutil.copy(os.path.join(images, names[0]), os.path.join(images, f"9_again_{names[0]}"))
    reference = {}
    for name in sorted(os.listdir(images)):
        predictor = SegPredictor(os.path.join(root, "model"), "onnxruntime")
        reference[name] = predictor(read_image(os.path.join(images, name)))[0]
    return {"root": root, "images": images, "reference": reference}


def check_note(version: str, stderr: str) -> None:
    """The runtime names the memory-pattern defect once on the releases that have it."""
    note = (
        f"note: onnxruntime {version} gives wrong labels after the first run with memory "
        "patterns on (fixed in 1.19): running with them off"
    )
    assert stderr.count(note) == (1 if release(version) < FIXED else 0), stderr[-2000:]


@ort_versions
def test_infer_folder_gives_x86_labels_on_every_run(board, version):
    proc = arm(version, "runtime/infer.py", "--model_dir", "model", "--image_path", "images",
               "--save_dir", "out", cwd=board["root"])  # fmt: skip
    assert re.search(
        rf"^machine: aarch64, .*; backend: onnxruntime {re.escape(version)} "
        r"\(CPUExecutionProvider\)$", proc.stdout, re.M,
    ), proc.stdout  # fmt: skip
    labels = read_labels(os.path.join(board["root"], "out", "labels"))
    assert set(labels) == set(board["reference"])
    for name, expected in board["reference"].items():
        assert np.array_equal(labels[name], expected), name
    check_note(version, proc.stderr)


@ort_versions
def test_benchmark_names_the_emulated_board(board, version):
    proc = arm(version, "runtime/benchmark.py", "model", "--warmup", "1", "--repeats", "2",
               cwd=board["root"])  # fmt: skip
    first = proc.stdout.splitlines()[0]
    assert re.fullmatch(
        rf"machine: aarch64, emulated on .+ \(x86_64\), \d+ cores; "
        rf"backend: onnxruntime {re.escape(version)} \(CPUExecutionProvider\)", first,
    ), first  # fmt: skip
    assert re.search(r"^avg   = [0-9.]+$", proc.stdout, re.M), proc.stdout
    check_note(version, proc.stderr)


@ort_versions
def test_solution_with_postprocessing_gives_x86_labels(board, version, tmp_path):
    from seg_runtime.postprocess import PostProcessor

    reference = board["reference"]
    # Statistics that change the labels: each class's minimum area is three times its
    # smallest predicted area (rule (a) removes it there), and the two largest foreground
    # classes are exclusive (rule (b)).
    counts = np.stack([np.bincount(r.ravel(), minlength=6) for r in reference.values()])
    present = np.where(counts > 0, counts, np.iinfo(np.int64).max).min(axis=0)
    min_pixels = [int(3 * p) if p < np.iinfo(np.int64).max else None for p in present]
    largest = [int(c) for c in np.argsort(-counts.sum(axis=0)) if c != 0][:2]
    stats = {"min_pixels": min_pixels, "exclusive_pairs": [largest]}
    stats_file = tmp_path / "stats.json"
    stats_file.write_text(json.dumps(stats))
    post = PostProcessor.from_stats(stats, 1 / 3, 0)
    expected = {name: post(labels) for name, labels in reference.items()}
    assert any(not np.array_equal(expected[n], reference[n]) for n in reference)
    pyz = tmp_path / "solution.pyz"
    build = subprocess.run(
        [sys.executable, str(REPO / "tools" / "package_solution.py"), "--model_dir",
         os.path.join(board["root"], "model"), "--postprocess", str(stats_file), "--out",
         str(pyz)], capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr
    proc = arm(version, str(pyz), "-i", board["images"], "-o", str(tmp_path / "out"),
               cwd=str(tmp_path))  # fmt: skip
    assert re.fullmatch(r"[0-9]+\.[0-9]+\n", proc.stdout), proc.stdout
    labels = read_labels(str(tmp_path / "out"))
    assert set(labels) == set(expected)
    for name, want in expected.items():
        assert np.array_equal(labels[name], want), name
    check_note(version, proc.stderr)


@faulty_ort_versions
def test_the_defect_is_real_with_memory_patterns_on(board, version):
    """The control: on these releases, the same images with memory patterns on (onnxruntime's
    default) give other labels after the first run, and without them do not."""
    proc = arm(version, str(REPO / "bench" / "ort_session_fix.py"), "model", "--images",
               "images", "--max_images", "3", "--passes", "2", "--warmup", "0", "--repeats",
               "1", cwd=board["root"])  # fmt: skip
    rows = dict(re.findall(r"^(\w+) .* (\d+/\d+) \(min agreement", proc.stdout, re.M))
    assert rows["no_mem_pattern"] == "6/6", proc.stdout
    assert rows["default"] != "6/6", proc.stdout
