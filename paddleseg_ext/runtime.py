"""Running exported models: Paddle Inference and onnxruntime behind one small interface.

An exported directory holds ``deploy.yaml`` (written by ``paddleseg_ext.export``) naming the
model files, the preprocessing and the input/output layout. ``create_runner`` opens it with
one backend and returns a callable ``runner(x) -> output`` on NCHW float32 arrays, used by the
export check, ``deploy/python/infer.py`` and the benchmarks.

Paddle Inference runs with oneDNN disabled: with oneDNN enabled, Paddle 3.3.1 fails on these
models (``ConvertPirAttribute2RuntimeAttribute not support ArrayAttribute<DoubleAttribute>``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Literal

import numpy as np
import yaml

DEPLOY_FILE = "deploy.yaml"
Backend = Literal["paddle", "onnxruntime"]
BACKENDS = ("paddle", "onnxruntime")
# Tried in this order when available; CPU always is.
ORT_ACCELERATED = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


def load_deploy(model_dir: str) -> dict:
    """Reads ``model_dir/deploy.yaml`` and returns its ``Deploy`` section.

    Raises:
        FileNotFoundError: The directory or its ``deploy.yaml`` does not exist.
        ValueError: The file has no ``Deploy`` section.
    """
    path = os.path.join(model_dir, DEPLOY_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{DEPLOY_FILE} not found in {model_dir} (export the model first)")
    with open(path) as f:
        data = yaml.safe_load(f) or {}
    if "Deploy" not in data:
        raise ValueError(f"{path}: no 'Deploy' section")
    return data["Deploy"]


class PaddleRunner:
    """A Paddle Inference predictor on CPU (oneDNN off) or GPU.

    Args:
        model_file: ``model.json`` (PIR) or ``model.pdmodel``.
        params_file: ``model.pdiparams``.
        threads: CPU math threads.
        use_gpu: Run on the first CUDA device (needs a CUDA build of Paddle).
    """

    name = "paddle"

    def __init__(
        self, model_file: str, params_file: str, threads: int = 1, use_gpu: bool = False
    ) -> None:
        from paddle import inference

        config = inference.Config(model_file, params_file)
        if use_gpu:
            config.enable_use_gpu(256, 0)
        else:
            config.disable_gpu()
            config.disable_mkldnn()
            config.set_cpu_math_library_num_threads(threads)
        config.disable_glog_info()
        config.switch_ir_optim(True)
        self.predictor = inference.create_predictor(config)
        self.input_name = self.predictor.get_input_names()[0]
        self.output_name = self.predictor.get_output_names()[0]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Runs one batch ``x`` (N, C, H, W) float32 and returns the first output."""
        handle = self.predictor.get_input_handle(self.input_name)
        handle.reshape(list(x.shape))
        handle.copy_from_cpu(np.ascontiguousarray(x, dtype=np.float32))
        self.predictor.run()
        return self.predictor.get_output_handle(self.output_name).copy_to_cpu()


class OrtRunner:
    """An onnxruntime session, on TensorRT or CUDA when those providers are present.

    Args:
        onnx_file: ``model.onnx``.
        threads: Intra-op threads of the CPU provider.
        providers: Execution providers; None picks TensorRT, CUDA (when available) and CPU.
    """

    name = "onnxruntime"

    def __init__(
        self, onnx_file: str, threads: int = 1, providers: Sequence[str] | None = None
    ) -> None:
        import onnxruntime as ort

        if providers is None:
            available = ort.get_available_providers()
            providers = [p for p in ORT_ACCELERATED if p in available]
            providers.append("CPUExecutionProvider")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.session = ort.InferenceSession(onnx_file, options, providers=list(providers))
        self.providers = self.session.get_providers()
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Runs one batch ``x`` (N, C, H, W) float32 and returns the first output."""
        feed = {self.input_name: np.ascontiguousarray(x, dtype=np.float32)}
        return self.session.run(None, feed)[0]


def create_runner(
    model_dir: str,
    backend: Backend,
    threads: int = 1,
    *,
    use_gpu: bool = False,
    providers: Sequence[str] | None = None,
) -> PaddleRunner | OrtRunner:
    """Opens the exported model in ``model_dir`` with ``backend``.

    Args:
        model_dir: A directory written by ``paddleseg_ext.export.export``.
        backend: ``"paddle"`` (Paddle Inference) or ``"onnxruntime"``.
        threads: CPU threads.
        use_gpu: Paddle Inference on GPU.
        providers: onnxruntime execution providers (None: best available).

    Raises:
        ValueError: Unknown backend, or the directory lacks that backend's files.
    """
    deploy = load_deploy(model_dir)
    if backend == "paddle":
        if not deploy.get("model") or not deploy.get("params"):
            raise ValueError(f"{model_dir}: no Paddle model (export with --formats paddle)")
        return PaddleRunner(
            os.path.join(model_dir, deploy["model"]),
            os.path.join(model_dir, deploy["params"]),
            threads,
            use_gpu,
        )
    if backend == "onnxruntime":
        if not deploy.get("onnx_model"):
            raise ValueError(f"{model_dir}: no ONNX model (export with --formats onnx)")
        return OrtRunner(os.path.join(model_dir, deploy["onnx_model"]), threads, providers)
    raise ValueError(f"unknown backend {backend!r}; expected one of {BACKENDS}")


def to_labels(output: np.ndarray) -> np.ndarray:
    """Class ids (N, H, W) from a model output: labels (N, 1, H, W) / (N, H, W) or scores.

    Integer outputs are labels already; float outputs (N, C, H, W) are logits or
    probabilities and take the argmax over C.
    """
    if np.issubdtype(output.dtype, np.integer):
        return output.reshape(output.shape[0], *output.shape[-2:]).astype(np.int64)
    return output.argmax(axis=1)
