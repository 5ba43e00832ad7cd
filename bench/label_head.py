"""The exact label head (``--output_op exact`` + ``seg_runtime.labelhead``) against the label
heads in the graph, per backend: boundary fraction, head time, model input -> labels time.

Three exports of one model (``--work_dir``, reused when present):

- ``banded``: ``--output_op argmax`` with the default ONNX optimisation, whose label head is
  a banded MatMul interpolation + ArgMax (``export/onnx_optimize.py``);
- ``plain``: the same graph with the label head left as paddle2onnx writes it (Resize +
  ArgMax); the Paddle program of both is the plain one;
- ``exact``: ``--output_op exact``: head-resolution logits, labels made by the runtime;
- ``vim`` (with ``--vim``): ``--output_op vim``, valid-class interpolation in the graph.

For each backend (onnxruntime; Paddle Inference with ``--paddle``) the forms are timed
against each other, interleaved run by run on real images: ``labels`` is the time from the
model input to the labels at the input size (the runner, plus ``exact_labels`` for
``exact``), ``head`` the time of ``exact_labels`` alone. The labels of ``exact`` are compared
with those of ``banded``, and the boundary fraction is the share of pixels it interpolates.
``--exactness`` instead checks every image of ``--images`` against full upsampling + argmax.

    python bench/label_head.py --config configs/camvid/topformer_tiny_camvid.yml \\
        --model_path output/camvid_tiny/iter_800/model.pdparams --input_shape 1 3 384 480 \\
        --images ../shared/data/camvid/images/test --max_images 8 --json /tmp/head.json
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np
import paddle
from seg_runtime import SegPredictor, list_images, read_image, summarize_ms
from seg_runtime.labelhead import exact_labels, mixed_fraction, upsample_logits
from seg_runtime.machine import describe_machine
from seg_runtime.timing import time_interleaved

from paddleseg_ext.config import load_config
from paddleseg_ext.export import export
from paddleseg_ext.export.onnx_optimize import optimize_onnx

FORMS = ("banded", "plain", "exact")
OUTPUT_OP = {"exact": "exact", "vim": "vim"}


def make_exports(args: argparse.Namespace) -> dict[str, str]:
    """The three export folders under ``--work_dir`` (made when missing)."""
    forms = FORMS + (("vim",) if args.vim else ())
    dirs = {form: os.path.join(args.work_dir, form) for form in forms}
    for form, out in dirs.items():
        if os.path.isfile(os.path.join(out, "deploy.yaml")):
            continue
        formats = ["onnx", "paddle"] if args.paddle and form != "plain" else ["onnx"]
        paddle.seed(0)  # without --model_path, every form gets the same random weights
        export(load_config(args.config, "val"), out, model_path=args.model_path,
               input_shape=args.input_shape, output_op=OUTPUT_OP.get(form, "argmax"),
               formats=formats, optimize_onnx=form != "plain", verify=False)  # fmt: skip
        if form == "plain":  # every other optimisation, the label head as written
            optimize_onnx(os.path.join(out, "model.onnx"), label_head=False)
    return dirs


def measure(args: argparse.Namespace, backend: str, dirs: dict[str, str]) -> dict:
    """Times the forms on ``backend`` (Paddle Inference: one program for banded and plain)."""
    forms = [f for f in dirs if backend == "onnxruntime" or f in ("banded", "exact", "vim")]
    images = [read_image(p) for p in list_images(args.images)[: args.max_images]]
    predictors = {f: SegPredictor(dirs[f], backend, args.threads) for f in forms}
    exact = predictors["exact"]
    size, align = exact.input_shape[2:], exact.align_corners
    inputs = [exact.preprocess(image) for image in images]
    logits = [exact.runner(x)[0] for x in inputs]
    fraction = [mixed_fraction(lg, size, align) for lg in logits]
    banded = [predictors["banded"].runner(x).reshape(size) for x in inputs]
    agree = [
        float((exact_labels(lg, size, align) == labels).mean())
        for lg, labels in zip(logits, banded, strict=True)
    ]
    calls = {f: predictors[f].runner for f in forms if f != "exact"}
    calls["exact"] = lambda x: exact_labels(exact.runner(x)[0], size, align)
    current = [0]  # the image the forms take turns on; "_next" moves on to the next one
    runs = {name: (lambda c=call: c(inputs[current[0]])) for name, call in calls.items()}
    runs["head"] = lambda: exact_labels(logits[current[0]], size, align)
    runs["_next"] = lambda: current.__setitem__(0, (current[0] + 1) % len(inputs))
    times = time_interleaved(runs, args.warmup, args.repeats)
    del times["_next"]
    result = {
        "machine": describe_machine(predictors["banded"].runner),
        "images": len(images),
        "boundary_fraction": float(np.mean(fraction)),
        "label_agreement_exact_vs_banded": min(agree),
        "ms": {name: summarize_ms(seconds) for name, seconds in times.items()},
    }
    base = result["ms"]["banded"]["median"]
    print(f"\n{backend}: {result['machine']}")
    print(f"boundary fraction {result['boundary_fraction']:.4f}, exact vs banded labels: "
          f"worst image {100 * min(agree):.4f}% equal")  # fmt: skip
    print(f"{'form':<8}{'median ms':>10}{'p90 ms':>9}{'vs banded':>10}")
    for name, stats in result["ms"].items():
        print(f"{name:<8}{stats['median']:>10.2f}{stats['p90']:>9.2f}"
              f"{stats['median'] / base:>10.2f}")  # fmt: skip
    return result


def exactness(args: argparse.Namespace, dirs: dict[str, str]) -> dict:
    """Every image of ``--images``: the exact head's labels against full upsampling + argmax
    in NumPy (equality expected) and against the banded in-graph head (onnxruntime)."""
    exact = SegPredictor(dirs["exact"], "onnxruntime", args.threads)
    banded = SegPredictor(dirs["banded"], "onnxruntime", args.threads)
    size, align = exact.input_shape[2:], exact.align_corners
    equal, agreement, fraction = 0, [], []
    paths = list_images(args.images)
    for path in paths:
        x = exact.preprocess(read_image(path))
        logits = exact.runner(x)[0]
        labels = exact_labels(logits, size, align)
        equal += bool(np.array_equal(labels, upsample_logits(logits, size, align).argmax(0)))
        agreement.append(float((labels == banded.runner(x).reshape(size)).mean()))
        fraction.append(mixed_fraction(logits, size, align))
    result = {
        "images": len(paths),
        "equal_to_full_upsampling": equal,
        "agreement_with_banded_min": min(agreement),
        "agreement_with_banded_mean": float(np.mean(agreement)),
        "boundary_fraction_mean": float(np.mean(fraction)),
    }
    print(f"\nexactness on {len(paths)} images: {equal} equal to full upsampling + argmax; "
          f"against the banded head {100 * min(agreement):.4f}% (worst image), "
          f"{100 * np.mean(agreement):.4f}% (mean); boundary fraction "
          f"{np.mean(fraction):.4f}")  # fmt: skip
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--model_path", help="Weights (default: random, warned)")
    parser.add_argument("--input_shape", type=int, nargs=4, required=True)
    parser.add_argument("--images", required=True, help="Folder of real images")
    parser.add_argument("--max_images", type=int, default=8)
    parser.add_argument("--work_dir", default="/tmp/label_head")
    parser.add_argument("--paddle", action="store_true", help="Paddle Inference too")
    parser.add_argument("--vim", action="store_true", help="Add the VIM export")
    parser.add_argument(
        "--exactness", action="store_true", help="Check every image of --images, time nothing"
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--json", help="Write the results here")
    args = parser.parse_args(argv)
    dirs = make_exports(args)
    if args.exactness:
        return exactness(args, dirs)
    backends = ["onnxruntime"] + (["paddle"] if args.paddle else [])
    results = {b: measure(args, b, dirs) for b in backends}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return results


if __name__ == "__main__":
    main()
