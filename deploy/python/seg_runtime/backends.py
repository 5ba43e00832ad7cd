"""Inference backends behind one interface: ``runner(x) -> first output`` on NCHW float32.

Each backend's package is imported when its runner is created, so a board needs only the
one it uses: onnxruntime, Paddle Inference (``paddle.inference``), Paddle Lite
(``paddlelite.lite``, the ``.nb`` files made by ``--formats lite``), TensorRT (an engine
built from the ONNX model, ``tensorrt_engine.py``) or OpenVINO (the ONNX model, on the CPU).

Paddle Inference on CPU runs oneDNN's fused convolutions and matrix products but not its
op-by-op placement: Paddle 3.3.1's ``onednn_placement_pass`` moves ``bilinear_interp`` to
oneDNN, whose ``scale`` attribute (``double[]``) the oneDNN executor cannot convert
(``ConvertPirAttribute2RuntimeAttribute not support [pir::ArrayAttribute<pir::DoubleAttribute>]``,
raised on the first run), so that pass is deleted; the fusion passes still produce
``onednn_op.fused_conv2d`` (BatchNorm and activation folded in) and ``fused_matmul``. Its
``reshape_transpose_matmul_fuse_pass`` is deleted too: with it, TopFormer-base (the ADE20K
config, random weights, 128x128) gave labels that agree on 55.7% of the pixels only with
those of oneDNN off, and without it on all of them.

The session options of both runtimes were chosen by measurement (docs/performance.md).
"""

import importlib.util
import os
import re
import sys
from typing import Optional, Sequence, Tuple, Union

import numpy as np

from .files import DEPLOY_FILE, load_deploy
from .machine import BACKEND_PACKAGES, cpu_description

BACKENDS = ("onnxruntime", "paddle", "lite", "tensorrt", "openvino")
# The CPU backends ``benchmark.py --pick`` compares; ``auto`` opens the one it recorded.
CPU_BACKENDS = ("onnxruntime", "openvino", "paddle", "lite")
AUTO = "auto"
# The export format each backend opens.
BACKEND_FORMATS = {"onnxruntime": "onnx", "openvino": "onnx", "tensorrt": "onnx",
                   "paddle": "paddle", "lite": "lite"}  # fmt: skip
# Tried in this order when available; CPU always is.
ORT_ACCELERATED = ("TensorrtExecutionProvider", "CUDAExecutionProvider")
# onnxruntime's intra-op threads spin-wait for work after each parallel section by default.
# On cores shared with other processes, and with the image pre- and post-processing between
# two inferences, the spinning thread holds a core that other work needs. Measured on the
# LPCVC student with 2 threads (docs/performance.md): blocking had the better p90 in every
# run and the better median at load averages of 5 to 6; at 2.6, spinning had a
# median about 15% lower.
ORT_ALLOW_SPINNING = "0"
# onnxruntime 1.14 to 1.18 give wrong values from the second run of a session on when its
# memory pattern (one block planned from the first run) is reused: the first run is right,
# later runs are not. Measured on our exports on x86_64 (1.10.0, 1.12.1 and 1.13.1 right;
# 1.14.1 to 1.18.1 wrong; 1.19.2 and later right) and emulated aarch64 (1.15.1 to 1.18.1
# wrong, 1.19.2 to 1.27.0 right). With memory patterns off every run is right on all of them,
# at the same speed (bench/ort_session_fix.py, docs/deployment.md). [first bad, first good).
ORT_MEM_PATTERN_FAULTY = ((1, 14), (1, 19))
# Paddle 3.3.1's oneDNN passes that fail on these models (see the module docstring).
PADDLE_BROKEN_ONEDNN_PASSES = ("onednn_placement_pass", "reshape_transpose_matmul_fuse_pass")


def _import_backend(module: str, backend: str):
    try:
        return __import__(module, fromlist=["_"])
    except ImportError as err:
        raise ImportError(
            f"--backend {backend} needs the Python package {module.split('.')[0]!r}, "
            f"which is not installed here ({err})"
        ) from err


def _release(version: str) -> Tuple[int, int]:
    """``"1.17.3"`` -> (1, 17)."""
    parts = re.findall(r"\d+", version)[:2]
    return (int(parts[0]), int(parts[1])) if len(parts) == 2 else (0, 0)


def ort_mem_pattern_safe(version: str) -> bool:
    """Whether onnxruntime ``version`` runs our graphs right with memory patterns on."""
    first_bad, first_good = ORT_MEM_PATTERN_FAULTY
    return not first_bad <= _release(version) < first_good


_warned: set = set()


def ort_session_options(threads: int = 1):
    """The onnxruntime session options of :class:`OrtRunner` for ``threads`` intra-op threads.

    Graph optimisation at onnxruntime's default (all levels, with the NCHWc layout of MLAS),
    one inter-op thread (the graphs are chains), intra-op threads that block rather than
    spin (``ORT_ALLOW_SPINNING``). On releases 1.14 to 1.18 memory patterns are off
    (``ORT_MEM_PATTERN_FAULTY``), said once per process on stderr.
    """
    ort = _import_backend("onnxruntime", OrtRunner.name)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", ORT_ALLOW_SPINNING)
    options.log_severity_level = 3
    if not ort_mem_pattern_safe(ort.__version__):
        options.enable_mem_pattern = False
        if ort.__version__ not in _warned:
            _warned.add(ort.__version__)
            print(
                f"note: onnxruntime {ort.__version__} gives wrong labels after the first run "
                "with memory patterns on (1.14 to 1.18): running with them off",
                file=sys.stderr,
            )
    return options


class OrtRunner:
    """An onnxruntime session, on TensorRT or CUDA when those providers are present.

    Args:
        onnx_file: ``model.onnx``, or the serialized model itself (bytes).
        threads: Intra-op threads of the CPU provider.
        providers: Execution providers; None picks TensorRT, CUDA (when available) and CPU.
        options: Session options instead of ``ort_session_options(threads)`` (to measure
            other settings, or to record onnxruntime's profile).
    """

    name = "onnxruntime"

    def __init__(
        self,
        onnx_file: Union[str, bytes],
        threads: int = 1,
        providers: Optional[Sequence[str]] = None,
        options=None,
    ) -> None:
        ort = _import_backend("onnxruntime", self.name)
        if providers is None:
            available = ort.get_available_providers()
            providers = [p for p in ORT_ACCELERATED if p in available]
            providers.append("CPUExecutionProvider")
        if options is None:
            options = ort_session_options(threads)
        self.session = ort.InferenceSession(onnx_file, options, providers=list(providers))
        self.providers = self.session.get_providers()
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Runs one batch ``x`` (N, C, H, W) float32 and returns the first output."""
        feed = {self.input_name: np.ascontiguousarray(x, dtype=np.float32)}
        return self.session.run(None, feed)[0]


class PaddleRunner:
    """A Paddle Inference predictor on CPU (oneDNN fusions, see the module docstring) or GPU.

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
        inference = _import_backend("paddle.inference", self.name)
        config = inference.Config(model_file, params_file)
        config.disable_glog_info()
        if use_gpu:
            config.enable_use_gpu(256, 0)
        else:
            config.disable_gpu()
            config.enable_mkldnn()
            if config.mkldnn_enabled():  # builds without oneDNN (ARM) keep it off
                for name in PADDLE_BROKEN_ONEDNN_PASSES:
                    config.delete_pass(name)
            config.set_cpu_math_library_num_threads(threads)
        # No enable_memory_optim(): on Paddle 3.3.1's PIR predictor it fails at creation
        # ("Not find predictor_id 0 and pass_name memory_optimize_pass").
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


class LiteRunner:
    """A Paddle Lite predictor (``MobileConfig``) on a ``.nb`` model.

    Args:
        nb_file: ``model.nb`` (or ``model_int8.nb``), built by ``paddle_lite_opt`` for the
            machine's target (arm on phones and Jetsons, x86 on a PC).
        threads: CPU threads.
    """

    name = "lite"

    def __init__(self, nb_file: str, threads: int = 1) -> None:
        lite = _import_backend("paddlelite.lite", self.name)
        config = lite.MobileConfig()
        config.set_model_from_file(nb_file)
        # ARM builds of paddlelite take a thread count; the x86 wheel's MobileConfig has no
        # set_threads and runs with its own default.
        if hasattr(config, "set_threads"):
            config.set_threads(threads)
        self.predictor = lite.create_paddle_predictor(config)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Runs one batch ``x`` (N, C, H, W) float32 and returns the first output."""
        self.predictor.get_input(0).from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        self.predictor.run()
        return self.predictor.get_output(0).numpy()


class OvRunner:
    """An OpenVINO compiled model on the CPU, read from the ONNX model.

    Compiled for latency: one inference stream of ``threads`` threads, in float32. (On CPUs
    with AVX512-BF16 or AMX, OpenVINO's default precision is bfloat16: logits off by about
    1% and labels that differ from onnxruntime's on 0.5% of the pixels of the test images.)

    Args:
        onnx_file: ``model.onnx`` (float or the INT8 Q/DQ model).
        threads: CPU threads.
        precision: OpenVINO's inference precision hint; None keeps OpenVINO's default.
    """

    name = "openvino"

    def __init__(self, onnx_file: str, threads: int = 1, precision: Optional[str] = "f32") -> None:
        ov = _import_backend("openvino", self.name)
        core = ov.Core()
        config = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1"}
        config["INFERENCE_NUM_THREADS"] = str(threads)
        if precision:
            config["INFERENCE_PRECISION_HINT"] = precision
        self.model = core.compile_model(core.read_model(onnx_file), "CPU", config)
        self.request = self.model.create_infer_request()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Runs one batch ``x`` (N, C, H, W) float32 and returns the first output."""
        self.request.infer([np.ascontiguousarray(x, dtype=np.float32)])
        return self.request.get_output_tensor(0).data.copy()


def _installed(package: str) -> bool:
    """Whether ``package`` can be found here, without importing it."""
    try:
        return importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):
        return False


def usable_backends(deploy, candidates: Sequence[str] = CPU_BACKENDS, int8=None) -> list:
    """The ``candidates`` whose package is installed here and whose files the export holds
    (in the precision ``int8`` asks for, see :meth:`DeployInfo.precision`). Nothing is
    imported: ``--backend auto`` loads only the backend it opens."""
    return [
        backend for backend in candidates
        if deploy.has(BACKEND_FORMATS[backend], deploy.precision(BACKEND_FORMATS[backend], int8))
        and _installed(BACKEND_PACKAGES[backend])
    ]  # fmt: skip


def resolve_backend(deploy, backend: str) -> str:
    """``backend``, or for ``auto`` the backend ``benchmark.py --pick`` recorded in
    ``deploy.yaml`` (``fastest``) when it is usable here, else the first usable CPU backend
    (onnxruntime first), with a ``note:`` line. A record made on another CPU is used with a
    note to pick again.

    Raises:
        ValueError: The recorded backend is not a CPU backend, or none is usable here.
    """
    if backend != AUTO:
        return backend
    chosen = deploy.fastest.get("backend")
    if chosen is not None and chosen not in CPU_BACKENDS:
        raise ValueError(f"{DEPLOY_FILE}: fastest.backend {chosen!r} is not one of "
                         f"{', '.join(CPU_BACKENDS)}")  # fmt: skip
    if chosen and chosen in usable_backends(deploy, [chosen]):
        recorded_on = deploy.fastest.get("machine")
        if recorded_on and recorded_on != cpu_description():
            print(f"note: --backend auto: {chosen} was the fastest on {recorded_on}; run "
                  "benchmark.py --pick here to measure this machine", file=sys.stderr)  # fmt: skip
        return chosen
    usable = usable_backends(deploy)
    if not usable:
        raise ValueError(f"--backend auto: no CPU backend installed here can run this export "
                         f"({', '.join(CPU_BACKENDS)})")  # fmt: skip
    reason = f"{chosen} is not usable here" if chosen else "no backend recorded"
    print(f"note: --backend auto: {reason} (benchmark.py --pick records one); using "
          f"{usable[0]}", file=sys.stderr)  # fmt: skip
    return usable[0]


def create_runner(
    model_dir: str,
    backend: str,
    threads: int = 1,
    *,
    use_gpu: bool = False,
    providers: Optional[Sequence[str]] = None,
    int8: Optional[bool] = None,
    trt_precision: str = "auto",
    trt_engine: Optional[str] = None,
    trt_calib_dir: Optional[str] = None,
):
    """Opens the exported model in ``model_dir`` with ``backend``.

    Args:
        model_dir: A directory written by the export (holding ``deploy.yaml``).
        backend: One of ``BACKENDS``, or ``auto`` (:func:`resolve_backend`).
        threads: CPU threads.
        use_gpu: Paddle Inference on GPU.
        providers: onnxruntime execution providers (None: best available).
        int8: The INT8 (True) or float (False) model of onnxruntime, OpenVINO or Paddle Lite; None:
            the export's default (``DeployInfo.precision``).
        trt_precision: TensorRT: ``auto``, ``fp32``, ``fp16`` or ``int8``.
        trt_engine: TensorRT: a prebuilt engine file to try first.
        trt_calib_dir: TensorRT INT8: a folder of calibration images.

    Raises:
        ValueError: Unknown backend, or the directory lacks that backend's files.
        ImportError: The backend's package is not installed.
    """
    deploy = load_deploy(model_dir)
    backend = resolve_backend(deploy, backend)

    def path(name: str) -> str:
        return os.path.join(model_dir, name)

    if backend == "paddle":
        files = deploy.model_file("paddle", False)
        if not files:
            raise ValueError(f"{model_dir}: no Paddle model (export with --formats paddle)")
        return PaddleRunner(path(files["model"]), path(files["params"]), threads, use_gpu)
    if backend in ("onnxruntime", "tensorrt", "openvino"):
        if not deploy.has("onnx"):
            raise ValueError(f"{model_dir}: no ONNX model (export with --formats onnx)")
        if backend != "tensorrt" and not deploy.model_file("onnx", int8):
            raise ValueError(f"{model_dir}: no INT8 ONNX model (export with --quantize int8)")
        if backend == "onnxruntime":
            return OrtRunner(path(deploy.model_file("onnx", int8)), threads, providers)
        if backend == "openvino":
            return OvRunner(path(deploy.model_file("onnx", int8)), threads)
        from .tensorrt_engine import TrtRunner, calibration_batches

        calib = None
        if trt_precision == "int8":
            if not trt_calib_dir:
                raise ValueError("--trt_precision int8 needs --trt_calib_dir IMAGE_DIR")
            calib = calibration_batches(deploy, trt_calib_dir)
        # TensorRT builds from the float model (it takes no uint8 Q/DQ graph).
        onnx = path(deploy.model_file("onnx", False))
        return TrtRunner(
            onnx, deploy.input_shape, trt_precision, engine=trt_engine, calib_batches=calib
        )
    if backend == "lite":
        precision = deploy.precision("lite", int8)
        if not deploy.has("lite", precision):
            hint = "--formats lite --quantize int8" if precision == "int8" else "--formats lite"
            raise ValueError(f"{model_dir}: no Paddle Lite {precision} model (export with {hint})")
        return LiteRunner(path(deploy.model_file("lite", int8)), threads)
    raise ValueError(f"unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}")
