"""StrideFormer backbone and PP-MobileSeg segmentor (Tang et al., "PP-MobileSeg", 2023).

Reference implementation: PaddleSeg 2.8 `models/backbones/strideformer.py` and
`models/pp_mobileseg.py`; their weights load with `convert.load_paddleseg_weights`.

    image -> stem + 4 stages of MobileNetV3 blocks (1/4, 1/8, 1/16, 1/32)
          -> SeaFormer blocks (squeeze-axial attention on a stride-2 copy) after stages 3, 4
          -> AAM: 1/8, 1/16, 1/32 features gated and summed at 1/16 -> head -> classifier

Contents, top-down:
    blocks:  SqueezeExcite, MV3Block, AxialPosEmbed, SeaAttention, SeaBlock, AAMFusion
    presets: MV3Row, StrideFormerCfg, STRIDEFORMER_PRESETS, strideformer_cfg
    models:  StrideFormerBackbone (registered backbone), MobileSegExt (registered segmentor)

Deliberate difference from the PaddleSeg 2.8 wheel: the wheel passes one activation to both
the attention blocks and the AAM gates, so its gates use ReLU6. The paper and the published
weights use Sigmoid gates (fixed upstream after 2.8; with ReLU6 the published weights lose
about 5 and 7 mIoU). Here `gate_act` defaults to `"sigmoid"` and is separate from `block_act`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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


class SqueezeExcite(nn.Layer):
    """Channel attention of MobileNetV3: global pool, 1x1 reduce (1/4), ReLU, 1x1 expand,
    hard sigmoid (slope 0.2, offset 0.5, as in PaddleSeg's MobileNetV3 the weights come from).

    Args:
        chs: Channels.
    """

    def __init__(self, chs: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2D(chs, chs // 4, 1)
        self.expand = nn.Conv2D(chs // 4, chs, 1)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        """Args:
            x: Tensor of shape (N, chs, H, W).

        Returns:
            `x` rescaled per channel, same shape.
        """
        s = F.relu(self.reduce(F.adaptive_avg_pool2d(x, 1)))
        return x * F.hardsigmoid(self.expand(s), slope=0.2, offset=0.5)


class MV3Block(nn.Layer):
    """MobileNetV3 block: 1x1 expand, kxk depthwise, optional SE, 1x1 linear projection.

    Unlike MobileNetV2 rows the expansion convolution is always present (the published
    models have one even when the hidden width equals the input width).

    Args:
        in_chs: Input channels.
        hidden_chs: Hidden (expanded) channels.
        out_chs: Output channels.
        kernel_size: Depthwise kernel size.
        stride: Depthwise stride.
        use_se: Whether to apply squeeze-excite on the hidden features.
        act: Activation of the expand and depthwise convolutions.
    """

    def __init__(
        self,
        in_chs: int,
        hidden_chs: int,
        out_chs: int,
        kernel_size: int,
        stride: int,
        use_se: bool,
        act: ActName,
    ) -> None:
        super().__init__()
        self.expand = ConvBNAct(in_chs, hidden_chs, act=act)
        self.depthwise = ConvBNAct(
            hidden_chs, hidden_chs, kernel_size, stride, groups=hidden_chs, act=act
        )
        self.se = SqueezeExcite(hidden_chs) if use_se else None
        self.project = ConvBNAct(hidden_chs, out_chs)
        self.use_shortcut = stride == 1 and in_chs == out_chs

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        """Args:
            x: Tensor of shape (N, in_chs, H, W).

        Returns:
            Tensor of shape (N, out_chs, ceil(H / stride), ceil(W / stride)).
        """
        y = self.depthwise(self.expand(x))
        if self.se is not None:
            y = self.se(y)
        y = self.project(y)
        return x + y if self.use_shortcut else y


class AxialPosEmbed(nn.Layer):
    """Learned positional embedding of a squeezed axis, linearly resized to its length.

    Args:
        chs: Channels.
        length: Stored length (16), resized to the actual axis length.
    """

    def __init__(self, chs: int, length: int = 16) -> None:
        super().__init__()
        self.weight = self.create_parameter(
            [1, chs, length], default_initializer=nn.initializer.Normal()
        )

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        """Args:
            x: Tensor of shape (N, chs, L).

        Returns:
            `x` plus the embedding resized to L, shape (N, chs, L).
        """
        length = x.shape[2]
        if not (isinstance(length, int) and length > 0):
            length = paddle.shape(x)[2]
        # 1-D linear resize written as a (1, L) bilinear resize: the same values
        # (half-pixel, no change along the unit axis) with the common 4-D Resize op.
        pos = resize(self.weight.unsqueeze(2), [1, length]).squeeze(2)
        return x + pos


class SeaAttention(nn.Layer):
    """Squeeze-enhanced axial attention (SeaFormer, Wan et al., ICLR 2023), strided.

    Queries, keys and values are averaged along one axis and attend along the other (rows,
    then columns); the two results broadcast back to the grid. A depthwise "detail" branch on
    q, k, v restores local detail and multiplies the hard-sigmoid of the attention output.
    With `downsample` the block works on a stride-2 depthwise copy and upsamples its output
    (PP-MobileSeg Sec. 3.1, "stride" attention).

    Args:
        chs: Input and output channels.
        key_dim: Query/key channels per head.
        num_heads: Number of heads.
        attn_ratio: Value channels per head over `key_dim`.
        act: Activation of the projections and of the detail branch.
        downsample: Work at half resolution.
        pos_len: Stored length of the axial positional embeddings.
    """

    def __init__(
        self,
        chs: int,
        key_dim: int,
        num_heads: int,
        attn_ratio: int,
        act: ActName,
        downsample: bool = True,
        pos_len: int = 16,
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scale = key_dim**-0.5
        qk_chs = key_dim * num_heads
        v_chs = attn_ratio * key_dim * num_heads
        self.v_chs = v_chs
        self.down_conv = nn.Conv2D(chs, chs, 3, 2, 1, groups=chs) if downsample else None
        self.down_bn = nn.BatchNorm2D(chs) if downsample else None
        self.to_q = ConvBNAct(chs, qk_chs)
        self.to_k = ConvBNAct(chs, qk_chs)
        self.to_v = ConvBNAct(chs, v_chs)
        self.row_q_pos = AxialPosEmbed(qk_chs, pos_len)
        self.row_k_pos = AxialPosEmbed(qk_chs, pos_len)
        self.col_q_pos = AxialPosEmbed(qk_chs, pos_len)
        self.col_k_pos = AxialPosEmbed(qk_chs, pos_len)
        self.act = make_act(act)
        # Zero-initialised scales: the axial branches start switched off.
        self.row_proj = ConvBNAct(v_chs, v_chs, bn_weight_init=0.0)
        self.col_proj = ConvBNAct(v_chs, v_chs, bn_weight_init=0.0)
        self.proj = ConvBNAct(v_chs, chs, bn_weight_init=0.0)
        detail_chs = 2 * qk_chs + v_chs
        self.detail_dw = ConvBNAct(detail_chs, detail_chs, 3, groups=detail_chs)
        self.detail_pw = ConvBNAct(detail_chs, chs)
        self.gate = make_act("hardsigmoid")

    def _axial(self, q: paddle.Tensor, k: paddle.Tensor, v: paddle.Tensor) -> paddle.Tensor:
        """Multi-head attention along one axis: q, k (N, heads*kd, L), v (N, v_chs, L)."""
        q = q.reshape([0, self.num_heads, -1, q.shape[-1]]).transpose([0, 1, 3, 2])
        k = k.reshape([0, self.num_heads, -1, k.shape[-1]])
        v = v.reshape([0, self.num_heads, -1, v.shape[-1]]).transpose([0, 1, 3, 2])
        attn = F.softmax(paddle.matmul(q, k) * self.scale, axis=-1)  # (N, heads, L, L)
        out = paddle.matmul(attn, v).transpose([0, 1, 3, 2])  # (N, heads, vd, L)
        return out.reshape([0, self.v_chs, -1])

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        """Args:
            x: Tensor of shape (N, chs, H, W).

        Returns:
            Tensor of shape (N, chs, H, W).
        """
        size = spatial_size(x)
        if self.down_conv is not None:
            x = self.down_bn(self.down_conv(x))
        q, k, v = self.to_q(x), self.to_k(x), self.to_v(x)
        detail = self.detail_pw(self.act(self.detail_dw(paddle.concat([q, k, v], axis=1))))

        rows = self._axial(
            self.row_q_pos(q.mean(axis=-1)), self.row_k_pos(k.mean(axis=-1)), v.mean(axis=-1)
        )
        cols = self._axial(
            self.col_q_pos(q.mean(axis=-2)), self.col_k_pos(k.mean(axis=-2)), v.mean(axis=-2)
        )
        rows = self.row_proj(self.act(rows.unsqueeze(-1)))  # (N, v_chs, H, 1)
        cols = self.col_proj(self.act(cols.unsqueeze(-2)))  # (N, v_chs, 1, W)
        out = self.proj(self.act(v + rows + cols))
        out = self.gate(out) * detail
        if self.down_conv is not None:
            out = resize(out, size)
        return out


class SeaBlock(nn.Layer):
    """Transformer block: x + SeaAttention(x), then x + ConvMLP(x).

    Args:
        chs: Channels.
        key_dim: Query/key channels per head.
        num_heads: Number of heads.
        attn_ratio: Value channels per head over `key_dim`.
        mlp_ratio: MLP hidden channels over `chs`.
        drop_path: Stochastic depth probability.
        act: Activation inside the block.
        downsample: Strided attention.
        pos_len: Stored length of the axial positional embeddings.
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
        downsample: bool,
        pos_len: int,
    ) -> None:
        super().__init__()
        self.attn = SeaAttention(chs, key_dim, num_heads, attn_ratio, act, downsample, pos_len)
        self.mlp = ConvMLP(chs, int(chs * mlp_ratio), act)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        """Args:
            x: Tensor of shape (N, chs, H, W).

        Returns:
            Tensor of shape (N, chs, H, W).
        """
        x = x + self.drop_path(self.attn(x))
        return x + self.drop_path(self.mlp(x))


class AAMFusion(nn.Layer):
    """Aggregated attention module (PP-MobileSeg Sec. 3.2) on the 1/8, 1/16, 1/32 features.

    Each input gets an embedding and a gate (1x1 ConvBN, gate activation); at 1/16:
    `out = g8 * g16 * g32 * (e8 + e16) + e32`, the 1/8 input being resized down first and the
    1/32 terms up.

    Args:
        in_chs: Channels of the 1/8, 1/16 and 1/32 inputs.
        out_chs: Output channels.
        gate_act: Gate activation (`sigmoid` as published; the PaddleSeg 2.8 wheel: `relu6`).
    """

    def __init__(self, in_chs: tuple[int, ...], out_chs: int, gate_act: ActName) -> None:
        super().__init__()
        self.embeds = nn.LayerList([ConvBNAct(c, out_chs) for c in in_chs])
        self.gates = nn.LayerList([ConvBNAct(c, out_chs, act=gate_act) for c in in_chs])

    def forward(self, feats: list[paddle.Tensor]) -> paddle.Tensor:
        """Args:
            feats: Tensors of shapes (N, in_chs[i], H / s, W / s), s = 8, 16, 32.

        Returns:
            Tensor of shape (N, out_chs, H / 16, W / 16).
        """
        x8, x16, x32 = feats
        size = spatial_size(x16)
        x8 = resize(x8, size)
        gate = self.gates[0](x8) * self.gates[1](x16) * resize(self.gates[2](x32), size)
        return gate * (self.embeds[0](x8) + self.embeds[1](x16)) + resize(self.embeds[2](x32), size)


# ---------------------------------------------------------------------------------- presets


@dataclass(frozen=True)
class MV3Row:
    """One MobileNetV3 block: kernel, hidden channels, output channels, SE, activation, stride."""

    kernel: int
    hidden_chs: int
    out_chs: int
    se: bool
    act: ActName
    stride: int


def _stage(*rows: tuple) -> tuple[MV3Row, ...]:
    return tuple(MV3Row(*row) for row in rows)


@dataclass(frozen=True)
class StrideFormerCfg:
    """StrideFormer hyperparameters. Field names are the YAML override keys of the backbone.

    Attributes:
        stages: 4 stages of MobileNetV3 rows after the stride-2 stem (strides 4, 8, 16, 32).
        depths: SeaFormer blocks after stages 3 and 4.
        num_heads: Attention heads.
        key_dims: Query/key channels per head, per transformer stage.
        mlp_ratios: MLP ratios per transformer stage.
        attn_ratio: Value channels per head over the key dim.
        drop_path_rate: Stochastic depth, increasing linearly within each transformer stage.
        fusion_chs: AAM output channels (the head width).
        gate_act: AAM gate activation; `sigmoid` as published (`relu6` reproduces the wheel).
        block_act: Activation inside the SeaFormer blocks.
        stem_chs: Stem channels.
        stem_act: Stem activation.
        stride_attention: Run the attention on a stride-2 copy (PP-MobileSeg).
        pos_len: Stored length of the axial positional embeddings.
    """

    stages: tuple[tuple[MV3Row, ...], ...]
    depths: tuple[int, ...]
    num_heads: int
    key_dims: tuple[int, ...] = (16, 24)
    mlp_ratios: tuple[int, ...] = (2, 4)
    attn_ratio: int = 2
    drop_path_rate: float = 0.1
    fusion_chs: int = 256
    gate_act: ActName = "sigmoid"
    block_act: ActName = "relu6"
    stem_chs: int = 16
    stem_act: ActName = "hardswish"
    stride_attention: bool = True
    pos_len: int = 16

    def __post_init__(self) -> None:
        # YAML gives lists; normalise to tuples of rows.
        stages = tuple(
            tuple(r if isinstance(r, MV3Row) else MV3Row(*r) for r in stage)
            for stage in self.stages
        )
        object.__setattr__(self, "stages", stages)
        for name in ("depths", "key_dims", "mlp_ratios"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if len(stages) != 4:
            raise ValueError(f"StrideFormer needs 4 stages, got {len(stages)}")
        if not len(self.depths) == len(self.key_dims) == len(self.mlp_ratios) == 2:
            raise ValueError("depths, key_dims and mlp_ratios need 2 entries (stages 3, 4)")

    @property
    def stage_chs(self) -> tuple[int, ...]:
        """Output channels of the 4 stages."""
        return tuple(stage[-1].out_chs for stage in self.stages)


STRIDEFORMER_PRESETS: dict[str, StrideFormerCfg] = {
    "tiny": StrideFormerCfg(
        stages=(
            _stage(
                (3, 16, 16, True, "relu", 1),
                (3, 64, 32, False, "relu", 2),
                (3, 48, 24, False, "relu", 1),
            ),
            _stage((5, 96, 32, True, "hardswish", 2), (5, 96, 32, True, "hardswish", 1)),
            _stage((5, 160, 64, True, "hardswish", 2), (5, 160, 64, True, "hardswish", 1)),
            _stage((3, 384, 128, True, "hardswish", 2), (3, 384, 128, True, "hardswish", 1)),
        ),
        depths=(2, 2),
        num_heads=4,
    ),
    "base": StrideFormerCfg(
        stages=(
            _stage(
                (3, 16, 16, True, "relu", 1),
                (3, 64, 32, False, "relu", 2),
                (3, 96, 32, False, "relu", 1),
            ),
            _stage((5, 128, 64, True, "hardswish", 2), (5, 240, 64, True, "hardswish", 1)),
            _stage((5, 384, 128, True, "hardswish", 2), (5, 384, 128, True, "hardswish", 1)),
            _stage((5, 768, 192, True, "hardswish", 2), (5, 768, 192, True, "hardswish", 1)),
        ),
        depths=(3, 3),
        num_heads=8,
    ),
}


def strideformer_cfg(preset: str | StrideFormerCfg = "tiny", **overrides: Any) -> StrideFormerCfg:
    """Returns a preset with `overrides` (StrideFormerCfg field names) applied.

    Args:
        preset: A key of `STRIDEFORMER_PRESETS` or a StrideFormerCfg.
        **overrides: Fields to replace, e.g. `gate_act="relu6", drop_path_rate=0.0`.

    Returns:
        A new StrideFormerCfg; the presets themselves are never modified.
    """
    return resolve_preset(STRIDEFORMER_PRESETS, preset, "StrideFormer", **overrides)


# ----------------------------------------------------------------------------------- models


@manager.BACKBONES.add_component
class StrideFormerBackbone(nn.Layer):
    """StrideFormer: MobileNetV3 stages, strided SeaFormer blocks on 1/16 and 1/32, AAM.

    Args:
        preset: `"tiny"`, `"base"` (published hyperparameters) or a StrideFormerCfg.
        in_channels: Image channels (PaddleSeg's builder fills it from the dataset).
        pretrained: Optional weights file or URL of this backbone (ours or PaddleSeg's; a
            whole segmentor's file gives its backbone part), loaded by the training loop,
            never while building.
        **overrides: StrideFormerCfg fields, e.g. from YAML: `{gate_act: relu6}`.

    Attributes:
        cfg: The resolved StrideFormerCfg.
        feat_channels: `[fusion_chs]`, the single fused output.
        feat_strides: `[16]`.
    """

    def __init__(
        self,
        preset: str | StrideFormerCfg = "tiny",
        in_channels: int = 3,
        pretrained: str | None = None,
        **overrides: Any,
    ) -> None:
        super().__init__()
        self.pretrained = pretrained
        cfg = self.cfg = strideformer_cfg(preset, **overrides)
        self.stem = ConvBNAct(in_channels, cfg.stem_chs, 3, stride=2, act=cfg.stem_act)
        self.stages = nn.LayerList()
        in_chs = cfg.stem_chs
        for stage in cfg.stages:
            blocks = []
            for r in stage:
                blocks.append(
                    MV3Block(in_chs, r.hidden_chs, r.out_chs, r.kernel, r.stride, r.se, r.act)
                )
                in_chs = r.out_chs
            self.stages.append(nn.Sequential(*blocks))

        self.transformers = nn.LayerList()
        for i, depth in enumerate(cfg.depths):
            chs = cfg.stage_chs[2 + i]
            rates = [cfg.drop_path_rate * j / max(depth - 1, 1) for j in range(depth)]
            self.transformers.append(
                nn.Sequential(
                    *[
                        SeaBlock(
                            chs,
                            cfg.key_dims[i],
                            cfg.num_heads,
                            cfg.attn_ratio,
                            cfg.mlp_ratios[i],
                            rate,
                            cfg.block_act,
                            cfg.stride_attention,
                            cfg.pos_len,
                        )
                        for rate in rates
                    ]
                )
            )
        self.fusion = AAMFusion(cfg.stage_chs[1:], cfg.fusion_chs, cfg.gate_act)
        self.feat_channels = [cfg.fusion_chs]
        self.feat_strides = [16]

    def forward(self, x: paddle.Tensor) -> list[paddle.Tensor]:
        """Args:
            x: Images of shape (N, 3, H, W), H and W multiples of 32.

        Returns:
            `[fused]` with fused of shape (N, fusion_chs, H / 16, W / 16).
        """
        x = self.stem(x)
        x = self.stages[0](x)
        x8 = self.stages[1](x)
        x16 = self.transformers[0](self.stages[2](x8))
        x32 = self.transformers[1](self.stages[3](x16))
        return [self.fusion([x8, x16, x32])]


@manager.MODELS.add_component
class MobileSegExt(LightSegmentor):
    """PP-MobileSeg segmentor: StrideFormer backbone, depthwise light head, bilinear or VIM.

    Takes :class:`LightSegmentor`'s arguments; `backbone` is a StrideFormerBackbone
    (one 1/16 feature). The head's fusion conv is depthwise as published unless
    `head_depthwise` is given. `pretrained` may be a PaddleSeg PP-MobileSeg weight file.

    Example YAML:
        model:
          type: MobileSegExt
          num_classes: 150
          backbone: {type: StrideFormerBackbone, preset: base}
          upsample: vim
    """

    def __init__(
        self, num_classes: int, backbone: nn.Layer, head_depthwise: bool = True, **kwargs: Any
    ) -> None:
        super().__init__(num_classes, backbone, head_depthwise=head_depthwise, **kwargs)
