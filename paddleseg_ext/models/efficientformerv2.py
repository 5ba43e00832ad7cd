"""EfficientFormerV2 backbone (Li et al., "Rethinking Vision Transformers for MobileNet Size
and Speed", ICCV 2023).

Reference implementation: the authors' `efficientformer_v2.py` (snap-research/EfficientFormer),
in its dense-prediction form (`fork_feat`): no classifier, one output BatchNorm per stage.
FastSegFormer-E uses the S0 preset.

    image -> stem (two 3x3 stride-2 ConvBN + GELU) -> stage 1 -> 3x3 stride-2 ConvBN -> stage 2
          -> 3x3 stride-2 ConvBN -> stage 3 (last blocks: attention on a stride-2 grid)
          -> 3x3 stride-2 ConvBN + attention downsampler -> stage 4 (last blocks: attention)
          -> each stage's output through its own BatchNorm -> 4 features (1/4 .. 1/32)

Every block is `x + ls * ffn(x)` (1x1 expand, 3x3 depthwise, 1x1 project, each ConvBN, GELU);
attention blocks first add `x + ls * attention(x)`. All convolutions have biases, as published.

Attention grids and input sizes. The published models learn one position bias per head and
per relative offset (|dy|, |dx|) of the attention grid, laid out for a 224x224 input: a 7x7
table for stage 3 (14x14 grid after the stride-2 copy) and stage 4 (7x7), and a 14x14 table for
the downsampler's keys (14x14). Here the tables keep exactly that size (so the parameter count
and the published weights are unchanged), and a different grid reads a bilinear resize of the
table (`align_corners=True`: offset 0 and the largest offset map onto themselves, as when Swin
or BEiT resize their tables for another window). At the table's own grid nothing is resized,
so 224x224 gives the published model exactly. The offset index of a grid is a constant
computed from the grid size, so a model exported with a fixed input size holds the bias as
plain constant-index gathers; a dynamic input size cannot be exported (the error says so).

Contents, top-down:
    blocks:  AttentionBias, GridAttention, DownsampleAttention, ConvFFN,
             EfficientFormerV2Block, Downsample
    presets: EfficientFormerV2Cfg, EFFICIENTFORMERV2_PRESETS, efficientformerv2_cfg
    models:  EfficientFormerV2Backbone (registered backbone)
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F
from paddleseg.cvlibs import manager

from .layers import ConvBNAct, DropPath, resize, resolve_preset, spatial_size

# ----------------------------------------------------------------------------------- blocks


def _static_grid(x: paddle.Tensor) -> tuple[int, int]:
    """(H, W) of a (N, C, H, W) tensor; raises when the size is only known at run time."""
    h, w = x.shape[2], x.shape[3]
    if not (isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0):
        raise ValueError(
            "EfficientFormerV2 attention needs a static input size (its position-bias index "
            "follows the grid); export with a fixed input shape"
        )
    return h, w


@functools.lru_cache(maxsize=32)
def _offset_index(h: int, w: int, query_stride: int) -> np.ndarray:
    """Flat table index `|dy| * w + |dx|` of every (query, key) pair, shape (Nq * Nk,).

    Keys are the cells of an (h, w) grid; queries are the cells of its stride-`query_stride`
    subsample, at positions `query_stride * (i, j)`.
    """
    qy, qx = np.meshgrid(
        np.arange(0, h, query_stride), np.arange(0, w, query_stride), indexing="ij"
    )
    ky, kx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    dy = np.abs(qy.reshape(-1, 1) - ky.reshape(1, -1))
    dx = np.abs(qx.reshape(-1, 1) - kx.reshape(1, -1))
    return (dy * w + dx).reshape(-1).astype("int64")


def _split_heads(x: paddle.Tensor, num_heads: int) -> paddle.Tensor:
    """(N, heads * d, H, W) -> (N, heads, d, H * W)."""
    return x.reshape([0, num_heads, x.shape[1] // num_heads, -1])


class AttentionBias(nn.Layer):
    """Learned position bias per head over the absolute offsets (|dy|, |dx|) of a key grid.

    The table covers offsets 0..grid-1 in both directions; another grid reads a bilinear
    resize of it (see the module docstring).

    Args:
        num_heads: Attention heads.
        grid: Side of the key grid the table is laid out for (the preset's input size).
    """

    def __init__(self, num_heads: int, grid: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.grid = grid
        self.table = self.create_parameter(
            [num_heads, grid, grid], default_initializer=nn.initializer.Constant(0.0)
        )

    def forward(self, key_grid: tuple[int, int], query_stride: int = 1) -> paddle.Tensor:
        """Args:
            key_grid: (h, w) of the keys, static.
            query_stride: Queries sit on the stride-`query_stride` subsample of the keys.

        Returns:
            Bias of shape (num_heads, Nq, h * w), Nq = ceil(h / stride) * ceil(w / stride).
        """
        h, w = key_grid
        table = self.table
        if (h, w) != (self.grid, self.grid):
            table = F.interpolate(
                table.unsqueeze(0), size=[h, w], mode="bilinear", align_corners=True
            ).squeeze(0)
        index = paddle.to_tensor(_offset_index(h, w, query_stride))
        bias = paddle.index_select(table.reshape([self.num_heads, h * w]), index, axis=1)
        return bias.reshape([self.num_heads, -1, h * w])


class GridAttention(nn.Layer):
    """Multi-head self-attention over the feature grid (Sec. 3 of the paper): 1x1 ConvBN
    queries, keys and values, the position bias, "talking heads" (1x1 convs across heads
    before and after the softmax), a local 3x3 depthwise ConvBN of the values added to the
    output, then GELU and a 1x1 ConvBN projection.

    Args:
        chs: Input and output channels.
        key_dim: Query/key channels per head.
        num_heads: Attention heads.
        attn_ratio: Value channels per head over `key_dim`.
        bias_grid: Side of the attention grid the bias table is laid out for.
        strided: Attend on a stride-2 copy of the input (3x3 depthwise ConvBN) and upsample
            the result back (bilinear) before the projection, as in stage 3.
    """

    def __init__(
        self,
        chs: int,
        key_dim: int,
        num_heads: int,
        attn_ratio: int,
        bias_grid: int,
        strided: bool = False,
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scale = key_dim**-0.5
        value_chs = attn_ratio * key_dim * num_heads
        self.stride_conv = (
            ConvBNAct(chs, chs, 3, stride=2, groups=chs, bias=True) if strided else None
        )
        self.q = ConvBNAct(chs, key_dim * num_heads, bias=True)
        self.k = ConvBNAct(chs, key_dim * num_heads, bias=True)
        self.v = ConvBNAct(chs, value_chs, bias=True)
        self.v_local = ConvBNAct(value_chs, value_chs, 3, groups=value_chs, bias=True)
        self.talking_head1 = nn.Conv2D(num_heads, num_heads, 1)
        self.talking_head2 = nn.Conv2D(num_heads, num_heads, 1)
        self.bias = AttentionBias(num_heads, bias_grid)
        self.act = nn.GELU()
        self.proj = ConvBNAct(value_chs, chs, bias=True)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        """Args:
            x: Tensor of shape (N, chs, H, W), H and W static.

        Returns:
            Tensor of shape (N, chs, H, W).
        """
        size = spatial_size(x)
        if self.stride_conv is not None:
            x = self.stride_conv(x)
        h, w = _static_grid(x)
        q = _split_heads(self.q(x), self.num_heads).transpose([0, 1, 3, 2])  # (N, nh, hw, kd)
        k = _split_heads(self.k(x), self.num_heads)  # (N, nh, kd, hw)
        v = self.v(x)
        v_local = self.v_local(v)
        v = _split_heads(v, self.num_heads).transpose([0, 1, 3, 2])  # (N, nh, hw, vd)
        attn = paddle.matmul(q, k) * self.scale + self.bias((h, w))
        attn = self.talking_head2(F.softmax(self.talking_head1(attn), axis=-1))
        out = paddle.matmul(attn, v).transpose([0, 1, 3, 2]).reshape([0, -1, h, w]) + v_local
        if self.stride_conv is not None:
            out = resize(out, size)
        return self.proj(self.act(out))


class DownsampleAttention(nn.Layer):
    """Attention downsampler between stages 3 and 4: stride-2 queries (a 3x3 stride-2
    depthwise conv plus a stride-2 subsample, then a 1x1 ConvBN) attend to full-grid keys
    and values; a stride-2 depthwise ConvBN of the values is added; GELU, 1x1 ConvBN.

    Args:
        in_chs: Input channels.
        out_chs: Output channels.
        key_dim: Query/key channels per head.
        num_heads: Attention heads.
        attn_ratio: Value channels per head over `key_dim`.
        bias_grid: Side of the key grid the bias table is laid out for.
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        key_dim: int,
        num_heads: int,
        attn_ratio: int,
        bias_grid: int,
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scale = key_dim**-0.5
        value_chs = attn_ratio * key_dim * num_heads
        self.q_local = nn.Conv2D(in_chs, in_chs, 3, stride=2, padding=1, groups=in_chs)
        self.q_pool = nn.AvgPool2D(1, stride=2)
        self.q = ConvBNAct(in_chs, key_dim * num_heads, bias=True)
        self.k = ConvBNAct(in_chs, key_dim * num_heads, bias=True)
        self.v = ConvBNAct(in_chs, value_chs, bias=True)
        self.v_local = ConvBNAct(value_chs, value_chs, 3, stride=2, groups=value_chs, bias=True)
        self.bias = AttentionBias(num_heads, bias_grid)
        self.act = nn.GELU()
        self.proj = ConvBNAct(value_chs, out_chs, bias=True)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        """Args:
            x: Tensor of shape (N, in_chs, H, W), H and W static.

        Returns:
            Tensor of shape (N, out_chs, ceil(H / 2), ceil(W / 2)).
        """
        h, w = _static_grid(x)
        q = self.q(self.q_local(x) + self.q_pool(x))
        hq, wq = q.shape[2], q.shape[3]
        q = _split_heads(q, self.num_heads).transpose([0, 1, 3, 2])  # (N, nh, hq*wq, kd)
        k = _split_heads(self.k(x), self.num_heads)  # (N, nh, kd, hw)
        v = self.v(x)
        v_local = self.v_local(v)
        v = _split_heads(v, self.num_heads).transpose([0, 1, 3, 2])  # (N, nh, hw, vd)
        attn = F.softmax(paddle.matmul(q, k) * self.scale + self.bias((h, w), 2), axis=-1)
        out = paddle.matmul(attn, v).transpose([0, 1, 3, 2]).reshape([0, -1, hq, wq]) + v_local
        return self.proj(self.act(out))


class ConvFFN(nn.Layer):
    """Feed-forward block: 1x1 ConvBN expand, GELU, 3x3 depthwise ConvBN, GELU, 1x1 ConvBN.

    Args:
        chs: Input and output channels.
        hidden_chs: Hidden channels (`mlp_ratio * chs`).
    """

    def __init__(self, chs: int, hidden_chs: int) -> None:
        super().__init__()
        self.fc1 = ConvBNAct(chs, hidden_chs, bias=True)
        self.mid = ConvBNAct(hidden_chs, hidden_chs, 3, groups=hidden_chs, bias=True)
        self.fc2 = ConvBNAct(hidden_chs, chs, bias=True)
        self.act = nn.GELU()

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        """Args:
            x: Tensor of shape (N, chs, H, W).

        Returns:
            Tensor of shape (N, chs, H, W).
        """
        return self.fc2(self.act(self.mid(self.act(self.fc1(x)))))


class EfficientFormerV2Block(nn.Layer):
    """`x + ls_attn * attn(x)` when the block has attention, then `x + ls_ffn * ffn(x)`;
    the layer scales are learned per channel. No pre-norm: the BatchNorms are inside.

    Args:
        chs: Channels.
        mlp_ratio: Hidden channels of the FFN over `chs`.
        layer_scale_init: Initial value of the layer scales.
        drop_path: Stochastic depth probability of both branches.
        attn: The attention layer (a GridAttention), or None for an FFN-only block.
    """

    def __init__(
        self,
        chs: int,
        mlp_ratio: float,
        layer_scale_init: float,
        drop_path: float,
        attn: nn.Layer | None = None,
    ) -> None:
        super().__init__()
        init = nn.initializer.Constant(layer_scale_init)
        self.attn = attn
        if attn is not None:
            self.layer_scale_attn = self.create_parameter([chs, 1, 1], default_initializer=init)
        self.ffn = ConvFFN(chs, int(chs * mlp_ratio))
        self.layer_scale_ffn = self.create_parameter([chs, 1, 1], default_initializer=init)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        """Args:
            x: Tensor of shape (N, chs, H, W).

        Returns:
            Tensor of shape (N, chs, H, W).
        """
        if self.attn is not None:
            x = x + self.drop_path(self.layer_scale_attn * self.attn(x))
        return x + self.drop_path(self.layer_scale_ffn * self.ffn(x))


class Downsample(nn.Layer):
    """Embedding between stages: 3x3 stride-2 ConvBN, plus an attention downsampler's output
    when given (stage 3 -> 4).

    Args:
        in_chs: Input channels.
        out_chs: Output channels.
        attn: A DownsampleAttention from `in_chs` to `out_chs`, or None.
    """

    def __init__(self, in_chs: int, out_chs: int, attn: nn.Layer | None = None) -> None:
        super().__init__()
        self.conv = ConvBNAct(in_chs, out_chs, 3, stride=2, bias=True)
        self.attn = attn

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        """Args:
            x: Tensor of shape (N, in_chs, H, W).

        Returns:
            Tensor of shape (N, out_chs, ceil(H / 2), ceil(W / 2)).
        """
        out = self.conv(x)
        return out + self.attn(x) if self.attn is not None else out


# ---------------------------------------------------------------------------------- presets


@dataclass(frozen=True)
class EfficientFormerV2Cfg:
    """EfficientFormerV2 hyperparameters. Field names are the YAML override keys.

    Attributes:
        depths: Blocks per stage.
        widths: Channels per stage.
        mlp_ratios: FFN expansion ratio of every block, one tuple per stage.
        attn_blocks: How many of the last blocks of stages 3 and 4 have attention.
        key_dim: Query/key channels per head of the block attention.
        num_heads: Heads of the block attention and of the downsampler.
        attn_ratio: Value channels per head over the key channels.
        down_key_dim: Query/key channels per head of the attention downsampler.
        layer_scale_init: Initial layer-scale value.
        drop_path_rate: Stochastic depth, increasing linearly over all blocks up to this
            (0.0 for S0 and S1, as published).
        bias_input_size: Input side the position-bias tables are laid out for (the paper's
            224); other input sizes resize the tables (module docstring).
    """

    depths: tuple[int, ...]
    widths: tuple[int, ...]
    mlp_ratios: tuple[tuple[float, ...], ...]
    attn_blocks: int = 2
    key_dim: int = 32
    num_heads: int = 8
    attn_ratio: int = 4
    down_key_dim: int = 16
    layer_scale_init: float = 1e-5
    drop_path_rate: float = 0.0
    bias_input_size: int = 224

    def __post_init__(self) -> None:
        # YAML gives lists; normalise to tuples so presets stay hashable and immutable.
        object.__setattr__(self, "depths", tuple(int(d) for d in self.depths))
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        object.__setattr__(self, "mlp_ratios", tuple(tuple(r) for r in self.mlp_ratios))
        if not len(self.depths) == len(self.widths) == len(self.mlp_ratios) == 4:
            raise ValueError("depths, widths and mlp_ratios need 4 stages")
        lengths = tuple(len(r) for r in self.mlp_ratios)
        if lengths != self.depths:
            raise ValueError(f"mlp_ratios give {lengths} blocks per stage, depths {self.depths}")
        if not 0 <= self.attn_blocks <= min(self.depths[2:]):
            raise ValueError(f"attn_blocks={self.attn_blocks} exceeds the blocks of stage 3 or 4")

    @property
    def bias_grids(self) -> tuple[int, int, int]:
        """Sides of the bias tables: stage-3 attention (stride-2 grid), stage-4 attention,
        downsampler keys; 7, 7, 14 for a 224 input."""
        grid16 = math.ceil(self.bias_input_size / 16)
        return math.ceil(grid16 / 2), math.ceil(self.bias_input_size / 32), grid16


EFFICIENTFORMERV2_PRESETS: dict[str, EfficientFormerV2Cfg] = {
    "s0": EfficientFormerV2Cfg(
        depths=(2, 2, 6, 4),
        widths=(32, 48, 96, 176),
        mlp_ratios=((4, 4), (4, 4), (4, 3, 3, 3, 4, 4), (4, 3, 3, 4)),
    ),
    # Same structure as S0 (attention in the last 2 blocks of stages 3 and 4), deeper and
    # wider, with the published per-block ratios.
    "s1": EfficientFormerV2Cfg(
        depths=(3, 3, 9, 6),
        widths=(32, 48, 120, 224),
        mlp_ratios=((4, 4, 4), (4, 4, 4), (4, 4, 3, 3, 3, 3, 4, 4, 4), (4, 4, 3, 3, 4, 4)),
    ),
}


def efficientformerv2_cfg(
    preset: str | EfficientFormerV2Cfg = "s0", **overrides: Any
) -> EfficientFormerV2Cfg:
    """Returns a preset with `overrides` (EfficientFormerV2Cfg field names) applied.

    Args:
        preset: A key of `EFFICIENTFORMERV2_PRESETS` or an EfficientFormerV2Cfg.
        **overrides: Fields to replace, e.g. `bias_input_size=256`.

    Returns:
        A new EfficientFormerV2Cfg; the presets themselves are never modified.
    """
    return resolve_preset(EFFICIENTFORMERV2_PRESETS, preset, "EfficientFormerV2", **overrides)


# ----------------------------------------------------------------------------------- models


@manager.BACKBONES.add_component
class EfficientFormerV2Backbone(nn.Layer):
    """EfficientFormerV2 backbone with one output BatchNorm per stage (no classifier).

    Args:
        preset: `"s0"`, `"s1"` (published hyperparameters) or an EfficientFormerV2Cfg.
        in_channels: Image channels (PaddleSeg's builder fills it from the dataset).
        pretrained: Optional weights file or URL of this backbone, loaded by the training
            loop (`convert.load_pretrained_weights`), never while building.
        **overrides: EfficientFormerV2Cfg fields, e.g. from YAML: `{drop_path_rate: 0.1}`.

    Attributes:
        in_channels: Image channels.
        cfg: The resolved EfficientFormerV2Cfg.
        embeds: The stem (two 3x3 stride-2 ConvBN + GELU) and the 3 Downsamples.
        stages: The 4 stages of EfficientFormerV2Blocks.
        norms: The 4 output BatchNorms; `norms.{i}` outputs are the features (hook paths).
        feat_channels: Channels of the 4 outputs (`widths`).
        feat_strides: Strides of the 4 outputs, (4, 8, 16, 32).
        family: `"efficientformerv2"`, the key of the decoder preset a segmentor built on
            this backbone takes by default (FastSegFormer-E).
    """

    family = "efficientformerv2"

    def __init__(
        self,
        preset: str | EfficientFormerV2Cfg = "s0",
        in_channels: int = 3,
        pretrained: str | None = None,
        **overrides: Any,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.pretrained = pretrained
        cfg = self.cfg = efficientformerv2_cfg(preset, **overrides)
        widths = cfg.widths
        grid3, grid4, down_grid = cfg.bias_grids
        stem = nn.Sequential(
            ConvBNAct(in_channels, widths[0] // 2, 3, stride=2, bias=True),
            nn.GELU(),
            ConvBNAct(widths[0] // 2, widths[0], 3, stride=2, bias=True),
            nn.GELU(),
        )
        down_attn = DownsampleAttention(
            widths[2], widths[3], cfg.down_key_dim, cfg.num_heads, cfg.attn_ratio, down_grid
        )
        self.embeds = nn.LayerList(
            [
                stem,
                Downsample(widths[0], widths[1]),
                Downsample(widths[1], widths[2]),
                Downsample(widths[2], widths[3], down_attn),
            ]
        )

        total = sum(cfg.depths)
        self.stages = nn.LayerList()
        start = 0
        for i, (chs, depth) in enumerate(zip(widths, cfg.depths, strict=True)):
            blocks = []
            for j in range(depth):
                attn = None
                if i >= 2 and j >= depth - cfg.attn_blocks:
                    attn = GridAttention(
                        chs,
                        cfg.key_dim,
                        cfg.num_heads,
                        cfg.attn_ratio,
                        grid3 if i == 2 else grid4,
                        strided=i == 2,
                    )
                rate = cfg.drop_path_rate * (start + j) / max(total - 1, 1)
                blocks.append(
                    EfficientFormerV2Block(
                        chs, cfg.mlp_ratios[i][j], cfg.layer_scale_init, rate, attn
                    )
                )
            self.stages.append(nn.Sequential(*blocks))
            start += depth
        self.norms = nn.LayerList([nn.BatchNorm2D(chs) for chs in widths])
        self.feat_channels = list(widths)
        self.feat_strides = [4, 8, 16, 32]

    def forward(self, x: paddle.Tensor) -> list[paddle.Tensor]:
        """Args:
            x: Images of shape (N, 3, H, W), H and W multiples of 32 and static.

        Returns:
            4 tensors of shape (N, widths[i], H / s, W / s) for s in (4, 8, 16, 32).
        """
        outs = []
        for i, stage in enumerate(self.stages):
            x = stage(self.embeds[i](x))
            outs.append(self.norms[i](x))
        return outs
