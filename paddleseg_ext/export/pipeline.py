"""Export for deployment: Paddle Inference (PIR), ONNX, Paddle Lite, ``deploy.yaml``, check.

``export`` writes into one directory (names from ``seg_runtime.ExportFiles``):

- ``model.json`` + ``model.pdiparams``: the PIR inference program (``paddle.jit.save``);
- ``model.onnx``: converted from the PIR program by paddle2onnx (:mod:`.onnx_convert`) and
  optimised (:mod:`.onnx_optimize`: folded constants and BatchNorm, a faster label head);
- ``model.nb``: Paddle Lite (arm), converted in the CPython 3.10 side environment
  (``make lite-env``) by :mod:`.lite`;
- ``deploy.yaml``: the files actually written, the preprocessing (the config's val
  transforms, which the device runtime must support), the input shape, the output op,
  dtype and layout, and the class names.

The graph ends with the chosen output op (:mod:`.graph`). After export, Paddle Inference and
onnxruntime run the files on one sample (a val image when the dataset is on disk, else
random values) and are compared with the dygraph model (:mod:`.verify`).

Whatever can be checked without writing is checked first. The files are then written and
checked in ``SAVE_DIR.tmp-<pid>``, which takes the directory's place by renames at the end
(:class:`paddleseg_ext.atomic.StagedDirectory`), so a directory whose ``deploy.yaml`` names
missing or partial files never appears, even when the process is killed.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import paddle.nn as nn
from paddleseg.cvlibs import Config
from paddleseg.utils import logger
from seg_runtime import DEPLOY_FILE, DeployInfo, ExportFiles, Preprocessor

from ..atomic import StagedDirectory
from ..config import ConfigError, build, dataset_info
from ..core.checkpoint import load_weights
from . import lite
from .graph import (
    INPUT_NAME,
    OUTPUT_OPS,
    ExportModel,
    outputs_labels,
    prepare_model,
    save_inference_program,
    trace_paddle,
)
from .onnx_convert import ONNX_OPSETS, write_onnx
from .verify import MIN_AGREEMENT, logit_differences, sample_input, verify_export

FORMATS = ("paddle", "onnx", "lite")
DEFAULT_FORMATS = ("paddle", "onnx")


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


def check_save_dir(save_dir: str) -> None:
    """Fails when an export cannot take ``save_dir``'s place without destroying other data.

    The export replaces the whole directory, so it must be new, empty, or a previous export
    (only names from ``ExportFiles.ALL``).

    Raises:
        ConfigError: ``save_dir``, or the nearest existing folder above it, is not a
            directory, or ``save_dir`` holds entries that no export writes.
    """
    path = os.path.realpath(save_dir)
    existing = path
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise ConfigError(f"--save_dir {save_dir}: {existing} is a file, not a directory")
    if existing == path:
        foreign = sorted(set(os.listdir(path)) - set(ExportFiles.ALL))
        if foreign:
            raise ConfigError(
                f"--save_dir {save_dir} is not an export directory (it holds "
                f"{', '.join(foreign[:5])}{', ...' if len(foreign) > 5 else ''}) and an export "
                "replaces the whole directory; choose a new or empty one"
            )


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
    optimize_onnx: bool = True,
    quantize: str | None = None,
    calib_images: int | None = None,
    calib_method: str = "minmax",
) -> ExportResult:
    """Exports the config's model for deployment (see the module docstring).

    Every check that needs no file written runs first (options, ``save_dir``, weights, the
    model traced at ``input_shape``). The files are then written into a sibling folder
    ``SAVE_DIR.tmp-<pid>`` and checked there, and that folder replaces ``save_dir`` (by
    renames) only when everything succeeded (``paddleseg_ext.atomic.StagedDirectory``). A
    failed or interrupted export leaves an existing ``save_dir`` as it was.

    Args:
        cfg: A loaded config (``load_config(path, "val")``).
        save_dir: Output directory; new, empty, or a previous export (replaced as a whole).
        model_path: ``model.pdparams`` or its folder; None keeps random weights (warned).
        input_shape: (N, 3, H, W), -1 for a dynamic N/H/W; None: ``default_input_shape``.
        output_op: One of ``OUTPUT_OPS``.
        formats: Subset of ``FORMATS`` (list or comma-separated string).
        opset: ONNX opset.
        verify: Run the exported files and compare them with the dygraph model.
        threads: CPU threads of the check.
        optimize_onnx: Optimise ``model.onnx`` (:func:`.onnx_optimize.optimize_onnx`); off
            leaves paddle2onnx's graph as it is.
        quantize: ``"int8"`` also writes the INT8 models of the ONNX and Lite formats
            (:func:`paddleseg_ext.quant.add_int8_models`), in the same staged folder.
        calib_images: Training images that calibrate ``quantize`` (None: the default).
        calib_method: Activation ranges of ``quantize`` (``paddleseg_ext.quant``).

    Returns:
        The files written and the check results. When the check did not pass
        (``passed`` False) nothing was written.

    Raises:
        ConfigError: Unsupported option, ``save_dir``, weights or input shape (raised
            before anything is written).
        FileNotFoundError: ``model_path`` does not exist (raised before anything is
            written).
        RuntimeError: A conversion or the quantization failed.
    """
    names = parse_formats(formats)
    if quantize is not None:
        from ..quant import check_quant_request

        check_quant_request(cfg, quantize, calib_images, names, output_op, model_path)
    if output_op not in OUTPUT_OPS:
        raise ConfigError(f"unknown --output_op {output_op!r}; choose from {', '.join(OUTPUT_OPS)}")
    if "onnx" in names and opset not in ONNX_OPSETS:
        raise ConfigError(
            f"--opset {opset}: paddle2onnx converts opsets {ONNX_OPSETS.start} to "
            f"{ONNX_OPSETS.stop - 1}"
        )
    check_save_dir(save_dir)
    if "lite" in names:
        lite.check_lite(output_op)
    shape = check_input_shape(input_shape) if input_shape else default_input_shape(cfg)
    try:  # what the device runtime cannot preprocess must not be exported
        Preprocessor(val_transforms(cfg))
    except ValueError as err:
        raise ConfigError(f"val_dataset.transforms: {err}") from err
    if model_path is not None and not os.path.exists(model_path):
        raise FileNotFoundError(f"--model_path not found: {model_path}")
    num_classes, _, class_names = dataset_info(cfg, "val")

    model = build(cfg).model
    if model_path is None:
        logger.warning("No --model_path: exporting randomly initialised weights")
    else:
        try:
            load_weights(model, model_path)
        except ConfigError:
            raise
        except ValueError as err:  # paddle.load cannot parse the file
            raise ConfigError(f"--model_path {model_path}: {err}") from err
    model = prepare_model(model, output_op, num_classes)
    labels = outputs_labels(model)
    model.eval()
    layer = ExportModel(model, output_op, labels)
    if "paddle" in names or "onnx" in names:
        trace_paddle(layer, shape)

    label_output = labels or output_op in ("argmax", "vim")
    layout = "labels N,1,H,W" if label_output else "scores N,C,H,W"
    if output_op == "exact":
        layout = "logits N,C,h,w (labels by seg_runtime.labelhead)"
    deploy = DeployInfo(shape, num_classes, val_transforms(cfg), output_op)
    deploy.meta = {
        "input_name": INPUT_NAME,
        "output_dtype": "int32" if label_output else "float32",
        "output_layout": layout,
        "class_names": class_names,
        "model_type": type(model).__name__,
        "opset": opset if "onnx" in names else None,
    }
    if output_op == "exact":
        deploy.meta["align_corners"] = bool(model.upsample.align_corners)
    with StagedDirectory(save_dir) as stage:
        files = _write_models(
            cfg, model, layer, names, shape, output_op, opset, verify, stage.path, optimize_onnx
        )
        # deploy.yaml names the files relative to its folder, so it stays valid after the
        # rename; it is written after them.
        if "model" in files:
            paddle_files = {"model": files["model"], "params": files["params"]}
            deploy.set_model("paddle", "float", paddle_files)
        for fmt, role in (("onnx", "onnx_model"), ("lite", "lite_model")):
            if role in files:
                deploy.set_model(fmt, "float", files[role])
        deploy.write(stage.path)
        files["deploy"] = DEPLOY_FILE
        result = ExportResult(save_dir=save_dir, files=files)
        if verify:
            _check(result, cfg, model, layer, stage.path, shape, opset, threads)
        if not result.passed:
            logger.error(f"Export check failed: nothing written to {save_dir}")
            return result
        if quantize is not None:
            from ..quant import add_int8_models

            check = sample_input(cfg, shape)[0] if verify else None
            add_int8_models(
                stage.path, cfg, names, model_path, calib_images, calib_method, check, threads
            )
        stage.commit()
    logger.info(f"Exported {', '.join(files.values())} to {save_dir}")
    return result


def _write_models(
    cfg: Config,
    model: nn.Layer,
    layer: ExportModel,
    names: Sequence[str],
    shape: Sequence[int],
    output_op: str,
    opset: int,
    verify: bool,
    directory: str,
    optimize_onnx: bool = True,
) -> dict[str, str]:
    """Writes the model files of ``names`` into ``directory``; returns them by role."""
    files: dict[str, str] = {}
    if "paddle" in names:
        files.update(
            save_inference_program(model, output_op, layer.outputs_labels, shape, directory)
        )
    if "onnx" in names:
        # Its temporary program goes inside the stage: a killed run leaves nothing elsewhere.
        write_onnx(layer, shape, os.path.join(directory, ExportFiles.ONNX), opset, optimize_onnx)
        files["onnx_model"] = ExportFiles.ONNX
    if "lite" in names:
        files["lite_model"] = lite.convert_lite(cfg, model, shape, output_op, directory, verify)
    return files


def _check(
    result: ExportResult,
    cfg: Config,
    model: nn.Layer,
    layer: ExportModel,
    directory: str,
    shape: Sequence[int],
    opset: int,
    threads: int,
) -> None:
    """Runs the files in ``directory`` against the dygraph model; fills ``result``."""
    x, source = sample_input(cfg, shape)
    files = result.files
    result.checks = verify_export(layer, directory, files, x, threads)
    if not layer.outputs_labels and layer.output_op in ("argmax", "vim"):
        diffs = logit_differences(
            model, shape, "model" in files, "onnx_model" in files, x, opset, threads, directory
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
