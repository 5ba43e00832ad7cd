"""Building bricks shared by the model files (TopFormer, StrideFormer, VIM, FastSegFormer).

Only bricks used by more than one architecture live here; architecture-specific blocks stay
in their own file so that each file reads top-down.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from typing import Any, Literal

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from .interpolation import RESIZE_MAX_MACS, interpolation_matrix, resize_macs

ActName = Literal["relu", "relu6", "hardswish", "sigmoid", "hardsigmoid", "identity"]


def make_act(name: ActName) -> nn.Layer:
    """Builds an activation layer from its name.

    Names rather than layer classes are used so that presets stay plain data and YAML can
    override them (`gate_act: relu6`).

    Args:
        name: One of `relu`, `relu6`, `hardswish`, `sigmoid`, `hardsigmoid` (relu6(x + 3) / 6,
            the "h-sigmoid" of MobileNetV3 and TopFormer) or `identity`.

    Returns:
        The activation layer.
    """
    if name == "relu":
        return nn.ReLU()
    if name == "relu6":
        return nn.ReLU6()
    if name == "hardswish":
        return nn.Hardswish()
    if name == "sigmoid":
        return nn.Sigmoid()
    if name == "hardsigmoid":
        return nn.Hardsigmoid()
    if name == "identity":
        return nn.Identity()
    raise ValueError(f"unknown activation {name!r}; expected one of {ActName.__args__}")


def spatial_size(x: paddle.Tensor) -> list[int] | paddle.Tensor:
    """Returns the (H, W) of a (N, C, H, W) tensor, as Python ints when they are known.

    Constant sizes keep exported graphs free of Shape/Slice ops (friendlier to TensorRT);
    under `paddle.jit.to_static` with a dynamic input size the shape holds -1 and the size
    is read at run time instead.

    Args:
        x: Tensor of shape (N, C, H, W).

    Returns:
        `[H, W]` as ints, or a 1-D int tensor of 2 elements when the size is dynamic.
    """
    h, w = x.shape[2], x.shape[3]
    if isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0:
        return [h, w]
    return paddle.shape(x)[2:]


# The cost limit of `resize` as matrix products while `resizes_as_matmuls` is active (0: off).
# A mutable entry, not a module variable: a second trace by Paddle's dynamic-to-static
# conversion did not see a module variable changed after the first (its converted `resize`
# is reused), while it reads the entry's current value.
_MATMUL_RESIZE = {"max_macs": 0.0}


@contextlib.contextmanager
def resizes_as_matmuls(max_macs: float = RESIZE_MAX_MACS) -> Iterator[None]:
    """Within the block, `resize` between static sizes that costs at most `max_macs`
    multiply-adds per output value is computed as two interpolation matrix products
    (`models.interpolation`). The export traces the Paddle program this way: Paddle's CPU
    `bilinear_interp` spends about 0.5 ms on each of the LPCVC student's small resizes."""
    previous, _MATMUL_RESIZE["max_macs"] = _MATMUL_RESIZE["max_macs"], max_macs
    try:
        yield
    finally:
        _MATMUL_RESIZE["max_macs"] = previous


def resize(
    x: paddle.Tensor, size: list[int] | paddle.Tensor, align_corners: bool = False
) -> paddle.Tensor:
    """Bilinear resize of a (N, C, H, W) tensor to `size` = (H', W')."""
    h, w = x.shape[2:]
    sizes = [h, w, *size] if isinstance(size, (list, tuple)) else []
    static = bool(sizes) and all(isinstance(v, int) and v > 0 for v in sizes)
    limit = _MATMUL_RESIZE["max_macs"]
    if limit and static and resize_macs(h, w, *size) <= limit:
        mode = "align_corners" if align_corners else "half_pixel"
        if size[1] != w:
            cols = paddle.to_tensor(interpolation_matrix(w, size[1], mode))
            x = paddle.matmul(x, cols, transpose_y=True)
        if size[0] != h:
            x = paddle.matmul(paddle.to_tensor(interpolation_matrix(h, size[0], mode)), x)
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=align_corners)


class ConvBNAct(nn.Layer):
    """Convolution + BatchNorm + optional activation, padding `kernel_size // 2`.

    Args:
        in_chs: Input channels.
        out_chs: Output channels.
        kernel_size: Square kernel size (odd).
        stride: Convolution stride.
        groups: Convolution groups (`in_chs` for a depthwise convolution).
        act: Activation name applied after the BatchNorm; `identity` for none.
        bn_weight_init: Initial BatchNorm scale. 0 makes a residual branch start as the
            identity (used on attention projections, as TopFormer and SeaFormer do).
        bias: Give the convolution a bias. Redundant before a BatchNorm, but EfficientFormerV2
            and FastSegFormer's fusion module have one: their weights and parameter counts
            need it.
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        kernel_size: int = 1,
        stride: int = 1,
        groups: int = 1,
        act: ActName = "identity",
        bn_weight_init: float = 1.0,
        bias: bool = False,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2D(
            in_chs,
            out_chs,
            kernel_size,
            stride=stride,
            padding=kernel_size // 2,
            groups=groups,
            bias_attr=None if bias else False,
        )
        self.bn = nn.BatchNorm2D(
            out_chs,
            weight_attr=paddle.ParamAttr(initializer=nn.initializer.Constant(bn_weight_init)),
        )
        self.act = make_act(act)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        """Args:
            x: Tensor of shape (N, in_chs, H, W).

        Returns:
            Tensor of shape (N, out_chs, ceil(H / stride), ceil(W / stride)).
        """
        return self.act(self.bn(self.conv(x)))


class DropPath(nn.Layer):
    """Stochastic depth: drops a residual branch per sample with probability `p` in training.

    Args:
        p: Drop probability.
    """

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        """Args:
            x: Residual branch output of shape (N, ...).

        Returns:
            `x` with whole samples zeroed and the rest scaled by 1 / (1 - p) in training.
        """
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        shape = [x.shape[0]] + [1] * (x.ndim - 1)
        mask = paddle.floor(keep + paddle.rand(shape, dtype=x.dtype))
        return x / keep * mask


class ConvMLP(nn.Layer):
    """Feed-forward block of TopFormer/SeaFormer: 1x1 ConvBN, 3x3 depthwise conv, act, 1x1 ConvBN.

    The depthwise convolution adds the local context that token mixing lacks (TopFormer
    Sec. 3.2); it has a bias and no BatchNorm, as in the published models.

    Args:
        chs: Input and output channels.
        hidden_chs: Hidden channels (`mlp_ratio * chs`).
        act: Activation after the depthwise convolution.
    """

    def __init__(self, chs: int, hidden_chs: int, act: ActName = "relu6") -> None:
        super().__init__()
        self.fc1 = ConvBNAct(chs, hidden_chs)
        self.dwconv = nn.Conv2D(hidden_chs, hidden_chs, 3, padding=1, groups=hidden_chs)
        self.act = make_act(act)
        self.fc2 = ConvBNAct(hidden_chs, chs)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        """Args:
            x: Tensor of shape (N, chs, H, W).

        Returns:
            Tensor of shape (N, chs, H, W).
        """
        return self.fc2(self.act(self.dwconv(self.fc1(x))))


class SegHead(nn.Layer):
    """Light segmentation head: 1x1 ConvBN + ReLU (optionally depthwise), dropout, classifier.

    Args:
        in_chs: Input channels (the fused feature).
        num_classes: Number of output classes.
        depthwise: Make the fusion convolution depthwise (TopFormer-Tiny, PP-MobileSeg).
        dropout: Channel dropout probability before the classifier.
    """

    def __init__(
        self, in_chs: int, num_classes: int, depthwise: bool = False, dropout: float = 0.1
    ) -> None:
        super().__init__()
        self.fuse = ConvBNAct(in_chs, in_chs, groups=in_chs if depthwise else 1, act="relu")
        self.dropout = nn.Dropout2D(dropout)
        self.classifier = nn.Conv2D(in_chs, num_classes, 1)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        """Args:
            x: Tensor of shape (N, in_chs, h, w).

        Returns:
            Logits of shape (N, num_classes, h, w).
        """
        return self.classifier(self.dropout(self.fuse(x)))


def resolve_preset(presets: dict[str, Any], preset: str | Any, family: str, **overrides: Any):
    """Returns `presets[preset]` (or `preset` itself, a cfg) with `overrides` applied.

    Presets are frozen dataclasses; `dataclasses.replace` builds a new one, so a YAML
    override never modifies the shared preset.

    Raises:
        KeyError: `preset` names no preset of `family`; the message lists the known ones.
    """
    if isinstance(preset, str):
        if preset not in presets:
            raise KeyError(f"unknown {family} preset {preset!r}; known: {list(presets)}")
        preset = presets[preset]
    return dataclasses.replace(preset, **overrides)
