"""Model zoo: TopFormer, StrideFormer (PP-MobileSeg), FastSegFormer (PoolFormer and
EfficientFormerV2 backbones) and valid-class interpolation (VIM).

Importing this package registers the components in PaddleSeg's managers:
backbones `TopFormerBackbone`, `StrideFormerBackbone`, `PoolFormerBackbone`,
`EfficientFormerV2Backbone`; models `TopFormerSeg`, `MobileSegExt`, `FastSegFormer`,
`VIMWrapper`. No stock PaddleSeg name is reused.
"""

from .convert import load_paddleseg_weights, load_pretrained, load_pretrained_weights
from .efficientformerv2 import (
    EFFICIENTFORMERV2_PRESETS,
    EfficientFormerV2Backbone,
    EfficientFormerV2Cfg,
)
from .fastsegformer import FASTSEGFORMER_PRESETS, FastSegFormer, FastSegFormerCfg
from .poolformer import POOLFORMER_PRESETS, PoolFormerBackbone, PoolFormerCfg
from .strideformer import (
    STRIDEFORMER_PRESETS,
    MobileSegExt,
    StrideFormerBackbone,
    StrideFormerCfg,
)
from .topformer import TOPFORMER_PRESETS, TopFormerBackbone, TopFormerCfg, TopFormerSeg
from .vim import LogitsUpsample, VIMWrapper, valid_class_interpolate

__all__ = [
    "EFFICIENTFORMERV2_PRESETS",
    "FASTSEGFORMER_PRESETS",
    "POOLFORMER_PRESETS",
    "STRIDEFORMER_PRESETS",
    "TOPFORMER_PRESETS",
    "EfficientFormerV2Backbone",
    "EfficientFormerV2Cfg",
    "FastSegFormer",
    "FastSegFormerCfg",
    "LogitsUpsample",
    "MobileSegExt",
    "PoolFormerBackbone",
    "PoolFormerCfg",
    "StrideFormerBackbone",
    "StrideFormerCfg",
    "TopFormerBackbone",
    "TopFormerCfg",
    "TopFormerSeg",
    "VIMWrapper",
    "load_paddleseg_weights",
    "load_pretrained",
    "load_pretrained_weights",
    "valid_class_interpolate",
]
