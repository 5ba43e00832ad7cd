"""Inference latency of the exported models on this CPU, against its measured peak.

For each model (the LPCVC student, TopFormer-tiny and PP-MobileSeg-tiny on LPCVC, 14 classes,
1x3x512x512, random weights; ``student_vim``: the student exported with valid-class
interpolation; ``student_exact``: with ``--output_op exact``, low-resolution logits out and
the labels made by the runtime) and each thread count, one run times, interleaved run by run:

- ``before``: the runtime given by ``--baseline_runtime`` (a ``deploy/python`` folder of an
  older checkout, e.g. ``git archive HEAD deploy/python | tar -x -C /tmp/base``) on the
  graph as paddle2onnx writes it (``optimize_onnx=False``);
- ``after``: this checkout's runtime on the optimised graph (``optimize_onnx=True``);
- ``raw``: this checkout's runtime on paddle2onnx's graph (the backends that read ONNX);

each with the backends of ``--backends`` (onnxruntime, Paddle Inference, OpenVINO in
float32, and ``openvino_native``: OpenVINO at its default precision, bfloat16 where the CPU
has it), model only (``runner(x)``) and end to end (a 512x512 BGR uint8 image in, labels at
the image size out: ``SegPredictor``; the image is the first CamVid test image resized to
512x512 when ``../shared/data/camvid`` is there, else random pixels: the exact head's work
depends on the image); ``--together`` interleaves all the models of ``--models`` in one run.
The script also measures the machine's float32 peak (a 2048^3 matrix product,
numpy/OpenBLAS and onnxruntime/MLAS, on 1 and 2 threads), counts each model's FLOPs (mmcv
convention: one per multiply-add, ``paddleseg_ext.models.complexity``) and prints the
achieved GFLOP/s (2 per multiply-add) and the FLOP lower bound. ``--profile`` adds
onnxruntime's per-op profile of the graph before and after, summed by op type;
``--ort_options`` times the runtime's onnxruntime session options against single changes of
them (``ORT_OPTION_VARIANTS``) on the optimised graph.

Exports are written to ``--work_dir`` (reused when present), so that the timing alone can
run under a lock:

    python bench/latency.py --work_dir /tmp/latency --export_only
    flock /tmp/pse-bench.lock python bench/latency.py --work_dir /tmp/latency \\
        --baseline_runtime /tmp/base/deploy/python --profile --json /tmp/latency.json
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import json
import os
import sys
import time
from collections.abc import Callable

import cv2
import numpy as np
import paddle
from seg_runtime import OrtRunner, SegPredictor, load_deploy, read_image, summarize_ms
from seg_runtime.backends import ort_session_options
from seg_runtime.timing import time_runs

import paddleseg_ext  # noqa: F401  (registers the components)
from paddleseg_ext.config import build, load_config
from paddleseg_ext.export import export
from paddleseg_ext.models.complexity import count_flops

# name -> (config, export output op); student_vim is the student with valid-class
# interpolation (``--output_op vim``) instead of full bilinear upsampling + argmax.
MODELS = {
    "student": ("configs/lpcvc/topformer_tiny_lpcvc_288.yml", "argmax"),
    "topformer": ("configs/lpcvc/topformer_tiny_lpcvc_512.yml", "argmax"),
    "mobileseg": ("configs/lpcvc/pp_mobileseg_tiny_lpcvc_512.yml", "argmax"),
    "student_vim": ("configs/lpcvc/topformer_tiny_lpcvc_288.yml", "vim"),
    "student_exact": ("configs/lpcvc/topformer_tiny_lpcvc_288.yml", "exact"),
}
BACKENDS = ("onnxruntime", "paddle", "openvino", "openvino_native")
# Backends that read the ONNX model, and so also run paddle2onnx's graph ("raw"); Paddle
# Inference runs the same Paddle program in both exports.
ONNX_BACKENDS = ("onnxruntime", "openvino", "openvino_native")
SHAPE = [1, 3, 512, 512]
CAMVID_TEST = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "camvid", "images",
    "test",
)  # fmt: skip
PEAK_SIZE = 2048
# Single changes to the runtime's onnxruntime session options (``OrtRunner``), by name.
ORT_OPTION_VARIANTS = {
    "spinning": {"config": {"session.intra_op.allow_spinning": "1"}},
    "extended": {"graph_optimization_level": "ORT_ENABLE_EXTENDED"},
    "basic": {"graph_optimization_level": "ORT_ENABLE_BASIC"},
    "no_mem_pattern": {"enable_mem_pattern": False},
    "no_arena": {"enable_cpu_mem_arena": False},
    "parallel": {"execution_mode": "ORT_PARALLEL", "inter_op_num_threads": 2},
}
# Seconds between two timed calls: onnxruntime's spinning worker threads of one variant
# must not run into the next variant's call.
PAUSE = 0.005


def load_runtime(path: str):
    """The ``seg_runtime`` package under ``path`` (a ``deploy/python`` folder), renamed."""
    name = "seg_runtime_baseline"
    init = os.path.join(path, "seg_runtime", "__init__.py")
    if not os.path.isfile(init):
        raise FileNotFoundError(f"--baseline_runtime: no seg_runtime package in {path}")
    spec = importlib.util.spec_from_file_location(
        name, init, submodule_search_locations=[os.path.dirname(init)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def measure_peak(threads: int, repeats: int = 8) -> dict[str, float]:
    """Best float32 GFLOP/s of a PEAK_SIZE^3 matrix product: numpy (BLAS) and onnxruntime."""
    from onnx import TensorProto, helper
    from threadpoolctl import threadpool_limits

    n = PEAK_SIZE
    rng = np.random.default_rng(0)
    a = rng.random((n, n), dtype=np.float32)
    b = rng.random((n, n), dtype=np.float32)
    flop = 2.0 * n**3
    with threadpool_limits(threads):
        numpy_best = min(time_runs(lambda: a @ b, 2, repeats))
    spec = [helper.make_tensor_value_info(k, TensorProto.FLOAT, [n, n]) for k in "ab"]
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["c"])],
        "matmul",
        spec,
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [n, n])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    runner = OrtRunner(model.SerializeToString(), threads, ["CPUExecutionProvider"])
    feed = {"a": a, "b": b}
    ort_best = min(time_runs(lambda: runner.session.run(None, feed), 2, repeats))
    return {"numpy": flop / numpy_best / 1e9, "onnxruntime": flop / ort_best / 1e9}


def export_model(config: str, output_op: str, work_dir: str, name: str) -> dict[str, str]:
    """Exports ``config`` twice (paddle2onnx's graph, the optimised one); returns the dirs."""
    dirs = {"before": os.path.join(work_dir, f"{name}_raw"), "after": os.path.join(work_dir, name)}
    for stage, directory in dirs.items():
        if os.path.isfile(os.path.join(directory, "deploy.yaml")):
            continue
        paddle.seed(0)  # the same random weights in both exports (VIM's cost depends on them)
        result = export(
            load_config(config, "val"),
            directory,
            input_shape=SHAPE,
            output_op=output_op,
            optimize_onnx=stage == "after",
            verify=stage == "after",
        )
        if not result.passed:
            raise RuntimeError(f"{name}: the export check failed: {result.checks}")
    return dirs


def option_runner(onnx_file: str, threads: int, change: dict) -> OrtRunner:
    """An ``OrtRunner`` whose session options differ from the runtime's by ``change``."""
    import onnxruntime as ort

    options = ort_session_options(threads)
    for key, value in change.items():
        if key == "config":
            for entry, setting in value.items():
                options.add_session_config_entry(entry, setting)
        elif key == "graph_optimization_level":
            options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, value)
        elif key == "execution_mode":
            options.execution_mode = getattr(ort.ExecutionMode, value)
        else:
            setattr(options, key, value)
    return OrtRunner(onnx_file, threads, ["CPUExecutionProvider"], options)


def ort_profile(onnx_file: str, threads: int, x: np.ndarray, runs: int) -> dict[str, float]:
    """onnxruntime kernel time per run by op type (ms), from its per-node profile."""
    change = {"enable_profiling": True, "profile_file_prefix": "ort_profile"}
    runner = option_runner(onnx_file, threads, change)
    for _ in range(runs):
        runner(x)
    path = runner.session.end_profiling()
    with open(path) as f:
        events = json.load(f)
    os.remove(path)
    totals: dict[str, float] = collections.Counter()
    model_runs = sum(1 for e in events if e.get("name") == "model_run")
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            totals[event["args"]["op_name"]] += event["dur"] / 1000.0
    return {op: ms / model_runs for op, ms in sorted(totals.items(), key=lambda kv: -kv[1])}


def interleave(runs: dict[str, Callable[[], object]], warmup: int, repeats: int) -> dict:
    """Times the calls in turns, ``PAUSE`` apart; returns ``summarize_ms`` per name.

    Each round calls every variant once, in an order shuffled per round (seeded), so that
    load from other processes that comes and goes with some period hits all of them alike.
    """
    for run in runs.values():
        time_runs(run, warmup, 1)
    names = list(runs)
    rng = np.random.default_rng(0)
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for i in rng.permutation(len(names)):
            time.sleep(PAUSE)
            seconds[names[i]] += time_runs(runs[names[i]], 0, 1)
    return {name: summarize_ms(values) for name, values in seconds.items()}


def test_image() -> np.ndarray:
    """The end-to-end input: the first CamVid test image at 512x512, else random pixels."""
    if os.path.isdir(CAMVID_TEST):
        image = read_image(os.path.join(CAMVID_TEST, sorted(os.listdir(CAMVID_TEST))[0]))
        return cv2.resize(image, (SHAPE[3], SHAPE[2]), interpolation=cv2.INTER_AREA)
    return np.random.default_rng(0).integers(0, 256, (SHAPE[2], SHAPE[3], 3), dtype=np.uint8)


def open_runner(runtime, directory: str, backend: str, threads: int):
    """``runtime.create_runner``; ``openvino_native``: OpenVINO at its own default precision
    (bfloat16 on CPUs with AVX512-BF16 or AMX) instead of the runtime's float32."""
    if backend != "openvino_native":
        return runtime.create_runner(directory, backend, threads)
    from seg_runtime.backends import OvRunner

    onnx_file = os.path.join(directory, load_deploy(directory).model_file("onnx"))
    return OvRunner(onnx_file, threads, precision=None)


def bench_models(
    exports: dict[str, dict[str, str]],
    threads: int,
    baseline,
    warmup: int,
    repeats: int,
    backends: list[str],
) -> dict[str, dict]:
    """Median/p90 of every (model, stage, backend, scope) variant at ``threads``, interleaved.

    Stages: ``after`` (this runtime, the optimised export), ``raw`` (this runtime on
    paddle2onnx's graph, ONNX backends only) and, with a baseline runtime, ``before`` (it on
    paddle2onnx's graph).
    """
    image = test_image()
    current = sys.modules["seg_runtime"]
    stages = {"after": (current, "after"), "raw": (current, "before")}
    if baseline is not None:
        stages["before"] = (baseline, "before")
    runs = {}
    for model, dirs in exports.items():
        for stage, (runtime, export_stage) in stages.items():
            for backend in backends:
                if stage == "raw" and backend not in ONNX_BACKENDS:
                    continue
                if stage == "before" and backend not in runtime.BACKENDS:
                    continue
                runner = open_runner(runtime, dirs[export_stage], backend, threads)
                deploy = load_deploy(dirs[export_stage])
                predictor = runtime.SegPredictor.from_runner(deploy, runner)
                x = np.ascontiguousarray(predictor.preprocess(image))
                runs[f"{model}/{stage}/{backend}/model"] = lambda r=runner, x=x: r(x)
                runs[f"{model}/{stage}/{backend}/e2e"] = lambda p=predictor: p(image)
    return interleave(runs, warmup, repeats)


def bench_ort_options(directory: str, threads: int, warmup: int, repeats: int) -> dict[str, dict]:
    """The runtime's onnxruntime options against each ``ORT_OPTION_VARIANTS`` change."""
    deploy = load_deploy(directory)
    onnx_file = os.path.join(directory, deploy.model_file("onnx"))
    image = test_image()
    runners = {"runtime": OrtRunner(onnx_file, threads, ["CPUExecutionProvider"])}
    runners.update(
        {k: option_runner(onnx_file, threads, v) for k, v in ORT_OPTION_VARIANTS.items()}
    )
    runs = {}
    for name, runner in runners.items():
        predictor = SegPredictor.from_runner(deploy, runner)
        x = np.ascontiguousarray(predictor.preprocess(image))
        runs[f"{name}/model"] = lambda r=runner, x=x: r(x)
        runs[f"{name}/e2e"] = lambda p=predictor: p(image)
    return interleave(runs, warmup, repeats)


def format_rows(rows: list[dict]) -> str:
    """A fixed-width table of the timing rows."""
    header = ["model", "thr", "backend", "scope", "stage", "median ms", "p90 ms", "GFLOP/s", "x LB"]
    table = [header]
    for r in rows:
        table.append(
            [r["model"], str(r["threads"]), r["backend"], r["scope"], r["stage"]]
            + [f"{r['median']:.2f}", f"{r['p90']:.2f}", f"{r['gflops']:.1f}", f"{r['x_bound']:.1f}"]
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in table
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work_dir", required=True, help="Exports (written when missing)")
    parser.add_argument(
        "--models", default=",".join(MODELS), help="Comma list of " + ",".join(MODELS)
    )
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--backends", default="onnxruntime,paddle", help="Comma list of " + ",".join(BACKENDS)
    )
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--baseline_runtime", help="deploy/python folder of the 'before' runtime")
    parser.add_argument("--export_only", action="store_true", help="Export, then stop")
    parser.add_argument("--profile", action="store_true", help="onnxruntime per-op profiles")
    parser.add_argument(
        "--ort_options", action="store_true", help="Time onnxruntime session option variants"
    )
    parser.add_argument(
        "--together", action="store_true", help="Interleave all --models in one run"
    )
    parser.add_argument(
        "--skip_backends", action="store_true", help="Only the peak, --profile, --ort_options"
    )
    parser.add_argument("--json", help="Write every figure to this JSON file")
    args = parser.parse_args(argv)
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in args.models if m not in MODELS]
    if unknown:
        parser.error(f"unknown --models {unknown}; choose from {', '.join(MODELS)}")
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = [b for b in args.backends if b not in BACKENDS]
    if unknown:
        parser.error(f"unknown --backends {unknown}; choose from {', '.join(BACKENDS)}")
    return args


def main(argv: list[str] | None = None) -> dict:
    """Exports, then times and profiles as the arguments say; returns the report."""
    args = parse_args(argv)
    os.makedirs(args.work_dir, exist_ok=True)
    exports = {m: export_model(*MODELS[m], args.work_dir, m) for m in args.models}
    if args.export_only:
        return {}
    baseline = load_runtime(args.baseline_runtime) if args.baseline_runtime else None
    report: dict = {"load_before": os.getloadavg(), "peak": {}, "flops": {}, "rows": []}
    for threads in args.threads:
        report["peak"][threads] = measure_peak(threads)
        print(f"peak, {threads} thread(s): {report['peak'][threads]} GFLOP/s")
    for model in args.models:
        cfg = load_config(MODELS[model][0], "val")
        report["flops"][model] = count_flops(build(cfg).model, SHAPE)
        print(f"{model}: {report['flops'][model] / 1e9:.3f} GMAC (mmcv 'FLOPs')")
    groups = [args.models] if args.together else [[m] for m in args.models]
    for group in groups if not args.skip_backends else ():
        for threads in args.threads:
            peak = max(report["peak"][threads].values())
            chosen = {m: exports[m] for m in group}
            stats = bench_models(
                chosen, threads, baseline, args.warmup, args.repeats, args.backends
            )
            for key, s in stats.items():
                model, stage, backend, scope = key.split("/")
                flop = 2.0 * report["flops"][model]
                row = {"model": model, "threads": threads, "backend": backend, "scope": scope}
                row.update(stage=stage, median=s["median"], p90=s["p90"])
                row.update(
                    gflops=flop / s["median"] / 1e6, x_bound=s["median"] / (flop / peak / 1e6)
                )
                report["rows"].append(row)
            print(f"{','.join(group)}, {threads} thread(s) done, load {os.getloadavg()[0]:.2f}")
    if report["rows"]:
        print(format_rows(report["rows"]))
    if args.ort_options:
        report["ort_options"] = {}
        for model in args.models:
            for threads in args.threads:
                stats = bench_ort_options(
                    exports[model]["after"], threads, args.warmup, args.repeats
                )
                report["ort_options"][f"{model}/{threads}"] = stats
                for key, s in stats.items():
                    median, p90 = s["median"], s["p90"]
                    print(f"options {model} {threads}t {key}: {median:.2f} ms (p90 {p90:.2f})")
    report["load_after"] = os.getloadavg()
    if args.profile:
        report["profile"] = {}
        x = np.random.default_rng(0).standard_normal(SHAPE).astype(np.float32)
        for model in args.models:
            for threads in args.threads:
                for stage, directory in exports[model].items():
                    onnx_file = os.path.join(directory, load_deploy(directory).model_file("onnx"))
                    ops = ort_profile(onnx_file, threads, x, args.repeats)
                    report["profile"][f"{model}/{threads}/{stage}"] = ops
                    top = ", ".join(f"{op} {ms:.2f}" for op, ms in list(ops.items())[:8])
                    print(f"profile {model} {threads}t {stage}: {sum(ops.values()):.2f} ms: {top}")
    print(f"load average before {report['load_before']}, after {report['load_after']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    return report


if __name__ == "__main__":
    main()
