"""Host side of ``--formats lite`` (and of its INT8 variant): runs :mod:`.lite_side` in the
Paddle Lite side environment (``python -m paddleseg_ext.export.lite_side``) and reads its
results.

The side environment (``make lite-env``: CPython 3.10, Paddle 2.6.2, paddlelite 2.13rc0,
this package installed there) exists because Paddle Lite's opt reads only the legacy
program format, which Paddle 3.x no longer writes for these models. Its interpreter is
``$PADDLESEG_EXT_LITE_PYTHON``, else ``.venv-lite/bin/python`` under the working directory.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Sequence

import numpy as np
import paddle
import paddle.nn as nn
import yaml
from paddleseg.cvlibs import Config
from paddleseg.utils import logger
from seg_runtime import ExportFiles

from ..config import ConfigError
from .verify import MIN_AGREEMENT

SIDE_MODULE = "paddleseg_ext.export.lite_side"
# Interpreter of the Lite side environment; default: .venv-lite made by `make lite-env`.
LITE_PYTHON_ENV = "PADDLESEG_EXT_LITE_PYTHON"
LITE_VENV = ".venv-lite"


def lite_python() -> str:
    """The side environment's interpreter (``$PADDLESEG_EXT_LITE_PYTHON`` or .venv-lite)."""
    return os.environ.get(LITE_PYTHON_ENV) or os.path.abspath(
        os.path.join(LITE_VENV, "bin", "python")
    )


def side_command(jobs_file: str) -> list[str]:
    """The command that runs the jobs of ``jobs_file`` in the side environment."""
    return [lite_python(), "-m", SIDE_MODULE, jobs_file]


def check_lite(output_op: str) -> None:
    """Fails before anything is written when ``--formats lite`` cannot be done.

    Raises:
        ConfigError: ``vim`` output op (opt 2.13rc0 crashes on its dynamic class subset), or
            no side environment.
    """
    if output_op == "vim":
        raise ConfigError(
            "--formats lite: --output_op vim cannot be converted (Paddle Lite opt 2.13rc0 "
            "crashes on its where_index/gather class subset); use --output_op argmax, which "
            "gives the same labels (a VIM model is exported with full bilinear upsampling)"
        )
    if not os.access(lite_python(), os.X_OK):
        raise ConfigError(
            f"--formats lite needs the Paddle Lite side environment (CPython 3.10, "
            f"paddlelite 2.13rc0): no interpreter at {lite_python()}; run `make lite-env` "
            f"or set {LITE_PYTHON_ENV}"
        )


def run_job(
    cfg: Config,
    model: nn.Layer,
    input_shape: Sequence[int],
    output_op: str,
    save_dir: str,
    timeout: float = 1200,
    **options,
) -> dict:
    """Runs one :mod:`.lite_side` job in the side environment; returns its result line.

    The config and ``model``'s weights go to a temporary folder; the side rebuilds the
    model under Paddle 2.6, saves the legacy program and runs ``paddle_lite_opt``.
    ``options`` are further job keys (``check``, ``quantize``, ``valid_targets``, ...; see
    :mod:`.lite_side`); arrays in ``quantize`` (``calib``, ``eval_inputs``) are written
    to ``.npy`` files for the child.

    Raises:
        RuntimeError: The job failed (the message names the ops Lite rejected).
    """
    with tempfile.TemporaryDirectory(prefix="export_lite_") as tmp:
        config_file = os.path.join(tmp, "config.yml")
        with open(config_file, "w") as f:
            yaml.safe_dump(cfg.dic, f)
        weights = os.path.join(tmp, "model.pdparams")
        paddle.save(model.state_dict(), weights)
        job = {
            "config": config_file,
            "weights": weights,
            "save_dir": os.path.abspath(save_dir),
            "input_shape": list(input_shape),
            "output_op": output_op,
            **options,
        }
        quantize = dict(job.get("quantize") or {})
        for key in ("calib", "eval_inputs"):
            if isinstance(quantize.get(key), np.ndarray):
                np.save(os.path.join(tmp, f"{key}.npy"), quantize[key])
                quantize[key] = os.path.join(tmp, f"{key}.npy")
        if quantize.get("eval_inputs"):
            quantize["eval_outputs"] = os.path.join(tmp, "eval_outputs.npz")
        if quantize:
            job["quantize"] = quantize
        jobs_file = os.path.join(tmp, "jobs.json")
        with open(jobs_file, "w") as f:
            json.dump([job], f)
        proc = subprocess.run(
            side_command(jobs_file), capture_output=True, text=True, timeout=timeout
        )
        results = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
        if not results:
            if f"No module named '{SIDE_MODULE.split('.')[0]}'" in proc.stderr:
                raise RuntimeError(
                    f"the Paddle Lite side environment ({lite_python()}) lacks paddleseg_ext: "
                    "run `make lite-env`, which installs it there"
                )
            tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
            raise RuntimeError(
                f"Paddle Lite conversion failed (exit code {proc.returncode}): {tail}"
            )
        if not results[0]["ok"]:
            raise RuntimeError(results[0]["error"])
        result = results[0]
        if quantize.get("eval_outputs"):
            with np.load(quantize["eval_outputs"]) as outputs:
                result["eval_labels"] = {key: outputs[key] for key in outputs.files}
    return result


def convert_lite(
    cfg: Config,
    model: nn.Layer,
    input_shape: Sequence[int],
    output_op: str,
    save_dir: str,
    check: bool = True,
) -> str:
    """Writes ``save_dir/model.nb`` (Paddle Lite, arm) through the side environment.

    With ``check``, the legacy program's labels are compared with its dygraph model.

    Returns:
        ``"model.nb"``.

    Raises:
        RuntimeError: The conversion failed (the message names the ops Lite rejected), or
            the legacy program disagrees with the dygraph model.
    """
    result = run_job(cfg, model, input_shape, output_op, save_dir, check=check)
    agreement = result.get("label_agreement")
    if agreement is not None:
        logger.info(f"Paddle Lite source program: label agreement {100 * agreement:.3f}%")
        if agreement < MIN_AGREEMENT:
            raise RuntimeError(
                f"the legacy program converted to model.nb agrees with the dygraph model on "
                f"only {100 * agreement:.3f}% of labels"
            )
    return result["file"]


def quantize_lite(
    cfg: Config,
    model: nn.Layer,
    input_shape: Sequence[int],
    output_op: str,
    save_dir: str,
    batches: np.ndarray,
    algo: str,
    eval_inputs: np.ndarray | None = None,
) -> dict:
    """Writes ``save_dir/model_int8.nb``: PaddleSlim PTQ of the legacy program, then opt.

    Args:
        batches: Calibration batches (B, N, 3, H, W), preprocessed as deployed.
        algo: PaddleSlim's activation-range algorithm (``abs_max``, ``KL``, ``hist``, ...).
        eval_inputs: Optional (M, N, 3, H, W) inputs; their labels from the float and the
            INT8 legacy programs come back as ``eval_labels`` (``float``, ``int8``).

    Returns:
        The job's result: ``int8_file``, ``int8_kernels``, ``int8_label_agreement`` (INT8 vs
        float program on the calibration batches), and ``eval_labels`` when asked.
    """
    quantize = {"calib": batches, "algo": algo, "file": ExportFiles.LITE_INT8}
    if eval_inputs is not None:
        quantize["eval_inputs"] = eval_inputs
    return run_job(cfg, model, input_shape, output_op, save_dir, quantize=quantize)
