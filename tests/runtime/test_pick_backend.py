"""``benchmark.py --pick`` times the CPU backends that can run an export and records the
fastest in ``deploy.yaml``; ``--backend auto`` opens it, or onnxruntime with a note."""

from __future__ import annotations

import importlib.util
import os
import shutil

import pytest
from helpers import RUNTIME_DIR
from seg_runtime import create_runner, load_deploy
from seg_runtime.backends import usable_backends

_spec = importlib.util.spec_from_file_location("runtime_benchmark", RUNTIME_DIR / "benchmark.py")
benchmark = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(benchmark)


@pytest.fixture
def model_dir(board, tmp_path) -> str:
    """A copy of the board's export (the pick rewrites its deploy.yaml)."""
    return shutil.copytree(os.path.join(board["root"], "model"), str(tmp_path / "model"))


def test_pick_records_the_fastest_usable_backend(model_dir, capsys):
    deploy = load_deploy(model_dir)
    usable = usable_backends(deploy)
    assert "onnxruntime" in usable
    fastest = benchmark.main([model_dir, "--pick", "--threads", "1", "--warmup", "1",
                              "--repeats", "5"])  # fmt: skip
    out = capsys.readouterr().out
    assert set(fastest["median_ms"]) == set(usable)
    assert fastest["backend"] == min(usable, key=fastest["median_ms"].get)
    assert fastest["threads"] == 1 and fastest["machine"]
    for backend in usable:
        assert f"\n{backend} " in out
    assert load_deploy(model_dir).fastest == fastest  # written to deploy.yaml
    assert create_runner(model_dir, "auto").name == fastest["backend"]


def test_auto_without_a_record_opens_onnxruntime_with_a_note(model_dir, capsys):
    assert create_runner(model_dir, "auto").name == "onnxruntime"
    assert "note: --backend auto: no backend recorded" in capsys.readouterr().err


def test_auto_with_a_backend_unusable_here_opens_onnxruntime(model_dir, capsys):
    deploy = load_deploy(model_dir)
    assert not deploy.has("lite")
    deploy.fastest = {"backend": "lite", "threads": 1}
    deploy.write(model_dir)
    assert create_runner(model_dir, "auto").name == "onnxruntime"
    assert "note: --backend auto: lite is not usable here" in capsys.readouterr().err


def test_auto_falls_back_to_the_first_usable_backend(model_dir, capsys):
    deploy = load_deploy(model_dir)
    deploy.formats.pop("onnx")  # a Paddle-only export
    deploy.write(model_dir)
    assert create_runner(model_dir, "auto").name == "paddle"
    assert "no backend recorded (benchmark.py --pick records one); using paddle" in (
        capsys.readouterr().err
    )


def test_a_record_from_another_machine_is_used_with_a_note(model_dir, capsys):
    deploy = load_deploy(model_dir)
    deploy.fastest = {"backend": "onnxruntime", "threads": 1, "machine": "another board"}
    deploy.write(model_dir)
    assert create_runner(model_dir, "auto").name == "onnxruntime"
    err = capsys.readouterr().err
    assert "onnxruntime was the fastest on another board; run benchmark.py --pick here" in err


def test_bad_records_and_requests_are_named(model_dir):
    deploy = load_deploy(model_dir)
    deploy.fastest = {"backend": "tensorrt"}
    deploy.write(model_dir)
    with pytest.raises(ValueError, match=r"deploy.yaml: fastest.backend 'tensorrt' is not one"):
        create_runner(model_dir, "auto")
    assert not load_deploy(model_dir).has("onnx", "int8")
    with pytest.raises(ValueError, match="no INT8 ONNX model \\(export with --quantize int8\\)"):
        create_runner(model_dir, "onnxruntime", int8=True)
