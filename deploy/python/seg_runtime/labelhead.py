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

Float rounding could make two classes equal after interpolation where they differed by an
ulp at every corner, and a full computation would then take the lower index. So a source
pixel whose two best classes are closer than the rounding of the interpolation can move
(2^-18 of the largest logit) counts as disagreeing too: its cells are interpolated, and the
labels equal those of the full computation in the same order (:func:`upsample_logits`) on
every pixel.
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
    classes, h, w = logits.shape
    y0, _, wy = bilinear_taps(h, size[0], align_corners)
    x0, x1, wx = bilinear_taps(w, size[1], align_corners)
    # y0 and x0 never decrease: output rows (columns) copy a source row (column) in runs.
    rows_of = np.bincount(y0, minlength=h)
    low = logits.argmax(axis=0).astype(np.int32)
    labels = np.repeat(np.repeat(low, rows_of, axis=0), np.bincount(x0, minlength=w), axis=1)
    # The output rows of source row i interpolate between rows i and min(i + 1, h - 1). Its
    # run is cut into bands of at most `tall` rows (the border runs are longer).
    tall = max(1, -(-size[0] // h))
    bands = -(-rows_of // tall)
    row = np.repeat(np.arange(h), bands)
    part = np.arange(row.size) - np.repeat(np.cumsum(bands) - bands, bands)
    start = np.cumsum(rows_of)[row] - rows_of[row] + part * tall
    length = np.minimum(tall, rows_of[row] - part * tall)
    # (band, output column x) pairs of the mixed cells.
    band, xs = np.nonzero(np.take(np.take(_mixed_cells(logits, low), row, axis=0), x0, axis=1))
    if not band.size:
        return labels
    flat = logits.reshape(classes, h * w)

    def along_row(source: np.ndarray) -> np.ndarray:
        """(C, pairs): the pass along a source row, as upsample_logits makes it."""
        left = np.take(flat, source * w + x0[xs], axis=1)
        return left + (np.take(flat, source * w + x1[xs], axis=1) - left) * wx[xs]

    top = along_row(row[band])
    bottom = along_row(np.minimum(row[band] + 1, h - 1))
    # (rows, pairs): each pair's output rows, a shorter band padded by repeating its last
    # row (which then gets the same label twice).
    ys = start[band] + np.minimum(np.arange(tall)[:, None], length[band] - 1)
    np.put(labels, ys * size[1] + xs, _band_argmax(top, bottom, wy[ys]))
    return labels


def _band_argmax(top: np.ndarray, bottom: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """``argmax`` over the classes of ``top + (bottom - top) * weight``, rounded as
    :func:`upsample_logits` rounds it, for (C, K) ``top`` and ``bottom`` and (R, K) weights
    in [0, 1]: per column k, each class is linear in the weight between its two ends.

    Only candidates are compared: a class whose larger end is below some other class's
    smaller end loses everywhere on the column. The ends are widened by 2^-20 of their
    magnitude, more than the rounding of the interpolation (under 2^-21), so no possible
    winner is dropped. Columns with one candidate take it, with two compare them, with more
    go through the classes that are a candidate in any of them."""
    step = bottom - top
    margin = (np.abs(top) + np.abs(bottom)) * 2.0**-20
    floor = (np.minimum(top, bottom) - margin).max(axis=0)
    candidate = np.maximum(top, bottom) + margin >= floor
    count = candidate.sum(axis=0)
    first = candidate.argmax(axis=0).astype(np.int32)
    labels = np.repeat(first[None], weight.shape[0], axis=0)
    two = np.flatnonzero(count == 2)
    if two.size:
        a, b = first[two], top.shape[0] - 1 - candidate[::-1, two].argmax(axis=0)
        w = weight[:, two]
        value_a = top[a, two] + step[a, two] * w
        value_b = top[b, two] + step[b, two] * w
        labels[:, two] = np.where(value_b > value_a, b, a)
    many = np.flatnonzero(count > 2)
    if many.size:
        # Only the classes that are a candidate somewhere among these columns (ascending, so
        # that ties still go to the lower index).
        active = np.flatnonzero(candidate[:, many].any(axis=1))
        best = _interpolated_argmax(top[np.ix_(active, many)], step[np.ix_(active, many)],
                                    weight[:, many])  # fmt: skip
        labels[:, many] = active[best]
    return labels


def _interpolated_argmax(top: np.ndarray, step: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """``argmax`` over the classes of ``top + step * weight`` for (C, K) ``top`` and ``step``
    and (R, K) ``weight``, rounded as :func:`upsample_logits` rounds it, a class at a time on
    contiguous (R, K) planes (NumPy's argmax over a short axis loops per pixel). A later
    class wins only when strictly greater, so ties go to the lower index, as argmax does."""
    best = top[0] + step[0] * weight
    index = np.zeros(best.shape, dtype=np.int32)
    value = np.empty_like(best)
    for k in range(1, top.shape[0]):
        np.multiply(step[k], weight, out=value)
        np.add(top[k], value, out=value)
        np.copyto(index, k, where=value > best)
        np.maximum(best, value, out=best)
    return index


def mixed_fraction(logits: np.ndarray, size: Sequence[int], align_corners: bool = False) -> float:
    """Share of the output pixels that :func:`exact_labels` interpolates (boundary fraction)."""
    logits = np.asarray(logits, dtype=np.float32)
    _, h, w = logits.shape
    y0 = bilinear_taps(h, size[0], align_corners)[0]
    x0 = bilinear_taps(w, size[1], align_corners)[0]
    return float(_mixed_cells(logits, logits.argmax(axis=0))[y0][:, x0].mean())


def _mixed_cells(logits: np.ndarray, low: np.ndarray) -> np.ndarray:
    """Per low-resolution cell (i, j): whether its corners (i or i + 1, j or j + 1, clamped
    to the borders) hold different classes, or one of them a near tie (module docstring)."""
    if logits.shape[0] == 1:
        return np.zeros(low.shape, dtype=bool)
    best_two = np.partition(logits, logits.shape[0] - 2, axis=0)[-2:]
    near = best_two[1] - best_two[0] <= np.abs(logits).max() * 2.0**-18
    corners = [_shifted(low, di, dj) for di, dj in ((1, 0), (0, 1), (1, 1))]
    mixed = (low != corners[0]) | (low != corners[1]) | (low != corners[2])
    if near.any():
        mixed |= near
        for di, dj in ((1, 0), (0, 1), (1, 1)):
            mixed |= _shifted(near, di, dj)
    return mixed


def _shifted(a: np.ndarray, di: int, dj: int) -> np.ndarray:
    """``a[i + di, j + dj]`` per (i, j), indices clamped to the last row and column."""
    if di:
        a = np.concatenate([a[di:], a[-1:].repeat(di, axis=0)], axis=0)
    if dj:
        a = np.concatenate([a[:, dj:], a[:, -1:].repeat(dj, axis=1)], axis=1)
    return a
