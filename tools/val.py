"""Evaluate a trained model: mIoU, mDice, pixel accuracy, kappa and a per-class table.

python tools/val.py --config X.yml --model_path output/best_model/model.pdparams

An image or label that cannot be read stops the evaluation (a partial score would mislead):
one ``error: cannot load IMAGE, LABEL: reason`` line, exit status 2.
"""

from __future__ import annotations

import argparse
import json

import paddleseg_ext  # noqa: F401
from paddleseg_ext.cli import add_config_args, add_postprocess_arg, run, setup_device
from paddleseg_ext.config import (
    ConfigError,
    build,
    build_postprocess,
    check_dataset_root,
    dataset_info,
    load_config,
)
from paddleseg_ext.core import evaluate
from paddleseg_ext.core.checkpoint import load_weights
from paddleseg_ext.core.data import SampleError


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_config_args(parser)
    parser.add_argument("--model_path", required=True, help="model.pdparams or its folder")
    parser.add_argument("--num_workers", type=int, default=0, help="Data loader workers")
    parser.add_argument("--lpcvc", action="store_true", help="Also report LPCVC 2023 Dice")
    parser.add_argument("--json", help="Write the metrics to this JSON file")
    add_postprocess_arg(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    setup_device(args.device)
    cfg = load_config(args.config, "val", opts=args.opts)
    check_dataset_root(cfg, "val")
    postprocess = build_postprocess(cfg, args.postprocess)
    builder = build(cfg)
    model = builder.model
    load_weights(model, args.model_path)
    num_classes, ignore_index, class_names = dataset_info(cfg, "val")
    metrics = evaluate(
        model,
        builder.val_dataset,
        num_classes,
        ignore_index=ignore_index,
        class_names=class_names,
        num_workers=args.num_workers,
        lpcvc=args.lpcvc,
        postprocess=postprocess,
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(metrics | {"class_names": class_names}, f, indent=2)
        print(f"Metrics written to {args.json}")
    return metrics


if __name__ == "__main__":
    run(main, errors=(ConfigError, FileNotFoundError, SampleError))
