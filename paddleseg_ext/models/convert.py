"""Loading weights: our checkpoints, and PaddleSeg 2.8 TopFormer / PP-MobileSeg state dicts.

PaddleSeg names the same tensors differently (`tpm.layer3.conv.2.c.weight` for our
`rows.2.depthwise.conv.weight`). The converter renames keys with ordered regular-expression
rules per architecture; tensors are reused unchanged (same layouts, same BatchNorm buffers).

Accepted sources: a full PaddleSeg model (`backbone.*` + `decode_head.*`) or a backbone alone
(`tpm.*` / `smb1.*`), into our segmentor or our backbone alone. Layers our model does not
build (e.g. the 9th row and 4th block dropped by the LPCVC student) are reported as unused.

`load_pretrained_weights` is what training uses for the `pretrained` entries of a config: our
segmentors and backbones only record the path when built, unlike stock PaddleSeg models.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from urllib.parse import urlparse

import numpy as np
import paddle
import paddle.nn as nn
from paddleseg.utils import logger

Rule = tuple[str, str | Callable[[re.Match], str]]


def _minus_one(group: int, template: str) -> Callable[[re.Match], str]:
    """Replacement that decrements a 1-based index captured by `group`."""

    def repl(m: re.Match) -> str:
        return template.format(int(m.group(group)) - 1, *m.groups())

    return repl


# PaddleSeg TopFormer: TokenPyramidModule rows are `layer{n}.conv.{j}` where j counts the
# parameter-free activations too: (0 expand, 2 depthwise, 4 project), or (0, 2) when the row
# has no expansion. The mapping of j is resolved per row from the keys present.
_TOPFORMER_RULES: list[Rule] = [
    (r"^tpm\.stem\.0\.", "stem."),
    (r"^trans\.transformer_blocks\.(\d+)\.attn\.proj\.1\.", r"transformer.\1.attn.proj."),
    (r"^trans\.transformer_blocks\.(\d+)\.", r"transformer.\1."),
    (r"^SIM\.(\d+)\.local_embedding\.", _minus_one(1, "injections.{0}.local_embed.")),
    (r"^SIM\.(\d+)\.global_embedding\.", _minus_one(1, "injections.{0}.global_embed.")),
    (r"^SIM\.(\d+)\.global_act\.", _minus_one(1, "injections.{0}.gate.")),
]

_STRIDEFORMER_RULES: list[Rule] = [
    (r"^smb1\.conv\.", "stem."),
    (r"^smb(\d+)\.blocks\.(\d+)\.expand_conv\.", _minus_one(1, "stages.{0}.{2}.expand.")),
    (r"^smb(\d+)\.blocks\.(\d+)\.bottleneck_conv\.", _minus_one(1, "stages.{0}.{2}.depthwise.")),
    (r"^smb(\d+)\.blocks\.(\d+)\.linear_conv\.", _minus_one(1, "stages.{0}.{2}.project.")),
    (r"^smb(\d+)\.blocks\.(\d+)\.mid_se\.conv1\.", _minus_one(1, "stages.{0}.{2}.se.reduce.")),
    (r"^smb(\d+)\.blocks\.(\d+)\.mid_se\.conv2\.", _minus_one(1, "stages.{0}.{2}.se.expand.")),
    (r"^trans(\d+)\.transformer_blocks\.", _minus_one(1, "transformers.{0}.")),
    (r"\.attn\.stride_conv\.0\.", ".attn.down_conv."),
    (r"\.attn\.stride_conv\.1\.", ".attn.down_bn."),
    (r"\.attn\.proj\.1\.", ".attn.proj."),
    (r"\.attn\.proj_encode_row\.1\.", ".attn.row_proj."),
    (r"\.attn\.proj_encode_column\.1\.", ".attn.col_proj."),
    (r"\.attn\.pos_emb_rowq\.pos_embed$", ".attn.row_q_pos.weight"),
    (r"\.attn\.pos_emb_rowk\.pos_embed$", ".attn.row_k_pos.weight"),
    (r"\.attn\.pos_emb_columnq\.pos_embed$", ".attn.col_q_pos.weight"),
    (r"\.attn\.pos_emb_columnk\.pos_embed$", ".attn.col_k_pos.weight"),
    (r"\.attn\.dwconv\.", ".attn.detail_dw."),
    (r"\.attn\.pwconv\.", ".attn.detail_pw."),
    (r"^inj_module\.embedding_list\.", "fusion.embeds."),
    (r"^inj_module\.act_embedding_list\.", "fusion.gates."),
]

_HEAD_RULES: list[Rule] = [
    (r"^decode_head\.linear_fuse\.", "head.fuse."),
    (r"^decode_head\.conv_seg\.", "head.classifier."),
]


def _topformer_row_parts(keys: list[str]) -> dict[tuple[int, int], str]:
    """Maps (row n, PaddleSeg index j) to our part name, from the keys present."""
    found: dict[int, set[int]] = {}
    for key in keys:
        m = re.match(r"^tpm\.layer(\d+)\.conv\.(\d+)\.", key)
        if m:
            found.setdefault(int(m.group(1)), set()).add(int(m.group(2)))
    parts = {}
    for row, indices in found.items():
        names = ("expand", "depthwise", "project") if 4 in indices else ("depthwise", "project")
        for j, name in zip(sorted(indices), names, strict=True):
            parts[(row, j)] = name
    return parts


def _detect(keys: list[str]) -> str:
    if any(k.startswith("tpm.") for k in keys):
        return "topformer"
    if any(k.startswith("smb1.") for k in keys):
        return "strideformer"
    raise ValueError("not a PaddleSeg TopFormer or PP-MobileSeg state dict")


def convert_paddleseg_state_dict(
    state: Mapping[str, paddle.Tensor | np.ndarray], backbone_only: bool = False
) -> dict[str, paddle.Tensor | np.ndarray]:
    """Renames a PaddleSeg TopFormer / PP-MobileSeg state dict to our key names.

    Args:
        state: PaddleSeg state dict, of a full model (`backbone.*`, `decode_head.*`) or of a
            backbone alone.
        backbone_only: Return keys for our backbone alone (no `backbone.` prefix, head
            tensors dropped) instead of keys for our segmentor.

    Returns:
        A new dict with our key names and the same tensors.
    """
    # Split the source into backbone keys (without prefix) and head keys.
    backbone, head = {}, {}
    has_prefix = any(k.startswith("backbone.") for k in state)
    for key, value in state.items():
        if key.startswith("decode_head."):
            head[key] = value
        elif not has_prefix:
            backbone[key] = value
        elif key.startswith("backbone."):
            backbone[key[len("backbone.") :]] = value
    arch = _detect(list(backbone))
    rules = _TOPFORMER_RULES if arch == "topformer" else _STRIDEFORMER_RULES
    row_parts = _topformer_row_parts(list(backbone)) if arch == "topformer" else {}

    out = {}
    for key, value in backbone.items():
        new = key
        m = re.match(r"^tpm\.layer(\d+)\.conv\.(\d+)\.", key)
        if m:
            part = row_parts[(int(m.group(1)), int(m.group(2)))]
            new = f"rows.{int(m.group(1)) - 1}.{part}." + key[m.end() :]
        for pattern, repl in rules:
            new = re.sub(pattern, repl, new)
        # PaddleSeg's Conv2DBN / ConvBNLayer call their convolution `c`.
        new = re.sub(r"\.c\.(weight|bias)$", r".conv.\1", new)
        out[new if backbone_only else "backbone." + new] = value
    if not backbone_only:
        for key, value in head.items():
            new = key
            for pattern, repl in _HEAD_RULES:
                new = re.sub(pattern, repl, new)
            out[new] = value
    return out


def _is_backbone(model: nn.Layer) -> bool:
    return hasattr(model, "feat_channels") and not hasattr(model, "backbone")


def load_paddleseg_weights(
    model: nn.Layer,
    state: str | Mapping[str, paddle.Tensor | np.ndarray],
    strict: bool = True,
) -> tuple[list[str], list[str]]:
    """Loads PaddleSeg TopFormer / PP-MobileSeg weights into our segmentor or backbone.

    Args:
        model: A TopFormerSeg / MobileSegExt, or a TopFormerBackbone / StrideFormerBackbone.
        state: A PaddleSeg state dict or the path of a `.pdparams` file.
        strict: Raise if a tensor of `model` is not provided or a shape differs. Source
            tensors our model does not build are reported, never an error.

    Returns:
        (missing, unused): our keys left at their initial values, and converted source keys
        our model does not have.
    """
    source = "the PaddleSeg state dict"
    if isinstance(state, str):
        source, state = state, paddle.load(state)
    converted = convert_paddleseg_state_dict(state, backbone_only=_is_backbone(model))
    return _load(model, converted, strict, source)


def _align_prefix(
    model: nn.Layer, state: Mapping[str, paddle.Tensor | np.ndarray]
) -> Mapping[str, paddle.Tensor | np.ndarray]:
    """Matches the `backbone.` prefix of our own keys to `model`.

    A segmentor's file into a backbone keeps its `backbone.*` tensors without the prefix; a
    backbone's file into a segmentor gets the prefix.
    """
    has_prefix = any(k.startswith("backbone.") for k in state)
    if _is_backbone(model) and has_prefix:
        return {k[len("backbone.") :]: v for k, v in state.items() if k.startswith("backbone.")}
    if isinstance(getattr(model, "backbone", None), nn.Layer) and not has_prefix:
        own = model.state_dict()
        if not any(k in own for k in state):
            return {"backbone." + k: v for k, v in state.items()}
    return state


def load_pretrained(
    model: nn.Layer, path: str, strict: bool = False
) -> tuple[list[str], list[str]]:
    """Loads a `.pdparams` file saved from our model or from PaddleSeg's equivalent.

    Logs how many tensors were loaded, and the keys left at their initial values or unused.

    Args:
        model: Our segmentor or backbone.
        path: Weights file; PaddleSeg key names are detected and converted. A backbone's
            file loads into the backbone of a segmentor, a segmentor's into a backbone.
        strict: As in `load_paddleseg_weights`; False by default so that a segmentor can
            start from backbone weights or from a model with another class count.

    Returns:
        (missing, unused) keys, as in `load_paddleseg_weights`.
    """
    state = paddle.load(path)
    names = [k[len("backbone.") :] if k.startswith("backbone.") else k for k in state]
    if any(k.startswith(("tpm.", "smb1.")) for k in names):
        converted = convert_paddleseg_state_dict(state, backbone_only=_is_backbone(model))
        return _load(model, converted, strict, path)
    return _load(model, _align_prefix(model, state), strict, path)


def _is_ours(layer: nn.Layer) -> bool:
    return type(layer).__module__.startswith("paddleseg_ext.")


def load_pretrained_weights(model: nn.Layer, key: str = "model") -> list[str]:
    """Loads the `pretrained` file of each of our layers in `model`, as training does.

    Our segmentors and backbones only record `pretrained` when built; stock PaddleSeg
    layers load theirs while being built and are left alone here. Inner layers load first,
    so a segmentor's file overrides its backbone's. URLs are downloaded as PaddleSeg does.

    Args:
        model: A built model: ours, a stock one, or a stock wrapper around ours.
        key: The config key of `model`, to name `pretrained` entries in errors.

    Returns:
        The files loaded, inner layers first.

    Raises:
        FileNotFoundError: A file does not exist; the message names its config key.
        ConfigError: No tensor of a file fits its layer (another architecture's file).
    """
    from ..config import ConfigError

    loaded = []
    for name, layer in reversed(list(model.named_sublayers(include_self=True))):
        path = getattr(layer, "pretrained", None)
        if not (path and isinstance(path, str) and _is_ours(layer)):
            continue
        entry = f"{key}.{name}.pretrained" if name else f"{key}.pretrained"
        if urlparse(path).netloc:
            from paddleseg.utils import download_pretrained_model

            path = download_pretrained_model(path)
        elif not os.path.isfile(path):
            raise FileNotFoundError(f"{entry}: pretrained weights file not found: {path}")
        missing, _ = load_pretrained(layer, path)
        if len(missing) == len(layer.state_dict()):
            raise ConfigError(
                f"{entry}: no tensor of {path} fits {type(layer).__name__} (wrong file?)"
            )
        loaded.append(path)
    return loaded


def _load(
    model: nn.Layer,
    state: Mapping[str, paddle.Tensor | np.ndarray],
    strict: bool,
    source: str = "the state dict",
) -> tuple[list[str], list[str]]:
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unused = [k for k in state if k not in own]
    mismatched = [k for k in own if k in state and list(own[k].shape) != list(np.shape(state[k]))]
    if strict and (missing or mismatched):
        raise ValueError(f"missing keys: {missing}; shape mismatches: {mismatched}")
    loaded = {k: state[k] for k in own if k in state and k not in mismatched}
    # Every key of `model` is given, its own value where none is loaded: Paddle would warn
    # once per key left out, repeating the summary below.
    model.set_state_dict({**own, **loaded})
    name = type(model).__name__
    logger.info(f"Loaded {len(loaded)}/{len(own)} tensors of {name} from {source}")
    if missing:
        logger.warning(
            f"{len(missing)} tensor(s) of {name} not in {source}, left at their initial "
            f"values: {', '.join(missing)}"
        )
    if mismatched:
        shapes = [f"{k} {list(np.shape(state[k]))} vs {list(own[k].shape)}" for k in mismatched]
        logger.warning(
            f"{len(mismatched)} tensor(s) of {name} have another shape in {source}, left at "
            f"their initial values: {', '.join(shapes)}"
        )
    if unused:
        logger.info(f"{len(unused)} tensor(s) of {source} unused by {name}: {', '.join(unused)}")
    return missing + mismatched, unused
