"""The device runtime on an emulated aarch64 board (``make arm-env``: Debian's arm64 CPython
3.11 under qemu-user, one interpreter per onnxruntime version): ``infer.py``, ``benchmark.py``,
the packaged solution and post-processing give x86's labels on every run of a session.

The images are real: CamVid val (``../shared``, scaled to a quarter) and ``make demo``'s
SyntheticShapes. The x86 reference of each image is the first run of a fresh onnxruntime
session in this process (first runs are right on every release), so the bound is equality.
"""

from __future__ import annotations

import os
import re
import subprocess

import numpy as np
import pytest
from helpers import REPO, read_labels, run_device_python

ARM_ENV = REPO / ".arm-env"
INSTALLED = ARM_ENV / ".installed"
VERSIONS = INSTALLED.read_text().split() if INSTALLED.is_file() else []
NO_BOARD = (
    "needs the emulated aarch64 board (make arm-env: qemu-user-static and Debian's arm64 "
    "CPython 3.11, installed with apt-get as root)"
)
# The releases that reuse memory patterns wrongly, [first bad, first good) (measured:
# docs/deployment.md).
FAULTY = ((1, 14), (1, 19))


def release(version: str) -> tuple[int, int]:
    major, minor = version.split(".")[:2]
    return int(major), int(minor)


def faulty(version: str) -> bool:
    return FAULTY[0] <= release(version) < FAULTY[1]


def over_versions(versions: list[str], reason: str):
    """Parametrizes a test over onnxruntime versions; one skipped case when there are none."""
    cases = versions or [pytest.param("none", marks=pytest.mark.skip(reason=reason))]
    return pytest.mark.parametrize("version", cases)


ort_versions = over_versions(VERSIONS, NO_BOARD)
faulty_ort_versions = over_versions(
    [v for v in VERSIONS if faulty(v)], f"{NO_BOARD}, with an onnxruntime from 1.14 to 1.18"
)


def arm(version: str, *args: str, cwd: str) -> subprocess.CompletedProcess:
    return run_device_python(ARM_ENV / "bin" / f"python-ort-{version}", *args, cwd=cwd)


def check_note(version: str, stderr: str) -> None:
    """The runtime names the memory-pattern defect once on the releases that have it."""
    note = (
        f"note: onnxruntime {version} gives wrong labels after the first run with memory "
        "patterns on (1.14 to 1.18): running with them off"
    )
    assert stderr.count(note) == (1 if faulty(version) else 0), stderr[-2000:]


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
def test_solution_with_postprocessing_gives_x86_labels(board, changing_solution, version, tmp_path):
    pyz, expected = changing_solution
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
