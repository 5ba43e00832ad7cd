"""Latency of an exported model, printed in the layout of Paddle Lite's benchmark tool.

python deploy/python/benchmark.py MODEL_DIR --backend onnxruntime --threads 1

    machine: x86_64, Intel(R) Xeon(R) Processor, 2 cores; backend: onnxruntime 1.22.0 (...)
    model: MODEL_DIR  backend: onnxruntime  threads: 1
    input_shape: 1,3,512,512  warmup: 20  repeats: 50
    ======= Perf Info =======
    Time(unit: ms):
    init  = 12.345
    first = 6.789
    min   = 4.321
    max   = 5.432
    avg   = 4.567

A ``machine:`` line first names the machine (architecture, CPU model, cores; "emulated on"
an x86 CPU under qemu-user) and the backend's version and execution providers.
``init`` is the time to create the predictor/session, ``first`` the first run, and
min/max/avg cover ``--repeats`` runs after ``--warmup`` untimed ones, on random input.
Needs only NumPy, PyYAML and the backend (no PaddlePaddle for onnxruntime or Paddle Lite).

``--pick`` times every CPU backend installed here that has the export's files
(onnxruntime, OpenVINO, Paddle Inference, Paddle Lite), interleaved run by run at
``--threads``, prints their median and mean, and records the fastest (by median) in
``deploy.yaml`` (``fastest``), which ``--backend auto`` then opens:

python deploy/python/benchmark.py MODEL_DIR --pick --threads 2
python deploy/python/infer.py --model_dir MODEL_DIR --backend auto ...
"""

import argparse
from typing import Dict, List, Optional, Sequence

import numpy as np
from seg_runtime import (
    create_runner,
    format_perf,
    load_deploy,
    measure_latency,
    summarize_ms,
    time_interleaved,
)
from seg_runtime.backends import usable_backends
from seg_runtime.cli import add_backend_args, backend_options, run
from seg_runtime.machine import cpu_description, describe_machine


def resolve_input_shape(exported: Sequence[int], input_shape: Optional[Sequence[int]]) -> List[int]:
    """``input_shape`` if given, else the ``exported`` one; it must have no dynamic size.

    Raises:
        ValueError: Mismatch with a fixed exported size, or a dynamic size left unset.
    """
    exported = [int(v) for v in exported]
    if input_shape is None:
        shape = [1 if i == 0 and v == -1 else v for i, v in enumerate(exported)]
    else:
        shape = [int(v) for v in input_shape]
        if len(shape) != 4:
            raise ValueError(f"--input_shape needs 4 values N,C,H,W, got {shape}")
        clash = [i for i, (e, s) in enumerate(zip(exported, shape)) if -1 < e != s]
        if clash:
            raise ValueError(f"--input_shape {shape} differs from the exported {exported}")
    if any(v <= 0 for v in shape):
        raise ValueError(f"the model has a dynamic input {exported}: pass --input_shape 1,3,H,W")
    return shape


def parse_shape(text: str) -> List[int]:
    """``"1,3,512,512"`` (or ``"1x3x512x512"``) -> [1, 3, 512, 512]."""
    try:
        return [int(v) for v in text.replace("x", ",").split(",")]
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"bad shape {text!r}; expected N,C,H,W") from err


def pick_backend(
    model_dir: str,
    threads: int,
    warmup: int,
    repeats: int,
    input_shape: Optional[Sequence[int]] = None,
    int8: Optional[bool] = None,
) -> dict:
    """Times the usable CPU backends (onnxruntime on its CPU provider) on one random input,
    interleaved, each in the precision ``int8`` asks for (None: the export's default);
    records and returns ``deploy.yaml``'s ``fastest`` entry."""
    deploy = load_deploy(model_dir)
    candidates = usable_backends(deploy, int8=int8)
    if not candidates:
        raise ValueError(f"{model_dir}: no CPU backend installed here can run this export")
    shape = resolve_input_shape(deploy.input_shape, input_shape)
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    runners = {
        b: create_runner(model_dir, b, threads, int8=int8,
                         providers=["CPUExecutionProvider"] if b == "onnxruntime" else None)
        for b in candidates
    }  # fmt: skip
    times = time_interleaved({b: (lambda r=r: r(x)) for b, r in runners.items()}, warmup, repeats)
    stats = {b: summarize_ms(t) for b, t in times.items()}
    print(describe_machine())
    print(f"model: {model_dir}  threads: {threads}  warmup: {warmup}  repeats: {repeats}")
    print(f"{'backend':<12} {'median ms':>10} {'mean ms':>10}")
    for backend, s in sorted(stats.items(), key=lambda item: item[1]["median"]):
        print(f"{backend:<12} {s['median']:>10.3f} {s['avg']:>10.3f}")
    fastest = min(stats, key=lambda b: stats[b]["median"])
    deploy.fastest = {
        "backend": fastest,
        "threads": threads,
        "median_ms": {b: round(s["median"], 3) for b, s in stats.items()},
        "machine": cpu_description(),
    }
    deploy.write(model_dir)
    print(f"fastest: {fastest} (recorded in {model_dir}/deploy.yaml for --backend auto)")
    return deploy.fastest


def main(argv: Optional[List[str]] = None) -> Dict[str, float]:
    """Benchmarks an export directory with one backend and prints the Perf Info block."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", help="Export directory holding deploy.yaml")
    add_backend_args(parser, gpu=False)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--input_shape", type=parse_shape, help="N,C,H,W (dynamic models)")
    parser.add_argument(
        "--pick", action="store_true",
        help="Time every usable CPU backend and record the fastest for --backend auto",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.pick:
        return pick_backend(args.model_dir, args.threads, args.warmup, args.repeats,
                            args.input_shape, args.int8)  # fmt: skip
    deploy = load_deploy(args.model_dir)
    shape = resolve_input_shape(deploy.input_shape, args.input_shape)
    opened = []

    def make_runner():
        opened.append(create_runner(args.model_dir, **backend_options(args)))
        return opened[-1]

    stats = measure_latency(make_runner, shape, args.warmup, args.repeats)
    print(describe_machine(opened[-1]))
    backend = getattr(opened[-1], "name", args.backend)
    print(f"model: {args.model_dir}  backend: {backend}  threads: {args.threads}")
    print(
        f"input_shape: {','.join(map(str, shape))}  warmup: {args.warmup}  repeats: {args.repeats}"
    )
    print(format_perf(stats))
    return stats


if __name__ == "__main__":
    run(main)
