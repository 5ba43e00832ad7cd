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
"""

import argparse
from typing import Dict, List, Optional, Sequence

from seg_runtime import create_runner, format_perf, load_deploy, measure_latency
from seg_runtime.cli import add_backend_args, backend_options, run
from seg_runtime.machine import describe_machine


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


def main(argv: Optional[List[str]] = None) -> Dict[str, float]:
    """Benchmarks an export directory with one backend and prints the Perf Info block."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", help="Export directory holding deploy.yaml")
    add_backend_args(parser, gpu=False)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--input_shape", type=parse_shape, help="N,C,H,W (dynamic models)")
    args = parser.parse_args(argv)
    deploy = load_deploy(args.model_dir)
    shape = resolve_input_shape(deploy.input_shape, args.input_shape)
    opened = []

    def make_runner():
        opened.append(create_runner(args.model_dir, **backend_options(args)))
        return opened[-1]

    stats = measure_latency(make_runner, shape, args.warmup, args.repeats)
    print(describe_machine(opened[-1]))
    print(f"model: {args.model_dir}  backend: {args.backend}  threads: {args.threads}")
    print(
        f"input_shape: {','.join(map(str, shape))}  warmup: {args.warmup}  repeats: {args.repeats}"
    )
    print(format_perf(stats))
    return stats


if __name__ == "__main__":
    run(main)
