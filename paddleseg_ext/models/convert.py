"""Loading weights: our checkpoints, and PaddleSeg 2.8 TopFormer / PP-MobileSeg state dicts.

PaddleSeg names the same tensors differently (`tpm.layer3.conv.2.c.weight` for our
`rows.2.depthwise.conv.weight`). The converter renames keys with ordered regular-expression
rules per architecture; tensors are reused unchanged (same layouts, same BatchNorm buffers).

Accepted sources: a full PaddleSeg model (`backbone.*` + `decode_head.*`) or a backbone alone
(`tpm.*` / `smb1.*`), into our segmentor or our backbone alone. Layers our model does not
build (e.g. the 9th row and 4th block dropped by the LPCVC student) are reported as unused.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

import numpy as np
import paddle
import paddle.nn as nn

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
    if isinstance(state, str):
        state = paddle.load(state)
    converted = convert_paddleseg_state_dict(state, backbone_only=_is_backbone(model))
    return _load(model, converted, strict)


def load_pretrained(
    model: nn.Layer, path: str, strict: bool = False
) -> tuple[list[str], list[str]]:
    """Loads a `.pdparams` file saved from our model or from PaddleSeg's equivalent.

    Args:
        model: Our segmentor or backbone.
        path: Weights file; PaddleSeg key names are detected and converted.
        strict: As in `load_paddleseg_weights`; False by default so that a segmentor can
            start from backbone weights or from a model with another class count.

    Returns:
        (missing, unused) keys, as in `load_paddleseg_weights`.
    """
    state = paddle.load(path)
    names = [k[len("backbone.") :] if k.startswith("backbone.") else k for k in state]
    if any(k.startswith(("tpm.", "smb1.")) for k in names):
        return load_paddleseg_weights(model, state, strict)
    return _load(model, state, strict)


def _load(
    model: nn.Layer, state: Mapping[str, paddle.Tensor | np.ndarray], strict: bool
) -> tuple[list[str], list[str]]:
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unused = [k for k in state if k not in own]
    mismatched = [k for k in own if k in state and list(own[k].shape) != list(np.shape(state[k]))]
    if strict and (missing or mismatched):
        raise ValueError(f"missing keys: {missing}; shape mismatches: {mismatched}")
    model.set_state_dict({k: v for k, v in state.items() if k in own and k not in mismatched})
    return missing + mismatched, unused
