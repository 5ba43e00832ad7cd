"""FastSegFormer-P / -E segmentors (Cai et al., "FastSegFormer: A knowledge distillation-based
method for real-time semantic segmentation of surface defects in navel oranges", 2024).

Reference implementation: the authors' `nets/FastSegFormer/fast_segformer.py`
(caixiongjiang/FastSegFormer). The decoder is Fast-SCNN's (global feature extractor, feature
fusion, classifier) on a transformer backbone: PoolFormer-S12 (-P) or EfficientFormerV2-S0 (-E).

    image -> backbone -> s1..s4 (1/4 .. 1/32); the decoder reads s4 and s2 only
    s4 -> 1x1 ConvBNReLU -> MobileNetV2 bottlenecks -> pyramid ("multiscale" or "pooling")
       -> fusion with s2 at 1/8 -> head (2 depthwise-separable convs, dropout, 1x1 conv)
       -> half-resolution branch (the paper's image reconstruction branch): + a 3x3 ConvBN
          of the half-size image, depthwise-separable conv, x2 to the input size, classifier

Differences from the authors' code, both for other input sizes: the half-resolution branch
works at half the input size (the authors fix 112, right for 224 only), and the deep path is
upsampled to the size of s2 (the authors scale by 4, which needs an input multiple of 32).
At 224x224 both equal the published model.

Contents, top-down:
    blocks:  DepthwiseSeparable, MultiscalePyramid, PoolingPyramid, FeatureFusion,
             SeparableHead, HalfResBranch
    presets: FastSegFormerCfg, FASTSEGFORMER_PRESETS, fastsegformer_cfg
    models:  FastSegFormer (registered segmentor)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import paddle
import paddle.nn as nn
import paddle.nn.functional as F
from paddleseg.cvlibs import manager

from .layers import ConvBNAct, resize, resolve_preset, spatial_size
from .topformer import InvertedResidual, pool_tokens

PyramidKind = Literal["multiscale", "pooling"]

# ----------------------------------------------------------------------------------- blocks


class DepthwiseSeparable(nn.Layer):
    """3x3 depthwise ConvBN + ReLU, then 1x1 ConvBN + ReLU (no convolution biases).

    Args:
        in_chs: Input channels.
        out_chs: Output channels.
    """

    def __init__(self, in_chs: int, out_chs: int) -> None:
        super().__init__()
        self.depthwise = ConvBNAct(in_chs, in_chs, 3, groups=in_chs, act="relu")
        self.pointwise = ConvBNAct(in_chs, out_chs, act="relu")

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        """Args:
            x: Tensor of shape (N, in_chs, H, W).

        Returns:
            Tensor of shape (N, out_chs, H, W).
        """
        return self.pointwise(self.depthwise(x))


class MultiscalePyramid(nn.Layer):
    """Multi-scale convolution pyramid (the paper's MSP): four parallel ConvBNReLU
    `in -> in/4` with kernels 1, 3, 5, 7, each followed by a 1x1 ConvBNReLU; the input and
    the four maps are concatenated (2 * in channels) and fused by a 1x1 ConvBNReLU.

    Args:
        in_chs: Input channels (a multiple of 4).
        out_chs: Output channels.
    """

    def __init__(self, in_chs: int, out_chs: int) -> None:
        super().__init__()
        inter = in_chs // 4
        self.branches = nn.LayerList(
            [
                nn.Sequential(
                    ConvBNAct(in_chs, inter, k, act="relu"), ConvBNAct(inter, inter, act="relu")
                )
                for k in (1, 3, 5, 7)
            ]
        )
        self.out = ConvBNAct(2 * in_chs, out_chs, act="relu")

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        """Args:
            x: Tensor of shape (N, in_chs, h, w).

        Returns:
            Tensor of shape (N, out_chs, h, w).
        """
        return self.out(paddle.concat([x] + [branch(x) for branch in self.branches], axis=1))


class PoolingPyramid(nn.Layer):
    """Pyramid pooling module (PSPNet's, the paper's ablation): adaptive average pooling to
    1, 2, 3 and 6 bins, a 1x1 ConvBNReLU `in -> in/4` each, bilinear back to the input
    size; the input and the four maps are concatenated and fused by a 1x1 ConvBNReLU.

    The pooling is `topformer.pool_tokens`, which exports correctly when the grid is not a
    multiple of the bins (7x7 at 224 input, pooled to 2, 3 and 6).

    Args:
        in_chs: Input channels (a multiple of 4).
        out_chs: Output channels.
        bins: Output sizes of the poolings.
    """

    def __init__(self, in_chs: int, out_chs: int, bins: tuple[int, ...] = (1, 2, 3, 6)) -> None:
        super().__init__()
        self.bins = bins
        self.branches = nn.LayerList([ConvBNAct(in_chs, in_chs // 4, act="relu") for _ in bins])
        self.out = ConvBNAct(in_chs + len(bins) * (in_chs // 4), out_chs, act="relu")

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        """Args:
            x: Tensor of shape (N, in_chs, h, w).

        Returns:
            Tensor of shape (N, out_chs, h, w).
        """
        size = spatial_size(x)
        pooled = [
            resize(branch(pool_tokens(x, (self.bins[i], self.bins[i]))), size, align_corners=True)
            for i, branch in enumerate(self.branches)
        ]
        return self.out(paddle.concat([x, *pooled], axis=1))


class FeatureFusion(nn.Layer):
    """Fast-SCNN feature fusion: the deep map, bilinearly upsampled to the skip's size
    (`align_corners=True`), through a 3x3 depthwise ConvBNReLU and a 1x1 ConvBN (with
    bias); the skip through a 1x1 ConvBN (with bias); sum, ReLU.

    Args:
        skip_chs: Channels of the skip feature (s2).
        chs: Channels of the deep map and of the output.
    """

    def __init__(self, skip_chs: int, chs: int) -> None:
        super().__init__()
        self.deep_dw = ConvBNAct(chs, chs, 3, groups=chs, act="relu")
        self.deep_proj = ConvBNAct(chs, chs, bias=True)
        self.skip_proj = ConvBNAct(skip_chs, chs, bias=True)

    def forward(self, skip: paddle.Tensor, deep: paddle.Tensor) -> paddle.Tensor:
        """Args:
            skip: Tensor of shape (N, skip_chs, H, W).
            deep: Tensor of shape (N, chs, h, w), coarser.

        Returns:
            Tensor of shape (N, chs, H, W).
        """
        deep = resize(deep, spatial_size(skip), align_corners=True)
        return F.relu(self.skip_proj(skip) + self.deep_proj(self.deep_dw(deep)))


class SeparableHead(nn.Layer):
    """Fast-SCNN classifier: two depthwise-separable convs, dropout, 1x1 conv (with bias).

    Args:
        chs: Input channels.
        out_chs: Output channels: `num_classes`, or the half-resolution branch's width.
        dropout: Dropout probability before the last conv.
    """

    def __init__(self, chs: int, out_chs: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.convs = nn.Sequential(DepthwiseSeparable(chs, chs), DepthwiseSeparable(chs, chs))
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Conv2D(chs, out_chs, 1)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        """Args:
            x: Tensor of shape (N, chs, h, w).

        Returns:
            Tensor of shape (N, out_chs, h, w).
        """
        return self.classifier(self.dropout(self.convs(x)))


class HalfResBranch(nn.Layer):
    """Half-resolution branch (the paper's image reconstruction branch; it has no loss of
    its own): the image at half size through a 3x3 ConvBN, plus the head's output resized
    to that size; a depthwise-separable conv; bilinear x2 to the input size; 1x1 classifier.
    Every resize is bilinear with `align_corners=True`, as published.

    Args:
        in_chs: Image channels.
        chs: Width of the branch and of the head's output (32 in both published models).
        num_classes: Number of classes.
    """

    def __init__(self, in_chs: int, chs: int, num_classes: int) -> None:
        super().__init__()
        self.image_conv = ConvBNAct(in_chs, chs, 3)
        self.refine = DepthwiseSeparable(chs, chs)
        self.classifier = nn.Conv2D(chs, num_classes, 1)

    def forward(self, image: paddle.Tensor, head_out: paddle.Tensor) -> paddle.Tensor:
        """Args:
            image: Images of shape (N, in_chs, H, W).
            head_out: The head's output, shape (N, chs, H / 8, W / 8).

        Returns:
            Logits of shape (N, num_classes, H, W).
        """
        size = spatial_size(image)
        half = [s // 2 for s in size] if isinstance(size, list) else size // 2
        x = self.image_conv(resize(image, half, align_corners=True))
        x = self.refine(x + resize(head_out, half, align_corners=True))
        return self.classifier(resize(x, size, align_corners=True))


# ---------------------------------------------------------------------------------- presets


@dataclass(frozen=True)
class FastSegFormerCfg:
    """Decoder widths. Field names are the YAML override keys of the segmentor.

    Attributes:
        reduce_chs: Output of the 1x1 ConvBNReLU on s4.
        bottleneck_chs: Output channels of each MobileNetV2 bottleneck, in order.
        pyramid_chs: Output of the pyramid; also the fusion and head width.
        expand: Expansion ratio of the bottlenecks.
        branch_chs: Head output and half-resolution branch width (K when the branch is on).
        dropout: Dropout before the head's last conv.
    """

    reduce_chs: int
    bottleneck_chs: tuple[int, ...]
    pyramid_chs: int
    expand: int = 3
    branch_chs: int = 32
    dropout: float = 0.1

    def __post_init__(self) -> None:
        # YAML gives lists; normalise to a tuple so presets stay hashable and immutable.
        object.__setattr__(self, "bottleneck_chs", tuple(int(c) for c in self.bottleneck_chs))
        if not self.bottleneck_chs:
            raise ValueError("bottleneck_chs needs at least one bottleneck")
        if self.bottleneck_chs[-1] % 4:
            raise ValueError(f"the pyramid input {self.bottleneck_chs[-1]} must divide by 4")


FASTSEGFORMER_PRESETS: dict[str, FastSegFormerCfg] = {
    # FastSegFormer-P: s4 512 -> 256, 2 bottlenecks 256 -> 256, pyramid 256 -> 512.
    "poolformer": FastSegFormerCfg(reduce_chs=256, bottleneck_chs=(256, 256), pyramid_chs=512),
    # FastSegFormer-E: s4 176 -> 128, 3 bottlenecks at 128, 3 at 160, pyramid 160 -> 320.
    "efficientformerv2": FastSegFormerCfg(
        reduce_chs=128, bottleneck_chs=(128, 128, 128, 160, 160, 160), pyramid_chs=320
    ),
}


def fastsegformer_cfg(preset: str | FastSegFormerCfg, **overrides: Any) -> FastSegFormerCfg:
    """Returns a decoder preset with `overrides` (FastSegFormerCfg field names) applied.

    Args:
        preset: A key of `FASTSEGFORMER_PRESETS` (a backbone family) or a FastSegFormerCfg.
        **overrides: Fields to replace, e.g. `pyramid_chs=256`.

    Returns:
        A new FastSegFormerCfg; the presets themselves are never modified.
    """
    return resolve_preset(FASTSEGFORMER_PRESETS, preset, "FastSegFormer", **overrides)


# ----------------------------------------------------------------------------------- models


@manager.MODELS.add_component
class FastSegFormer(nn.Layer):
    """FastSegFormer: transformer backbone, Fast-SCNN decoder, half-resolution branch.

    Published models (4 classes, 224x224): FastSegFormer-P = PoolFormerBackbone("s12"),
    FastSegFormer-E = EfficientFormerV2Backbone("s0"), both with `pyramid="multiscale"`
    and `half_res_branch=True`.

    Sublayer paths for feature hooks (e.g. the paper's distillation pairs, in its order):
    `backbone.norms.0` .. `backbone.norms.3` (s1..s4), `pyramid` (pyramid output),
    `fusion` (fusion output, 1/8), `half_res.refine` (half-resolution map); also
    `bottlenecks` (pyramid input) and `head` (the head's output, 1/8).

    Args:
        num_classes: Number of classes.
        backbone: A built backbone returning 4 features (1/4 .. 1/32) and exposing
            `feat_channels`; the decoder reads the 2nd (skip) and the 4th (deep). Its
            `in_channels` (3 if absent) is the image channels of the half-resolution branch.
        pyramid: `"multiscale"` (the published MSP) or `"pooling"` (PPM, the ablation).
        half_res_branch: Add the half-resolution branch (published). Without it the head
            outputs `num_classes` logits, bilinearly upsampled to the input size.
        decoder: A key of `FASTSEGFORMER_PRESETS` or a FastSegFormerCfg; None takes the
            preset named by the backbone's `family` attribute.
        input_size: If set, (H, W), multiples of 32: the image is resized to it inside the
            model (bilinear) and the logits back to the image size, so the network runs at
            a fixed resolution whatever the input (the paper's 224x224 student fed a larger
            batch; the half-resolution branch then works at half of `input_size`).
        pretrained: Optional weights file or URL, of this model or of its backbone alone,
            never read while building: the training loop loads it
            (`convert.load_pretrained_weights`), as does `init_weights()`.
        **overrides: FastSegFormerCfg fields, e.g. from YAML: `{pyramid_chs: 256}`.

    Example YAML:
        model:
          type: FastSegFormer
          num_classes: 4
          backbone: {type: PoolFormerBackbone, preset: s12}
          pyramid: multiscale
    """

    def __init__(
        self,
        num_classes: int,
        backbone: nn.Layer,
        pyramid: PyramidKind = "multiscale",
        half_res_branch: bool = True,
        decoder: str | FastSegFormerCfg | None = None,
        input_size: tuple[int, int] | list[int] | None = None,
        pretrained: str | None = None,
        **overrides: Any,
    ) -> None:
        super().__init__()
        if input_size is not None:
            input_size = [int(v) for v in input_size]
            if len(input_size) != 2 or any(v <= 0 or v % 32 for v in input_size):
                raise ValueError(f"input_size: expected [H, W], multiples of 32, got {input_size}")
        self.input_size = input_size
        if pyramid not in PyramidKind.__args__:
            raise ValueError(f"unknown pyramid {pyramid!r}; expected one of {PyramidKind.__args__}")
        if decoder is None:
            decoder = getattr(backbone, "family", None)
            if decoder is None:
                raise ValueError(
                    f"{type(backbone).__name__} names no decoder preset (`family`); give "
                    f"`decoder`: one of {list(FASTSEGFORMER_PRESETS)} or a FastSegFormerCfg"
                )
        cfg = self.cfg = fastsegformer_cfg(decoder, **overrides)
        self.backbone = backbone
        self.num_classes = num_classes
        self.pretrained = pretrained

        skip_chs, deep_chs = backbone.feat_channels[1], backbone.feat_channels[3]
        self.reduce = ConvBNAct(deep_chs, cfg.reduce_chs, act="relu")
        chs = (cfg.reduce_chs, *cfg.bottleneck_chs)
        self.bottlenecks = nn.Sequential(
            *[
                InvertedResidual(a, b, 3, 1, cfg.expand, "relu")
                for a, b in zip(chs, chs[1:], strict=False)
            ]
        )
        pyramid_cls = MultiscalePyramid if pyramid == "multiscale" else PoolingPyramid
        self.pyramid = pyramid_cls(chs[-1], cfg.pyramid_chs)
        self.fusion = FeatureFusion(skip_chs, cfg.pyramid_chs)
        # PaddleSeg's builder gives the dataset's image channels to the backbone only.
        in_chs = getattr(backbone, "in_channels", 3)
        head_out = cfg.branch_chs if half_res_branch else num_classes
        self.head = SeparableHead(cfg.pyramid_chs, head_out, cfg.dropout)
        self.half_res = (
            HalfResBranch(in_chs, cfg.branch_chs, num_classes) if half_res_branch else None
        )

    def init_weights(self) -> None:
        """Loads the backbone's `pretrained`, then this model's, where set."""
        from .convert import load_pretrained_weights

        load_pretrained_weights(self)

    def forward(self, x: paddle.Tensor) -> list[paddle.Tensor]:
        """Args:
            x: Images of shape (N, 3, H, W), H and W multiples of 32 (any size with
                `input_size`).

        Returns:
            `[logits]` of shape (N, num_classes, H, W).
        """
        size = spatial_size(x)
        if self.input_size is not None:
            x = resize(x, self.input_size)
        feats = self.backbone(x)
        deep = self.pyramid(self.bottlenecks(self.reduce(feats[3])))
        out = self.head(self.fusion(feats[1], deep))
        if self.half_res is not None:
            logits = self.half_res(x, out)
        else:
            logits = resize(out, spatial_size(x), align_corners=True)
        if self.input_size is not None:
            logits = resize(logits, size)
        return [logits]
