"""Command-line plumbing of the runtime's scripts: the error wrapper and the flag groups
that ``infer.py``, ``benchmark.py``, the web demo and ``tools/package_solution.py`` share."""

import argparse
import sys
from typing import Callable, Optional

from .backends import AUTO, BACKENDS
from .postprocess import MIN_SIZE_FACTOR, PostProcessor
from .tensorrt_engine import PRECISIONS

# Bad input (a missing file, a malformed deploy.yaml, a backend that is not installed).
INPUT_ERRORS = (FileNotFoundError, ValueError, ImportError)


def run(main: Callable[[], object]) -> None:
    """Runs a script's ``main``; input errors print one line and exit with status 2."""
    try:
        main()
    except INPUT_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


def add_backend_args(parser: argparse.ArgumentParser, *, gpu: bool = True, int8: bool = True):
    """``--backend``, ``--threads``, ``--cpu_only``, the TensorRT engine flags and, where the
    script can use them, ``--use_gpu`` (Paddle Inference) and ``--int8`` (Paddle Lite)."""
    group = parser.add_argument_group("backend")
    group.add_argument(
        "--backend", choices=(*BACKENDS, AUTO), default="onnxruntime",
        help="Runtime (auto: the fastest that benchmark.py --pick recorded in deploy.yaml)",
    )  # fmt: skip
    group.add_argument("--threads", type=int, default=1, help="CPU threads")
    group.add_argument(
        "--cpu_only", action="store_true", help="onnxruntime: CPU provider only (no TensorRT)"
    )
    if gpu:
        group.add_argument("--use_gpu", action="store_true", help="Paddle Inference on GPU")
    if int8:
        group.add_argument(
            "--int8", action="store_true", default=None,
            help="The INT8 model (default: the export's; onnxruntime: INT8 once quantized)",
        )  # fmt: skip
    group.add_argument(
        "--trt_precision", choices=PRECISIONS, default="auto",
        help="TensorRT engine precision (auto: FP16 where the GPU has it, else FP32)",
    )  # fmt: skip
    group.add_argument(
        "--trt_engine", metavar="FILE",
        help="TensorRT: a prebuilt engine, rebuilt from the ONNX model if unusable here",
    )  # fmt: skip
    group.add_argument(
        "--trt_calib_dir", metavar="IMAGE_DIR", help="TensorRT INT8: calibration images"
    )


def backend_options(args: argparse.Namespace) -> dict:
    """The keyword arguments of ``create_runner``/``SegPredictor`` after ``model_dir``."""
    options = {
        "backend": args.backend,
        "threads": args.threads,
        "providers": ["CPUExecutionProvider"] if args.cpu_only else None,
        "trt_precision": args.trt_precision,
        "trt_engine": args.trt_engine,
        "trt_calib_dir": args.trt_calib_dir,
    }
    for flag in ("use_gpu", "int8"):
        if hasattr(args, flag):
            options[flag] = getattr(args, flag)
    return options


def add_postprocess_args(parser: argparse.ArgumentParser, help: str) -> None:
    """``--postprocess STATS_JSON`` (``help`` says what it does there), ``--pp_factor``,
    ``--pp_background``."""
    group = parser.add_argument_group("post-processing")
    group.add_argument("--postprocess", metavar="STATS_JSON", help=help)
    group.add_argument(
        "--pp_factor", type=float, default=MIN_SIZE_FACTOR,
        help="Minimum-size rule: share of min_pixels",
    )  # fmt: skip
    group.add_argument("--pp_background", type=int, default=0, help="Background class id")


def postprocessor(args: argparse.Namespace) -> Optional[PostProcessor]:
    """The post-processing the flags ask for, or None without ``--postprocess``."""
    if not args.postprocess:
        return None
    return PostProcessor.from_stats(args.postprocess, args.pp_factor, args.pp_background)
