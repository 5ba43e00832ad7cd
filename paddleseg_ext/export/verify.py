"""The post-export check: the exported files against the dygraph model on one input."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence

import numpy as np
import paddle
import paddle.nn as nn
from paddleseg.cvlibs import Config
from paddleseg.utils import logger
from seg_runtime import ExportFiles, OrtRunner, PaddleRunner, resize_to_input, to_labels

from ..config import build, check_dataset_root
from .graph import ExportModel, save_inference_program
from .onnx_convert import write_onnx

# Smallest share of pixels on which an exported model must agree with the dygraph model.
MIN_AGREEMENT = 0.999
# Size used for a dynamic height/width when no val image gives one.
DYNAMIC_SAMPLE_SIDE = 256


def sample_input(cfg: Config, input_shape: Sequence[int], seed: int = 0) -> tuple[np.ndarray, str]:
    """One preprocessed input batch of ``input_shape`` and where it came from.

    The first val image (after the val transforms) brought to the model's input size as the
    device runtime does (``seg_runtime.model_input_size``). Random values when the val
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
    img = resize_to_input(img, input_shape)
    return np.repeat(img[np.newaxis], n, axis=0), source


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
    work_dir: str | None = None,
) -> dict[str, float]:
    """Max |logit difference| of each backend, through a temporary logits-only export.

    An ``argmax`` graph hides the logits; exporting the same model with ``none`` shows how
    far the backends' logits are from dygraph's.

    Args:
        work_dir: Where the temporary export goes (default: the system's temporary folder);
            the export passes its own folder, so that a killed run leaves nothing elsewhere.

    Returns:
        Per backend (``paddle_inference``, ``onnxruntime``) the largest absolute difference.
    """
    layer = ExportModel(model, "none", False)
    layer.eval()
    with tempfile.TemporaryDirectory(prefix="export_logits_", dir=work_dir) as tmp:
        # The programs as the export writes them.
        files = {}
        if paddle_check:
            files.update(save_inference_program(model, "none", False, input_shape, tmp))
        if onnx_check:
            write_onnx(layer, input_shape, os.path.join(tmp, ExportFiles.ONNX), opset)
            files["onnx_model"] = ExportFiles.ONNX
        checks = verify_export(layer, tmp, files, x, threads)
    return {backend: check["max_abs_diff"] for backend, check in checks.items()}
