"""PoolFormer backbone (Yu et al., "MetaFormer Is Actually What You Need for Vision", CVPR 2022).

Reference implementation: the authors' `poolformer.py` (sail-sg/poolformer), in its
dense-prediction form (`fork_feat`): no classifier, one output norm per stage. FastSegFormer-P
uses the S12 preset.

    image -> 7x7 stride-4 embedding -> stage 1 -> 3x3 stride-2 embedding -> stage 2 -> ...
          -> stage 4; each stage's output through its own GroupNorm -> 4 features (1/4..1/32)

A block is a MetaFormer block whose token mixer is pooling:
`x + ls1 * (avgpool(GN(x)) - GN(x))`, then `x + ls2 * mlp(GN(x))`, with 1-group GroupNorm.

The 1-group GroupNorm is written out (:class:`GroupNorm1`) rather than `nn.GroupNorm`:
paddle2onnx 2.1.0 converts Paddle's `group_norm` to an ONNX `InstanceNormalization` whose
`epsilon` is uninitialised memory (values from -0.28 to 3e29 were written for the same
model), so the ONNX labels of FastSegFormer-P changed from one export to the next.

Contents, top-down:
    blocks:  GroupNorm1, PoolMixer, ConvMLP1x1, PoolFormerBlock
    presets: PoolFormerCfg, POOLFORMER_PRESETS, poolformer_cfg
    models:  PoolFormerBackbone (registered backbone)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import paddle
import paddle.nn as nn
from paddleseg.cvlibs import manager

from .layers import DropPath, resolve_preset

# ----------------------------------------------------------------------------------- blocks


class GroupNorm1(nn.Layer):
    """GroupNorm with one group (normalise over C, H, W per sample, then a per-channel
    affine), as plain tensor ops that export correctly; parameters `weight` and `bias` as
    `nn.GroupNorm(1, chs)` names them.

    Args:
        chs: Channels.
        eps: Added to the variance.
    """

    def __init__(self, chs: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = self.create_parameter([chs], default_initializer=nn.initializer.Constant(1.0))
        self.bias = self.create_parameter([chs], is_bias=True)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        """Args:
            x: Tensor of shape (N, chs, H, W).

        Returns:
            The normalised tensor, same shape.
        """
        mean = x.mean(axis=[1, 2, 3], keepdim=True)
        var = (x - mean).square().mean(axis=[1, 2, 3], keepdim=True)
        x = (x - mean) / (var + self.eps).sqrt()
        return x * self.weight.reshape([1, -1, 1, 1]) + self.bias.reshape([1, -1, 1, 1])


class PoolMixer(nn.Layer):
    """Pooling token mixer: `avgpool(x) - x` (Sec. 3.1; the input is subtracted because the
    block adds it back through its shortcut).

    The average excludes the zero padding, as the published models do.

    Args:
        pool_size: Pooling window (stride 1, "same" padding).
    """

    def __init__(self, pool_size: int = 3) -> None:
        super().__init__()
        self.pool = nn.AvgPool2D(pool_size, stride=1, padding=pool_size // 2, exclusive=True)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        """Args:
            x: Tensor of shape (N, C, H, W).

        Returns:
            Tensor of shape (N, C, H, W).
        """
        return self.pool(x) - x


class ConvMLP1x1(nn.Layer):
    """Channel MLP as two 1x1 convolutions with biases and an exact GELU between them.

    Args:
        chs: Input and output channels.
        hidden_chs: Hidden channels (`mlp_ratio * chs`).
    """

    def __init__(self, chs: int, hidden_chs: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2D(chs, hidden_chs, 1)
        self.act = nn.GELU()
        self.fc2 = nn.Conv2D(hidden_chs, chs, 1)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        """Args:
            x: Tensor of shape (N, chs, H, W).

        Returns:
            Tensor of shape (N, chs, H, W).
        """
        return self.fc2(self.act(self.fc1(x)))


class PoolFormerBlock(nn.Layer):
    """PoolFormer block: pooling mixer and channel MLP, each pre-normalised by a 1-group
    GroupNorm and scaled per channel by a learned layer scale.

    Args:
        chs: Channels.
        mlp_ratio: Hidden channels of the MLP over `chs`.
        pool_size: Pooling window of the token mixer.
        layer_scale_init: Initial value of both layer scales.
        drop_path: Stochastic depth probability of both branches.
    """

    def __init__(
        self,
        chs: int,
        mlp_ratio: float,
        pool_size: int,
        layer_scale_init: float,
        drop_path: float,
    ) -> None:
        super().__init__()
        self.norm1 = GroupNorm1(chs)
        self.mixer = PoolMixer(pool_size)
        self.norm2 = GroupNorm1(chs)
        self.mlp = ConvMLP1x1(chs, int(chs * mlp_ratio))
        init = nn.initializer.Constant(layer_scale_init)
        self.layer_scale1 = self.create_parameter([chs, 1, 1], default_initializer=init)
        self.layer_scale2 = self.create_parameter([chs, 1, 1], default_initializer=init)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        """Args:
            x: Tensor of shape (N, chs, H, W).

        Returns:
            Tensor of shape (N, chs, H, W).
        """
        x = x + self.drop_path(self.layer_scale1 * self.mixer(self.norm1(x)))
        return x + self.drop_path(self.layer_scale2 * self.mlp(self.norm2(x)))


# ---------------------------------------------------------------------------------- presets


@dataclass(frozen=True)
class PoolFormerCfg:
    """PoolFormer hyperparameters. Field names are the YAML override keys of the backbone.

    Attributes:
        depths: Blocks per stage.
        widths: Channels per stage.
        mlp_ratio: MLP hidden channels over stage channels.
        pool_size: Pooling window of the token mixer.
        layer_scale_init: Initial layer-scale value (1e-5; 1e-6 for S36, as published).
        drop_path_rate: Stochastic depth, increasing linearly over all blocks up to this.
            0.0 by default (the published ImageNet training used 0.1 for S12 and S24 and
            0.2 for S36; set it here when training the backbone from scratch).
    """

    depths: tuple[int, ...]
    widths: tuple[int, ...] = (64, 128, 320, 512)
    mlp_ratio: float = 4.0
    pool_size: int = 3
    layer_scale_init: float = 1e-5
    drop_path_rate: float = 0.0

    def __post_init__(self) -> None:
        # YAML gives lists; normalise to tuples so presets stay hashable and immutable.
        object.__setattr__(self, "depths", tuple(int(d) for d in self.depths))
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        if not len(self.depths) == len(self.widths) == 4:
            raise ValueError(f"PoolFormer needs 4 stages, got {self.depths} / {self.widths}")
        if min(self.depths) < 1:
            raise ValueError(f"every stage needs a block, got depths {self.depths}")


POOLFORMER_PRESETS: dict[str, PoolFormerCfg] = {
    "s12": PoolFormerCfg(depths=(2, 2, 6, 2)),
    "s24": PoolFormerCfg(depths=(4, 4, 12, 4)),
    "s36": PoolFormerCfg(depths=(6, 6, 18, 6), layer_scale_init=1e-6),
}


def poolformer_cfg(preset: str | PoolFormerCfg = "s12", **overrides: Any) -> PoolFormerCfg:
    """Returns a preset with `overrides` (PoolFormerCfg field names) applied.

    Args:
        preset: A key of `POOLFORMER_PRESETS` or a PoolFormerCfg.
        **overrides: Fields to replace, e.g. `drop_path_rate=0.1`.

    Returns:
        A new PoolFormerCfg; the presets themselves are never modified.
    """
    return resolve_preset(POOLFORMER_PRESETS, preset, "PoolFormer", **overrides)


# ----------------------------------------------------------------------------------- models


@manager.BACKBONES.add_component
class PoolFormerBackbone(nn.Layer):
    """PoolFormer backbone with one output GroupNorm per stage (no classifier).

    Args:
        preset: `"s12"`, `"s24"`, `"s36"` (published hyperparameters) or a PoolFormerCfg.
        in_channels: Image channels (PaddleSeg's builder fills it from the dataset).
        pretrained: Optional weights file or URL of this backbone, loaded by the training
            loop (`convert.load_pretrained_weights`), never while building.
        **overrides: PoolFormerCfg fields, e.g. from YAML: `{drop_path_rate: 0.1}`.

    Attributes:
        in_channels: Image channels.
        cfg: The resolved PoolFormerCfg.
        embeds: The 4 patch embeddings: the 7x7 stride-4 stem, then 3x3 stride-2
            convolutions (with biases, no norm).
        stages: The 4 stages of PoolFormerBlocks.
        norms: The 4 output GroupNorms; `norms.{i}` outputs are the features (hook paths).
        feat_channels: Channels of the 4 outputs (`widths`).
        feat_strides: Strides of the 4 outputs, (4, 8, 16, 32).
        family: `"poolformer"`, the key of the decoder preset a segmentor built on this
            backbone takes by default (FastSegFormer-P).
    """

    family = "poolformer"

    def __init__(
        self,
        preset: str | PoolFormerCfg = "s12",
        in_channels: int = 3,
        pretrained: str | None = None,
        **overrides: Any,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.pretrained = pretrained
        cfg = self.cfg = poolformer_cfg(preset, **overrides)
        widths = cfg.widths
        self.embeds = nn.LayerList(
            [nn.Conv2D(in_channels, widths[0], 7, stride=4, padding=2)]
            + [
                nn.Conv2D(a, b, 3, stride=2, padding=1)
                for a, b in zip(widths, widths[1:], strict=False)
            ]
        )
        total = sum(cfg.depths)
        self.stages = nn.LayerList()
        start = 0
        for chs, depth in zip(widths, cfg.depths, strict=True):
            rates = [cfg.drop_path_rate * (start + j) / max(total - 1, 1) for j in range(depth)]
            self.stages.append(
                nn.Sequential(
                    *[
                        PoolFormerBlock(
                            chs, cfg.mlp_ratio, cfg.pool_size, cfg.layer_scale_init, rate
                        )
                        for rate in rates
                    ]
                )
            )
            start += depth
        self.norms = nn.LayerList([GroupNorm1(chs) for chs in widths])
        self.feat_channels = list(widths)
        self.feat_strides = [4, 8, 16, 32]

    def forward(self, x: paddle.Tensor) -> list[paddle.Tensor]:
        """Args:
            x: Images of shape (N, 3, H, W), H and W multiples of 32.

        Returns:
            4 tensors of shape (N, widths[i], H / s, W / s) for s in (4, 8, 16, 32).
        """
        outs = []
        for i, stage in enumerate(self.stages):
            x = stage(self.embeds[i](x))
            outs.append(self.norms[i](x))
        return outs
