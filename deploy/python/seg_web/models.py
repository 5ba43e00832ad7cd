"""The demo's model entries: an export opened for the page, its picker name, one image
segmented and encoded for the browser."""

from __future__ import annotations

import base64
import os
import threading
from collections.abc import Sequence

import cv2
import numpy as np
from seg_runtime.backends import BACKEND_FORMATS, resolve_backend
from seg_runtime.files import load_deploy
from seg_runtime.postprocess import PostProcessor
from seg_runtime.predictor import SegPredictor
from seg_runtime.timing import summarize_ms, time_runs
from seg_runtime.visualize import color_palette, colorize, hex_color, legend

DEFAULT_ALPHA = 0.5
JPEG_QUALITY = 90
# Backends with an INT8 model beside the float one: an INT8 export gives both entries.
INT8_BACKENDS = ("onnxruntime", "openvino", "lite")


class DemoModel:
    """One entry of the model picker: a predictor and how it runs.

    Args:
        name: Shown in the picker and used in requests.
        model_dir: The export directory.
        predictor: Its predictor (without post-processing: the page toggles that).
        backend: The backend's name.
        threads: CPU threads of the backend.
        precision: ``"float"`` or ``"INT8"``.
    """

    def __init__(
        self,
        name: str,
        model_dir: str,
        predictor: SegPredictor,
        backend: str,
        threads: int,
        precision: str,
    ) -> None:
        self.name = name
        self.model_dir = model_dir
        self.predictor = predictor
        self.backend = backend
        self.threads = threads
        self.precision = precision
        self.palette = color_palette(predictor.num_classes)  # RGB
        # One inference at a time per model: Paddle Inference and Paddle Lite predictors are
        # not thread-safe, and runs competing for the CPU would distort the latencies.
        self.lock = threading.Lock()

    @property
    def backend_label(self) -> str:
        """The backend, with the onnxruntime execution provider actually in use."""
        providers = getattr(self.predictor.runner, "providers", None)
        return f"{self.backend} ({providers[0]})" if providers else self.backend

    def info(self) -> dict:
        """The picker's description: input size (W x H), backend, precision, classes."""
        height, width = self.predictor.input_shape[2:]
        size = f"{width}x{height}" if height > 0 and width > 0 else "dynamic"
        classes = [
            {"id": i, "name": str(name), "color": hex_color(self.palette[i])}
            for i, name in enumerate(self.predictor.class_names)
        ]
        return {
            "name": self.name,
            "model_dir": self.model_dir,
            "input_size": size,
            "backend": self.backend_label,
            "threads": self.threads,
            "precision": self.precision,
            "classes": classes,
        }

    def predict(
        self, image: np.ndarray, postprocess: PostProcessor | None
    ) -> tuple[np.ndarray, float]:
        """Labels (H, W) of a BGR image, post-processed when asked, and the inference ms."""
        with self.lock:
            labels, latency = self.predictor(image)
        if postprocess is not None:
            labels = postprocess(labels)
        return labels, latency

    def colorize(self, labels: np.ndarray) -> np.ndarray:
        """The colour-coded labels as a BGR image."""
        return colorize(labels, self.palette)

    def legend(self, labels: np.ndarray) -> list[dict]:
        """The classes present in ``labels``, largest first, with their share of pixels."""
        return legend(labels, self.palette, self.predictor.class_names)


def picker_names(model_dirs: Sequence[str]) -> list[str]:
    """The shortest trailing parts of the paths that tell the export directories apart
    (``output/a/export`` and ``output/b/export`` are ``a/export`` and ``b/export``).

    Raises:
        ValueError: A directory is given twice.
    """
    parts = [os.path.abspath(d).split(os.sep) for d in model_dirs]
    for depth in range(1, max(len(p) for p in parts) + 1):
        names = ["/".join(p[-depth:]) for p in parts]
        if len(set(names)) == len(names):
            return names
    raise ValueError(f"--model_dir given twice: {' '.join(model_dirs)}")


def open_models(
    model_dirs: Sequence[str],
    backend: str = "onnxruntime",
    threads: int = 1,
    **runner_options,
) -> list[DemoModel]:
    """Opens each export directory with ``backend`` and ``runner_options`` (see
    :func:`~seg_runtime.backends.create_runner`); one picker entry per model in it.

    An export quantized to INT8 keeps its float model (onnxruntime, OpenVINO and Paddle Lite
    alike), so it gives two entries, ``NAME (INT8)`` and ``NAME (float)``, to compare.
    ``backend="auto"`` opens the backend ``benchmark.py --pick`` recorded for each export.

    Raises:
        FileNotFoundError, ValueError, ImportError: As :class:`SegPredictor`.
    """
    models = []
    for name, model_dir in zip(picker_names(model_dirs), model_dirs):
        deploy = load_deploy(model_dir)
        opened = resolve_backend(deploy, backend)  # `auto`: the one benchmark.py recorded
        if opened in INT8_BACKENDS and deploy.has(BACKEND_FORMATS[opened], "int8"):
            variants = [
                (label, SegPredictor(model_dir, opened, threads, **runner_options, int8=int8))
                for label, int8 in (("INT8", True), ("float", False))
            ]
        else:
            variants = [("float", SegPredictor(model_dir, opened, threads, **runner_options))]
        for precision, predictor in variants:
            label = f"{name} ({precision})" if len(variants) > 1 else name
            models.append(DemoModel(label, model_dir, predictor, opened, threads, precision))
    return models


def segment(
    model: DemoModel, image: np.ndarray, repeats: int, postprocess: PostProcessor | None = None
) -> tuple[np.ndarray, dict]:
    """Labels of a BGR image and their latency: the median of ``repeats`` inference runs.

    The first run gives the labels and warms the backend up; the timed runs repeat the
    inference call alone on the same preprocessed input, as ``SegPredictor`` times it.
    """
    labels, _ = model.predict(image, postprocess)
    x = model.predictor.preprocess(image)
    with model.lock:
        seconds = time_runs(lambda: model.predictor.runner(x), warmup=0, repeats=repeats)
    latency = {
        "median_ms": summarize_ms(seconds)["median"],
        "runs": repeats,
        "backend": model.backend_label,
        "threads": model.threads,
    }
    return labels, latency


def data_url(image: np.ndarray, ext: str) -> str:
    """An image as a ``data:`` URL: ``.png`` (exact) or ``.jpg`` (photos)."""
    params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY] if ext == ".jpg" else []
    ok, encoded = cv2.imencode(ext, image, params)
    if not ok:
        raise ValueError(f"cannot encode a {image.shape} image as {ext}")
    mime = "image/png" if ext == ".png" else "image/jpeg"
    return f"data:{mime};base64,{base64.b64encode(encoded.tobytes()).decode('ascii')}"
