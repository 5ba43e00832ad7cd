"""Export a model for deployment: Paddle Inference (PIR json), ONNX, Paddle Lite and deploy.yaml.

python tools/export.py --config X.yml --model_path output/best_model/model.pdparams \
    --save_dir output/export --input_shape 1 3 512 512 --output_op argmax

With ``--quantize int8 --calib_images 32`` it also writes ``model_int8.onnx`` (static INT8
quantization calibrated on 32 training images) and points ``deploy.yaml`` at it, and with
``--formats lite`` ``model_int8.nb`` (PaddleSlim post-training quantization + opt).

Options that cannot give a correct export stop before anything is written (exit status 2).
The files are written and checked in ``SAVE_DIR.tmp-<pid>``, which replaces ``SAVE_DIR``
only when everything succeeded: a failed or interrupted export leaves a previous one as it
was.
"""

from __future__ import annotations

import argparse
import sys

import paddleseg_ext  # noqa: F401
from paddleseg_ext.cli import add_config_args, run, setup_device
from paddleseg_ext.config import load_config
from paddleseg_ext.export import (
    DEFAULT_FORMATS,
    MIN_AGREEMENT,
    OUTPUT_OPS,
    ExportResult,
    export,
)
from paddleseg_ext.quant import (
    CALIB_METHODS,
    DEFAULT_CALIB_IMAGES,
    QUANT_MODES,
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_config_args(parser)
    parser.add_argument("--model_path", help="model.pdparams or its folder (default: random)")
    parser.add_argument("--save_dir", default="output/export", help="Output directory")
    parser.add_argument(
        "--input_shape",
        nargs=4,
        type=int,
        metavar=("N", "C", "H", "W"),
        help="Input shape; -1 for a dynamic N/H/W (default: val Resize size or 512x512)",
    )
    parser.add_argument("--output_op", choices=OUTPUT_OPS, default="argmax", help="Output op")
    parser.add_argument(
        "--formats", default=",".join(DEFAULT_FORMATS), help="Comma list of paddle,onnx,lite"
    )
    parser.add_argument("--opset", type=int, default=13, help="ONNX opset version")
    parser.add_argument("--no_verify", action="store_true", help="Skip the export check")
    parser.add_argument(
        "--no_optimize_onnx",
        action="store_true",
        help="Keep paddle2onnx's graph as written (no folding, label-head or resize rewrite; "
        "docs/performance.md)",
    )
    parser.add_argument("--threads", type=int, default=1, help="CPU threads of the check")
    parser.add_argument(
        "--quantize",
        choices=QUANT_MODES,
        help="Also write post-training quantized ONNX / Paddle Lite models",
    )
    parser.add_argument(
        "--calib_images",
        type=int,
        default=DEFAULT_CALIB_IMAGES,
        help="Training images used to calibrate --quantize",
    )
    parser.add_argument(
        "--calib_method", choices=CALIB_METHODS, default="minmax", help="Activation ranges"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> ExportResult:
    """Exports as the command line says; exits 1 when a conversion or the check fails."""
    args = parse_args(argv)
    setup_device("cpu" if args.device is None else args.device)
    cfg = load_config(args.config, "val", opts=args.opts)
    try:
        result = export(
            cfg,
            args.save_dir,
            model_path=args.model_path,
            input_shape=args.input_shape,
            output_op=args.output_op,
            formats=args.formats,
            opset=args.opset,
            verify=not args.no_verify,
            threads=args.threads,
            optimize_onnx=not args.no_optimize_onnx,
            quantize=args.quantize,
            calib_images=args.calib_images,
            calib_method=args.calib_method,
        )
    except RuntimeError as err:  # a conversion or a backend failed: say which, exit 1
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
    if not result.passed:
        print(
            f"error: exported outputs agree with the dygraph model on less than "
            f"{100 * MIN_AGREEMENT:.1f}% of pixels: {result.checks}; nothing was written to "
            f"{args.save_dir}",
            file=sys.stderr,
        )
        sys.exit(1)
    return result


if __name__ == "__main__":
    run(main)
