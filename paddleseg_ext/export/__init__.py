"""Export for deployment; see :mod:`.pipeline`. One module per concern:

- :mod:`.graph`: the exported layer (model + output op) and the Paddle inference program;
- :mod:`.onnx_convert`: paddle2onnx in a child process;
- :mod:`.verify`: the check of the exported files against the dygraph model;
- :mod:`.pipeline`: ``export`` itself, its options and ``deploy.yaml``;
- :mod:`.lite`: Paddle Lite, through its side environment, where :mod:`.lite_side` runs.
"""

from .graph import (
    INPUT_NAME,
    OUTPUT_OPS,
    ExportModel,
    outputs_labels,
    prepare_model,
    save_paddle,
    trace_paddle,
)
from .onnx_convert import ONNX_OPSETS, convert_onnx
from .pipeline import (
    DEFAULT_FORMATS,
    FORMATS,
    ExportResult,
    check_input_shape,
    check_save_dir,
    default_input_shape,
    export,
    parse_formats,
    val_transforms,
)
from .verify import MIN_AGREEMENT, compare_outputs, sample_input, verify_export

__all__ = [
    "DEFAULT_FORMATS",
    "FORMATS",
    "INPUT_NAME",
    "MIN_AGREEMENT",
    "ONNX_OPSETS",
    "OUTPUT_OPS",
    "ExportModel",
    "ExportResult",
    "check_input_shape",
    "check_save_dir",
    "compare_outputs",
    "convert_onnx",
    "default_input_shape",
    "export",
    "outputs_labels",
    "parse_formats",
    "prepare_model",
    "sample_input",
    "save_paddle",
    "trace_paddle",
    "val_transforms",
    "verify_export",
]
