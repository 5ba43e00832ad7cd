"""Segmentation of BGR images with an exported model: preprocess, run, labels."""

import time
from typing import Callable, Optional, Tuple, Union

import numpy as np

from .backends import create_runner
from .files import DeployInfo, load_deploy
from .labelhead import exact_labels
from .preprocess import Preprocessor, resize_to_input


def to_labels(output: np.ndarray, dtype: type = np.int64) -> np.ndarray:
    """Class ids (N, H, W) from a model output: labels (N, 1, H, W) / (N, H, W) or scores.

    Integer outputs are labels already; float outputs (N, C, H, W) are logits or
    probabilities and take the argmax over C.

    Args:
        output: The model output.
        dtype: Integer type of the result (no copy when the labels already have it).
    """
    if np.issubdtype(output.dtype, np.integer):
        labels = output.reshape(output.shape[0], *output.shape[-2:])
    else:
        labels = output.argmax(axis=1)
    return labels.astype(dtype, copy=False)


class SegPredictor:
    """Segments BGR images with an exported model: preprocessing, inference, labels.

    The preprocessed image is brought to the model's input size (:func:`model_input_size`:
    the export's fixed H/W, or the nearest multiple of 32 for a dynamic size), and the labels
    back to the image size (nearest neighbour, paddings cropped).

    Args:
        model_dir: Export directory holding ``deploy.yaml``.
        backend: One of ``BACKENDS``.
        threads: CPU threads.
        postprocess: Applied to the labels at the image size (e.g. a
            :class:`~seg_runtime.postprocess.PostProcessor`).
        runner_options: The backend's options, see :func:`~seg_runtime.backends.create_runner`
            (``use_gpu``, ``providers``, ``int8``, ``trt_precision``, ...).
    """

    def __init__(
        self,
        model_dir: str,
        backend: str = "onnxruntime",
        threads: int = 1,
        *,
        postprocess: Optional[Callable[[np.ndarray], np.ndarray]] = None,
        **runner_options,
    ) -> None:
        runner = create_runner(model_dir, backend, threads, **runner_options)
        self._setup(load_deploy(model_dir), runner, postprocess)

    @classmethod
    def from_runner(
        cls,
        deploy: Union[DeployInfo, dict],
        runner: Callable[[np.ndarray], np.ndarray],
        postprocess: Optional[Callable[[np.ndarray], np.ndarray]] = None,
    ) -> "SegPredictor":
        """A predictor over an open runner and the export's :class:`DeployInfo` (or its
        ``Deploy`` section as a dict)."""
        if isinstance(deploy, dict):
            deploy = DeployInfo.from_dict(deploy)
        predictor = cls.__new__(cls)
        predictor._setup(deploy, runner, postprocess)
        return predictor

    def _setup(self, deploy: DeployInfo, runner, postprocess) -> None:
        self.deploy = deploy
        self.runner = runner
        self.postprocess = postprocess
        self.preprocessor = Preprocessor(deploy.transforms)
        self.input_shape = deploy.input_shape
        self.batch = max(self.input_shape[0], 1)
        self.num_classes = deploy.num_classes
        # ``--output_op exact``: low-resolution logits out, labels made here.
        self.exact_head = deploy.output_op == "exact"
        self.align_corners = deploy.align_corners
        self.forward_ms = 0.0  # the last call's inference alone
        self.class_names = deploy.class_names

    def preprocess(self, image_bgr: np.ndarray) -> np.ndarray:
        """(H, W, 3) BGR image -> (N, 3, h, w) float32 model input."""
        chw, _ = self.preprocessor(image_bgr)
        return self._batch(chw)

    def _batch(self, chw: np.ndarray) -> np.ndarray:
        """The model input: ``chw`` at the model's input size, repeated to its batch size."""
        chw = resize_to_input(chw, self.input_shape)[np.newaxis]
        # A batch of one is a view of the image (np.repeat would copy it).
        return chw if self.batch == 1 else np.repeat(chw, self.batch, axis=0)

    def __call__(self, image_bgr: np.ndarray) -> Tuple[np.ndarray, float]:
        """Segments one image.

        Returns:
            ``(labels, latency_ms)``: int64 labels (H, W) at the image size, and the time
            from the model input to its labels: the inference call, plus the exact label
            head for an ``exact`` export (``seg_runtime.labelhead``). The inference call
            alone is left in ``forward_ms``.
        """
        chw, steps = self.preprocessor(image_bgr)
        size = chw.shape[1:]
        x = self._batch(chw)
        start = time.perf_counter()
        output = self.runner(x)
        # A GPU runner's own event timing of the network, else the call's wall time.
        self.forward_ms = getattr(self.runner, "device_ms", None) or (
            (time.perf_counter() - start) * 1000
        )
        if self.exact_head:
            labels = exact_labels(output[0], x.shape[2:], self.align_corners)
        else:
            # int32 for OpenCV's label resize; the graph's int32 labels are used as they are.
            labels = to_labels(output[:1], np.int32)[0]
        latency = (time.perf_counter() - start) * 1000
        # Undone last to first: the resize to the model input, then each transform's step.
        labels = Preprocessor.restore(labels, list(steps) + [("resize", size)])
        if self.postprocess is not None:
            labels = self.postprocess(labels)
        return labels.astype(np.int64), latency
