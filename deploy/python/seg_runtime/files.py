"""The files of an export directory: their names (one place) and ``deploy.yaml``."""

import os

DEPLOY_FILE = "deploy.yaml"


class ExportFiles:
    """File names written by the export.

    ``deploy.yaml`` lists the ones written, per format and precision (:class:`DeployInfo`).
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


# deploy.yaml's format. 1: one key per file (model, params, onnx_model, onnx_float_model,
# lite_model, lite_int8_model; quantization, lite_quantization); 2: the files per format and
# precision (``formats``). Both load; the export writes 2.
DEPLOY_VERSION = 2
FORMATS = ("paddle", "onnx", "lite")
PRECISIONS = ("float", "int8")


class DeployInfo:
    """``deploy.yaml``'s ``Deploy`` section: read and written here only.

    Attributes:
        input_shape: (N, C, H, W) of the exported input; -1 for a dynamic size.
        num_classes: Number of classes.
        transforms: The preprocessing (PaddleSeg val transforms) the runtime performs.
        output_op: The graph's last op (``argmax``, ``softmax``, ``vim``, ``exact``, ``none``).
        formats: Per format (``paddle``, ``onnx``, ``lite``) its files per precision
            (``float``, ``int8``): a file name relative to the export directory, or for
            ``paddle`` ``{"model": ..., "params": ...}``; ``default`` names the precision the
            runtime opens when none is asked for (ONNX: INT8 once quantized, as the export
            points the runtime at it; Lite: float).
        quantization: Per format, how its INT8 model was made.
        fastest: What ``benchmark.py --pick`` measured (``backend``, ``threads``, the median
            ms per backend as ``median_ms``, ``machine``): the backend ``--backend auto``
            opens.
        meta: The descriptive rest (``input_name``, ``output_dtype``, ``output_layout``,
            ``class_names``, ``model_type``, ``opset``, ``align_corners``), as written.
    """

    META_KEYS = ("input_name", "output_dtype", "output_layout", "class_names", "model_type",
                 "opset", "align_corners")  # fmt: skip

    def __init__(
        self,
        input_shape,
        num_classes,
        transforms=None,
        output_op="argmax",
        formats=None,
        quantization=None,
        meta=None,
        fastest=None,
    ) -> None:
        self.input_shape = [int(v) for v in input_shape]
        self.num_classes = int(num_classes)
        self.transforms = list(transforms or [])
        self.output_op = output_op
        self.formats = {name: dict(files) for name, files in (formats or {}).items()}
        self.quantization = dict(quantization or {})
        self.meta = dict(meta or {})
        self.fastest = dict(fastest or {})

    # -- reading -----------------------------------------------------------------------

    @classmethod
    def from_dict(cls, deploy: dict, where: str = DEPLOY_FILE) -> "DeployInfo":
        """The section as written (either version).

        Raises:
            ValueError: A required key is missing, or the version is unknown.
        """
        for key in ("input_shape", "num_classes"):
            if key not in deploy:
                raise ValueError(f"{where}: Deploy.{key} is missing")
        version = deploy.get("version", 1)
        if version not in (1, DEPLOY_VERSION):
            raise ValueError(
                f"{where}: Deploy.version {version!r} is not one this runtime reads "
                f"(1 or {DEPLOY_VERSION}): update the runtime"
            )
        if version == 1:
            formats, quantization = cls._formats_v1(deploy)
        else:
            formats, quantization = deploy.get("formats") or {}, deploy.get("quantization")
        meta = {key: deploy[key] for key in cls.META_KEYS if key in deploy}
        return cls(deploy["input_shape"], deploy["num_classes"], deploy.get("transforms"),
                   deploy.get("output_op", "argmax"), formats, quantization, meta,
                   deploy.get("fastest"))  # fmt: skip

    @staticmethod
    def _formats_v1(deploy: dict):
        formats, quantization = {}, {}
        if deploy.get("model") and deploy.get("params"):
            formats["paddle"] = {"float": {"model": deploy["model"], "params": deploy["params"]}}
        if deploy.get("onnx_float_model"):  # quantized: onnx_model is the INT8 file
            formats["onnx"] = {"float": deploy["onnx_float_model"],
                               "int8": deploy["onnx_model"], "default": "int8"}  # fmt: skip
        elif deploy.get("onnx_model"):
            formats["onnx"] = {"float": deploy["onnx_model"]}
        if deploy.get("lite_model"):
            formats["lite"] = {"float": deploy["lite_model"]}
            if deploy.get("lite_int8_model"):
                formats["lite"]["int8"] = deploy["lite_int8_model"]
        for fmt, key in (("onnx", "quantization"), ("lite", "lite_quantization")):
            if deploy.get(key):
                quantization[fmt] = deploy[key]
        return formats, quantization

    def has(self, fmt: str, precision: str = "float") -> bool:
        """Whether the export holds ``fmt`` in ``precision``."""
        return bool(self.formats.get(fmt, {}).get(precision))

    def precision(self, fmt: str, int8=None) -> str:
        """``int8`` True/False as asked, None: the format's default (see ``formats``)."""
        if int8 is None:
            return self.formats.get(fmt, {}).get("default", "float")
        return "int8" if int8 else "float"

    def model_file(self, fmt: str, int8=None):
        """The file of ``fmt`` (``onnx``, ``lite``) in the precision :meth:`precision` picks
        (for ``paddle``: ``{"model": ..., "params": ...}``), or None when not exported."""
        return self.formats.get(fmt, {}).get(self.precision(fmt, int8))

    def files(self) -> list:
        """Every model file the export lists (all formats and precisions)."""
        names = []
        for fmt in FORMATS:
            for precision in PRECISIONS:
                entry = self.formats.get(fmt, {}).get(precision)
                if isinstance(entry, dict):
                    names += [entry["model"], entry["params"]]
                elif entry:
                    names.append(entry)
        return names

    @property
    def class_names(self) -> list:
        return list(self.meta.get("class_names") or range(self.num_classes))

    @property
    def align_corners(self) -> bool:
        return bool(self.meta.get("align_corners", False))

    @property
    def input_name(self) -> str:
        return self.meta.get("input_name", "x")

    # -- writing -----------------------------------------------------------------------

    def set_model(self, fmt: str, precision: str, file, default: bool = False) -> None:
        """Records ``file`` as ``fmt``'s model in ``precision``; ``default`` makes the
        runtime open that precision when none is asked for."""
        if fmt not in FORMATS or precision not in PRECISIONS:
            raise ValueError(f"unknown format/precision {fmt}/{precision}")
        self.formats.setdefault(fmt, {})[precision] = file
        if default:
            self.formats[fmt]["default"] = precision

    def to_dict(self) -> dict:
        """The section as the export writes it (version ``DEPLOY_VERSION``)."""
        deploy = {
            "version": DEPLOY_VERSION,
            "formats": self.formats,
            "transforms": self.transforms,
            "input_shape": self.input_shape,
            "num_classes": self.num_classes,
            "output_op": self.output_op,
        }
        deploy.update(self.meta)
        if self.quantization:
            deploy["quantization"] = self.quantization
        if self.fastest:
            deploy["fastest"] = self.fastest
        return deploy

    def write(self, model_dir: str) -> str:
        """Writes ``model_dir/deploy.yaml`` (``{"Deploy": ...}``); returns its path."""
        import yaml

        path = os.path.join(model_dir, DEPLOY_FILE)
        # Written beside it and renamed, so that a reader never sees half a file.
        with open(path + ".tmp", "w") as f:
            yaml.safe_dump({"Deploy": self.to_dict()}, f, sort_keys=False,
                           default_flow_style=None)  # fmt: skip
        os.replace(path + ".tmp", path)
        return path


def load_deploy(model_dir: str) -> DeployInfo:
    """Reads ``model_dir/deploy.yaml``.

    Raises:
        FileNotFoundError: The directory or its ``deploy.yaml`` does not exist.
        ValueError: The file has no ``Deploy`` section, lacks a required key, or has a
            version this runtime does not read.
    """
    import yaml  # only here: a packaged solution runs without PyYAML

    path = os.path.join(model_dir, DEPLOY_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{DEPLOY_FILE} not found in {model_dir} (export the model first)")
    with open(path) as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict) or not isinstance(data.get("Deploy"), dict):
        raise ValueError(f"{path}: no 'Deploy' section")
    return DeployInfo.from_dict(data["Deploy"], path)
