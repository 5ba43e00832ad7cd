"""Label maps made visible, for ``infer.py``, ``tools/predict.py`` and the web demo: the class
palette, colour-coded labels, the overlay on the image and the legend of the classes present.
"""

from typing import List, Sequence

import cv2
import numpy as np


def color_palette(num_classes: int) -> np.ndarray:
    """A (num_classes, 3) uint8 RGB palette: the PASCAL VOC bit-interleaving scheme."""
    palette = np.zeros((num_classes, 3), dtype=np.uint8)
    for cls in range(num_classes):
        c, shift = cls, 7
        while c:
            for ch in range(3):
                palette[cls, ch] |= ((c >> ch) & 1) << shift
            c >>= 3
            shift -= 1
    return palette


def colorize(labels: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """The colour-coded (H, W) labels as an (H, W, 3) BGR image (OpenCV's channel order)."""
    return palette[labels][..., ::-1]


def overlay(image: np.ndarray, color: np.ndarray, alpha: float) -> np.ndarray:
    """The colour-coded labels (BGR) laid over the BGR image with opacity ``alpha``."""
    return cv2.addWeighted(color, alpha, image, 1 - alpha, 0)


def hex_color(rgb: np.ndarray) -> str:
    """``#rrggbb`` of one palette entry."""
    return "#{:02x}{:02x}{:02x}".format(*(int(v) for v in rgb))


def legend(labels: np.ndarray, palette: np.ndarray, class_names: Sequence) -> List[dict]:
    """The classes present in ``labels``, largest first (ties: lower id first): ``id``,
    ``name``, ``color`` (``#rrggbb``) and ``share`` of the pixels."""
    counts = np.bincount(labels.ravel(), minlength=len(palette))
    present = sorted(np.flatnonzero(counts), key=lambda c: (-counts[c], c))
    return [
        {
            "id": int(c),
            "name": str(class_names[c]),
            "color": hex_color(palette[c]),
            "share": float(counts[c] / labels.size),
        }
        for c in present
    ]
