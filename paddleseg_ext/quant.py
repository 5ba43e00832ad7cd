"""INT8 post-training quantization of an export, calibrated on training images.

Two paths, one per deployment format:

- ONNX (``model_int8.onnx``): onnxruntime's static quantization of the float ONNX model;
- Paddle Lite (``model_int8.nb``): PaddleSlim's ``quant_post_static`` on the legacy program
  in the Paddle Lite side environment, then opt (``paddleseg_ext.export.lite``). Only
  convolutions are quantized there: Paddle Lite 2.13rc0 has no int8 ``matmul_v2`` kernel.

``quantize_export`` takes a directory written by ``paddleseg_ext.export.export`` (with an
ONNX model), runs N training images through the float ONNX model to record activation
ranges, and writes ``model_int8.onnx``: weights quantized per output channel to int8,
activations to uint8, as QuantizeLinear/DequantizeLinear (QDQ) pairs around the
convolutions and matrix products, which onnxruntime executes with integer kernels.

The calibration images come from the config's ``train_dataset`` (its list of files, a
fixed random subset) preprocessed with the ``val_dataset`` transforms, i.e. exactly as the
deployed model sees its inputs, then resized to the exported input size.

Why onnxruntime's quantizer and not PaddleSlim / ``paddle.quantization``: PTQ in Paddle
3.3.1 (``paddle.quantization.PTQ`` with PaddleSlim observers, ``convert``,
``paddle.jit.save``) does produce a program with int8 ``quantize_linear`` /
``dequantize_linear`` ops, but paddle2onnx 2.1.0 converts those ops only to FP8: its mapper
needs opset 19 ("Please set the opset_version to 19") and then accepts only the FP8 ranges
("Only support e4m3 or e5m2 now"). A legacy ``.pdmodel`` from the same PTQ under Paddle
2.6.2 stops at the same opset check. So no INT8 ONNX model can be obtained from a
Paddle-quantized program with this toolchain, and the quantization is done on the float
ONNX model with ``onnxruntime.quantization.quantize_static``.
"""

from __future__ import annotations

import copy
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence

import numpy as np
import onnx
from paddleseg.cvlibs import Config
from paddleseg.utils import logger
from seg_runtime import DEPLOY_FILE, ExportFiles, OrtRunner, load_deploy, resize_to_input, to_labels

from .config import ConfigError, build, check_dataset_root
from .export import val_transforms
from .export.onnx_optimize import INTERPOLATION_MATMUL

QUANT_MODES = ("int8",)
INT8_FILE = ExportFiles.ONNX_INT8
# The operators given QDQ pairs: the convolutions and matrix products carry nearly all of
# the arithmetic; quantizing element-wise ops, resizes and sigmoids costs accuracy and
# adds Q/DQ overhead for no speed gain on CPU.
QUANT_OP_TYPES = ("Conv", "MatMul", "Gemm")
CALIB_METHODS = ("minmax", "entropy", "percentile")
# The same choice in PaddleSlim's names, for the Paddle Lite path.
LITE_ALGOS = {"minmax": "abs_max", "entropy": "KL", "percentile": "hist"}
DEFAULT_CALIB_IMAGES = 32


def check_quant_request(
    cfg: Config,
    quantize: str,
    calib_images: int | None,
    formats: Sequence[str],
    output_op: str,
    model_path: str | None,
) -> None:
    """Checks a quantization request before anything is exported.

    Raises:
        ConfigError: Unknown mode, fewer than one calibration image, neither an ONNX nor a
            Paddle Lite export, the ``vim`` output op (its class-selection graph is not
            quantized), Paddle Lite without ``model_path`` (the side environment rebuilds
            the model from its weights), or no training images to calibrate on.
    """
    calib_images = DEFAULT_CALIB_IMAGES if calib_images is None else calib_images
    if quantize not in QUANT_MODES:
        raise ConfigError(f"unknown --quantize {quantize!r}; choose from {', '.join(QUANT_MODES)}")
    if calib_images < 1:
        raise ConfigError(f"--calib_images must be at least 1, got {calib_images}")
    if "onnx" not in formats and "lite" not in formats:
        raise ConfigError(
            "--quantize int8 quantizes the ONNX and Paddle Lite models: add onnx or lite to "
            "--formats"
        )
    if output_op == "vim":
        raise ConfigError(
            "--quantize int8 is not supported with --output_op vim; use argmax, softmax or none"
        )
    if "lite" in formats and model_path is None:
        raise ConfigError("--quantize int8 with --formats lite needs --model_path")
    try:  # calibration needs the training images: fail now, not after the export
        calibration_dataset(cfg)
    except ConfigError as err:
        raise ConfigError(f"--quantize {quantize} calibrates on training images: {err}") from err


def add_int8_models(
    directory: str,
    cfg: Config,
    formats: Sequence[str],
    model_path: str | None,
    calib_images: int | None = None,
    method: str = "minmax",
    check_input: np.ndarray | None = None,
    threads: int = 1,
) -> None:
    """Adds the INT8 models of ``formats`` (ONNX, Paddle Lite) to the export in ``directory``.

    Raises:
        RuntimeError: onnxruntime or PaddleSlim/opt could not quantize.
    """
    calib_images = DEFAULT_CALIB_IMAGES if calib_images is None else calib_images
    try:
        if "onnx" in formats:
            quantize_export(cfg, directory, calib_images, method, check_input, threads)
        if "lite" in formats:
            quantize_lite_export(cfg, directory, model_path, calib_images, method)
    except RuntimeError as err:
        raise RuntimeError(f"INT8 quantization failed: {err}") from err


def calibration_dataset(cfg: Config):
    """The config's training dataset with the val transforms (no augmentation).

    Raises:
        ConfigError: The config has no ``train_dataset``, or its root is missing.
    """
    ds_cfg = copy.deepcopy(cfg.dic.get("train_dataset") or {})
    if not ds_cfg:
        raise ConfigError("--quantize needs a train_dataset in the config for calibration")
    check_dataset_root(cfg, "train")
    ds_cfg["transforms"] = val_transforms(cfg)
    return build(cfg).build_component(ds_cfg)


def calibration_batches(
    cfg: Config, num_images: int, input_shape: Sequence[int], seed: int = 0
) -> Iterator[np.ndarray]:
    """Yields preprocessed batches of ``num_images`` training images for calibration.

    The images are a fixed random subset of the training set (all of it when smaller).
    Each is brought to the model's input size as the device runtime does
    (``seg_runtime.model_input_size``). Batches have ``input_shape[0]`` images (1 when
    dynamic); a last incomplete batch is filled by repeating its images.
    """
    dataset = calibration_dataset(cfg)
    order = np.random.default_rng(seed).permutation(len(dataset))[:num_images]
    batch = 1 if input_shape[0] == -1 else int(input_shape[0])
    pending: list[np.ndarray] = []
    for index in order:
        img = np.asarray(dataset[int(index)]["img"], dtype=np.float32)  # (C, H, W)
        pending.append(resize_to_input(img, input_shape))
        if len(pending) == batch:
            yield np.stack(pending)
            pending = []
    if pending:
        yield np.stack([pending[i % len(pending)] for i in range(batch)])


class _Reader:
    """onnxruntime ``CalibrationDataReader`` over precomputed batches."""

    def __init__(self, input_name: str, batches: Sequence[np.ndarray]) -> None:
        self.input_name = input_name
        self.batches = list(batches)
        self.position = 0

    def get_next(self) -> dict | None:
        if self.position >= len(self.batches):
            return None
        self.position += 1
        return {self.input_name: self.batches[self.position - 1]}

    def rewind(self) -> None:
        self.position = 0


def quantize_onnx(
    float_onnx: str,
    int8_onnx: str,
    batches: Sequence[np.ndarray],
    input_name: str = "x",
    method: str = "minmax",
    op_types: Sequence[str] = QUANT_OP_TYPES,
) -> dict:
    """Statically quantizes ``float_onnx`` to ``int8_onnx`` (QDQ, uint8 act., int8 weights).

    The float model is first pre-processed by onnxruntime (shape inference, constant
    folding, BatchNorm folded into the convolutions) so that each convolution gets one
    quantized weight. Weights are symmetric per output channel; ``reduce_range`` keeps them
    to 7 bits, which avoids the saturation of uint8 x int8 products on x86 CPUs without
    VNNI instructions (AVX2).

    Args:
        float_onnx: The float ONNX model.
        int8_onnx: Where to write the quantized model.
        batches: Calibration inputs, each (N, 3, H, W) float32 matching the model's input.
        input_name: The model's input name.
        method: Activation range estimation: ``minmax``, ``entropy`` or ``percentile``.
        op_types: Operator types to quantize.

    Returns:
        The settings used (for ``deploy.yaml``).
    """
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    methods = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }
    if method not in methods:
        raise ConfigError(f"unknown calibration method {method!r}; choose from {CALIB_METHODS}")
    if not batches:
        raise ValueError("no calibration batches")
    import onnxruntime as ort

    work = tempfile.mkdtemp(prefix="quant_")
    # The pre-processing logs one warning per unused initializer of paddle2onnx's output.
    ort.set_default_logger_severity(3)
    try:
        prepared = os.path.join(work, "prepared.onnx")
        quant_pre_process(float_onnx, prepared, skip_symbolic_shape=True)
        interpolations = [
            node.name
            for node in onnx.load(prepared).graph.node
            if INTERPOLATION_MATMUL in node.name
        ]
        quantize_static(
            prepared,
            int8_onnx,
            _Reader(input_name, batches),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(op_types),
            per_channel=True,
            reduce_range=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=methods[method],
            calibration_providers=["CPUExecutionProvider"],
            nodes_to_exclude=interpolations,
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {
        "format": "QDQ",
        "activations": "uint8 (asymmetric, per tensor)",
        "weights": "int8 (symmetric, per channel, 7-bit range)",
        "op_types": list(op_types),
        "float_interpolation_matmuls": len(interpolations),
        "calibration": method,
        "calibration_batches": len(batches),
    }


def quantize_export(
    cfg: Config,
    save_dir: str,
    calib_images: int = DEFAULT_CALIB_IMAGES,
    method: str = "minmax",
    check_input: np.ndarray | None = None,
    threads: int = 1,
) -> dict:
    """Adds ``model_int8.onnx`` to an export directory and points ``deploy.yaml`` at it.

    ``deploy.yaml`` then lists it as the ONNX INT8 model and the ONNX default (so the
    inference tools run it unless asked for the float one) and records the settings under
    ``quantization.onnx``.

    Args:
        cfg: The config the model was exported with (its train dataset calibrates).
        save_dir: A directory written by ``export`` with an ONNX model.
        calib_images: Number of training images.
        method: Calibration method, see ``quantize_onnx``.
        check_input: An input batch on which the INT8 labels are compared with the float
            ONNX model's (skipped when None).
        threads: onnxruntime threads of that check.

    Returns:
        The ``quantization`` entry written to ``deploy.yaml``, with ``label_agreement``
        (INT8 vs float ONNX on ``check_input``) when checked.
    """
    deploy = load_deploy(save_dir)
    float_name = deploy.model_file("onnx", False)
    if not float_name:
        raise ConfigError(f"{save_dir}: no ONNX model to quantize (export with --formats onnx)")
    float_onnx = os.path.join(save_dir, float_name)
    batches = list(calibration_batches(cfg, calib_images, deploy.input_shape))
    logger.info(f"INT8 quantization: calibrating on {calib_images} training image(s)")
    info = quantize_onnx(
        float_onnx,
        os.path.join(save_dir, INT8_FILE),
        batches,
        deploy.input_name,
        method,
    )
    info["calibration_images"] = int(calib_images)
    if check_input is not None:
        reference = to_labels(OrtRunner(float_onnx, threads)(check_input))
        labels = to_labels(OrtRunner(os.path.join(save_dir, INT8_FILE), threads)(check_input))
        info["label_agreement"] = float((reference == labels).mean())
        logger.info(
            f"INT8 model: label agreement {100 * info['label_agreement']:.2f}% vs the float "
            "ONNX model"
        )
    deploy.set_model("onnx", "int8", INT8_FILE, default=True)
    deploy.quantization["onnx"] = info
    deploy.write(save_dir)
    logger.info(f"Wrote {INT8_FILE} and updated {DEPLOY_FILE} in {save_dir}")
    return info


def quantize_lite_export(
    cfg: Config,
    save_dir: str,
    model_path: str | None,
    calib_images: int = DEFAULT_CALIB_IMAGES,
    method: str = "minmax",
) -> dict:
    """Adds ``model_int8.nb`` (Paddle Lite, INT8 convolutions) to an export with a Lite model.

    The same calibration images as the ONNX path go to PaddleSlim's ``quant_post_static`` in
    the side environment; ``deploy.yaml`` lists it as the Lite INT8 model (the float one
    stays the Lite default) and records under ``quantization.lite`` the algorithm, the
    kernels opt chose per precision and the label agreement of the INT8 legacy program with
    the float one on the calibration images.

    Args:
        cfg: The config the model was exported with (its train dataset calibrates).
        save_dir: A directory written by ``export`` with ``--formats lite``.
        model_path: The exported weights (None: the same random weights cannot be rebuilt,
            so this is refused).
        calib_images: Number of training images.
        method: One of ``CALIB_METHODS`` (mapped to PaddleSlim's ``LITE_ALGOS``).
    """
    from .core.checkpoint import load_weights
    from .export import lite

    deploy = load_deploy(save_dir)
    if not deploy.has("lite"):
        raise ConfigError(f"{save_dir}: no Paddle Lite model to quantize (--formats lite)")
    if model_path is None:
        raise ConfigError("--quantize int8 with --formats lite needs --model_path")
    model = build(cfg).model
    load_weights(model, model_path)
    batches = np.stack(list(calibration_batches(cfg, calib_images, deploy.input_shape)))
    logger.info(f"Paddle Lite INT8: PaddleSlim PTQ on {calib_images} training image(s)")
    result = lite.quantize_lite(
        cfg, model, deploy.input_shape, deploy.output_op, save_dir, batches,
        LITE_ALGOS[method],
    )  # fmt: skip
    info = {
        "tool": "paddleslim.quant.quant_post_static",
        "algo": LITE_ALGOS[method],
        "calibration_images": int(calib_images),
        "kernels": result["int8_kernels"],
        "label_agreement": result["int8_label_agreement"],
    }
    deploy.set_model("lite", "int8", result["int8_file"])
    deploy.quantization["lite"] = info
    deploy.write(save_dir)
    int8_ops = ", ".join(f"{op} x{n}" for op, n in info["kernels"].get("int8", {}).items())
    logger.info(
        f"Wrote {result['int8_file']}: int8 kernels {int8_ops or 'none'}; label agreement "
        f"{100 * info['label_agreement']:.2f}% vs the float program on the calibration images"
    )
    return info
