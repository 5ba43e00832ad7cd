"""The files of an export directory: their names (one place) and ``deploy.yaml``."""

import os

DEPLOY_FILE = "deploy.yaml"


class ExportFiles:
    """File names written by the export.

    ``deploy.yaml`` lists the ones written: ``model``/``params`` (Paddle Inference),
    ``onnx_model`` (after INT8 quantization the INT8 file, with ``onnx_float_model``
    keeping the float one), ``lite_model`` and ``lite_int8_model``.
    """

    PREFIX = "model"
    PADDLE_MODEL = "model.json"  # PIR program (Paddle 3)
    PADDLE_LEGACY_MODEL = "model.pdmodel"  # legacy program (Paddle 2, Paddle Lite's opt)
    PADDLE_PARAMS = "model.pdiparams"
    ONNX = "model.onnx"
    ONNX_INT8 = "model_int8.onnx"
    LITE = "model.nb"
    LITE_INT8 = "model_int8.nb"
    ALL = (
        PADDLE_MODEL,
        PADDLE_LEGACY_MODEL,
        PADDLE_PARAMS,
        ONNX,
        ONNX_INT8,
        LITE,
        LITE_INT8,
        DEPLOY_FILE,
    )


def load_deploy(model_dir: str) -> dict:
    """Reads ``model_dir/deploy.yaml`` and returns its ``Deploy`` section.

    Raises:
        FileNotFoundError: The directory or its ``deploy.yaml`` does not exist.
        ValueError: The file has no ``Deploy`` section or lacks a required key.
    """
    import yaml  # only here: a packaged solution runs without PyYAML

    path = os.path.join(model_dir, DEPLOY_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{DEPLOY_FILE} not found in {model_dir} (export the model first)")
    with open(path) as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict) or "Deploy" not in data:
        raise ValueError(f"{path}: no 'Deploy' section")
    deploy = data["Deploy"]
    for key in ("input_shape", "num_classes"):
        if key not in deploy:
            raise ValueError(f"{path}: Deploy.{key} is missing")
    return deploy
