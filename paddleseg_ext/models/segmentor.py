"""The segmentor shared by TopFormer and PP-MobileSeg: backbone, light head, upsampling.

Both papers use the same recipe after the backbone: sum the backbone's outputs at the
finest of their resolutions, one 1x1 ConvBN + ReLU (depthwise in TopFormer-Tiny and
PP-MobileSeg), dropout, a classifier, then bilinear upsampling or VIM.
"""

from __future__ import annotations

import paddle
import paddle.nn as nn

from .layers import SegHead, resize, spatial_size
from .vim import ClassSet, LogitsUpsample, UpsampleMode


class LightSegmentor(nn.Layer):
    """Backbone + :class:`SegHead` + :class:`LogitsUpsample`.

    Args:
        num_classes: Number of classes.
        backbone: A built backbone returning a list of features, finest first, and
            exposing `feat_channels`.
        head_depthwise: Depthwise fusion conv in the head; None takes the backbone's
            `head_depthwise` attribute (its preset's published choice), else False.
        dropout: Channel dropout before the classifier.
        upsample: `"bilinear"` (logits) or `"vim"` (int32 labels in eval mode), see vim.py.
        vim_class_set: VIM class set, `"exact"` or `"present"`.
        vim_min_classes: Use VIM only with at least this many classes (0: always).
        align_corners: Bilinear `align_corners` of the final upsampling.
        pretrained: Optional weights file or URL (ours or PaddleSeg's, of a segmentor or
            of a backbone alone), never read while building: the training loop loads it
            (`convert.load_pretrained_weights`), as does `init_weights()`.
    """

    def __init__(
        self,
        num_classes: int,
        backbone: nn.Layer,
        head_depthwise: bool | None = None,
        dropout: float = 0.1,
        upsample: UpsampleMode = "bilinear",
        vim_class_set: ClassSet = "exact",
        vim_min_classes: int = 0,
        align_corners: bool = False,
        pretrained: str | None = None,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        if head_depthwise is None:
            head_depthwise = getattr(backbone, "head_depthwise", False)
        self.head = SegHead(backbone.feat_channels[0], num_classes, head_depthwise, dropout)
        self.upsample = LogitsUpsample(
            num_classes, upsample, vim_class_set, vim_min_classes, align_corners
        )
        self.num_classes = num_classes
        self.pretrained = pretrained

    def init_weights(self) -> None:
        """Loads the backbone's `pretrained`, then this model's, where set."""
        from .convert import load_pretrained_weights

        load_pretrained_weights(self)

    def forward(self, x: paddle.Tensor) -> list[paddle.Tensor]:
        """Args:
            x: Images of shape (N, 3, H, W).

        Returns:
            `[logits]` of shape (N, num_classes, H, W); with `upsample="vim"` in eval mode
            `[labels]` of shape (N, 1, H, W), int32.
        """
        size = spatial_size(x)
        feats = self.backbone(x)
        fused = feats[0]
        for feat in feats[1:]:
            fused = fused + resize(feat, spatial_size(fused))
        return [self.upsample(self.head(fused), size)]
