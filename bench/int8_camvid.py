"""INT8 post-training quantization on CamVid: mIoU and latency, float vs INT8.

For each trained model (config, ``model.pdparams``, deploy input H W) this script, in one
run:

1. exports the float ONNX model with ``paddleseg_ext.export.export`` (``--output_op``:
   labels from the graph, or logits and the runtime's exact head; fixed input size) and adds
   the INT8 model with ``paddleseg_ext.quant.quantize_export`` (calibration on
   ``--calib_images`` training images, val transforms);
2. evaluates both models on each backend of ``--backends`` (onnxruntime, OpenVINO) on the
   val set through the device runtime (``SegPredictor``: each val image read, preprocessed,
   run, labels at the image size) with ``seg_runtime.evaluate_export`` (label 255 ignored),
   and the share of pixels labelled as by the float onnxruntime model;
3. times every model on the first val image, model alone and end to end (image to labels),
   interleaved run by run (so that load from other processes hits all alike), after warm-up
   runs; median and 90th percentile; ``--profile`` adds onnxruntime's kernel time by op type
   of the float and INT8 models. The machine line names the CPU's int8 dot-product
   instructions (VNNI).

Usage:
    python bench/int8_camvid.py --runs_dir RUNS --threads 2 --repeats 30 --calib_images 32 \
        --json int8_camvid.json
    python bench/int8_camvid.py --model NAME CONFIG WEIGHTS H W   # other models
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import cv2
import numpy as np
from latency import ort_profile
from seg_runtime import (
    SegPredictor,
    create_runner,
    evaluate_export,
    load_deploy,
    read_image,
    summarize_ms,
    time_interleaved,
)
from seg_runtime.machine import cpu_description, cpu_flags

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
    parser.add_argument(
        "--backends", default="onnxruntime", help="Comma list of onnxruntime,openvino (timing)"
    )
    parser.add_argument(
        "--output_op", choices=("argmax", "exact"), default="argmax",
        help="Export output: labels from the graph, or logits and the runtime's exact head",
    )  # fmt: skip
    parser.add_argument(
        "--profile", action="store_true", help="onnxruntime's kernel time by op type, float/INT8"
    )
    parser.add_argument("--out_dir", help="Export directory (default: a temporary one)")
    parser.add_argument("--json", help="Write the results to this JSON file")
    args = parser.parse_args(argv)
    args.backends = [b for b in args.backends.split(",") if b]
    unknown = set(args.backends) - {"onnxruntime", "openvino"}
    if unknown:
        parser.error(f"--backends: unknown {sorted(unknown)}; choose onnxruntime, openvino")
    if "onnxruntime" not in args.backends:
        parser.error("--backends must include onnxruntime: its float model is the reference")
    args.backends.sort(key=lambda b: b != "onnxruntime")  # the reference first
    return args


def evaluate_onnx(
    predictors: dict[str, SegPredictor], cfg, max_images: int | None
) -> dict[str, dict]:
    """mIoU, accuracy, per-class IoU and agreement with the float model on the val set: each
    val image through the device runtime (preprocessing, model, labels at the image size)."""
    num_classes, ignore_index, _ = dataset_info(cfg, "val")
    files = build(cfg).val_dataset.file_list
    count = len(files) if max_images is None else min(max_images, len(files))

    def samples():
        for image_path, label_path in files[:count]:
            label = cv2.imread(label_path, cv2.IMREAD_GRAYSCALE)
            if label is None:
                raise ValueError(f"cannot read the label image {label_path}")
            yield read_image(image_path), label

    models = {name: (lambda x, p=p: p(x)[0]) for name, p in predictors.items()}
    report = evaluate_export(models, samples(), num_classes, ignore_index)
    first = next(iter(predictors))
    for name, metrics in report["models"].items():
        pair = report["agreement"].get(f"{name} vs {first}", {"mean": 1.0})
        metrics["label_agreement_vs_float"] = pair["mean"]
    return report["models"]


def time_predictors(
    predictors: dict[str, SegPredictor], image: np.ndarray, repeats: int
) -> dict[str, dict]:
    """Median / p90 latency (ms) of each predictor on ``image``, interleaved run by run: the
    model alone (``NAME/model``) and end to end, BGR image to labels (``NAME/e2e``)."""
    calls = {}
    for name, predictor in predictors.items():
        x = np.ascontiguousarray(predictor.preprocess(image))
        calls[f"{name}/model"] = lambda r=predictor.runner, x=x: r(x)
        calls[f"{name}/e2e"] = lambda p=predictor: p(image)
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
        output_op=args.output_op,
        formats="onnx",
        verify=False,
    )
    start = time.time()
    quant = quantize_export(cfg, save_dir, args.calib_images, args.calib_method)
    quant_s = time.time() - start
    deploy = load_deploy(save_dir)
    predictors = {}
    for backend in args.backends:
        prefix = "" if backend == "onnxruntime" else f"{backend}_"
        for precision in ("float", "int8"):
            runner = create_runner(save_dir, backend, args.threads, int8=precision == "int8")
            predictors[prefix + precision] = SegPredictor.from_runner(deploy, runner)
    metrics = evaluate_onnx(predictors, cfg, args.max_images)
    image = read_image(build(cfg).val_dataset.file_list[0][0])
    latency = time_predictors(predictors, image, args.repeats)
    profile = None
    if args.profile:
        x = np.ascontiguousarray(predictors["float"].preprocess(image))
        profile = {
            precision: ort_profile(os.path.join(save_dir, file), args.threads, x, args.repeats)
            for precision, file in (("float", "model.onnx"), ("int8", INT8_FILE))
        }
        for precision, ops in profile.items():
            top = ", ".join(f"{op} {ms:.2f}" for op, ms in list(ops.items())[:8])
            print(f"{name} {precision} profile: {sum(ops.values()):.2f} ms: {top}", flush=True)
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
        "output_op": args.output_op,
        "dygraph_mIoU": dygraph,
        "metrics": metrics,
        "latency": latency,
        "profile": profile,
        "onnx_bytes": sizes,
        "quantization": quant,
        "quantize_seconds": quant_s,
    }


def format_table(results: list[dict]) -> str:
    """One row per model and backend: accuracy, agreement with the float onnxruntime model,
    latency model-only and end to end, INT8 speed-up over the same backend's float model and
    over float onnxruntime."""
    lines = [
        "| Model | Input | Backend | float mIoU | INT8 mIoU | INT8 labels = float | "
        "float ms model / e2e | INT8 ms model / e2e | INT8 speed-up e2e | "
        "vs float onnxruntime e2e | ONNX MB float / INT8 |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if "missing" in r:
            lines.append(f"| {r['name']} | checkpoint missing: `{r['missing']}` |||||||||")
            continue
        m, t, s = r["metrics"], r["latency"], r["onnx_bytes"]
        base = t["float/e2e"]["median_ms"]
        for prefix in sorted({k[: -len("float")] for k in m if k.endswith("float")}):
            fl, q = prefix + "float", prefix + "int8"
            lines.append(
                f"| {r['name']} | {r['input_shape'][2]}x{r['input_shape'][3]} | "
                f"{prefix.rstrip('_') or 'onnxruntime'} | {100 * m[fl]['mIoU']:.2f} | "
                f"{100 * m[q]['mIoU']:.2f} | {100 * m[q]['label_agreement_vs_float']:.2f}% | "
                f"{t[fl + '/model']['median_ms']:.1f} / {t[fl + '/e2e']['median_ms']:.1f} | "
                f"{t[q + '/model']['median_ms']:.1f} / {t[q + '/e2e']['median_ms']:.1f} | "
                f"{t[fl + '/e2e']['median_ms'] / t[q + '/e2e']['median_ms']:.2f}x | "
                f"{base / t[q + '/e2e']['median_ms']:.2f}x | "
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
    flags = [f for f in cpu_flags() if f in ("avx512_vnni", "avx_vnni", "amx_int8")]
    machine = (
        f"{cpu_description()}; int8 dot products: {', '.join(flags) or 'none (no VNNI)'}"
        f"; onnxruntime {onnxruntime.__version__}, {args.threads} thread(s), {args.repeats} "
        "timed runs"
    )
    print(format_table(results))
    print(machine)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine, "args": vars(args), "results": results}, f, indent=2)
    return results


if __name__ == "__main__":
    main()
