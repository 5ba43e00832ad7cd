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
# Dynamic-size inputs are resized to a multiple of this (the backbones' output stride).
STRIDE = 32


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


def build_transforms(transforms: Sequence[dict]):
    """PaddleSeg ``Compose`` of ``deploy.yaml``'s transforms (BGR in, RGB CHW float32 out)."""
    from paddleseg.cvlibs import manager
    from paddleseg.transforms import Compose

    ops = []
    for spec in transforms:
        spec = dict(spec)
        name = spec.pop("type", None)
        if name not in manager.TRANSFORMS.components_dict:
            raise ValueError(f"deploy.yaml: unknown transform {name!r}")
        ops.append(manager.TRANSFORMS[name](**spec))
    return Compose(ops)


class SegPredictor:
    """Segments BGR images with an exported model: preprocessing, inference, labels.

    A model exported with a fixed H/W gets the preprocessed image resized to it; with a
    dynamic H/W, to the nearest multiple of 32 (the backbones' output stride). The labels
    are brought back to the image size with nearest-neighbour resizing.

    Args:
        model_dir: Export directory holding ``deploy.yaml``.
        backend: ``"paddle"`` or ``"onnxruntime"``.
        threads: CPU threads.
        use_gpu: Paddle Inference on GPU.
        providers: onnxruntime execution providers (None: TensorRT/CUDA when present, CPU).
    """

    def __init__(
        self,
        model_dir: str,
        backend: Backend = "onnxruntime",
        threads: int = 1,
        *,
        use_gpu: bool = False,
        providers: Sequence[str] | None = None,
    ) -> None:
        self.deploy = load_deploy(model_dir)
        self.runner = create_runner(
            model_dir, backend, threads, use_gpu=use_gpu, providers=providers
        )
        self.transforms = build_transforms(self.deploy.get("transforms") or [])
        n, _, h, w = self.deploy["input_shape"]
        self.batch = max(n, 1)
        self.fixed_size = (h, w) if h > 0 and w > 0 else None
        self.num_classes = int(self.deploy["num_classes"])

    def preprocess(self, image_bgr: np.ndarray) -> np.ndarray:
        """(H, W, 3) BGR image -> (N, 3, h, w) float32 model input."""
        data = self.transforms({"img": image_bgr.astype(np.float32), "trans_info": []})
        chw = data["img"].astype(np.float32)
        if self.fixed_size:
            h, w = self.fixed_size
        else:  # dynamic size: the nearest multiple of the models' output stride (32)
            h, w = (max(STRIDE, round(side / STRIDE) * STRIDE) for side in chw.shape[1:])
        if chw.shape[1:] != (h, w):
            import cv2

            chw = cv2.resize(chw.transpose(1, 2, 0), (w, h), interpolation=cv2.INTER_LINEAR)
            chw = chw.reshape(h, w, -1).transpose(2, 0, 1)
        return np.repeat(chw[np.newaxis], self.batch, axis=0)

    def __call__(self, image_bgr: np.ndarray) -> tuple[np.ndarray, float]:
        """Segments one image.

        Returns:
            ``(labels, latency_ms)``: int64 labels (H, W) at the image size, and the time of
            the inference call alone.
        """
        import time

        import cv2

        x = self.preprocess(image_bgr)
        start = time.perf_counter()
        output = self.runner(x)
        latency = (time.perf_counter() - start) * 1000
        labels = to_labels(output)[0]
        h, w = image_bgr.shape[:2]
        if labels.shape != (h, w):
            labels = cv2.resize(labels.astype(np.int32), (w, h), interpolation=cv2.INTER_NEAREST)
        return labels.astype(np.int64), latency
