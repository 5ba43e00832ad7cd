"""TopFormer: Token Pyramid Transformer for mobile segmentation (Zhang et al., CVPR 2022).

Reference implementation: PaddleSeg 2.8 `models/backbones/top_transformer.py` and
`models/topformer.py`; their weights load with `convert.load_paddleseg_weights`.

    image -> stem + MobileNetV2 rows -> token pyramid (1/4, 1/8, 1/16, 1/32)
          -> each level average-pooled to one token grid (1/64) and concatenated
          -> transformer blocks -> tokens split back per level
          -> semantic injection into the 1/8, 1/16, 1/32 levels -> (head) sum -> classifier

Contents, top-down:
    blocks:  InvertedResidual, TokenAttention, TransformerBlock, SemanticInjection,
             pool_tokens
    presets: IRRow, TopFormerCfg, TOPFORMER_PRESETS, topformer_cfg
    models:  TopFormerBackbone (registered backbone), TopFormerSeg (registered segmentor)

Export-oriented options (LPCVC 2023 student): `input_size` resizes the image inside the
network so every internal size is a constant, and `token_grid` pools to a fixed grid instead
of a grid derived from the input size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F
from paddleseg.cvlibs import manager

from .layers import (
    ActName,
    ConvBNAct,
    ConvMLP,
    DropPath,
    make_act,
    resize,
    resolve_preset,
    spatial_size,
)
from .segmentor import LightSegmentor

# ----------------------------------------------------------------------------------- blocks


class InvertedResidual(nn.Layer):
    """MobileNetV2 inverted residual: 1x1 expand (skipped when `expand == 1`), kxk depthwise,
    1x1 linear projection; identity shortcut when the shape is kept.

    Args:
        in_chs: Input channels.
        out_chs: Output channels.
        kernel_size: Depthwise kernel size.
        stride: Depthwise stride (1 or 2).
        expand: Expansion ratio of the hidden width.
        act: Activation after the expand and depthwise convolutions.
    """

    def __init__(
        self, in_chs: int, out_chs: int, kernel_size: int, stride: int, expand: int, act: ActName
    ) -> None:
        super().__init__()
        hidden = int(round(in_chs * expand))
        self.expand = ConvBNAct(in_chs, hidden, act=act) if expand != 1 else None
        self.depthwise = ConvBNAct(hidden, hidden, kernel_size, stride, groups=hidden, act=act)
        self.project = ConvBNAct(hidden, out_chs)
        self.use_shortcut = stride == 1 and in_chs == out_chs

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        """Args:
            x: Tensor of shape (N, in_chs, H, W).

        Returns:
            Tensor of shape (N, out_chs, ceil(H / stride), ceil(W / stride)).
        """
        y = self.expand(x) if self.expand is not None else x
        y = self.project(self.depthwise(y))
        return x + y if self.use_shortcut else y


class TokenAttention(nn.Layer):
    """Multi-head self-attention over a token grid with 1x1 ConvBN projections (Sec. 3.2).

    The published models apply no 1/sqrt(key_dim) scaling to q.k; it is left out here as
    well so that their weights give the same outputs.

    Args:
        chs: Token channels.
        key_dim: Channels per head of queries and keys.
        num_heads: Number of heads.
        attn_ratio: Value channels per head = `attn_ratio * key_dim`.
        act: Activation before the output projection.
    """

    def __init__(self, chs: int, key_dim: int, num_heads: int, attn_ratio: int, act: ActName):
        super().__init__()
        self.num_heads = num_heads
        self.key_dim = key_dim
        self.value_dim = attn_ratio * key_dim
        self.to_q = ConvBNAct(chs, key_dim * num_heads)
        self.to_k = ConvBNAct(chs, key_dim * num_heads)
        self.to_v = ConvBNAct(chs, self.value_dim * num_heads)
        self.act = make_act(act)
        # Zero-initialised scale: each block starts as the identity.
        self.proj = ConvBNAct(self.value_dim * num_heads, chs, bn_weight_init=0.0)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        """Args:
            x: Tokens of shape (N, chs, h, w); h and w are static (the token grid).

        Returns:
            Tensor of shape (N, chs, h, w).
        """
        h, w = x.shape[2], x.shape[3]
        q = self.to_q(x).reshape([0, self.num_heads, self.key_dim, -1]).transpose([0, 1, 3, 2])
        k = self.to_k(x).reshape([0, self.num_heads, self.key_dim, -1])
        v = self.to_v(x).reshape([0, self.num_heads, self.value_dim, -1]).transpose([0, 1, 3, 2])
        attn = F.softmax(paddle.matmul(q, k), axis=-1)  # (N, heads, hw, hw)
        out = paddle.matmul(attn, v).transpose([0, 1, 3, 2])  # (N, heads, value_dim, hw)
        out = out.reshape([0, self.num_heads * self.value_dim, h, w])
        return self.proj(self.act(out))


class TransformerBlock(nn.Layer):
    """Transformer block: x + attn(x), then x + mlp(x) (Sec. 3.2); the normalisation is the
    BatchNorm inside each 1x1 ConvBN projection (no LayerNorm).

    Args:
        chs: Token channels.
        key_dim: Channels per head of queries and keys.
        num_heads: Number of heads.
        attn_ratio: Value channels per head over `key_dim`.
        mlp_ratio: Hidden channels of the MLP over `chs`.
        drop_path: Stochastic depth probability of both branches.
        act: Activation of the attention projection and the MLP.
    """

    def __init__(
        self,
        chs: int,
        key_dim: int,
        num_heads: int,
        attn_ratio: int,
        mlp_ratio: int,
        drop_path: float,
        act: ActName,
    ) -> None:
        super().__init__()
        self.attn = TokenAttention(chs, key_dim, num_heads, attn_ratio, act)
        self.mlp = ConvMLP(chs, int(chs * mlp_ratio), act)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        """Args:
            x: Tokens of shape (N, chs, h, w).

        Returns:
            Tensor of shape (N, chs, h, w).
        """
        x = x + self.drop_path(self.attn(x))
        return x + self.drop_path(self.mlp(x))


class SemanticInjection(nn.Layer):
    """Injects global semantics into a local pyramid level (Sec. 3.3, "multi-sum"):
    `local_embed(local) * hsigmoid(gate(global)) + global_embed(global)`, with the two
    global terms bilinearly upsampled to the local size.

    Args:
        chs: Channels of the local level and of its slice of the global tokens.
        out_chs: Output channels.
    """

    def __init__(self, chs: int, out_chs: int) -> None:
        super().__init__()
        self.local_embed = ConvBNAct(chs, out_chs)
        self.gate = ConvBNAct(chs, out_chs, act="hardsigmoid")
        self.global_embed = ConvBNAct(chs, out_chs)

    def forward(
        self, local: paddle.Tensor, tokens: paddle.Tensor, size: list[int] | paddle.Tensor
    ) -> paddle.Tensor:
        """Args:
            local: Pyramid level of shape (N, chs, H, W).
            tokens: Global tokens of that level, shape (N, chs, h, w).
            size: (H, W), constant when the backbone works at a fixed size.

        Returns:
            Tensor of shape (N, out_chs, H, W).
        """
        gate = resize(self.gate(tokens), size)
        return self.local_embed(local) * gate + resize(self.global_embed(tokens), size)


def pool_tokens(x: paddle.Tensor, grid: tuple[int, int]) -> paddle.Tensor:
    """Adaptive average pooling of a pyramid level to the token grid.

    When the level size is not a multiple of the grid (288x288 input: 72 -> 5), the pooling
    is written as two matrix products with constant bin-averaging matrices: paddle2onnx
    2.1 exports such an adaptive pooling as one AveragePool with a uniform kernel and stride,
    which averages the wrong windows (errors of 5e-2 seen here).

    Args:
        x: Tensor of shape (N, C, H, W).
        grid: Output (h, w).

    Returns:
        Tensor of shape (N, C, h, w), equal to `F.adaptive_avg_pool2d(x, grid)`. With a
        dynamic (exported) level size the adaptive pooling is kept as is: export with
        `input_size` set so that the level sizes are constants.
    """
    h, w = x.shape[2], x.shape[3]
    static = isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0
    if not static or (h % grid[0] == 0 and w % grid[1] == 0):
        return F.adaptive_avg_pool2d(x, grid)
    rows = paddle.to_tensor(_bin_average_matrix(h, grid[0]))  # (gh, H)
    cols = paddle.to_tensor(_bin_average_matrix(w, grid[1]).T)  # (W, gw)
    return paddle.matmul(paddle.matmul(rows, x), cols)


def _bin_average_matrix(size: int, bins: int) -> np.ndarray:
    """(bins, size) matrix averaging the adaptive-pooling bins [floor(i*s/b), ceil((i+1)*s/b))."""
    matrix = np.zeros((bins, size), dtype="float32")
    for i in range(bins):
        start, end = (i * size) // bins, -(-(i + 1) * size // bins)
        matrix[i, start:end] = 1.0 / (end - start)
    return matrix


# ---------------------------------------------------------------------------------- presets


@dataclass(frozen=True)
class IRRow:
    """One inverted-residual row of the token pyramid (MobileNetV2 notation k, t, c, s)."""

    kernel: int
    expand: int
    out_chs: int
    stride: int


def _rows(*rows: tuple[int, int, int, int]) -> tuple[IRRow, ...]:
    return tuple(IRRow(*row) for row in rows)


def _as_pair(value: Any) -> tuple[int, int] | None:
    if value is None:
        return None
    if isinstance(value, int):
        return (value, value)
    return (int(value[0]), int(value[1]))


@dataclass(frozen=True)
class TopFormerCfg:
    """TopFormer hyperparameters. Field names are the YAML override keys of the backbone.

    Attributes:
        rows: Inverted-residual rows after the stride-2 stem.
        pyramid_rows: 1-based rows whose outputs form the 4 pyramid levels (1/4 to 1/32).
        embed_chs: Channels of the injected levels and of the head.
        num_heads: Attention heads.
        head_depthwise: Whether the published head uses a depthwise fusion conv (Tiny only).
        depth: Number of transformer blocks.
        num_rows: Use only the first `num_rows` rows; a pyramid row beyond them is taken from
            the last kept row (LPCVC student: 8 of 9 rows, the 1/32 level from row 8).
        key_dim: Query/key channels per head.
        attn_ratio: Value channels per head over `key_dim`.
        mlp_ratio: MLP hidden channels over token channels.
        stem_chs: Channels of the stride-2 stem convolution.
        token_stride: Pooling stride of the token grid relative to the 1/32 level (1/64).
        drop_path_rate: Stochastic depth, linearly increasing over the blocks up to this.
        pyramid_act: Activation of the token pyramid. The published models use ReLU there
            (the paper's ReLU6 is used in the transformer), which their weights need.
        transformer_act: Activation of the transformer blocks.
        input_size: If set, (H, W) the image is resized to inside the backbone; all internal
            sizes are then constants (the injection upsampling included).
        token_grid: If set, a fixed (h, w) token grid; otherwise ceil(H_32 / token_stride),
            which equals the fixed grid at the training size (export-friendly when fixed).
    """

    rows: tuple[IRRow, ...]
    pyramid_rows: tuple[int, ...]
    embed_chs: int
    num_heads: int
    head_depthwise: bool = False
    depth: int = 4
    num_rows: int | None = None
    key_dim: int = 16
    attn_ratio: int = 2
    mlp_ratio: int = 2
    stem_chs: int = 16
    token_stride: int = 2
    drop_path_rate: float = 0.0
    pyramid_act: ActName = "relu"
    transformer_act: ActName = "relu6"
    input_size: tuple[int, int] | None = None
    token_grid: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        # YAML gives lists; normalise to tuples so presets stay hashable and immutable.
        rows = tuple(r if isinstance(r, IRRow) else IRRow(*r) for r in self.rows)
        object.__setattr__(self, "rows", rows)
        object.__setattr__(self, "pyramid_rows", tuple(int(r) for r in self.pyramid_rows))
        object.__setattr__(self, "input_size", _as_pair(self.input_size))
        object.__setattr__(self, "token_grid", _as_pair(self.token_grid))
        num_rows = len(rows) if self.num_rows is None else self.num_rows
        if not 1 <= num_rows <= len(rows):
            raise ValueError(f"num_rows={self.num_rows} must be in [1, {len(rows)}]")
        if len(self.pyramid_rows) != 4:
            raise ValueError(f"pyramid_rows needs 4 levels, got {self.pyramid_rows}")
        if self.depth < 1:
            raise ValueError(f"depth={self.depth} must be >= 1")

    @property
    def used_rows(self) -> tuple[IRRow, ...]:
        """The rows the backbone builds."""
        return self.rows[: self.num_rows or len(self.rows)]

    @property
    def level_rows(self) -> tuple[int, ...]:
        """0-based indices into `used_rows` of the 4 pyramid levels."""
        last = len(self.used_rows)
        return tuple(min(r, last) - 1 for r in self.pyramid_rows)

    @property
    def level_chs(self) -> tuple[int, ...]:
        """Channels of the 4 pyramid levels."""
        return tuple(self.used_rows[i].out_chs for i in self.level_rows)

    @property
    def level_strides(self) -> tuple[int, ...]:
        """Output strides of the 4 pyramid levels (the stem has stride 2)."""
        strides, stride = [], 2
        for row in self.used_rows:
            stride *= row.stride
            strides.append(stride)
        return tuple(strides[i] for i in self.level_rows)


TOPFORMER_PRESETS: dict[str, TopFormerCfg] = {
    "tiny": TopFormerCfg(
        rows=_rows(
            (3, 1, 16, 1),
            (3, 4, 16, 2),
            (3, 3, 16, 1),
            (5, 3, 32, 2),
            (5, 3, 32, 1),
            (3, 3, 64, 2),
            (3, 3, 64, 1),
            (5, 6, 96, 2),
            (5, 6, 96, 1),
        ),
        pyramid_rows=(3, 5, 7, 9),
        embed_chs=128,
        num_heads=4,
        head_depthwise=True,
    ),
    "small": TopFormerCfg(
        rows=_rows(
            (3, 1, 16, 1),
            (3, 4, 24, 2),
            (3, 3, 24, 1),
            (5, 3, 48, 2),
            (5, 3, 48, 1),
            (3, 3, 96, 2),
            (3, 3, 96, 1),
            (5, 6, 128, 2),
            (5, 6, 128, 1),
            (3, 6, 128, 1),
        ),
        pyramid_rows=(3, 5, 7, 10),
        embed_chs=192,
        num_heads=6,
    ),
    "base": TopFormerCfg(
        rows=_rows(
            (3, 1, 16, 1),
            (3, 4, 32, 2),
            (3, 3, 32, 1),
            (5, 3, 64, 2),
            (5, 3, 64, 1),
            (3, 3, 128, 2),
            (3, 3, 128, 1),
            (5, 6, 160, 2),
            (5, 6, 160, 1),
            (3, 6, 160, 1),
        ),
        pyramid_rows=(3, 5, 7, 10),
        embed_chs=256,
        num_heads=8,
    ),
}


def topformer_cfg(preset: str | TopFormerCfg = "tiny", **overrides: Any) -> TopFormerCfg:
    """Returns a preset with `overrides` (TopFormerCfg field names) applied.

    Args:
        preset: A key of `TOPFORMER_PRESETS` or a TopFormerCfg.
        **overrides: Fields to replace, e.g. `depth=3, num_rows=8, token_grid=(5, 5)`.

    Returns:
        A new TopFormerCfg; the presets themselves are never modified.
    """
    return resolve_preset(TOPFORMER_PRESETS, preset, "TopFormer", **overrides)


# ----------------------------------------------------------------------------------- models


@manager.BACKBONES.add_component
class TopFormerBackbone(nn.Layer):
    """TopFormer backbone: token pyramid, transformer over pooled tokens, semantic injection.

    Args:
        preset: `"tiny"`, `"small"`, `"base"` (published hyperparameters) or a TopFormerCfg.
        in_channels: Image channels (PaddleSeg's builder fills it from the dataset).
        pretrained: Optional weights file or URL of this backbone (ours or PaddleSeg's; a
            whole segmentor's file gives its backbone part), loaded by the training loop,
            never while building.
        **overrides: TopFormerCfg fields, e.g. from YAML:
            `{num_rows: 8, depth: 3, input_size: [288, 288], token_grid: [5, 5]}`.

    Attributes:
        cfg: The resolved TopFormerCfg.
        feat_channels: Channels of the 3 outputs (`embed_chs` each).
        feat_strides: Strides of the 3 outputs (8, 16, 32) relative to the working size
            (`input_size` when set, else the input).
    """

    def __init__(
        self,
        preset: str | TopFormerCfg = "tiny",
        in_channels: int = 3,
        pretrained: str | None = None,
        **overrides: Any,
    ) -> None:
        super().__init__()
        self.pretrained = pretrained
        cfg = self.cfg = topformer_cfg(preset, **overrides)
        strides = cfg.level_strides
        if any(b <= a for a, b in zip(strides, strides[1:], strict=False)):
            raise ValueError(f"pyramid levels must have increasing strides, got {strides}")

        self.stem = ConvBNAct(in_channels, cfg.stem_chs, 3, stride=2, act=cfg.pyramid_act)
        self.rows = nn.LayerList()
        in_chs = cfg.stem_chs
        for row in cfg.used_rows:
            self.rows.append(
                InvertedResidual(
                    in_chs, row.out_chs, row.kernel, row.stride, row.expand, cfg.pyramid_act
                )
            )
            in_chs = row.out_chs
        self.level_rows = cfg.level_rows

        token_chs = sum(cfg.level_chs)
        rates = [cfg.drop_path_rate * i / max(cfg.depth - 1, 1) for i in range(cfg.depth)]
        self.transformer = nn.LayerList(
            [
                TransformerBlock(
                    token_chs,
                    cfg.key_dim,
                    cfg.num_heads,
                    cfg.attn_ratio,
                    cfg.mlp_ratio,
                    rate,
                    cfg.transformer_act,
                )
                for rate in rates
            ]
        )
        # The 1/4 level contributes tokens but is not injected or output (Sec. 3.3).
        self.injections = nn.LayerList(
            [SemanticInjection(chs, cfg.embed_chs) for chs in cfg.level_chs[1:]]
        )

        self.feat_channels = [cfg.embed_chs] * len(self.injections)
        self.feat_strides = list(strides[1:])
        self.head_depthwise = cfg.head_depthwise
        # With a fixed working size every level size (and the token grid) is a constant.
        self.level_sizes = None
        self.token_grid = cfg.token_grid
        if cfg.input_size is not None:
            self.level_sizes = [[math.ceil(side / s) for side in cfg.input_size] for s in strides]
            if self.token_grid is None:
                self.token_grid = tuple(
                    math.ceil(side / cfg.token_stride) for side in self.level_sizes[-1]
                )

    def _grid(self, last_level: paddle.Tensor) -> tuple[int, int]:
        if self.token_grid is not None:
            return self.token_grid
        h, w = last_level.shape[2], last_level.shape[3]
        if not (isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0):
            raise ValueError(
                "the token grid follows the input size, which is dynamic here; set "
                "`token_grid` or `input_size` to export with a dynamic input size"
            )
        stride = self.cfg.token_stride
        return (math.ceil(h / stride), math.ceil(w / stride))

    def forward(self, x: paddle.Tensor) -> list[paddle.Tensor]:
        """Args:
            x: Images of shape (N, 3, H, W), H and W multiples of 32 (64 for an exact 1/64
                token grid), or any size when `input_size` is set.

        Returns:
            3 tensors of shape (N, embed_chs, H / s, W / s) for s in `feat_strides`.
        """
        if self.cfg.input_size is not None:
            x = resize(x, list(self.cfg.input_size))
        x = self.stem(x)
        levels = []
        for i, row in enumerate(self.rows):
            x = row(x)
            if i in self.level_rows:
                levels.append(x)

        grid = self._grid(levels[-1])
        # Adaptive pooling = average pooling with kernel = stride = 2^k when the input is a
        # multiple of 64 (how the reference implementation pools).
        tokens = paddle.concat([pool_tokens(level, grid) for level in levels], axis=1)
        for block in self.transformer:
            tokens = block(tokens)
        level_tokens = paddle.split(tokens, list(self.cfg.level_chs), axis=1)

        outs = []
        for i in range(1, len(levels)):
            size = self.level_sizes[i] if self.level_sizes else spatial_size(levels[i])
            outs.append(self.injections[i - 1](levels[i], level_tokens[i], size))
        return outs


@manager.MODELS.add_component
class TopFormerSeg(LightSegmentor):
    """TopFormer segmentor: backbone, sum of the 3 injected levels at 1/8, light head.

    Takes :class:`LightSegmentor`'s arguments; `backbone` is a TopFormerBackbone, whose
    preset decides the head's depthwise conv (published: Tiny only) unless
    `head_depthwise` is given. `pretrained` may be a PaddleSeg TopFormer weight file.

    Example YAML:
        model:
          type: TopFormerSeg
          num_classes: 150
          backbone: {type: TopFormerBackbone, preset: tiny}
          upsample: vim
    """
