"""Runtime for exported segmentation models, without PaddlePaddle or PaddleSeg.

This folder runs on a board (Jetson, phone, any Python >= 3.6; the web demo needs 3.8) next
to an export directory: it imports only the standard library, NumPy, OpenCV and PyYAML,
plus the one backend in use, imported when a runner is created: onnxruntime, Paddle
Inference (``paddle.inference``), Paddle Lite (``paddlelite.lite``) or TensorRT (with
PyTorch or cuda-python for its buffers). Everything it needs comes from the export's
``deploy.yaml``. The training side (``paddleseg_ext``) imports this package, never the
reverse.
"""

from .backends import BACKENDS, LiteRunner, OrtRunner, PaddleRunner, create_runner
from .evaluate import evaluate_export
from .files import DEPLOY_FILE, DeployInfo, ExportFiles, load_deploy
from .media import (
    IMAGE_EXTS,
    VIDEO_EXTS,
    InputError,
    SkipReport,
    iter_inputs,
    list_images,
    read_image,
    read_images,
)
from .predictor import SegPredictor, to_labels
from .preprocess import STRIDE, Preprocessor, model_input_size, resize_to_input
from .timing import (
    PERF_KEYS,
    format_perf,
    measure_latency,
    summarize_ms,
    time_interleaved,
    time_runs,
)
from .visualize import color_palette, colorize, legend, overlay

__all__ = [
    "BACKENDS",
    "DEPLOY_FILE",
    "DeployInfo",
    "IMAGE_EXTS",
    "PERF_KEYS",
    "STRIDE",
    "VIDEO_EXTS",
    "ExportFiles",
    "InputError",
    "LiteRunner",
    "OrtRunner",
    "PaddleRunner",
    "Preprocessor",
    "SegPredictor",
    "SkipReport",
    "color_palette",
    "colorize",
    "create_runner",
    "evaluate_export",
    "format_perf",
    "iter_inputs",
    "legend",
    "list_images",
    "load_deploy",
    "measure_latency",
    "overlay",
    "model_input_size",
    "read_image",
    "read_images",
    "resize_to_input",
    "summarize_ms",
    "time_interleaved",
    "time_runs",
    "to_labels",
]
