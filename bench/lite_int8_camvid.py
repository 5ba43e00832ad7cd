"""Paddle Lite INT8 (PaddleSlim post-training quantization) on CamVid: float vs INT8 labels.

For a trained CamVid model (config + ``model.pdparams``), in one run:

1. calibrates PaddleSlim's ``quant_post_static`` on ``--calib_images`` training images
   (val transforms, as deployed) in the Paddle Lite side environment and converts the
   quantized legacy program with opt (``paddleseg_ext.export.lite``), as
   ``tools/export.py --formats lite --quantize int8`` does;
2. runs the float and the INT8 legacy programs (Paddle 2.6 static executor, which simulates
   the int8 arithmetic with fake-quant ops) on every val image, preprocessed by the device
   runtime (``seg_runtime``) at the model's input size;
3. scores both against the labels (predictions resized back with nearest neighbour, 255
   ignored): mIoU, pixel accuracy, and the label agreement of INT8 with float; prints which
   ops opt runs in int8.

Usage:
    python bench/lite_int8_camvid.py --config CONFIG --model_path WEIGHTS \
        --input_shape 1 3 192 256 --calib_images 32 --json lite_int8.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import numpy as np
from seg_runtime import Preprocessor, evaluate_export, read_image, resize_to_input

import paddleseg_ext  # noqa: F401  (registers our components)
from paddleseg_ext.config import build, dataset_info, load_config
from paddleseg_ext.core.checkpoint import load_weights
from paddleseg_ext.export import lite, val_transforms
from paddleseg_ext.quant import CALIB_METHODS, LITE_ALGOS, calibration_batches


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="The model's training config")
    parser.add_argument("--model_path", required=True, help="Trained model.pdparams")
    parser.add_argument("--input_shape", nargs=4, type=int, required=True, metavar="N C H W")
    parser.add_argument("--calib_images", type=int, default=32, help="Calibration images")
    parser.add_argument("--calib_method", choices=CALIB_METHODS, default="minmax")
    parser.add_argument("--max_images", type=int, help="Evaluate the first N val images")
    parser.add_argument("--json", help="Write the results to this file")
    return parser.parse_args(argv)


def val_inputs(cfg, shape: list[int], max_images: int | None):
    """Val images preprocessed by the device runtime, and their label maps."""
    import cv2

    dataset = build(cfg).val_dataset
    preprocess = Preprocessor(val_transforms(cfg))
    count = len(dataset) if max_images is None else min(max_images, len(dataset))
    inputs, labels = [], []
    for image_path, label_path in dataset.file_list[:count]:
        chw, _ = preprocess(read_image(image_path))
        inputs.append(resize_to_input(chw, shape)[np.newaxis])
        labels.append(cv2.imread(label_path, cv2.IMREAD_GRAYSCALE).astype(np.int64))
    return np.stack(inputs), labels


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    cfg = load_config(args.config, "val")
    shape = list(args.input_shape)
    model = build(cfg).model
    load_weights(model, args.model_path)
    num_classes, ignore_index, _ = dataset_info(cfg, "val")
    batches = np.stack(list(calibration_batches(cfg, args.calib_images, shape)))
    inputs, labels = val_inputs(cfg, shape, args.max_images)
    start = time.time()
    with tempfile.TemporaryDirectory(prefix="lite_int8_") as tmp:
        result = lite.quantize_lite(
            cfg, model, shape, "argmax", tmp, batches, LITE_ALGOS[args.calib_method],
            eval_inputs=inputs,
        )  # fmt: skip
    seconds = time.time() - start
    predicted = result["eval_labels"]
    models = {name: predicted[name].__getitem__ for name in ("float", "int8")}
    scores = evaluate_export(models, enumerate(labels), num_classes, ignore_index)
    report = {
        "config": args.config,
        "model_path": args.model_path,
        "input_shape": shape,
        "calib_images": args.calib_images,
        "algo": LITE_ALGOS[args.calib_method],
        "val_images": len(labels),
        "float": scores["models"]["float"],
        "int8": scores["models"]["int8"],
        "label_agreement": scores["agreement"]["int8 vs float"]["mean"],
        "kernels": result["int8_kernels"],
        "side_env_seconds": seconds,
    }
    print(
        f"| model | float mIoU | INT8 mIoU | float Acc | INT8 Acc | label agreement |\n"
        f"|---|---|---|---|---|---|\n"
        f"| {args.config} | {100 * report['float']['mIoU']:.2f} | "
        f"{100 * report['int8']['mIoU']:.2f} | {100 * report['float']['Acc']:.2f} | "
        f"{100 * report['int8']['Acc']:.2f} | {100 * report['label_agreement']:.2f}% |"
    )
    for precision, ops in report["kernels"].items():
        print(f"{precision} kernels: " + ", ".join(f"{op} x{n}" for op, n in sorted(ops.items())))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    return report


if __name__ == "__main__":
    main()
