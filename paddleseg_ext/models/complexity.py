"""Model size and cost: parameter count and FLOPs.

`paddle.flops` fails on Paddle 3.3.1 (it converts a 1-element array with `int()`), and the
published TopFormer figures were measured with mmcv's `get_model_complexity_info`, so FLOPs
here follow mmcv's layer-hook convention:

- Conv2D / Linear: one per multiply-add (MACs, reported as "FLOPs" in the papers), plus one
  per output element for the bias;
- BatchNorm: two per element; activations (ReLU, ReLU6, Hardswish, Sigmoid, Hardsigmoid):
  one per element; pooling layers: one per input element;
- functional ops are not counted (attention matmuls, interpolation, `F.*` pooling, sums).
  For TopFormer-Tiny at 512x512 the attention matmuls are 3.1 M of 0.58 G.
"""

from __future__ import annotations

from collections.abc import Sequence

import paddle
import paddle.nn as nn

_ACTS = (nn.ReLU, nn.ReLU6, nn.Hardswish, nn.Sigmoid, nn.Hardsigmoid)
_POOLS = (nn.AvgPool2D, nn.MaxPool2D, nn.AdaptiveAvgPool2D, nn.AdaptiveMaxPool2D)


def count_params(model: nn.Layer, trainable_only: bool = False) -> int:
    """Number of parameters as `model.parameters()` lists them.

    Paddle lists BatchNorm running statistics as (non-trainable) parameters, and the
    reference counts (TopFormer-Tiny 1,407,862 in PaddleSeg) include them.

    Args:
        model: The layer to measure.
        trainable_only: Count only parameters that receive gradients.

    Returns:
        The number of scalar values.
    """
    params = model.parameters()
    return int(sum(p.size for p in params if not (trainable_only and p.stop_gradient)))


def count_flops(model: nn.Layer, input_shape: Sequence[int]) -> int:
    """FLOPs of one eval-mode forward pass with mmcv's convention (see the module docstring).

    Args:
        model: The layer to measure; it is run in eval mode and restored afterwards.
        input_shape: Input shape, e.g. (1, 3, 512, 512).

    Returns:
        The FLOP count.
    """
    total = 0

    def hook(layer: nn.Layer, inputs: tuple, output: paddle.Tensor) -> None:
        nonlocal total
        out = int(output.size)
        if isinstance(layer, nn.Conv2D):
            w = layer.weight.shape  # (out, in / groups, kh, kw)
            total += out * w[1] * w[2] * w[3] + (out if layer.bias is not None else 0)
        elif isinstance(layer, nn.Linear):
            total += out * layer.weight.shape[0] + (out if layer.bias is not None else 0)
        elif isinstance(layer, nn.BatchNorm2D | nn.BatchNorm):
            total += 2 * out
        elif isinstance(layer, _ACTS):
            total += out
        elif isinstance(layer, _POOLS):
            total += int(inputs[0].size)

    kinds = (nn.Conv2D, nn.Linear, nn.BatchNorm2D, nn.BatchNorm, *_ACTS, *_POOLS)
    handles = [
        layer.register_forward_post_hook(hook)
        for layer in model.sublayers(include_self=True)
        if isinstance(layer, kinds)
    ]
    was_training = model.training
    model.eval()
    try:
        with paddle.no_grad():
            model(paddle.zeros(list(input_shape)))
    finally:
        for handle in handles:
            handle.remove()
        if was_training:
            model.train()
    return total
