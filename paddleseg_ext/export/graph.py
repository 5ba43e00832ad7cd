"""The exported graph: the model plus its output op, and the Paddle inference program.

Output ops (``OUTPUT_OPS``), appended by :class:`ExportModel`:

- ``argmax``: int32 labels (N, 1, H, W); a model that already returns labels (VIM) keeps them;
- ``softmax``: float32 probabilities (N, C, H, W) (models returning logits only);
- ``none``: the model's own output (logits, or labels for a VIM model);
- ``vim``: int32 labels (N, 1, H, W) by valid-class interpolation; a model with
  ``upsample: bilinear`` is switched to VIM, a stock ``decode_head(backbone(x))`` model is
  wrapped with ``VIMWrapper``;
- ``exact``: float32 logits at the head's resolution (N, C, h, w); the device runtime makes
  the labels of full bilinear upsampling + argmax from them (``seg_runtime.labelhead``),
  interpolating only along the label boundaries. Models with an ``upsample`` layer
  (TopFormerSeg, MobileSegExt).

The Paddle Lite side environment (Paddle 2.6) imports this module too, to build the same
graph for its legacy program.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import paddle
import paddle.nn as nn
import paddle.nn.functional as F
from paddle.jit.dy2static.program_translator import StaticFunction
from seg_runtime import ExportFiles

from ..config import ConfigError
from ..models.layers import resizes_as_matmuls
from ..models.vim import LogitsUpsample, VIMWrapper

OUTPUT_OPS = ("argmax", "softmax", "none", "vim", "exact")
INPUT_NAME = "x"


class ExportModel(nn.Layer):
    """Appends the output op to a segmentor returning ``[logits]`` or ``[labels]``.

    Args:
        model: The segmentor, in eval mode.
        output_op: ``argmax``, ``softmax``, ``none`` or ``vim`` (labels, as ``argmax``).
        outputs_labels: The model returns int labels (N, 1, H, W) rather than logits.
    """

    def __init__(self, model: nn.Layer, output_op: str, outputs_labels: bool) -> None:
        super().__init__()
        self.model = model
        self.output_op = output_op
        self.outputs_labels = outputs_labels

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        """Args:
            x: Images of shape (N, 3, H, W).

        Returns:
            Int32 labels (N, 1, H, W), probabilities or logits (N, C, H, W).
        """
        out = self.model(x)[0]
        if self.outputs_labels:
            return out.astype("int32")
        if self.output_op in ("argmax", "vim"):
            return paddle.argmax(out, axis=1, keepdim=True).astype("int32")
        if self.output_op == "softmax":
            return F.softmax(out, axis=1)
        return out


def outputs_labels(model: nn.Layer) -> bool:
    """Whether ``model`` returns int labels in eval mode (valid-class interpolation on)."""
    return any(
        isinstance(layer, LogitsUpsample) and layer.use_vim
        for layer in model.sublayers(include_self=True)
    )


def prepare_model(model: nn.Layer, output_op: str, num_classes: int) -> nn.Layer:
    """Checks ``output_op`` against ``model``; for ``vim`` turns VIM on, for ``exact`` stops
    the model before its final upsampling.

    A model with a ``LogitsUpsample`` ``upsample`` layer (TopFormerSeg, MobileSegExt) gets a
    VIM one with the same class set and ``align_corners``; a stock segmentor built as
    ``decode_head(backbone(x))`` is wrapped with ``VIMWrapper``. Load weights before this.

    Args:
        model: The built segmentor.
        output_op: One of ``OUTPUT_OPS``.
        num_classes: Number of classes.

    Returns:
        The model to export (the same object, or a ``VIMWrapper`` around it).

    Raises:
        ConfigError: Unknown op, ``softmax`` on a model returning labels, or ``vim`` on a
            model without VIM support.
    """
    if output_op not in OUTPUT_OPS:
        raise ConfigError(f"unknown --output_op {output_op!r}; choose from {', '.join(OUTPUT_OPS)}")
    labels = outputs_labels(model)
    if output_op == "softmax" and labels:
        raise ConfigError(
            "--output_op softmax needs logits, but this model returns labels in eval mode "
            "(upsample: vim); use --output_op argmax/vim or set upsample: bilinear"
        )
    upsample = getattr(model, "upsample", None)
    if output_op == "exact":
        if not isinstance(upsample, LogitsUpsample):
            raise ConfigError(
                f"--output_op exact: {type(model).__name__} has no `upsample` layer to stop "
                "before (TopFormerSeg and MobileSegExt have one); use --output_op argmax"
            )
        upsample.use_vim, upsample.passthrough = False, True
        return model
    if output_op != "vim" or labels:
        return model
    if isinstance(upsample, LogitsUpsample):
        # The user asked for VIM, so any class-count threshold is dropped.
        model.upsample = LogitsUpsample(
            num_classes, "vim", upsample.class_set, 0, upsample.align_corners
        )
        return model
    if isinstance(getattr(model, "backbone", None), nn.Layer) and isinstance(
        getattr(model, "decode_head", None), nn.Layer
    ):
        align = bool(getattr(model, "align_corners", False))
        return VIMWrapper(model, num_classes, align_corners=align)
    raise ConfigError(
        f"--output_op vim: {type(model).__name__} has no VIM support (it needs an `upsample` "
        "layer as TopFormerSeg/MobileSegExt, or `backbone` + `decode_head` sub-layers)"
    )


def trace_paddle(layer: nn.Layer, input_shape: Sequence[int]) -> None:
    """Converts ``layer`` to a static graph for ``input_shape`` now (in place).

    Tracing is where a model rejects an input shape it cannot export (e.g. TopFormer without
    ``input_size`` and a dynamic H/W), so the export traces before it writes anything;
    ``save_paddle`` then saves the traced program.

    Raises:
        ConfigError: The model raised ``ValueError`` while being traced at this shape.
    """
    layer.eval()
    spec = [paddle.static.InputSpec(list(input_shape), "float32", INPUT_NAME)]
    paddle.jit.to_static(layer, input_spec=spec, full_graph=True)
    try:
        layer.forward.concrete_program  # noqa: B018 (the property traces)
    except ValueError as err:
        # Paddle prefixes the model's message with the traced source; its last line is the
        # message itself.
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        reason = lines[-1].removeprefix("ValueError: ") if lines else repr(err)
        model = getattr(layer, "model", layer)
        raise ConfigError(
            f"--input_shape {list(input_shape)}: {type(model).__name__} cannot be exported "
            f"at this shape: {reason}"
        ) from err


def save_inference_program(
    model: nn.Layer, output_op: str, outputs_labels: bool, input_shape: Sequence[int],
    save_dir: str,
) -> dict[str, str]:  # fmt: skip
    """The program Paddle Inference runs: ``model`` + the output op, traced with its small
    resizes as interpolation matrix products (``resizes_as_matmuls``: Paddle's CPU
    ``bilinear_interp`` is slow on them), saved by :func:`save_paddle`."""
    with resizes_as_matmuls():
        layer = ExportModel(model, output_op, outputs_labels)
        return save_paddle(layer, input_shape, save_dir)


def save_paddle(layer: nn.Layer, input_shape: Sequence[int], save_dir: str) -> dict[str, str]:
    """Writes the PIR inference program ``model.json`` + ``model.pdiparams``.

    A layer already traced by ``trace_paddle`` is saved as traced.

    Returns:
        ``{"model": "model.json", "params": "model.pdiparams"}`` (names in ``save_dir``).
    """
    if not isinstance(layer.forward, StaticFunction):
        trace_paddle(layer, input_shape)
    paddle.jit.save(layer, os.path.join(save_dir, ExportFiles.PREFIX))
    for name in (ExportFiles.PADDLE_MODEL, ExportFiles.PADDLE_LEGACY_MODEL):
        if os.path.isfile(os.path.join(save_dir, name)):
            return {"model": name, "params": ExportFiles.PADDLE_PARAMS}
    raise RuntimeError(f"paddle.jit.save wrote no model file in {save_dir}")
