"""A small dataset with one sample of each problem ``paddleseg_ext.data_check`` finds."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import yaml
from helpers import TINY_CONFIG
from PIL import Image

NUM_CLASSES = 4
W, H = 32, 24
# Pixels of the out-of-range value 7 in the bad-values label (the rest holds valid ids and
# the ignore index 255).
BAD_VALUE_PIXELS = 5

# train.txt line -> (image, label); the comment names what is wrong with the sample.
TRAIN_LINES = [
    "images/0.png labels/0.png",  # good
    "images/1.png labels/1.png",  # good: palette label
    "images/missing.png labels/2.png",  # missing image
    "images/3.png labels/3.png",  # image of random bytes: unreadable
    "images/4.png labels/4.png",  # image cut short: truncated (full only)
    "images/5.png labels/5.png",  # label 16x12: size mismatch
    "images/6.png labels/6.png",  # label value 7: label_values (full only)
    "images/7.png labels/7.png",  # RGB label: color_label
    "images/0.png labels/0.png",  # same pair as #0: duplicate
    "images/9.png labels/9.png",  # good, with ignore pixels
]
VAL_LINES = ["images/0.png labels/0.png", "images/1.png", "images/9.png labels/9.png"]


def random_image(rng: np.random.Generator, w: int = W, h: int = H) -> Image.Image:
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def index_label(rng: np.random.Generator, w: int = W, h: int = H) -> np.ndarray:
    return rng.integers(0, NUM_CLASSES, (h, w), dtype=np.uint8)


def write_broken_dataset(root: Path) -> None:
    """The files behind ``TRAIN_LINES``/``VAL_LINES`` plus clean list files."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for i in (0, 1, 3, 4, 5, 6, 7, 9):
        random_image(rng).save(root / f"images/{i}.png")
    for i in (0, 2, 3, 4):
        Image.fromarray(index_label(rng), mode="L").save(root / f"labels/{i}.png")

    palette = Image.fromarray(index_label(rng), mode="L").convert("P")
    palette.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255])
    palette.save(root / "labels/1.png")
    (root / "images/3.png").write_bytes(rng.bytes(600))
    full = (root / "images/4.png").read_bytes()
    (root / "images/4.png").write_bytes(full[: len(full) // 2])
    Image.fromarray(index_label(rng, 16, 12), mode="L").save(root / "labels/5.png")
    values = index_label(rng)
    values.flat[:BAD_VALUE_PIXELS] = 7
    values.flat[-3:] = 255
    Image.fromarray(values, mode="L").save(root / "labels/6.png")
    Image.fromarray(np.stack([index_label(rng)] * 3, axis=-1), mode="RGB").save(
        root / "labels/7.png"
    )
    ignored = index_label(rng)
    ignored[:4] = 255
    Image.fromarray(ignored, mode="L").save(root / "labels/9.png")

    (root / "train.txt").write_text("\n".join(TRAIN_LINES) + "\n")
    (root / "val.txt").write_text("\n".join(VAL_LINES) + "\n")
    (root / "clean_train.txt").write_text("".join(TRAIN_LINES[i] + "\n" for i in (0, 1, 9)))
    (root / "clean_val.txt").write_text(TRAIN_LINES[9] + "\n")


def write_config(path: Path, root: Path, train_list: str, val_list: str) -> Path:
    def dataset(mode: str, list_file: str) -> dict:
        return {
            "type": "Dataset",
            "dataset_root": str(root),
            f"{mode}_path": str(root / list_file),
            "num_classes": NUM_CLASSES,
            "ignore_index": 255,
            "mode": mode,
            "transforms": [{"type": "Normalize"}],
        }

    # A complete config, as load_config validates every section; the check builds only
    # the datasets.
    cfg = copy.deepcopy(TINY_CONFIG)
    cfg["model"]["num_classes"] = NUM_CLASSES
    cfg["train_dataset"] = dataset("train", train_list)
    cfg["val_dataset"] = dataset("val", val_list)
    path.write_text(yaml.safe_dump(cfg))
    return path
