"""Bilinear resizing as matrix products: the interpolation matrices and when they pay.

A bilinear resize of an (h, w) map to (H, W) is ``rows @ x @ cols^T`` with the (H, h) and
(W, w) matrices of 1-D linear interpolation. For small maps (TopFormer's global tokens, 1/64
of the input, injected into the 1/8 map) the two products cost a few multiply-adds per output
value, which matrix-product kernels run several per cycle, where the resize kernels of
onnxruntime and of Paddle's CPU ``bilinear_interp`` spend several cycles per output value in
a scalar loop. The ONNX optimisation (``export/onnx_optimize.py``) and the Paddle program of
the export (``models.layers.resize`` under ``resizes_as_matmuls``) use the same matrices and
the same cost rule.
"""

from __future__ import annotations

import numpy as np

# A resize becomes two matrix products when they cost at most this many multiply-adds per
# output value.
RESIZE_MAX_MACS = 32
# Resize coordinate modes the interpolation matrices reproduce (ONNX's names).
COORDINATE_MODES = ("half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric")


def interpolation_matrix(size_in: int, size_out: int, mode: str = "half_pixel") -> np.ndarray:
    """The (size_out, size_in) float32 matrix of 1-D linear interpolation as ONNX ``Resize``
    does it.

    Source coordinates outside [0, size_in - 1] are clamped to the border, as onnxruntime's
    ``Resize`` (linear) and Paddle's ``bilinear_interp`` do.

    Args:
        size_in: Input length.
        size_out: Output length.
        mode: ``coordinate_transformation_mode`` of the ``Resize`` (see ``COORDINATE_MODES``;
            Paddle's ``align_corners=False`` is ``half_pixel``).
    """
    if mode not in COORDINATE_MODES:
        raise ValueError(f"unsupported coordinate_transformation_mode {mode!r}")
    i = np.arange(size_out, dtype=np.float64)
    scale = size_out / size_in
    if mode == "align_corners":
        x = i * (size_in - 1) / (size_out - 1) if size_out > 1 else np.zeros_like(i)
    elif mode == "asymmetric":
        x = i / scale
    elif mode == "pytorch_half_pixel" and size_out == 1:
        x = np.zeros_like(i)
    else:
        x = (i + 0.5) / scale - 0.5
    x = np.clip(x, 0, size_in - 1)
    low = np.floor(x).astype(np.int64)
    high = np.minimum(low + 1, size_in - 1)
    frac = x - low
    matrix = np.zeros((size_out, size_in), dtype=np.float64)
    rows = np.arange(size_out)
    np.add.at(matrix, (rows, low), 1 - frac)
    np.add.at(matrix, (rows, high), frac)
    return matrix.astype(np.float32)


def resize_macs(h: int, w: int, out_h: int, out_w: int) -> float:
    """Multiply-adds per output value of ``rows @ (x @ cols^T)`` for (h, w) -> (out_h, out_w),
    skipping a product whose side keeps its size: about h + h * w / out_h."""
    along_rows = w * h * out_w / (out_h * out_w) if w != out_w else 0
    return along_rows + (h if h != out_h else 0)
