"""Checkpoints in PaddleSeg's layout: ``iter_N/model.pdparams`` + ``model.pdopt``.

Each folder is written whole or not at all (:class:`paddleseg_ext.atomic.StagedDirectory`),
so a run killed at any moment leaves only complete checkpoints. A ``train_state.json``
beside the weights records the iteration and the best score so far, so a resumed run
continues exactly where the checkpoint was taken. Distillation runs add
``distill.pdparams`` (the trained loss adapters); ``model.pdparams`` always holds the
student alone, so val, predict and export treat a distilled checkpoint like any other.
"""

from __future__ import annotations

import json
import os
import pickle

import paddle

from ..atomic import StagedDirectory, remove_dir
from ..config import ConfigError

STATE_FILE = "train_state.json"
DISTILL_FILE = "distill.pdparams"
# Key prefix of the distillation adapters' parameters in the recorded parameter names.
_DISTILL_PREFIX = "distill/"


def _named_parameters(model: paddle.nn.Layer, distill: paddle.nn.Layer | None) -> list:
    named = list(model.named_parameters())
    if distill is not None:
        named += [(_DISTILL_PREFIX + key, p) for key, p in distill.named_parameters()]
    return named


def save_checkpoint(
    save_dir: str,
    model: paddle.nn.Layer,
    optimizer,
    state: dict,
    keep_max: int | None,
    distill: paddle.nn.Layer | None = None,
) -> str:
    """Writes ``save_dir/iter_{state['iter']}`` atomically and prunes old checkpoints.

    ``distill``, the trained part of a distillation run besides the model, is saved as
    ``distill.pdparams``.
    """
    final = os.path.join(save_dir, f"iter_{state['iter']}")
    with StagedDirectory(final) as stage:
        paddle.save(model.state_dict(), os.path.join(stage.path, "model.pdparams"))
        paddle.save(optimizer.state_dict(), os.path.join(stage.path, "model.pdopt"))
        if distill is not None:
            paddle.save(distill.state_dict(), os.path.join(stage.path, DISTILL_FILE))
        param_names = {key: p.name for key, p in _named_parameters(model, distill)}
        with open(os.path.join(stage.path, STATE_FILE), "w") as f:
            json.dump(state | {"param_names": param_names}, f, indent=2)
        stage.commit()
    if keep_max:
        for old in list_checkpoints(save_dir)[:-keep_max]:
            remove_dir(os.path.join(save_dir, f"iter_{old}"))
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
    """Writes ``directory/model.pdparams`` (and ``info`` as ``metrics.json``), atomically:
    a folder left by a killed run is the previous complete one."""
    with StagedDirectory(directory) as stage:
        paddle.save(model.state_dict(), os.path.join(stage.path, "model.pdparams"))
        if info is not None:
            with open(os.path.join(stage.path, "metrics.json"), "w") as f:
                json.dump(info, f, indent=2)
        stage.commit()


def load_weights(model: paddle.nn.Layer, path: str, file_name: str = "model.pdparams") -> None:
    """Loads a ``.pdparams`` file (or a directory holding ``file_name``) strictly.

    Raises:
        FileNotFoundError: ``path`` holds no weights.
        ValueError: ``paddle.load`` cannot parse the file.
        ConfigError: Missing, unexpected or mis-shaped parameters, named.
    """
    if os.path.isdir(path):
        path = os.path.join(path, file_name)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Model weights not found: {path}")
    try:
        state = paddle.load(path)
    except (ValueError, MemoryError, EOFError, pickle.UnpicklingError) as err:
        # Paddle says ValueError for most bytes it cannot parse; bytes that look like a
        # pickle frame reach pickle, which may try to allocate their stated length.
        raise ValueError(
            f"`paddle.load` can not parse the file ({type(err).__name__}): {path}"
        ) from err
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


def load_checkpoint(
    path: str, model: paddle.nn.Layer, optimizer, distill: paddle.nn.Layer | None = None
) -> dict:
    """Restores weights, optimizer (and its lr schedule) from ``iter_N``; returns the state.

    With ``distill``, its weights are restored from ``distill.pdparams`` as well.
    """
    state_file = os.path.join(path, STATE_FILE)
    opt_file = os.path.join(path, "model.pdopt")
    needed = [state_file, opt_file] + ([os.path.join(path, DISTILL_FILE)] if distill else [])
    for file in needed:
        if not os.path.isfile(file):
            raise FileNotFoundError(f"--resume_model {path}: {os.path.basename(file)} missing")
    load_weights(model, path)
    if distill is not None:
        load_weights(distill, path, DISTILL_FILE)
    with open(state_file) as f:
        state = json.load(f)
    saved_names = state.pop("param_names", {})
    named = _named_parameters(model, distill)
    optimizer.set_state_dict(_rename_optimizer_state(paddle.load(opt_file), saved_names, named))
    return state


def _rename_optimizer_state(opt_state: dict, saved_names: dict, named: list) -> dict:
    """Re-keys optimizer accumulators from the saving run's parameter names to this run's.

    Paddle keys accumulators by generated parameter names (``conv2d_12.w_0_moment1_0``),
    which depend on how many layers the process built before; the structured names
    recorded at save time map them onto the current model.
    """
    rename = {
        saved_names[key]: param.name
        for key, param in named
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
