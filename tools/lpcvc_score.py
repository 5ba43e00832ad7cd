"""Score predictions the way the LPCVC 2023 referee does: per-image Dice, and Dice / time.

python tools/lpcvc_score.py --pred_dir OUT_DIR --gt_dir GT_DIR [--time_s 12.5]

For each image a confusion matrix over the classes; per class dice_c = 2 TP_c / (pred_c +
gt_c); the image scores the mean over the classes present in the prediction or the ground
truth (a class absent from both is skipped, a class predicted but absent scores 0); the
accuracy is the mean over images. Both maps are brought to 512x512 with nearest neighbour
first; a 3-channel map is read from its first channel. Files are paired by name: a missing
or an extra prediction is an error. With ``--time_s`` (the total forward time the solution
printed) it also prints the score, mean Dice / mean seconds per image. Needs no Paddle.
"""

from __future__ import annotations

import argparse
import os

import numpy as np
from seg_runtime.cli import run
from seg_runtime.media import read_index_label
from seg_runtime.metrics import lpcvc_image_dice

LABEL_EXTS = (".png", ".bmp", ".tif", ".tiff")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pred_dir", required=True, help="Predicted label PNGs")
    parser.add_argument("--gt_dir", required=True, help="Ground-truth label PNGs")
    parser.add_argument("--time_s", type=float, help="Total model forward seconds (all images)")
    parser.add_argument("--num_classes", type=int, default=14, help="Classes (14 in LPCVC 2023)")
    parser.add_argument("--size", type=int, default=512, help="Side both maps are scored at")
    parser.add_argument(
        "--ignore_index", type=int, help="Ground-truth value to skip (the challenge has none)"
    )
    return parser.parse_args(argv)


def label_files(folder: str, role: str) -> dict[str, str]:
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"--{role}_dir not found: {folder}")
    files = {
        n: os.path.join(folder, n) for n in os.listdir(folder) if n.lower().endswith(LABEL_EXTS)
    }
    if not files:
        raise FileNotFoundError(f"no label images ({', '.join(LABEL_EXTS)}) in {folder}")
    return files


def score(
    pred_dir: str, gt_dir: str, num_classes: int = 14, size: int = 512, ignore_index=None
) -> dict[str, float]:
    """``{"images", "mean_dice"}`` over the paired files (see the module docstring)."""
    preds, gts = label_files(pred_dir, "pred"), label_files(gt_dir, "gt")
    missing = sorted(set(gts) - set(preds))
    if missing:
        raise ValueError(f"no prediction for {os.path.join(gt_dir, missing[0])} "
                         f"({len(missing)} missing)")  # fmt: skip
    extra = sorted(set(preds) - set(gts))
    if extra:
        raise ValueError(f"prediction {os.path.join(pred_dir, extra[0])} has no ground truth "
                         f"({len(extra)} extra)")  # fmt: skip
    dices = []
    for name in sorted(gts):
        try:
            pred, gt = read_index_label(preds[name]), read_index_label(gts[name])
            dices.append(lpcvc_image_dice(pred, gt, num_classes, size, ignore_index))
        except ValueError as err:
            raise ValueError(f"{name}: {err}") from err
    return {"images": len(dices), "mean_dice": float(np.mean(dices))}


def main(argv: list[str] | None = None) -> dict[str, float]:
    args = parse_args(argv)
    result = score(args.pred_dir, args.gt_dir, args.num_classes, args.size, args.ignore_index)
    print(f"images: {result['images']}")
    print(f"mean Dice: {result['mean_dice']:.6f}")
    if args.time_s is not None:
        if args.time_s <= 0:
            raise ValueError(f"--time_s must be positive, got {args.time_s}")
        result["mean_time_s"] = args.time_s / result["images"]
        result["score"] = result["mean_dice"] / result["mean_time_s"]
        print(f"mean time: {result['mean_time_s']:.6f} s/image")
        print(f"score: {result['score']:.6f}")
    return result


if __name__ == "__main__":
    run(main)
