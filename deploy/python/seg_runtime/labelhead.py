"""Exact labels from low-resolution logits: full bilinear upsampling + argmax, computed only
where it can change the answer.

Bilinear upsampling (``align_corners`` False: half-pixel centres; True: corner-aligned; source
coordinates clamped to the borders) makes every output pixel a convex combination of its
four source pixels, with non-negative weights. Where those four share one argmax class c
(argmax's rule: the lowest index among equal maxima), the combination keeps c on top: for
k < c, l[c] > l[k] at each source, and for k > c, l[c] >= l[k], both survive a convex
combination. So the labels of full upsampling + argmax are the nearest copy of the
low-resolution argmax everywhere except in cells whose corners disagree, where the classes
are interpolated and compared. The work grows with the length of the label boundaries,
not with pixels x classes. (Bicubic weights can be negative: the rule does not hold there.)

Float rounding can make two classes equal after interpolation where they differed by an
ulp at every corner; the rule then keeps the corners' class while a full computation in the
same order takes the lower index. The exported models' logits do not come that close.
"""

from typing import Sequence, Tuple

import numpy as np


def bilinear_taps(
    size_in: int, size_out: int, align_corners: bool = False
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per output index: the two source indices and the weight of the second (float32)."""
    i = np.arange(size_out, dtype=np.float64)
    if align_corners:
        src = i * ((size_in - 1) / (size_out - 1)) if size_out > 1 else np.zeros_like(i)
    else:
        src = (i + 0.5) * (size_in / size_out) - 0.5
    src = np.clip(src, 0, size_in - 1)
    lo = np.floor(src).astype(np.intp)
    hi = np.minimum(lo + 1, size_in - 1)
    return lo, hi, (src - lo).astype(np.float32)


def upsample_logits(
    logits: np.ndarray, size: Sequence[int], align_corners: bool = False
) -> np.ndarray:
    """Full bilinear upsampling of (C, h, w) logits to (C, H, W), float32: along each source
    row first, then between rows, with the same operations as :func:`exact_labels`."""
    logits = np.asarray(logits, dtype=np.float32)
    y0, y1, wy = bilinear_taps(logits.shape[1], size[0], align_corners)
    x0, x1, wx = bilinear_taps(logits.shape[2], size[1], align_corners)
    rows = logits[:, :, x0] + (logits[:, :, x1] - logits[:, :, x0]) * wx
    return rows[:, y0] + (rows[:, y1] - rows[:, y0]) * wy[:, None]


def exact_labels(
    logits: np.ndarray, size: Sequence[int], align_corners: bool = False
) -> np.ndarray:
    """The (H, W) int32 labels of ``argmax(upsample_logits(logits, size))``, from (C, h, w)
    logits, interpolating only the pixels whose four source pixels disagree."""
    logits = np.asarray(logits, dtype=np.float32)
    _, h, w = logits.shape
    y0, y1, wy = bilinear_taps(h, size[0], align_corners)
    x0, x1, wx = bilinear_taps(w, size[1], align_corners)
    low = logits.argmax(axis=0).astype(np.int32)
    labels = np.take(np.take(low, y0, axis=0), x0, axis=1)
    mixed = np.take(np.take(_mixed_cells(low), y0, axis=0), x0, axis=1)
    ys, xs = np.nonzero(mixed)
    if ys.size:
        # Pixel-major (h, w, C): each gather below copies whole class vectors. The pass along
        # the rows is shared by every output row; between rows only the mixed pixels.
        pixels = np.ascontiguousarray(logits.transpose(1, 2, 0))
        rows = pixels[:, x0] + (pixels[:, x1] - pixels[:, x0]) * wx[None, :, None]
        rows = rows.reshape(h * len(x0), -1)
        top = np.take(rows, y0[ys] * len(x0) + xs, axis=0)
        bottom = np.take(rows, y1[ys] * len(x0) + xs, axis=0)
        labels[ys, xs] = (top + (bottom - top) * wy[ys][:, None]).argmax(axis=1)
    return labels


def mixed_fraction(logits: np.ndarray, size: Sequence[int], align_corners: bool = False) -> float:
    """Share of the output pixels that :func:`exact_labels` interpolates (boundary fraction)."""
    _, h, w = np.shape(logits)
    y0 = bilinear_taps(h, size[0], align_corners)[0]
    x0 = bilinear_taps(w, size[1], align_corners)[0]
    return float(_mixed_cells(np.argmax(logits, axis=0))[y0][:, x0].mean())


def _mixed_cells(low: np.ndarray) -> np.ndarray:
    """Per low-resolution cell (i, j): whether its corners (i or i + 1, j or j + 1, clamped
    to the borders) hold different classes."""
    below = np.concatenate([low[1:], low[-1:]], axis=0)
    right = np.concatenate([low[:, 1:], low[:, -1:]], axis=1)
    diagonal = np.concatenate([right[1:], right[-1:]], axis=0)
    return (low != below) | (low != right) | (low != diagonal)
