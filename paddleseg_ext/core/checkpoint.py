"""Checkpoints in PaddleSeg's layout: ``iter_N/model.pdparams`` + ``model.pdopt``.

A ``train_state.json`` beside them records the iteration and the best score so far, so a
resumed run continues exactly where the checkpoint was taken.
"""

from __future__ import annotations

import json
import os
import shutil

import paddle

from ..config import ConfigError

STATE_FILE = "train_state.json"


def save_checkpoint(
    save_dir: str, model: paddle.nn.Layer, optimizer, state: dict, keep_max: int | None
) -> str:
    """Writes ``save_dir/iter_{state['iter']}`` atomically and prunes old checkpoints."""
    name = f"iter_{state['iter']}"
    final = os.path.join(save_dir, name)
    tmp = final + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    paddle.save(model.state_dict(), os.path.join(tmp, "model.pdparams"))
    paddle.save(optimizer.state_dict(), os.path.join(tmp, "model.pdopt"))
    param_names = {key: p.name for key, p in model.named_parameters()}
    with open(os.path.join(tmp, STATE_FILE), "w") as f:
        json.dump(state | {"param_names": param_names}, f, indent=2)
    shutil.rmtree(final, ignore_errors=True)
    # Rename last, so a run killed while saving never leaves a half-written iter_N.
    os.replace(tmp, final)
    if keep_max:
        for old in list_checkpoints(save_dir)[:-keep_max]:
            shutil.rmtree(os.path.join(save_dir, f"iter_{old}"))
    return final


def list_checkpoints(save_dir: str) -> list[int]:
    """Iterations of the complete checkpoints in ``save_dir``, ascending."""
    if not os.path.isdir(save_dir):
        return []
    iters = []
    for entry in os.listdir(save_dir):
        if entry.startswith("iter_") and entry[5:].isdigit():
            if os.path.isfile(os.path.join(save_dir, entry, STATE_FILE)):
                iters.append(int(entry[5:]))
    return sorted(iters)


def save_weights(directory: str, model: paddle.nn.Layer, info: dict | None = None) -> None:
    """Writes ``directory/model.pdparams`` (and ``info`` as ``metrics.json``)."""
    os.makedirs(directory, exist_ok=True)
    paddle.save(model.state_dict(), os.path.join(directory, "model.pdparams"))
    if info is not None:
        with open(os.path.join(directory, "metrics.json"), "w") as f:
            json.dump(info, f, indent=2)


def load_weights(model: paddle.nn.Layer, path: str) -> None:
    """Loads a ``.pdparams`` file (or a directory holding ``model.pdparams``) strictly.

    Raises:
        FileNotFoundError: ``path`` holds no weights.
        ConfigError: Missing, unexpected or mis-shaped parameters, named.
    """
    if os.path.isdir(path):
        path = os.path.join(path, "model.pdparams")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Model weights not found: {path}")
    state = paddle.load(path)
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    bad_shape = [k for k in own if k in state and list(state[k].shape) != list(own[k].shape)]
    if missing or unexpected or bad_shape:
        raise ConfigError(
            f"{path} does not match the model: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}, shape mismatch {bad_shape[:5]}"
        )
    model.set_state_dict(state)


def load_checkpoint(path: str, model: paddle.nn.Layer, optimizer) -> dict:
    """Restores weights, optimizer (and its lr schedule) from ``iter_N``; returns the state."""
    state_file = os.path.join(path, STATE_FILE)
    opt_file = os.path.join(path, "model.pdopt")
    for needed in (state_file, opt_file):
        if not os.path.isfile(needed):
            raise FileNotFoundError(f"--resume_model {path}: {os.path.basename(needed)} missing")
    load_weights(model, path)
    with open(state_file) as f:
        state = json.load(f)
    saved_names = state.pop("param_names", {})
    optimizer.set_state_dict(_rename_optimizer_state(paddle.load(opt_file), saved_names, model))
    return state


def _rename_optimizer_state(opt_state: dict, saved_names: dict, model: paddle.nn.Layer) -> dict:
    """Re-keys optimizer accumulators from the saving run's parameter names to this run's.

    Paddle keys accumulators by generated parameter names (``conv2d_12.w_0_moment1_0``),
    which depend on how many layers the process built before; the structured names
    recorded at save time map them onto the current model.
    """
    rename = {
        saved_names[key]: param.name
        for key, param in model.named_parameters()
        if key in saved_names and saved_names[key] != param.name
    }
    if not rename:
        return opt_state
    # Longest first, so "conv2d_13.w_0" is not taken for "conv2d_1.w_0".
    olds = sorted(rename, key=len, reverse=True)
    renamed = {}
    for key, value in opt_state.items():
        base = next((old for old in olds if key.startswith(old + "_")), None)
        renamed[rename[base] + key[len(base) :] if base else key] = value
    return renamed
