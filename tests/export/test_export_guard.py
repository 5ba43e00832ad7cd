"""Export guards: checks before anything is written, and an export directory that is
complete or absent, never in between (failed checks, SIGKILL at any point)."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import onnx
import paddle
import pytest
import yaml
from helpers import REPO, TINY_CONFIG, load_tool
from seg_runtime import DEPLOY_FILE, DeployInfo, ExportFiles, load_deploy

import paddleseg_ext.export.pipeline as pipeline
from paddleseg_ext.atomic import StagedDirectory
from paddleseg_ext.cli import run
from paddleseg_ext.config import build, load_config
from paddleseg_ext.core.checkpoint import save_weights
from paddleseg_ext.export import export

EXPORT_TOOL = load_tool("export")
SHAPE = [1, 3, 64, 64]
# deploy.yaml keys that name files of the export.


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    """The tests' tiny TopFormer config and its randomly initialised weights, saved."""
    root = tmp_path_factory.mktemp("guard")
    config = root / "tiny.yml"
    config.write_text(yaml.safe_dump(TINY_CONFIG))
    paddle.seed(0)
    save_weights(str(root / "weights"), build(load_config(str(config), "val")).model)
    return {"root": root, "config": config, "weights": root / "weights" / "model.pdparams"}


@pytest.fixture(scope="module")
def previous(tiny) -> Path:
    """A complete export of ``tiny`` (``--output_op softmax``), standing for an earlier one."""
    path = tiny["root"] / "previous"
    export(load_config(str(tiny["config"]), "val"), str(path), model_path=str(tiny["weights"]),
           input_shape=SHAPE, output_op="softmax", verify=False)  # fmt: skip
    return path


def check_export(save_dir: Path) -> DeployInfo | None:
    """None when ``save_dir`` does not exist; else its ``deploy.yaml``, after checking that
    every file it names exists and loads and that nothing else is in the directory."""
    if not save_dir.exists():
        return None
    deploy = load_deploy(str(save_dir))
    named = deploy.files()
    assert named, f"{save_dir}: deploy.yaml names no model file"
    for name in named:
        path = save_dir / name
        assert path.is_file() and path.stat().st_size > 0, f"{path} missing or empty"
        if name.endswith(".onnx"):
            onnx.checker.check_model(onnx.load(str(path)))
        elif name.endswith(".json"):  # the PIR program
            assert "program" in json.loads(path.read_text())
    assert set(os.listdir(save_dir)) <= set(ExportFiles.ALL), sorted(os.listdir(save_dir))
    return deploy


def snapshot(directory: Path) -> dict[str, str]:
    """``{file name: sha256}`` of a directory's files."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())}


def leftovers(save_dir: Path) -> list[str]:
    """Staging folders next to ``save_dir`` (``SAVE_DIR.tmp-<pid>``, ``SAVE_DIR.old-<pid>``)."""
    prefix = save_dir.name + "."
    return sorted(p.name for p in save_dir.parent.iterdir() if p.name.startswith(prefix))


def tool_args(tiny: dict[str, Path], save_dir: Path, *extra: str) -> list[str]:
    return [
        "--config", str(tiny["config"]), "--model_path", str(tiny["weights"]),
        "--save_dir", str(save_dir), "--input_shape", *map(str, SHAPE), "--device", "cpu",
        *extra,
    ]  # fmt: skip


def with_model(tiny: dict[str, Path], name: str, **model) -> Path:
    """The tiny config with ``model`` keys overridden, written next to it."""
    cfg = copy.deepcopy(TINY_CONFIG)
    cfg["model"].update(model)
    path = tiny["root"] / name
    path.write_text(yaml.safe_dump(cfg))
    return path


def without_calibration_data(tiny: dict[str, Path]) -> Path:
    """A config whose train_dataset (the calibration images) points at a missing folder."""
    cfg = copy.deepcopy(TINY_CONFIG)
    data = {"type": "Dataset", "num_classes": 6, "transforms": [{"type": "Normalize"}]}
    missing = tiny["root"] / "missing_data"
    cfg["train_dataset"] = {**data, "mode": "train", "dataset_root": str(missing),
                            "train_path": str(missing / "train.txt")}  # fmt: skip
    cfg["val_dataset"] = {**data, "mode": "val", "dataset_root": str(tiny["root"]),
                          "val_path": str(tiny["root"] / "val.txt")}  # fmt: skip
    path = tiny["root"] / "no_calibration.yml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def precheck_cases(tiny: dict[str, Path], out: Path) -> dict[str, tuple[list[str], str]]:
    """Per case: the tool's arguments and the expected error message (which names the value)."""
    root = tiny["root"]
    missing = root / "missing.pdparams"
    garbage = root / "garbage.pdparams"
    # A pickle frame claiming 2**60 bytes: pickle tries to allocate it (MemoryError).
    garbage.write_bytes(b"\x80\x04\x95" + (1 << 60).to_bytes(8, "little") + bytes(20))
    other = root / "other.pdparams"
    paddle.save({"head.weight": paddle.zeros([2])}, str(other))
    a_file = root / "a_file"
    a_file.write_text("not a directory")
    not_export = root / "not_export"
    not_export.mkdir(exist_ok=True)
    (not_export / "notes.txt").write_text("keep me")
    vim = with_model(tiny, "vim.yml", upsample="vim")
    return {
        "model_path missing": (
            tool_args(tiny, out, "--model_path", str(missing)),
            f"--model_path not found: {missing}",
        ),
        "weights unreadable": (
            tool_args(tiny, out, "--model_path", str(garbage)),
            f"--model_path {garbage}: `paddle.load` can not parse the file",
        ),
        "weights of another model": (
            tool_args(tiny, out, "--model_path", str(other)),
            f"{other} does not match the model: missing [",
        ),
        "input size zero": (
            tool_args(tiny, out, "--input_shape", "1", "3", "0", "64"),
            "--input_shape: sizes must be positive or -1 (dynamic), got [1, 3, 0, 64]",
        ),
        "dynamic size TopFormer cannot trace": (
            tool_args(tiny, out, "--input_shape", "1", "3", "-1", "-1"),
            "--input_shape [1, 3, -1, -1]: TopFormerSeg cannot be exported at this shape: the "
            "token grid follows the input size, which is dynamic here",
        ),
        "softmax on a model returning labels": (
            tool_args(tiny, out, "--config", str(vim), "--output_op", "softmax"),
            "--output_op softmax needs logits, but this model returns labels",
        ),
        "opset out of range": (
            tool_args(tiny, out, "--opset", "30"),
            "--opset 30: paddle2onnx converts opsets 7 to 21",
        ),
        "int8 without calibration images": (
            tool_args(
                tiny, out, "--config", str(without_calibration_data(tiny)), "--quantize", "int8"
            ),  # fmt: skip
            "--quantize int8 calibrates on training images: train_dataset.dataset_root does "
            f"not exist: {root / 'missing_data'}",
        ),
        "lite without its side environment": (
            tool_args(tiny, out, "--formats", "lite"),
            "--formats lite needs the Paddle Lite side environment (CPython 3.10, paddlelite "
            f"2.13rc0): no interpreter at {root / 'no_python'}",
        ),
        "save_dir is a file": (
            tool_args(tiny, a_file),
            f"--save_dir {a_file}: {a_file} is a file, not a directory",
        ),
        "save_dir below a file": (
            tool_args(tiny, a_file / "export"),
            f"--save_dir {a_file / 'export'}: {a_file} is a file, not a directory",
        ),
        "save_dir holds other files": (
            tool_args(tiny, not_export),
            f"--save_dir {not_export} is not an export directory (it holds notes.txt)",
        ),
    }


PRECHECKS = [
    "model_path missing",
    "weights unreadable",
    "weights of another model",
    "input size zero",
    "dynamic size TopFormer cannot trace",
    "softmax on a model returning labels",
    "opset out of range",
    "int8 without calibration images",
    "lite without its side environment",
    "save_dir is a file",
    "save_dir below a file",
    "save_dir holds other files",
]


@pytest.mark.parametrize("case", PRECHECKS)
def test_precheck_fails_before_writing(case, tiny, tmp_path, monkeypatch, capsys) -> None:
    out = tmp_path / "export"
    argv, message = precheck_cases(tiny, out)[case]
    monkeypatch.setenv("PADDLESEG_EXT_LITE_PYTHON", str(tiny["root"] / "no_python"))
    save_dir = Path(argv[argv.index("--save_dir") + 1])
    parent = save_dir.parent if save_dir.parent.is_dir() else save_dir.parent.parent
    before = {p.name: p.stat().st_mtime_ns for p in parent.iterdir()}
    inside = snapshot(save_dir) if save_dir.is_dir() else None
    capsys.readouterr()
    monkeypatch.setattr(sys, "argv", ["export.py", *argv])
    with pytest.raises(SystemExit) as exc:
        run(EXPORT_TOOL.main)
    assert exc.value.code == 2
    last = capsys.readouterr().err.rstrip().splitlines()[-1]
    assert last.startswith("error: ") and message in last, last
    # Nothing created, changed or left next to the save dir.
    assert {p.name: p.stat().st_mtime_ns for p in parent.iterdir()} == before
    if inside is not None:
        assert snapshot(save_dir) == inside


@pytest.mark.slow
def test_failed_check_leaves_nothing(tiny, tmp_path, monkeypatch) -> None:
    """A backend failing in the check: the stage held the files, and is removed."""
    seen = {}

    def failing_check(layer, directory, files, x, threads):
        seen["stage"] = directory
        seen["files"] = sorted(os.listdir(directory))
        raise RuntimeError("onnxruntime cannot run the exported model: simulated failure")

    monkeypatch.setattr(pipeline, "verify_export", failing_check)
    out = tmp_path / "export"
    with pytest.raises(RuntimeError, match="simulated failure"):
        export(load_config(str(tiny["config"]), "val"), str(out),
               model_path=str(tiny["weights"]), input_shape=SHAPE)  # fmt: skip
    assert seen["stage"] == f"{os.path.realpath(out)}.tmp-{os.getpid()}"
    assert {DEPLOY_FILE, ExportFiles.ONNX, ExportFiles.PADDLE_MODEL} <= set(seen["files"])
    assert not out.exists()
    assert leftovers(out) == []


@pytest.mark.slow
def test_failed_check_keeps_previous_export(tiny, previous, tmp_path, monkeypatch, capsys) -> None:
    """The tool's check fails (labels disagree): exit 1, the previous export untouched."""
    out = tmp_path / "export"
    shutil.copytree(previous, out)
    before = snapshot(out)
    disagree = {"onnxruntime": {"label_agreement": 0.5, "max_abs_diff": None}}
    monkeypatch.setattr(pipeline, "verify_export", lambda *args: copy.deepcopy(disagree))
    with pytest.raises(SystemExit) as exc:  # none: no second, logits-only check
        EXPORT_TOOL.main(tool_args(tiny, out, "--output_op", "none"))
    assert exc.value.code == 1
    assert f"nothing was written to {out}" in capsys.readouterr().err
    assert snapshot(out) == before
    assert check_export(out).output_op == "softmax"
    assert leftovers(out) == []


def test_stale_stage_is_removed_and_interrupted_swap_restored(tmp_path) -> None:
    """Leftovers of a killed process: its stage is removed; a previous directory moved
    aside just before the swap (the final name missing) is put back."""
    dead = subprocess.Popen(["true"])
    dead.wait()
    final = tmp_path / "export"
    stage = tmp_path / f"export.tmp-{dead.pid}"
    aside = tmp_path / f"export.old-{dead.pid}"
    stage.mkdir()
    (stage / DEPLOY_FILE).write_text("partial")
    aside.mkdir()
    (aside / DEPLOY_FILE).write_text("previous")
    with StagedDirectory(str(final)) as staged:
        assert (final / DEPLOY_FILE).read_text() == "previous"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["export", Path(staged.path).name]
        (Path(staged.path) / DEPLOY_FILE).write_text("new")
        staged.commit()
    assert (final / DEPLOY_FILE).read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]


# Where the kills aim: (phase, what must appear in the stage first, delay range after it in
# seconds). None: from the start (imports, model build and tracing; nothing written yet).
# A delay longer than the phase on a fast machine kills the export where it holds before
# its commit (``kill_when``), never after it.
KILLS = [
    ("start", None, (0.5, 4.0)),
    ("Paddle program save", ExportFiles.PADDLE_MODEL, (0.0, 0.05)),
    ("ONNX conversion, over a previous export", ExportFiles.PADDLE_PARAMS, (0.0, 0.15)),
    ("check, over a previous export", DEPLOY_FILE, (0.5, 3.0)),
    ("start, over a previous export", None, (0.5, 4.0)),
]
KILL_SEED = 20260522


# Holds the export just before its commit when EXPORT_HOLD_MARKER is set (see its docstring).
HOLD = Path(__file__).resolve().parent / "hold"


def start_tool(
    tiny: dict[str, Path], save_dir: Path, log: Path, hold: Path | None = None
) -> subprocess.Popen:
    """Starts ``tools/export.py`` (``--output_op none``: no second, logits-only check);
    with ``hold``, the process stops before its commit and creates that file."""
    tool = str(REPO / "tools" / "export.py")
    argv = [sys.executable, tool, *tool_args(tiny, save_dir, "--output_op", "none")]
    env = dict(os.environ)
    if hold is not None:
        paths = [str(HOLD), env.get("PYTHONPATH", "")]
        env.update(PYTHONPATH=os.pathsep.join(filter(None, paths)), EXPORT_HOLD_MARKER=str(hold))
    with open(log, "w") as f:
        return subprocess.Popen(argv, cwd=REPO, stdout=f, stderr=subprocess.STDOUT, env=env)


def kill_when(
    proc: subprocess.Popen, stage: Path, trigger: str | None, delay: float, hold: Path
) -> list:
    """SIGKILLs ``proc`` ``delay`` s after ``trigger`` appears in ``stage``, or as soon as it
    holds before its commit (``hold`` appears), whichever comes first; returns the stage's
    listing at the kill. The kill thus always lands before the commit, however fast the
    machine, and anywhere before it on a slow one."""

    def wait_for(event, limit: float, what: str) -> None:
        deadline = time.monotonic() + limit
        while not event() and not hold.exists():
            assert proc.poll() is None, f"the export ended before {what}"
            if time.monotonic() >= deadline:
                return
            time.sleep(0.005)

    if trigger is not None:
        wait_for((stage / trigger).exists, 300, f"{stage / trigger} appeared")
        assert (stage / trigger).exists() or hold.exists(), f"{stage / trigger} never appeared"
    wait_for(lambda: False, delay, "the kill")
    listing = sorted(os.listdir(stage)) if stage.is_dir() else []
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the export ended before the kill"
    return listing


@pytest.mark.slow
def test_sigkill_never_leaves_a_broken_export(tiny, previous, tmp_path) -> None:
    """Kills ``tools/export.py`` at seeded random points of each phase. After each kill the
    save dir is absent (no earlier export) or a complete export (the previous one, unchanged);
    a last uninterrupted export then succeeds over the leftovers."""
    rng = random.Random(KILL_SEED)
    out = tmp_path / "export"
    before = None  # the previous export's files, once it is there
    for index, (phase, trigger, (low, high)) in enumerate(KILLS):
        if phase.endswith("over a previous export") and before is None:
            shutil.copytree(previous, out)
            before = snapshot(out)
        delay = rng.uniform(low, high)
        start = time.monotonic()
        hold = tmp_path / f"held-{index}"
        proc = start_tool(tiny, out, tmp_path / "kill.log", hold)
        stage = Path(f"{out}.tmp-{proc.pid}")
        listing = kill_when(proc, stage, trigger, delay, hold)
        where = (
            f"killed in {phase} at {time.monotonic() - start:.1f} s ({delay:.2f} s after "
            f"{trigger!r}); stage held {listing}; held before the commit: {hold.exists()}"
        )
        print(where)
        deploy = check_export(out)
        if before is None:
            assert deploy is None, where
        else:
            assert deploy is not None and snapshot(out) == before, where
        if trigger is not None:
            assert trigger in listing, where

    log = tmp_path / "final.log"
    proc = start_tool(tiny, out, log)
    assert proc.wait(timeout=300) == 0, log.read_text()[-2000:]
    deploy = check_export(out)
    assert deploy.output_op == "none" and snapshot(out) != before
    assert deploy.input_shape == SHAPE
    assert leftovers(out) == []
    assert "left by a killed process" in log.read_text()
