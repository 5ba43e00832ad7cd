"""Export for deployment: Paddle Inference (PIR), ONNX, ``deploy.yaml`` and a parity check.

``export`` writes into one directory:

- ``model.json`` + ``model.pdiparams``: the PIR inference program (``paddle.jit.save``);
- ``model.onnx``: converted from the PIR program by paddle2onnx;
- ``model.nb``: Paddle Lite (arm), converted in the CPython 3.10 side environment
  (``make lite-env``) by ``deploy/lite/export_legacy.py``;
- ``deploy.yaml``: the files actually written, the preprocessing (the config's val
  transforms), the input shape, the output op, dtype and layout, and the class names.

The exported graph ends with the chosen output op:

- ``argmax``: int32 labels (N, 1, H, W); a model that already returns labels (VIM) keeps them;
- ``softmax``: float32 probabilities (N, C, H, W) (models returning logits only);
- ``none``: the model's own output (logits, or labels for a VIM model);
- ``vim``: int32 labels (N, 1, H, W) by valid-class interpolation; a model with
  ``upsample: bilinear`` is switched to VIM, a stock ``decode_head(backbone(x))`` model is
  wrapped with ``VIMWrapper``.

After export, Paddle Inference and onnxruntime run the files on one sample (a val image when
the dataset is on disk, else random values) and are compared with the dygraph model: label
agreement, and the largest logit difference (for an ``argmax`` graph, measured on a
temporary logits export of the same model).

paddle2onnx's default optimizer ("polygraphy") sets ``POLYGRAPHY_AUTOINSTALL_DEPS=1`` and
pip-installs packages at run time. The conversion here uses ``optimize_tool="none"`` with
``POLYGRAPHY_AUTOINSTALL_DEPS=0``, and runs in a child process, because paddle2onnx aborts
the whole process (SIGABRT) on an operator it cannot convert (e.g. adaptive pooling with a
dynamic input size); the child's error lines are reported instead.
"""

from __future__ import annotations

import copy
import multiprocessing
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field

# Before anything imports paddle2onnx (and polygraphy): never install packages at run time.
os.environ["POLYGRAPHY_AUTOINSTALL_DEPS"] = "0"

import numpy as np  # noqa: E402
import paddle  # noqa: E402
import paddle.nn as nn  # noqa: E402
import paddle.nn.functional as F  # noqa: E402
import yaml  # noqa: E402
from paddleseg.cvlibs import Config  # noqa: E402
from paddleseg.utils import logger  # noqa: E402

from .config import ConfigError, build, check_dataset_root, dataset_info  # noqa: E402
from .core.checkpoint import load_weights  # noqa: E402
from .models.vim import LogitsUpsample, VIMWrapper  # noqa: E402
from .runtime import DEPLOY_FILE, OrtRunner, PaddleRunner, to_labels  # noqa: E402

OUTPUT_OPS = ("argmax", "softmax", "none", "vim")
FORMATS = ("paddle", "onnx", "lite")
DEFAULT_FORMATS = ("paddle", "onnx")
INPUT_NAME = "x"
MODEL_PREFIX = "model"
MIN_AGREEMENT = 0.999
# Size used for a dynamic height/width when no val image gives one.
DYNAMIC_SAMPLE_SIDE = 256


@dataclass
class ExportResult:
    """What ``export`` wrote and measured.

    Attributes:
        save_dir: The export directory.
        files: Written files by role (``model``, ``params``, ``onnx_model``, ``deploy``).
        checks: Per backend, ``label_agreement`` (vs. the dygraph model, in [0, 1]) and
            ``max_abs_diff`` of the logits (or of the probabilities with ``softmax``; None
            for a model that outputs labels itself, as with VIM). Empty when not verified.
        passed: Every agreement reached ``MIN_AGREEMENT`` (True when not verified).
    """

    save_dir: str
    files: dict[str, str]
    checks: dict[str, dict] = field(default_factory=dict)
    passed: bool = True


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


# ------------------------------------------------------------------------------ validation


def parse_formats(formats: str | Sequence[str]) -> tuple[str, ...]:
    """Parses ``"paddle,onnx"`` (or a list) into known formats, in the order given.

    Raises:
        ConfigError: Empty list or unknown format.
    """
    if isinstance(formats, str):
        formats = formats.split(",")
    names = tuple(dict.fromkeys(f.strip().lower() for f in formats if f.strip()))
    unknown = [f for f in names if f not in FORMATS]
    if unknown or not names:
        raise ConfigError(
            f"unknown export format(s) {unknown or formats!r}; choose from {', '.join(FORMATS)}"
        )
    return names


def check_input_shape(shape: Sequence[int]) -> list[int]:
    """Checks an input shape (N, C, H, W); N, H and W may be -1 (dynamic).

    Raises:
        ConfigError: Not 4 values, C not 3, or a size that is neither positive nor -1.
    """
    shape = [int(v) for v in shape]
    if len(shape) != 4:
        raise ConfigError(f"--input_shape needs 4 values N C H W, got {shape}")
    if shape[1] != 3:
        raise ConfigError(f"--input_shape: the models take 3-channel images, got C={shape[1]}")
    if any(v == 0 or v < -1 for v in shape):
        raise ConfigError(f"--input_shape: sizes must be positive or -1 (dynamic), got {shape}")
    return shape


def outputs_labels(model: nn.Layer) -> bool:
    """Whether ``model`` returns int labels in eval mode (valid-class interpolation on)."""
    return any(
        isinstance(layer, LogitsUpsample) and layer.use_vim
        for layer in model.sublayers(include_self=True)
    )


def prepare_model(model: nn.Layer, output_op: str, num_classes: int) -> nn.Layer:
    """Checks ``output_op`` against ``model`` and, for ``vim``, turns VIM on.

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
    if output_op != "vim" or labels:
        return model
    upsample = getattr(model, "upsample", None)
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


# ------------------------------------------------------------------------------ config bits


def val_transforms(cfg: Config) -> list[dict]:
    """The config's val transforms as plain dicts (the deployed preprocessing)."""
    ds_cfg = cfg.dic.get("val_dataset") or {}
    return copy.deepcopy(list(ds_cfg.get("transforms") or [{"type": "Normalize"}]))


def default_input_shape(cfg: Config) -> list[int]:
    """(1, 3, H, W) from a val ``Resize`` (its ``target_size`` is (w, h)), else 512x512."""
    for t in val_transforms(cfg):
        if t.get("type") == "Resize":
            w, h = t.get("target_size", (512, 512))
            return [1, 3, int(h), int(w)]
    return [1, 3, 512, 512]


def sample_input(cfg: Config, input_shape: Sequence[int], seed: int = 0) -> tuple[np.ndarray, str]:
    """One preprocessed input batch of ``input_shape`` and where it came from.

    The first val image (after the val transforms) resized to the fixed H/W; with a dynamic
    size, the image's own size rounded down to a multiple of 32. Random values when the val
    dataset cannot be read.
    """
    n = 1 if input_shape[0] == -1 else input_shape[0]
    h, w = input_shape[2], input_shape[3]
    img, source = None, "random"
    try:
        check_dataset_root(cfg, "val")  # stock datasets would download instead
        dataset = build(cfg).val_dataset
        img = np.asarray(dataset[0]["img"], dtype=np.float32)  # (C, H, W)
        source = "val image"
        if hasattr(dataset, "file_list"):
            source = f"val image {dataset.file_list[0][0]}"
    except Exception as err:  # any unreadable dataset falls back to random values
        logger.warning(f"No val image for the export check ({err}); using random values")
    if img is None:
        rng = np.random.default_rng(seed)
        side_h = h if h > 0 else DYNAMIC_SAMPLE_SIDE
        side_w = w if w > 0 else DYNAMIC_SAMPLE_SIDE
        return rng.standard_normal((n, 3, side_h, side_w)).astype(np.float32), source
    target_h = h if h > 0 else max(32, img.shape[1] // 32 * 32)
    target_w = w if w > 0 else max(32, img.shape[2] // 32 * 32)
    if (target_h, target_w) != img.shape[1:]:
        hwc = cv2_resize(img.transpose(1, 2, 0), target_w, target_h)
        img = hwc.transpose(2, 0, 1)
    return np.repeat(img[np.newaxis], n, axis=0), source


def cv2_resize(img: np.ndarray, width: int, height: int, nearest: bool = False) -> np.ndarray:
    """``cv2.resize`` of an (H, W[, C]) array; bilinear, or nearest for labels."""
    import cv2

    interp = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    out = cv2.resize(img, (width, height), interpolation=interp)
    return out.reshape(height, width, *img.shape[2:])


# ---------------------------------------------------------------------------------- writers


def save_paddle(layer: nn.Layer, input_shape: Sequence[int], save_dir: str) -> dict[str, str]:
    """Writes the PIR inference program ``model.json`` + ``model.pdiparams``.

    Returns:
        ``{"model": "model.json", "params": "model.pdiparams"}`` (names in ``save_dir``).
    """
    layer.eval()
    spec = [paddle.static.InputSpec(list(input_shape), "float32", INPUT_NAME)]
    static = paddle.jit.to_static(layer, input_spec=spec, full_graph=True)
    paddle.jit.save(static, os.path.join(save_dir, MODEL_PREFIX))
    for name in ("json", "pdmodel"):
        if os.path.isfile(os.path.join(save_dir, f"{MODEL_PREFIX}.{name}")):
            return {"model": f"{MODEL_PREFIX}.{name}", "params": f"{MODEL_PREFIX}.pdiparams"}
    raise RuntimeError(f"paddle.jit.save wrote no model file in {save_dir}")


def _convert_onnx_child(
    model_file: str, params_file: str, onnx_file: str, opset: int, log_file: str
) -> None:
    """Child process body of ``convert_onnx``: paddle2onnx with its output sent to a file."""
    import faulthandler

    # An abort is reported by the parent from the log; no inherited crash dump to stderr.
    faulthandler.disable()
    log_fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.environ["POLYGRAPHY_AUTOINSTALL_DEPS"] = "0"
    import paddle2onnx

    paddle2onnx.export(
        model_file,
        params_file,
        onnx_file,
        opset_version=opset,
        auto_upgrade_opset=False,
        enable_onnx_checker=True,
        optimize_tool="none",
    )


def convert_onnx(
    model_file: str, params_file: str, onnx_file: str, opset: int = 13, timeout: float = 600
) -> None:
    """Converts a Paddle inference program to ONNX with paddle2onnx, in a child process.

    The child is forked where the platform allows it (it then shares the loaded Paddle and
    starts in well under a second), else spawned.

    Raises:
        RuntimeError: The conversion failed or timed out; the message holds paddle2onnx's
            error lines.
    """
    if os.path.exists(onnx_file):
        os.remove(onnx_file)
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    with tempfile.NamedTemporaryFile(suffix=".log", delete=False) as log:
        log_file = log.name
    try:
        child = multiprocessing.get_context(method).Process(
            target=_convert_onnx_child,
            args=(model_file, params_file, onnx_file, opset, log_file),
        )
        child.start()
        child.join(timeout)
        if child.is_alive():
            child.kill()
            child.join()
        with open(log_file, errors="replace") as f:
            lines = f.read().splitlines()
    finally:
        os.remove(log_file)
    if child.exitcode != 0 or not os.path.isfile(onnx_file):
        errors = [line for line in lines if "ERROR" in line or "Error" in line] or lines[-5:]
        raise RuntimeError(
            f"paddle2onnx could not convert {model_file} (exit code {child.exitcode}):\n"
            + "\n".join(errors[-8:])
        )


REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LITE_SCRIPT = os.path.join(REPO_ROOT, "deploy", "lite", "export_legacy.py")
# Interpreter of the Lite side environment; default: .venv-lite made by `make lite-env`.
LITE_PYTHON_ENV = "PADDLESEG_EXT_LITE_PYTHON"


def lite_python() -> str:
    """The side environment's interpreter (``$PADDLESEG_EXT_LITE_PYTHON`` or .venv-lite)."""
    return os.environ.get(LITE_PYTHON_ENV) or os.path.join(REPO_ROOT, ".venv-lite", "bin", "python")


def check_lite(output_op: str) -> None:
    """Fails before anything is written when ``--formats lite`` cannot be done.

    Raises:
        ConfigError: ``vim`` output op (opt 2.13rc0 crashes on its dynamic class subset), or
            no side environment / conversion script.
    """
    if output_op == "vim":
        raise ConfigError(
            "--formats lite: --output_op vim cannot be converted (Paddle Lite opt 2.13rc0 "
            "crashes on its where_index/gather class subset); use --output_op argmax, which "
            "gives the same labels (a VIM model is exported with full bilinear upsampling)"
        )
    if not os.path.isfile(LITE_SCRIPT):
        raise ConfigError(f"--formats lite needs {LITE_SCRIPT} (a repository checkout)")
    if not os.access(lite_python(), os.X_OK):
        raise ConfigError(
            f"--formats lite needs the Paddle Lite side environment (CPython 3.10, "
            f"paddlelite 2.13rc0): no interpreter at {lite_python()}; run `make lite-env` "
            f"or set {LITE_PYTHON_ENV}"
        )


def convert_lite(
    cfg: Config,
    model: nn.Layer,
    input_shape: Sequence[int],
    output_op: str,
    save_dir: str,
    check: bool = True,
    timeout: float = 1200,
) -> str:
    """Writes ``save_dir/model.nb`` (Paddle Lite, arm) through the side environment.

    The config and ``model``'s weights go to a temporary folder; ``LITE_SCRIPT`` rebuilds the
    model under Paddle 2.6, saves the legacy program and runs ``paddle_lite_opt``. With
    ``check``, the legacy program's labels are compared with its dygraph model.

    Returns:
        ``"model.nb"``.

    Raises:
        RuntimeError: The conversion failed (the message names the ops Lite rejected), or
            the legacy program disagrees with the dygraph model.
    """
    import json
    import subprocess

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
            "check": check,
        }
        jobs_file = os.path.join(tmp, "jobs.json")
        with open(jobs_file, "w") as f:
            json.dump([job], f)
        env = dict(os.environ, PYTHONPATH=REPO_ROOT)
        proc = subprocess.run(
            [lite_python(), LITE_SCRIPT, jobs_file],
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
            cwd=REPO_ROOT,
        )
    results = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    if not results:
        tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
        raise RuntimeError(f"Paddle Lite conversion failed (exit code {proc.returncode}): {tail}")
    if not results[0]["ok"]:
        raise RuntimeError(results[0]["error"])
    agreement = results[0].get("label_agreement")
    if agreement is not None:
        logger.info(f"Paddle Lite source program: label agreement {100 * agreement:.3f}%")
        if agreement < MIN_AGREEMENT:
            raise RuntimeError(
                f"the legacy program converted to model.nb agrees with the dygraph model on "
                f"only {100 * agreement:.3f}% of labels"
            )
    return results[0]["file"]


def write_deploy_yaml(save_dir: str, info: dict) -> str:
    """Writes ``save_dir/deploy.yaml`` as ``{"Deploy": info}`` and returns its path."""
    path = os.path.join(save_dir, DEPLOY_FILE)
    with open(path, "w") as f:
        yaml.safe_dump({"Deploy": info}, f, sort_keys=False, default_flow_style=None)
    return path


# ------------------------------------------------------------------------------------ check


def compare_outputs(reference: np.ndarray, output: np.ndarray) -> dict:
    """Label agreement (fraction of equal pixels) and max |difference| of float outputs."""
    if reference.shape != output.shape:
        raise ValueError(f"output shape {output.shape} differs from dygraph {reference.shape}")
    agreement = float((to_labels(reference) == to_labels(output)).mean())
    max_diff = None
    if np.issubdtype(reference.dtype, np.floating):
        max_diff = float(np.abs(reference.astype(np.float64) - output).max())
    return {"label_agreement": agreement, "max_abs_diff": max_diff}


def verify_export(
    layer: nn.Layer, save_dir: str, files: dict[str, str], x: np.ndarray, threads: int = 1
) -> dict[str, dict]:
    """Runs the exported files on ``x`` and compares them with the dygraph ``layer``.

    Returns:
        Per backend (``paddle_inference``, ``onnxruntime``) the ``compare_outputs`` dict.
    """
    with paddle.no_grad():
        reference = layer(paddle.to_tensor(x)).numpy()
    runners = {}
    if "model" in files:
        model_file = os.path.join(save_dir, files["model"])
        params_file = os.path.join(save_dir, files["params"])
        runners["paddle_inference"] = lambda: PaddleRunner(model_file, params_file, threads)
    if "onnx_model" in files:
        onnx_file = os.path.join(save_dir, files["onnx_model"])
        runners["onnxruntime"] = lambda: OrtRunner(onnx_file, threads)
    checks = {}
    for backend, make_runner in runners.items():
        try:
            output = make_runner()(x)
        except Exception as err:  # report which backend cannot run the files, and why
            raise RuntimeError(f"{backend} cannot run the exported model: {err}") from err
        checks[backend] = compare_outputs(reference, output)
    return checks


def logit_differences(
    model: nn.Layer,
    input_shape: Sequence[int],
    paddle_check: bool,
    onnx_check: bool,
    x: np.ndarray,
    opset: int = 13,
    threads: int = 1,
) -> dict[str, float]:
    """Max |logit difference| of each backend, through a temporary logits-only export.

    An ``argmax`` graph hides the logits; exporting the same model with ``none`` shows how
    far the backends' logits are from dygraph's.

    Returns:
        Per backend (``paddle_inference``, ``onnxruntime``) the largest absolute difference.
    """
    layer = ExportModel(model, "none", False)
    layer.eval()
    with tempfile.TemporaryDirectory(prefix="export_logits_") as tmp:
        files = save_paddle(layer, input_shape, tmp)
        if onnx_check:
            onnx_file = os.path.join(tmp, f"{MODEL_PREFIX}.onnx")
            model_file = os.path.join(tmp, files["model"])
            convert_onnx(model_file, os.path.join(tmp, files["params"]), onnx_file, opset)
            files["onnx_model"] = os.path.basename(onnx_file)
        if not paddle_check:
            del files["model"]
        checks = verify_export(layer, tmp, files, x, threads)
    return {backend: check["max_abs_diff"] for backend, check in checks.items()}


# ----------------------------------------------------------------------------------- export


def export(
    cfg: Config,
    save_dir: str,
    *,
    model_path: str | None = None,
    input_shape: Sequence[int] | None = None,
    output_op: str = "argmax",
    formats: str | Sequence[str] = DEFAULT_FORMATS,
    opset: int = 13,
    verify: bool = True,
    threads: int = 1,
) -> ExportResult:
    """Exports the config's model for deployment (see the module docstring).

    Args:
        cfg: A loaded config (``load_config(path, "val")``).
        save_dir: Output directory (created).
        model_path: ``model.pdparams`` or its folder; None keeps random weights (warned).
        input_shape: (N, 3, H, W), -1 for a dynamic N/H/W; None: ``default_input_shape``.
        output_op: One of ``OUTPUT_OPS``.
        formats: Subset of ``FORMATS`` (list or comma-separated string).
        opset: ONNX opset.
        verify: Run the exported files and compare them with the dygraph model.
        threads: CPU threads of the check.

    Returns:
        The files written and the check results.

    Raises:
        ConfigError: Unsupported option combination (raised before anything is written).
        RuntimeError: A conversion failed.
    """
    names = parse_formats(formats)
    if output_op not in OUTPUT_OPS:
        raise ConfigError(f"unknown --output_op {output_op!r}; choose from {', '.join(OUTPUT_OPS)}")
    if "lite" in names:
        check_lite(output_op)
    shape = check_input_shape(input_shape) if input_shape else default_input_shape(cfg)
    if model_path is not None and not os.path.exists(model_path):
        raise FileNotFoundError(f"--model_path not found: {model_path}")
    num_classes, _, class_names = dataset_info(cfg, "val")

    model = build(cfg).model
    if model_path is None:
        logger.warning("No --model_path: exporting randomly initialised weights")
    else:
        load_weights(model, model_path)
    model = prepare_model(model, output_op, num_classes)
    labels = outputs_labels(model)
    model.eval()
    layer = ExportModel(model, output_op, labels)
    layer.eval()

    os.makedirs(save_dir, exist_ok=True)
    for stale in (
        "model.json",
        "model.pdmodel",
        "model.pdiparams",
        "model.onnx",
        "model_int8.onnx",
        "model.nb",
        DEPLOY_FILE,
    ):
        if os.path.exists(os.path.join(save_dir, stale)):
            os.remove(os.path.join(save_dir, stale))
    files: dict[str, str] = {}
    # ONNX is converted from the Paddle program; without "paddle" that stays in a temp dir.
    paddle_dir = save_dir if "paddle" in names else tempfile.mkdtemp(prefix="export_")
    try:
        paddle_files = save_paddle(layer, shape, paddle_dir)
        if "paddle" in names:
            files.update(paddle_files)
        if "onnx" in names:
            convert_onnx(
                os.path.join(paddle_dir, paddle_files["model"]),
                os.path.join(paddle_dir, paddle_files["params"]),
                os.path.join(save_dir, f"{MODEL_PREFIX}.onnx"),
                opset,
            )
            files["onnx_model"] = f"{MODEL_PREFIX}.onnx"
    finally:
        if paddle_dir != save_dir:
            shutil.rmtree(paddle_dir, ignore_errors=True)
    if "lite" in names:
        files["lite_model"] = convert_lite(cfg, model, shape, output_op, save_dir, verify)

    label_output = labels or output_op in ("argmax", "vim")
    info = {
        **files,
        "transforms": val_transforms(cfg),
        "input_name": INPUT_NAME,
        "input_shape": list(shape),
        "output_op": output_op,
        "output_dtype": "int32" if label_output else "float32",
        "output_layout": "labels N,1,H,W" if label_output else "scores N,C,H,W",
        "num_classes": num_classes,
        "class_names": class_names,
        "model_type": type(model).__name__,
        "opset": opset if "onnx" in names else None,
    }
    files["deploy"] = os.path.relpath(write_deploy_yaml(save_dir, info), save_dir)
    result = ExportResult(save_dir=save_dir, files=files)
    logger.info(f"Exported {', '.join(files.values())} to {save_dir}")

    if verify:
        x, source = sample_input(cfg, shape)
        result.checks = verify_export(layer, save_dir, files, x, threads)
        if not labels and label_output:
            diffs = logit_differences(
                model, shape, "model" in files, "onnx_model" in files, x, opset, threads
            )
            for backend, diff in diffs.items():
                result.checks[backend]["max_abs_diff"] = diff
        result.passed = all(c["label_agreement"] >= MIN_AGREEMENT for c in result.checks.values())
        logger.info(f"Export check on {source}, input {list(x.shape)}:")
        for backend, check in result.checks.items():
            diff = check["max_abs_diff"]
            diff_text = "n/a (the model outputs labels)" if diff is None else f"{diff:.3g}"
            logger.info(
                f"  {backend:<17} label agreement {100 * check['label_agreement']:.3f}% vs "
                f"dygraph, max |logit diff| {diff_text}"
            )
    return result
