"""deploy/benchmark.sh, deploy/python/benchmark.py and tools/benchmark.py."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import platform
import re
import shutil
import stat
import subprocess
import sys

import pytest
import yaml

from paddleseg_ext.config import ConfigError

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load_script(name: str, path: str):
    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


deploy_bench = load_script("deploy_benchmark", "deploy/python/benchmark.py")
SCRIPT = os.path.join(REPO, "deploy", "benchmark.sh")
PERF = re.compile(
    r"======= Perf Info =======\nTime\(unit: ms\):\n"
    r"init  = ([0-9.]+|n/a)\nfirst = ([0-9.]+|n/a)\nmin   = ([0-9.]+)\n"
    r"max   = ([0-9.]+)\navg   = ([0-9.]+)"
)


def bench_sh(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHON=sys.executable)
    return subprocess.run(
        ["bash", SCRIPT, *args], capture_output=True, text=True, env=env, timeout=300
    )


def fake_tool(path, output: str) -> str:
    """An executable that prints ``output`` and its arguments."""
    path.write_text(f"#!/usr/bin/env bash\necho \"args: $*\"\ncat <<'END'\n{output}\nEND\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


@pytest.mark.parametrize("backend", ["paddle", "onnxruntime"])
def test_deploy_bench_module(backend, exported_dir, capsys) -> None:
    stats = deploy_bench.main(
        [exported_dir, "--backend", backend, "--warmup", "1", "--repeats", "3"]
    )
    assert 0 < stats["min"] <= stats["median"] <= stats["max"]
    assert stats["min"] <= stats["avg"] <= stats["max"] and stats["init"] > 0
    match = PERF.search(capsys.readouterr().out)
    assert match and float(match.group(5)) == pytest.approx(stats["avg"], abs=1e-3)


def test_resolve_input_shape() -> None:
    resolve = deploy_bench.resolve_input_shape
    assert resolve([1, 3, 64, 64], None) == [1, 3, 64, 64]
    assert resolve([-1, 3, -1, -1], [2, 3, 32, 64]) == [2, 3, 32, 64]
    with pytest.raises(ValueError, match="dynamic input"):
        resolve([1, 3, -1, -1], None)
    with pytest.raises(ValueError, match="differs from the exported"):
        resolve([1, 3, 64, 64], [1, 3, 32, 32])


@pytest.mark.slow
def test_benchmark_sh_python_backend(exported_dir, tmp_path) -> None:
    """The script drives deploy/python/benchmark.py (both backends are tested above)."""
    out = tmp_path / "results.txt"
    proc = bench_sh(
        exported_dir, "--backend", "onnxruntime", "--warmup", "1", "--repeats", "3",
        "--threads", "1", "--out", str(out),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    match = PERF.search(proc.stdout)
    assert match, proc.stdout
    lines = out.read_text().splitlines()
    assert lines[0].startswith("# date model_dir backend") and len(lines) == 2
    fields = lines[1].split()
    assert fields[1:7] == [exported_dir, "onnxruntime", "1", "1,3,96,96", "1", "3"]
    assert fields[7:12] == list(match.groups())
    import onnxruntime  # noqa: PLC0415

    machine = [platform.machine(), str(len(os.sched_getaffinity(0)))]
    assert fields[12:] == [*machine, f"onnxruntime-{onnxruntime.__version__}"]
    assert proc.stdout.startswith(f"machine: {machine[0]}, "), proc.stdout


def test_benchmark_sh_lite(exported_dir, tmp_path) -> None:
    # Without --benchmark_bin, Paddle Lite's Python API runs the export's Lite model.
    proc = bench_sh(exported_dir, "--backend", "lite")
    assert proc.returncode == 2 and "no Paddle Lite float model" in proc.stderr
    model_dir = tmp_path / "lite"
    shutil.copytree(exported_dir, model_dir)
    tool = fake_tool(
        tmp_path / "benchmark_bin",
        "======= Perf Info =======\nTime(unit: ms):\n"
        "init  = 10.5\nfirst = 30.25\nmin   = 20.0\nmax   = 22.0\navg   = 21.0",
    )
    proc = bench_sh(str(model_dir), "--backend", "lite", "--benchmark_bin", tool)
    assert proc.returncode == 2 and "no .nb model" in proc.stderr
    (model_dir / "model.nb").write_bytes(b"\0")
    out = tmp_path / "results.txt"
    for _ in range(2):
        proc = bench_sh(
            str(model_dir), "--backend", "lite", "--benchmark_bin", tool, "--threads", "4",
            "--out", str(out),
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
    assert "--optimized_model_file=" in proc.stdout and "--input_shape=1,3,96,96" in proc.stdout
    assert "--threads=4" in proc.stdout
    lines = out.read_text().splitlines()
    assert len(lines) == 3 and lines[0].startswith("# date")
    assert lines[2].split()[2:] == ["lite", "4", "1,3,96,96", "20", "50"] + [
        "10.5", "30.25", "20.0", "22.0", "21.0", platform.machine(),
        str(len(os.sched_getaffinity(0))), "lite",
    ]  # fmt: skip
    assert "; backend: lite (benchmark_bin, arm)" in proc.stdout


def test_benchmark_sh_trtexec(exported_dir, tmp_path) -> None:
    if shutil.which("trtexec") is None:
        proc = bench_sh(exported_dir, "--backend", "trtexec")
        assert proc.returncode == 2 and "install TensorRT" in proc.stderr
    tool = fake_tool(
        tmp_path / "trtexec",
        "=== TensorRT.trtexec [TensorRT v8201] # trtexec\n"
        "[I] Latency: min = 1.5 ms, max = 3.25 ms, mean = 2.0 ms, median = 1.9 ms",
    )
    out, engine = tmp_path / "results.txt", tmp_path / "student.engine"
    proc = bench_sh(exported_dir, "--backend", "trtexec", "--trtexec", tool, "--out", str(out),
                    "--save_engine", str(engine))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    match = PERF.search(proc.stdout)
    assert match and match.groups() == ("n/a", "n/a", "1.500", "3.250", "2.000")
    fields = out.read_text().splitlines()[1].split()
    assert fields[2] == "trtexec" and fields[4] == "1,3,96,96" and fields[-1] == "tensorrt-v8201"
    assert re.search(r"^machine: .*; backend: tensorrt v8201$", proc.stdout, re.M), proc.stdout


def test_benchmark_sh_tensorrt_runs_the_runtime_backend(exported_dir) -> None:
    """``--backend tensorrt`` is seg_runtime's engine (deploy/python/benchmark.py), which
    names what is missing where TensorRT is not installed."""
    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("TensorRT is installed here: the error case cannot be shown")
    proc = bench_sh(exported_dir, "--backend", "tensorrt")
    assert proc.returncode == 2
    assert "error: --backend tensorrt needs the Python package 'tensorrt'" in proc.stderr


def test_benchmark_sh_errors(exported_dir, tmp_path) -> None:
    proc = bench_sh(exported_dir, "--backend", "coreml")
    assert proc.returncode == 2 and "unknown backend coreml" in proc.stderr
    proc = bench_sh(str(tmp_path / "missing"))
    assert proc.returncode == 2 and "model directory not found" in proc.stderr
    proc = bench_sh(exported_dir, "--input_shape", "1x3")
    assert proc.returncode == 2 and "--input_shape must look like" in proc.stderr


def load_tool():
    return load_script("benchmark_tool", "tools/benchmark.py")


@pytest.mark.slow
def test_tools_benchmark(tmp_path, capsys) -> None:
    config = tmp_path / "tiny.yml"
    base = os.path.join(REPO, "configs", "_base_", "shapes.yml")
    model = {
        "type": "TopFormerSeg",
        "num_classes": 6,
        "backbone": {"type": "TopFormerBackbone", "preset": "tiny"},
    }
    config.write_text(yaml.safe_dump({"_base_": base, "model": model}))
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"mIoU": 0.42}))
    csv_path, png = tmp_path / "bench.csv", tmp_path / "bench.png"
    rows = load_tool().main(
        ["--configs", str(config), "--input_shape", "1", "3", "64", "64", "--warmup", "0",
         "--repeats", "2", "--metrics", str(metrics), "--csv", str(csv_path),
         "--plot", str(png)]
    )  # fmt: skip
    row = rows[0]
    assert row["params"] > 1_000_000 and row["flops"] > 0 and row["mIoU"] == 0.42
    for backend in ("paddle", "onnxruntime"):
        assert 0 < row[f"{backend}_median_ms"] <= row[f"{backend}_p90_ms"]
        assert row[f"{backend}_fps"] == pytest.approx(1000 / row[f"{backend}_median_ms"])
    table = capsys.readouterr().out
    assert "tiny" in table and "GFLOPs" in table and "0.4200" in table
    with open(csv_path) as f:
        assert next(csv.DictReader(f))["name"] == "tiny"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_tools_benchmark_errors(tmp_path) -> None:
    tool = load_tool()
    config = os.path.join(REPO, "configs", "demo", "fastscnn_shapes.yml")
    with pytest.raises(ConfigError, match="--plot needs --metrics"):
        tool.main(["--configs", config, "--plot", str(tmp_path / "p.png")])
    with pytest.raises(ConfigError, match="one entry per config"):
        tool.main(["--configs", config, "--metrics", "a.json", "b.json"])
    with pytest.raises(ConfigError, match="--backends"):
        tool.main(["--configs", config, "--backends", "tflite"])
