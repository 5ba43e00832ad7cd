"""Model zoo: TopFormer, StrideFormer (PP-MobileSeg) and valid-class interpolation (VIM).

Importing this package registers the components in PaddleSeg's managers:
backbones `TopFormerBackbone`, `StrideFormerBackbone`; models `TopFormerSeg`,
`MobileSegExt`, `VIMWrapper`. No stock PaddleSeg name is reused.
"""

from .convert import load_paddleseg_weights, load_pretrained, load_pretrained_weights
from .strideformer import (
    STRIDEFORMER_PRESETS,
    MobileSegExt,
    StrideFormerBackbone,
    StrideFormerCfg,
)
from .topformer import TOPFORMER_PRESETS, TopFormerBackbone, TopFormerCfg, TopFormerSeg
from .vim import LogitsUpsample, VIMWrapper, valid_class_interpolate

__all__ = [
    "STRIDEFORMER_PRESETS",
    "TOPFORMER_PRESETS",
    "LogitsUpsample",
    "MobileSegExt",
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
