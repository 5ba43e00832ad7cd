"""Package an export as an LPCVC-style solution: one ``.pyz`` with the model and the runtime.

python tools/package_solution.py --model_dir output/export [--postprocess stats.json] \
    [--backend auto|tensorrt|onnxruntime] [--engine model.engine] --out solution.pyz
python3 solution.pyz -i IMG_DIR -o OUT_DIR     # prints the total forward seconds

The archive holds the ONNX model, ``deploy/python/seg_runtime``, the post-processing
statistics and, with ``--engine``, a TensorRT engine built on the target board; at run time
it needs Python >= 3.6, NumPy, OpenCV and its backend (``auto``: TensorRT when importable,
else onnxruntime). See docs/lpcvc.md.
"""

from __future__ import annotations

import argparse
import os

from seg_runtime.cli import add_postprocess_args, run
from seg_runtime.solution import SOLUTION_BACKENDS, build_solution


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_dir", required=True, help="Export directory (deploy.yaml)")
    parser.add_argument("--out", default="solution.pyz", help="The .pyz to write")
    parser.add_argument(
        "--backend", choices=SOLUTION_BACKENDS, default="auto",
        help="Runtime on the board (auto: TensorRT when importable, else onnxruntime)",
    )  # fmt: skip
    parser.add_argument(
        "--engine", metavar="FILE",
        help="Pack this TensorRT engine (built on the board); rebuilt there if unusable",
    )  # fmt: skip
    add_postprocess_args(parser, "Post-process with these tools/analyze_dataset.py statistics")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> str:
    args = parse_args(argv)
    out = build_solution(
        args.model_dir,
        args.out,
        args.postprocess,
        args.pp_factor,
        args.pp_background,
        args.backend,
        args.engine,
    )
    print(f"Wrote {out} ({os.path.getsize(out) / 1e6:.2f} MB): python3 {out} -i IMG_DIR -o OUT_DIR")
    return out


if __name__ == "__main__":
    run(main)
