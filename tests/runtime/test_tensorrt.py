"""The TensorRT backend against TensorRT's documented Python API, both generations.

No GPU here: ``trt_standin/tensorrt`` stands in for TensorRT (an engine is the ONNX model on
onnxruntime, device memory is host arrays), with each release's API surface: bindings only
(8.2, the Jetson Nano's), both (8.6), named tensors only (10), no FP16/INT8 flags (11). What
these tests prove is the backend's side of that contract: which calls it makes per release,
the engine cache, the rebuilds of stale engines, the errors. TensorRT itself runs in
``bench/gpu_check.sh`` on a GPU machine.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from helpers import BLOCKER
from seg_runtime import SegPredictor, load_deploy, read_image
from seg_runtime import solution as solution_module
from seg_runtime.solution import build_solution, open_runner, resolve_backend
from seg_runtime.tensorrt_engine import (
    TrtRunner,
    engine_file_name,
    parse_engine_file_name,
    stale_engines,
)

STANDIN = Path(__file__).parent / "trt_standin"
# release -> (bindings API only, precision "auto" builds)
RELEASES = {
    "8.2.1.8": (True, "fp16"),
    "8.6.1.6": (False, "fp16"),
    "10.3.0.26": (False, "fp16"),
    "11.4.1.2": (False, "fp32"),
}


@pytest.fixture
def trt(monkeypatch):
    """The stand-in ``tensorrt`` module, fresh, at release 8.2.1.8."""
    monkeypatch.syspath_prepend(str(STANDIN))
    monkeypatch.delitem(sys.modules, "tensorrt", raising=False)
    module = importlib.import_module("tensorrt")
    module.set_version("8.2.1.8")
    module.builds.clear()
    yield module
    sys.modules.pop("tensorrt", None)


@pytest.fixture
def model(board, tmp_path) -> tuple[str, dict]:
    """``(model.onnx, deploy)`` copied into a fresh folder (the engine cache)."""
    deploy = load_deploy(os.path.join(board["root"], "model"))
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(Path(board["root"], "model", deploy.model_file("onnx")).read_bytes())
    return str(onnx), deploy


def runner(trt, model, **kwargs) -> TrtRunner:
    onnx, deploy = model
    return TrtRunner(onnx, deploy.input_shape, memory=trt.HostMemory(), **kwargs)


def test_engine_file_names_carry_version_gpu_precision_and_model(tmp_path):
    name = engine_file_name("fp16", "8.2.1.8", "NVIDIA Tegra X1", "0123456789ab")
    assert name == "model.fp16.trt8.2.1.8.NVIDIA-Tegra-X1.0123456789ab.engine"
    assert parse_engine_file_name(f"/some/dir/{name}") == {
        "precision": "fp16", "trt_version": "8.2.1.8", "gpu": "NVIDIA-Tegra-X1",
        "digest": "0123456789ab",
    }  # fmt: skip
    assert parse_engine_file_name("student.engine") is None  # trtexec --saveEngine
    others = [
        engine_file_name("fp16", "10.3.0", "NVIDIA Tegra X1", "0123456789ab"),
        engine_file_name("fp16", "8.2.1.8", "Orin", "0123456789ab"),
        engine_file_name("fp16", "8.2.1.8", "NVIDIA Tegra X1", "ba9876543210"),
        engine_file_name("fp32", "8.2.1.8", "NVIDIA Tegra X1", "0123456789ab"),  # kept
    ]
    for n in [name, *others, "student.engine"]:
        (tmp_path / n).write_bytes(b"")
    assert stale_engines(str(tmp_path), name) == sorted(others[:3])


@pytest.mark.parametrize("release", RELEASES)
def test_each_release_runs_its_api_and_gives_onnxruntime_labels(trt, model, board, release):
    trt.set_version(release)
    trt_runner = runner(trt, model)
    bindings_only, precision = RELEASES[release]
    assert trt_runner.tensor_api is not bindings_only
    assert trt_runner.precision == precision and trt.builds == [(release, precision)]
    cached = os.listdir(os.path.dirname(model[0]))
    assert f"model.{precision}.trt{release}.Stand-in-GPU." in " ".join(cached)
    predictor = SegPredictor.from_runner(model[1], trt_runner)
    for name, expected in board["reference"].items():
        labels, _ = predictor(read_image(os.path.join(board["images"], name)))
        np.testing.assert_array_equal(labels, expected, err_msg=name)
        assert predictor.forward_ms == trt_runner.device_ms == 1.0  # the event timing


def test_a_cached_engine_is_reused_and_a_stale_one_rebuilt_with_a_note(trt, model, capfd):
    runner(trt, model)
    runner(trt, model)
    assert trt.builds == [("8.2.1.8", "fp16")]  # the second runner loaded the cache
    capfd.readouterr()
    trt.set_version("10.3.0.26")
    runner(trt, model)
    assert trt.builds[-1] == ("10.3.0.26", "fp16")
    notes = [line for line in capfd.readouterr().err.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and ".trt8.2.1.8." in notes[0], notes
    # Another ONNX model (same file name): its own engine, the old one named as stale.
    import onnx

    changed = onnx.load(model[0])
    changed.doc_string = "retrained"
    onnx.save(changed, model[0])
    runner(trt, model)
    assert len(trt.builds) == 3
    notes = [line for line in capfd.readouterr().err.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and ".trt10.3.0.26." in notes[0] and "not using" in notes[0], notes


def test_a_prebuilt_engine_is_used_unless_unusable_here(trt, model, tmp_path, capfd):
    builder = trt.Builder(None)
    network = builder.create_network(1)
    trt.OnnxParser(network, None).parse(Path(model[0]).read_bytes())
    config = builder.create_builder_config()
    config.set_flag(trt.BuilderFlag.FP16)
    engine = tmp_path / "student.engine"  # as trtexec --saveEngine names it
    engine.write_bytes(builder.build_serialized_network(network, config))
    trt.builds.clear()
    prebuilt = runner(trt, model, engine=str(engine))
    assert trt.builds == [] and prebuilt.precision == "prebuilt"
    trt.set_version("10.3.0.26")  # the engine's release cannot load it
    capfd.readouterr()
    runner(trt, model, engine=str(engine))
    assert trt.builds == [("10.3.0.26", "fp16")]
    assert "cannot load" in capfd.readouterr().err
    with pytest.raises(FileNotFoundError, match="TensorRT engine not found: .*missing.engine"):
        runner(trt, model, engine=str(tmp_path / "missing.engine"))


def test_errors_name_the_problem(trt, model):
    trt.set_version("11.4.1.2")
    with pytest.raises(ValueError, match=r"TensorRT 11\.4\.1\.2 has no fp16 builder flag"):
        runner(trt, model, precision="fp16")
    onnx, deploy = model
    with pytest.raises(ValueError, match=r"fixed input size.*\[1, 3, -1, -1\]"):
        TrtRunner(onnx, [1, 3, -1, -1], memory=trt.HostMemory())
    with pytest.raises(ValueError, match="unknown TensorRT precision 'bf16'"):
        runner(trt, model, precision="bf16")
    trt.set_version("8.2.1.8")
    with pytest.raises(ValueError, match="needs calibration images"):
        runner(trt, model, precision="int8")


def test_solution_backend_choice(trt, monkeypatch):
    assert resolve_backend("auto") == "tensorrt"  # importable (the stand-in)
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    assert resolve_backend("auto") == "onnxruntime"
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ImportError, match=r"runs on tensorrt or onnxruntime: tensorrt \(.*\); "):
        resolve_backend("auto")


def test_solution_packs_an_engine_and_rebuilds_it_on_another_release(
    trt, model, board, tmp_path, monkeypatch, capfd
):
    """The engine packed with ``--engine`` is used where its release runs, else rebuilt."""
    export = os.path.join(board["root"], "model")
    runner(trt, model)  # builds and caches an 8.2.1.8 engine beside model.onnx
    engine = next(Path(model[0]).parent.glob("*.engine"))
    pyz = tmp_path / "solution.pyz"
    build_solution(export, str(pyz), backend="tensorrt", engine=str(engine))
    with zipfile.ZipFile(pyz) as zf:
        entries = {n: zf.read(n) for n in zf.namelist()}
    monkeypatch.setattr(solution_module, "_read", lambda e: entries.get(f"seg_runtime/{e}"))
    monkeypatch.setattr("seg_runtime.tensorrt_engine.device_memory", trt.HostMemory)
    monkeypatch.setattr(sys, "argv", [str(pyz)])
    settings = {"backend": "tensorrt", "engine": engine.name}
    trt.builds.clear()
    onnx = entries[f"seg_runtime/{solution_module.MODEL_ENTRY}"]
    used = open_runner("tensorrt", onnx, model[1], settings)
    assert trt.builds == [] and used.precision == "fp16"
    trt.set_version("10.3.0.26")
    capfd.readouterr()
    rebuilt = open_runner("tensorrt", onnx, model[1], settings)
    assert trt.builds == [("10.3.0.26", "fp16")] and rebuilt.tensor_api
    assert "is for TensorRT 8.2.1.8" in capfd.readouterr().err
    assert list(tmp_path.glob("model.fp16.trt10.3.0.26.*.engine"))  # cached beside the .pyz


def test_solution_without_its_runtime_fails_in_one_line(board, tmp_path):
    pyz = tmp_path / "solution.pyz"
    build_solution(os.path.join(board["root"], "model"), str(pyz), backend="tensorrt")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env |= {"PYTHONPATH": str(BLOCKER), "BLOCK_EXTRA": "tensorrt"}
    proc = subprocess.run([sys.executable, str(pyz), "-i", board["images"], "-o", str(tmp_path)],
                          capture_output=True, text=True, timeout=120, env=env)  # fmt: skip
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [
        "error: this solution runs on tensorrt: tensorrt (tensorrt is not installed on this "
        "device (blocked))"
    ]
