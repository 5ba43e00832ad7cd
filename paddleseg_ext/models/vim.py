"""Valid-class interpolation (VIM) of PP-MobileSeg (Tang et al., 2023, Sec. 3.3).

Upsampling C-channel logits from 1/8 or 1/16 to full size before the argmax dominates the
inference time of light models (150 x 512 x 512 values for ADE20K). VIM upsamples only the
channels of the classes that can win somewhere, then maps the argmax back to class ids:

    low-res logits (N, C, h, w) -> kept classes K (K << C) -> gather (N, K, h, w)
    -> bilinear (N, K, H, W) -> argmax over K -> class ids (N, 1, H, W)

Which classes are kept (`class_set`):

- `"present"` is the paper's rule: the classes of the low-resolution argmax. It is not exact:
  a class that wins at no low-resolution pixel can still win between two pixels of different
  classes (0.5 * (10, 0, 6) + 0.5 * (0, 10, 6) = (5, 5, 6)). Such pixels are rare on trained
  models but exist.
- `"exact"` (default) also keeps every class that can reach the bilinear interpolation's
  lower bound: a bilinear value is a convex combination of the 4 corners of its cell, so
  class c can win in a cell only if max_corners(z_c) >= max_k min_corners(z_k). This set
  contains the present classes, is computed with two max-poolings at low resolution, and
  makes the labels equal to full upsampling + argmax (up to float rounding at exact ties).
  On confident logits it keeps the same classes as `"present"`; where many classes are
  close at a boundary it keeps more of them (on random logits nearly all: no speed-up,
  still the right labels).

There is no loop over classes (the stock implementation's loop becomes a `while` op that
breaks Paddle Inference and paddle2onnx on Paddle 3.3): the kept set is a `nonzero` of a mask,
so the exported graph has a dynamic channel count (ONNX NonZero, Gather, Resize, ArgMax).

Training is unchanged: in training mode the logits are upsampled with plain bilinear
interpolation so losses see (N, C, H, W) logits.
"""

from __future__ import annotations

from typing import Literal

import paddle
import paddle.nn as nn
import paddle.nn.functional as F
from paddleseg.cvlibs import manager

from .layers import resize, spatial_size

ClassSet = Literal["exact", "present"]
UpsampleMode = Literal["bilinear", "vim"]


def valid_class_mask(logits: paddle.Tensor, class_set: ClassSet = "exact") -> paddle.Tensor:
    """Marks the classes that can win the argmax after bilinear upsampling.

    Args:
        logits: Low-resolution logits of shape (N, C, h, w).
        class_set: `"exact"` (classes that can win anywhere after bilinear upsampling) or
            `"present"` (classes of the low-resolution argmax, the paper's rule).

    Returns:
        Bool tensor of shape (C,), the union over the batch.
    """
    if class_set == "present":
        # Ties at the maximum keep every tied class, so the full argmax's choice is kept.
        top = logits.max(axis=1, keepdim=True)
        return (logits >= top).any(axis=[0, 2, 3])
    if class_set != "exact":
        raise ValueError(f"unknown class_set {class_set!r}; expected 'exact' or 'present'")
    # Every 2x2 window (and the partial windows at the borders, which padding with -inf
    # gives) is a cell whose corners a bilinear output pixel combines.
    corner_max = F.max_pool2d(logits, kernel_size=2, stride=1, padding=1)
    corner_min = -F.max_pool2d(-logits, kernel_size=2, stride=1, padding=1)
    # The winning value in a cell is at least the best class's worst corner.
    floor = corner_min.max(axis=1, keepdim=True)
    # A small margin keeps classes within float rounding of the bound.
    margin = 1e-5 * (floor.abs() + 1.0)
    return (corner_max >= floor - margin).any(axis=[0, 2, 3])


def valid_class_interpolate(
    logits: paddle.Tensor,
    size: list[int] | paddle.Tensor,
    class_set: ClassSet = "exact",
    align_corners: bool = False,
) -> paddle.Tensor:
    """Labels of bilinearly upsampled logits, interpolating only the classes that can win.

    Args:
        logits: Low-resolution logits of shape (N, C, h, w).
        size: Output size (H, W), ints or a 1-D int tensor.
        class_set: Which classes to interpolate, see `valid_class_mask`.
        align_corners: Bilinear `align_corners`, as in the full upsampling it replaces.

    Returns:
        Int32 labels of shape (N, 1, H, W), equal to
        `argmax(interpolate(logits, size), axis=1, keepdim=True)` for `class_set="exact"`.
    """
    kept = paddle.nonzero(valid_class_mask(logits, class_set)).flatten()  # (K,) sorted ids
    sub = paddle.gather(logits, kept, axis=1)  # (N, K, h, w)
    index = paddle.argmax(resize(sub, size, align_corners), axis=1, keepdim=True)
    # Kept ids are ascending, so ties resolve to the lowest class id as in the full argmax.
    labels = paddle.gather(kept, index.flatten()).reshape(paddle.shape(index))
    return labels.astype("int32")


class LogitsUpsample(nn.Layer):
    """Brings head logits to the input size: bilinear logits, or VIM labels in eval mode.

    Args:
        num_classes: Number of classes of the logits.
        mode: `"bilinear"` returns logits; `"vim"` returns int32 labels in eval mode (and
            bilinear logits in training mode, so training is unchanged).
        class_set: VIM class set, see `valid_class_mask`.
        min_classes: Use VIM only when `num_classes >= min_classes` (0: always). Below the
            threshold the layer returns bilinear logits in eval mode too; the stock
            implementation applies a hidden threshold of 30, here it is explicit.
        align_corners: Bilinear `align_corners`.

    Attributes:
        passthrough: Set by the export for `--output_op exact`: in eval mode the layer
            returns the head-resolution logits unchanged, for a runtime that makes the
            labels itself (`seg_runtime.labelhead`).
    """

    def __init__(
        self,
        num_classes: int,
        mode: UpsampleMode = "bilinear",
        class_set: ClassSet = "exact",
        min_classes: int = 0,
        align_corners: bool = False,
    ) -> None:
        super().__init__()
        if mode not in ("bilinear", "vim"):
            raise ValueError(f"unknown upsample mode {mode!r}; expected 'bilinear' or 'vim'")
        if class_set not in ("exact", "present"):
            raise ValueError(f"unknown class_set {class_set!r}; expected 'exact' or 'present'")
        self.use_vim = mode == "vim" and num_classes >= min_classes
        self.passthrough = False
        self.class_set = class_set
        self.align_corners = align_corners

    def forward(self, logits: paddle.Tensor, size: list[int] | paddle.Tensor) -> paddle.Tensor:
        """Args:
            logits: Tensor of shape (N, C, h, w).
            size: Output size (H, W).

        Returns:
            Float logits (N, C, H, W); in eval mode, int32 labels (N, 1, H, W) with VIM, and
            the input logits with `passthrough`.
        """
        if self.passthrough and not self.training:
            return logits
        if self.use_vim and not self.training:
            return valid_class_interpolate(logits, size, self.class_set, self.align_corners)
        return resize(logits, size, self.align_corners)


@manager.MODELS.add_component
class VIMWrapper(nn.Layer):
    """Adds valid-class interpolation to a model built as `decode_head(backbone(x))`.

    Stock PaddleSeg segmentors such as `TopFormer` and `PPMobileSeg` compute
    `logits = decode_head(backbone(x))` and then resize the logits to the input size. This
    wrapper runs the same two sub-layers and replaces the final resize with `LogitsUpsample`:
    in training mode it returns the inner model's output unchanged; in eval mode it returns
    `[labels]` (int32, (N, 1, H, W)). Use it from a config by nesting the stock model:

        model:
          type: VIMWrapper
          num_classes: 150
          model:
            type: TopFormer
            num_classes: 150
            backbone:
              type: TopTransformer_Tiny
            head_use_dw: True

    Models whose forward does more than `decode_head(backbone(x))` plus a resize (auxiliary
    inputs, multi-scale fusion in forward) are not supported.

    Args:
        model: The built inner segmentor; it needs `backbone` and `decode_head` sub-layers.
        num_classes: Number of classes (for `min_classes`).
        class_set: VIM class set, see `valid_class_mask`.
        min_classes: Use VIM only when `num_classes >= min_classes` (0: always).
        align_corners: Bilinear `align_corners` of the inner model.
    """

    def __init__(
        self,
        model: nn.Layer,
        num_classes: int,
        class_set: ClassSet = "exact",
        min_classes: int = 0,
        align_corners: bool = False,
    ) -> None:
        super().__init__()
        for name in ("backbone", "decode_head"):
            if not isinstance(getattr(model, name, None), nn.Layer):
                raise TypeError(f"VIMWrapper needs a model with a `{name}` sub-layer")
        self.model = model
        self.upsample = LogitsUpsample(num_classes, "vim", class_set, min_classes, align_corners)

    def forward(self, x: paddle.Tensor) -> list[paddle.Tensor]:
        """Args:
            x: Images of shape (N, 3, H, W).

        Returns:
            The inner model's outputs in training mode; `[labels]` with int32 labels of shape
            (N, 1, H, W) in eval mode.
        """
        if self.training:
            return self.model(x)
        logits = self.model.decode_head(self.model.backbone(x))
        if isinstance(logits, list | tuple):
            logits = logits[0]
        return [self.upsample(logits, spatial_size(x))]
