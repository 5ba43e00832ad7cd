"""INT8 post-training quantization on CamVid: mIoU and onnxruntime latency, float vs INT8.

For each trained model (config, ``model.pdparams``, deploy input H W) this script, in one
run:

1. exports the float ONNX model with ``paddleseg_ext.export.export`` (argmax output, fixed
   input size) and adds the INT8 model with ``paddleseg_ext.quant.quantize_export``
   (calibration on ``--calib_images`` training images, val transforms);
2. evaluates both ONNX models with onnxruntime on the val set: each preprocessed val image
   is resized to the input size, the output labels are brought back to the label size with
   nearest-neighbour resizing, and ``paddleseg_ext.metrics`` accumulates the confusion
   matrix (label 255 ignored) through ``seg_runtime.evaluate_export``;
3. times both models on the first val image, interleaved run by run (so that load from
   other processes hits both alike), after warm-up runs; median and 90th percentile.

Usage:
    python bench/int8_camvid.py --runs_dir RUNS --threads 2 --repeats 30 --calib_images 32 \
        --json int8_camvid.json
    python bench/int8_camvid.py --model NAME CONFIG WEIGHTS H W   # other models
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time

import numpy as np
from seg_runtime import (
    OrtRunner,
    evaluate_export,
    resize_to_input,
    summarize_ms,
    time_interleaved,
    to_labels,
)

import paddleseg_ext  # noqa: F401  (registers our components)
from paddleseg_ext.config import build, dataset_info, load_config
from paddleseg_ext.export import export
from paddleseg_ext.quant import CALIB_METHODS, INT8_FILE, quantize_export

# name, config, weights, deploy input H, W. TopFormer-tiny-288 resizes any input to 288x384
# itself, so it takes CamVid's 360x480 images as they are; MobileSeg needs multiples of 32.
DEFAULT_MODELS = (
    (
        "topformer_tiny288",
        "configs/camvid/topformer_tiny_camvid_288.yml",
        "{runs}/topformer_tiny_camvid_288/best_model/model.pdparams",
        "360",
        "480",
    ),
    (
        "pp_mobileseg_tiny",
        "configs/camvid/pp_mobileseg_tiny_camvid.yml",
        "{runs}/pp_mobileseg_tiny_camvid/best_model/model.pdparams",
        "384",
        "480",
    ),
)
WARMUP = 5


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model",
        nargs=5,
        action="append",
        metavar=("NAME", "CONFIG", "WEIGHTS", "H", "W"),
        help="A model to study (repeatable; default: the two CamVid models)",
    )
    parser.add_argument(
        "--runs_dir",
        default="output",
        help="Training output folder of the default models (RUNS/<config name>/best_model)",
    )
    parser.add_argument("--calib_images", type=int, default=32, help="Calibration images")
    parser.add_argument("--calib_method", choices=CALIB_METHODS, default="minmax")
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads")
    parser.add_argument("--repeats", type=int, default=30, help="Timed runs per model")
    parser.add_argument("--max_images", type=int, help="Evaluate on the first N val images")
    parser.add_argument("--out_dir", help="Export directory (default: a temporary one)")
    parser.add_argument("--json", help="Write the results to this JSON file")
    return parser.parse_args(argv)


def evaluate_onnx(
    runners: dict[str, OrtRunner], cfg, shape: list[int], max_images: int | None
) -> dict[str, dict]:
    """mIoU, accuracy, per-class IoU and agreement with the float model on the val set."""
    num_classes, ignore_index, _ = dataset_info(cfg, "val")
    dataset = build(cfg).val_dataset
    count = len(dataset) if max_images is None else min(max_images, len(dataset))

    def samples():
        for i in range(count):
            item = dataset[i]
            img = resize_to_input(np.asarray(item["img"], dtype=np.float32), shape)
            yield img[np.newaxis], np.asarray(item["label"]).reshape(item["label"].shape[-2:])

    models = {name: (lambda x, r=runner: to_labels(r(x))) for name, runner in runners.items()}
    report = evaluate_export(models, samples(), num_classes, ignore_index)
    first = next(iter(runners))
    for name, metrics in report["models"].items():
        pair = report["agreement"].get(f"{name} vs {first}", {"mean": 1.0})
        metrics["label_agreement_vs_float"] = pair["mean"]
    return report["models"]


def time_runners(runners: dict[str, OrtRunner], x: np.ndarray, repeats: int) -> dict[str, dict]:
    """Median / p90 latency (ms) of each runner on ``x``, interleaved run by run."""
    calls = {name: (lambda r=runner: r(x)) for name, runner in runners.items()}
    times = time_interleaved(calls, WARMUP, repeats)
    results = {}
    for name, t in times.items():
        stats = summarize_ms(t)
        results[name] = {"median_ms": stats["median"], "p90_ms": stats["p90"],
                         "min_ms": stats["min"], "runs": len(t)}  # fmt: skip
    return results


def study(spec: list[str], args: argparse.Namespace, out_dir: str) -> dict:
    """Export, quantize, evaluate and time one model."""
    name, config, weights, h, w = spec
    if not os.path.isfile(weights):
        print(f"{name}: checkpoint {weights} not found, skipped", flush=True)
        return {"name": name, "missing": weights}
    shape = [1, 3, int(h), int(w)]
    cfg = load_config(config, "val")
    save_dir = os.path.join(out_dir, name)
    export(
        cfg,
        save_dir,
        model_path=weights,
        input_shape=shape,
        output_op="argmax",
        formats="onnx",
        verify=False,
    )
    start = time.time()
    quant = quantize_export(cfg, save_dir, args.calib_images, args.calib_method)
    quant_s = time.time() - start
    runners = {
        "float": OrtRunner(os.path.join(save_dir, "model.onnx"), args.threads),
        "int8": OrtRunner(os.path.join(save_dir, INT8_FILE), args.threads),
    }
    metrics = evaluate_onnx(runners, cfg, shape, args.max_images)
    x = np.asarray(build(cfg).val_dataset[0]["img"], dtype=np.float32)
    x = resize_to_input(x, shape)
    latency = time_runners(runners, x[np.newaxis], args.repeats)
    dygraph = None
    metrics_file = os.path.join(os.path.dirname(weights), "metrics.json")
    if os.path.isfile(metrics_file):
        with open(metrics_file) as f:
            dygraph = json.load(f).get("mIoU")
    sizes = {
        "float": os.path.getsize(os.path.join(save_dir, "model.onnx")),
        "int8": os.path.getsize(os.path.join(save_dir, INT8_FILE)),
    }
    return {
        "name": name,
        "config": config,
        "weights": weights,
        "input_shape": shape,
        "dygraph_mIoU": dygraph,
        "metrics": metrics,
        "latency": latency,
        "onnx_bytes": sizes,
        "quantization": quant,
        "quantize_seconds": quant_s,
    }


def format_table(results: list[dict]) -> str:
    lines = [
        "| Model | Input | dygraph mIoU | float ONNX mIoU | INT8 mIoU | label agreement | "
        "float ms (median / p90) | INT8 ms (median / p90) | speed-up | ONNX MB float / INT8 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if "missing" in r:
            lines.append(f"| {r['name']} | checkpoint missing: `{r['missing']}` ||||||||")
            continue
        m, t, s = r["metrics"], r["latency"], r["onnx_bytes"]
        dy = "n/a" if r["dygraph_mIoU"] is None else f"{100 * r['dygraph_mIoU']:.2f}"
        lines.append(
            f"| {r['name']} | {r['input_shape'][2]}x{r['input_shape'][3]} | {dy} | "
            f"{100 * m['float']['mIoU']:.2f} | {100 * m['int8']['mIoU']:.2f} | "
            f"{100 * m['int8']['label_agreement_vs_float']:.2f}% | "
            f"{t['float']['median_ms']:.1f} / {t['float']['p90_ms']:.1f} | "
            f"{t['int8']['median_ms']:.1f} / {t['int8']['p90_ms']:.1f} | "
            f"{t['float']['median_ms'] / t['int8']['median_ms']:.2f}x | "
            f"{s['float'] / 1e6:.2f} / {s['int8'] / 1e6:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    import onnxruntime

    out_dir = args.out_dir or tempfile.mkdtemp(prefix="int8_camvid_")
    specs = args.model or [
        [field.format(runs=args.runs_dir) for field in spec] for spec in DEFAULT_MODELS
    ]
    results = [study(spec, args, out_dir) for spec in specs]
    machine = (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, onnxruntime "
        f"{onnxruntime.__version__}, {args.threads} threads, {args.repeats} timed runs"
    )
    print(format_table(results))
    print(machine)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine, "args": vars(args), "results": results}, f, indent=2)
    return results


if __name__ == "__main__":
    main()
