"""onnxruntime 1.14-1.18: which session setting keeps every run's labels right, and its cost.

These releases give wrong values from the second run of a session when memory patterns are
on (docs/deployment.md, "ARM boards and onnxruntime versions"). This
script times, interleaved run by run on one real image, and checks the labels of every run
on a set of images for:

- ``default``: ORT_ENABLE_ALL with memory patterns (onnxruntime's default);
- ``no_mem_pattern``: ORT_ENABLE_ALL without memory patterns (what the runtime does there);
- ``extended``: ORT_ENABLE_EXTENDED (no layout transforms, no Conv + Add fusion);
- ``no_sum_fusions``: ORT_ENABLE_ALL without ``ConvAddActivationFusion`` and
  ``NchwcTransformer``, the two optimisations that give a Conv a residual input.

The reference labels of an image are the first run of a fresh ``default`` session (right
on every tested release). Needs only the device runtime (NumPy, OpenCV, onnxruntime), so it
runs on a board or the emulated one (``make arm-env``):

    python bench/ort_session_fix.py MODEL_DIR --images IMG_DIR --threads 1
    .arm-env/bin/python-ort-1.17.3 bench/ort_session_fix.py MODEL_DIR --images IMG_DIR
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

# The device runtime, also where it is not installed (a board).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../deploy/python"))
from seg_runtime import SegPredictor, list_images, load_deploy, read_image  # noqa: E402
from seg_runtime.machine import describe_machine  # noqa: E402
from seg_runtime.timing import summarize_ms, time_interleaved  # noqa: E402

SETTINGS = {
    "default": ("ORT_ENABLE_ALL", True, ()),
    "no_mem_pattern": ("ORT_ENABLE_ALL", False, ()),
    "extended": ("ORT_ENABLE_EXTENDED", True, ()),
    "no_sum_fusions": ("ORT_ENABLE_ALL", True, ("ConvAddActivationFusion", "NchwcTransformer")),
}


def make_runner(onnx_file: str, setting: str, threads: int):
    """A ``runner(x) -> first output`` on a session with ``SETTINGS[setting]``."""
    import onnxruntime as ort  # noqa: PLC0415

    level, mem_pattern, disabled = SETTINGS[setting]
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    options.enable_mem_pattern = mem_pattern
    options.log_severity_level = 3
    session = ort.InferenceSession(
        onnx_file, options, providers=["CPUExecutionProvider"], disabled_optimizers=list(disabled)
    )
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x})[0]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", help="Export directory (deploy.yaml, model.onnx)")
    parser.add_argument("--images", required=True, help="Folder of images for the label check")
    parser.add_argument("--max_images", type=int, default=4)
    parser.add_argument("--passes", type=int, default=2, help="Runs of each image per session")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args(argv)
    deploy = load_deploy(args.model_dir)
    onnx_file = os.path.join(args.model_dir, deploy.model_file("onnx"))
    images = [read_image(p) for p in list_images(args.images)[: args.max_images]]
    if not images:
        raise ValueError(f"no images in {args.images}")

    def predictor(setting: str) -> SegPredictor:
        return SegPredictor.from_runner(deploy, make_runner(onnx_file, setting, args.threads))

    reference = [predictor("default")(image)[0] for image in images]
    runners = {}
    import onnxruntime as ort  # noqa: PLC0415

    print(f"{describe_machine()}; backend: onnxruntime {ort.__version__} (CPUExecutionProvider)")
    print(f"model: {args.model_dir}  threads: {args.threads}  images: {len(images)}")
    results = {}
    for setting in SETTINGS:
        seg = predictor(setting)
        runs = [seg(image)[0] for _ in range(args.passes) for image in images]
        agree = [float((got == reference[i % len(images)]).mean()) for i, got in enumerate(runs)]
        results[setting] = {"min_agreement": min(agree), "runs_equal": sum(a == 1.0 for a in agree)}
        runners[setting] = (seg.runner, seg.preprocess(images[0]))
    times = time_interleaved(
        {s: (lambda r=r, x=x: r(x)) for s, (r, x) in runners.items()}, args.warmup, args.repeats
    )
    base = float(np.median(times["default"]))
    print(f"{'setting':<16}{'median ms':>10}{'p90 ms':>9}{'ratio':>7}  labels (runs equal / all)")
    for setting, seconds in times.items():
        stats = summarize_ms(seconds)
        results[setting].update(median_ms=stats["median"], ratio=np.median(seconds) / base)
        r = results[setting]
        runs = f"{r['runs_equal']}/{args.passes * len(images)}"
        print(
            f"{setting:<16}{stats['median']:>10.2f}{stats['p90']:>9.2f}{r['ratio']:>7.2f}  "
            f"{runs} (min agreement {r['min_agreement']:.4f})"
        )
    return results


if __name__ == "__main__":
    main()
