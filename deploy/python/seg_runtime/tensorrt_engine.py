"""TensorRT backend: an engine built from the export's ONNX model, cached, run on the GPU.

The engine is built by TensorRT's ONNX parser at the export's fixed input size, in FP16
where the GPU has fast FP16 (``precision="auto"``), else FP32, or INT8 calibrated on a folder
of images (TensorRT 8 to 10: TensorRT 11 removed the calibrator and the precision flags, so
there ``auto`` builds FP32 and ``fp16``/``int8`` are refused). It is cached beside the model
as ``model.<precision>.trt<version>.<gpu>.<onnx hash>.engine``: an engine is only reused by
the same TensorRT release, GPU, precision and ONNX model. A cached engine that differs in any
of them is never used: a new one is built, with one ``note:`` line on stderr. A prebuilt
engine given by path (``trtexec --saveEngine``, or one packed into a solution) is tried
first; if this TensorRT cannot load it, or its input shape is not the export's, it is rebuilt
the same way.

Both API generations run: TensorRT 8.0-8.4 (bindings, ``execute_async_v2``: JetPack 4.6 on
the Jetson Nano has 8.2) and 8.5 onwards (named tensors, ``execute_async_v3``; the only API
of 10 and later). Device buffers come from PyTorch where it is installed with CUDA (the
Jetson images have it), else from ``cuda-python``; ``TrtRunner.memory`` names the one used.
``TrtRunner.device_ms`` is the last inference's GPU time, between two CUDA events around
the execution call, as the LPCVC referee's sample measures it.
"""

import hashlib
import os
import re
import sys
from typing import Callable, List, Optional, Sequence, Tuple, Union

import numpy as np

PRECISIONS = ("auto", "fp32", "fp16", "int8")
ENGINE_SUFFIX = ".engine"
# Builder workspace: small enough for the 2 GB Jetson Nano, which shares it with the CPU.
WORKSPACE_BYTES = 256 << 20
CALIB_BATCHES = 32  # images read from the calibration folder for INT8


def note(message: str) -> None:
    print(f"note: {message}", file=sys.stderr)


def _slug(text: str) -> str:
    """A file-name-safe form of a GPU name: ``NVIDIA Tegra X1`` -> ``NVIDIA-Tegra-X1``."""
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-") or "gpu"


def onnx_digest(onnx: bytes) -> str:
    """The first 12 hex digits of the model's SHA-256 (the engine cache key)."""
    return hashlib.sha256(onnx).hexdigest()[:12]


def engine_file_name(precision: str, trt_version: str, gpu: str, digest: str) -> str:
    """``model.<precision>.trt<version>.<gpu>.<digest>.engine``."""
    return f"model.{precision}.trt{trt_version}.{_slug(gpu)}.{digest}{ENGINE_SUFFIX}"


def parse_engine_file_name(path: str) -> Optional[dict]:
    """The fields of :func:`engine_file_name` from a file name, or None for another name
    (an engine from ``trtexec`` or renamed by hand)."""
    name = os.path.basename(path)
    match = re.match(r"^model\.(fp32|fp16|int8)\.trt([\d.]+)\.(.+)\.([0-9a-f]{12})\.engine$", name)
    if not match:
        return None
    precision, version, gpu, digest = match.groups()
    return {"precision": precision, "trt_version": version, "gpu": gpu, "digest": digest}


def stale_engines(cache_dir: str, wanted: str) -> List[str]:
    """Engines in ``cache_dir`` of the same precision as ``wanted`` that differ from it in
    TensorRT version, GPU or ONNX model (so are never to be used for it)."""
    fields = parse_engine_file_name(wanted)
    if fields is None or not os.path.isdir(cache_dir):
        return []
    stale = []
    for name in sorted(os.listdir(cache_dir)):
        other = parse_engine_file_name(name)
        if other and other["precision"] == fields["precision"] and name != wanted:
            stale.append(name)
    return stale


def calibration_batches(deploy, folder: str, count: int = CALIB_BATCHES):
    """Up to ``count`` images of ``folder`` preprocessed as the export's input, one per batch.

    Raises:
        FileNotFoundError: The folder does not exist or holds no image.
    """
    from .media import list_images, read_image
    from .preprocess import Preprocessor, resize_to_input

    preprocessor = Preprocessor(deploy.transforms)
    shape = deploy.input_shape
    batches = []
    for path in list_images(folder)[:count]:
        chw, _ = preprocessor(read_image(path))
        batches.append(resize_to_input(chw, shape)[np.newaxis].astype(np.float32))
    return batches


# ------------------------------------------------------------------------ device memory


class TorchMemory:
    """CUDA buffers, stream and events through PyTorch."""

    name = "torch"

    def __init__(self) -> None:
        import torch

        if not torch.cuda.is_available():
            raise ImportError("PyTorch is installed without a usable CUDA device")
        self.torch = torch
        self.stream = torch.cuda.Stream()
        self.stream_handle = self.stream.cuda_stream

    def gpu_name(self) -> str:
        return self.torch.cuda.get_device_name(0)

    def empty(self, shape: Sequence[int], dtype: np.dtype):
        torch_dtype = self.torch.from_numpy(np.empty(0, dtype)).dtype
        return self.torch.empty(tuple(shape), dtype=torch_dtype, device="cuda")

    @staticmethod
    def address(buffer) -> int:
        return buffer.data_ptr()

    def upload(self, buffer, array: np.ndarray) -> None:
        with self.torch.cuda.stream(self.stream):
            buffer.copy_(self.torch.from_numpy(array))
        self.stream.synchronize()

    def download(self, buffer) -> np.ndarray:
        with self.torch.cuda.stream(self.stream):
            host = buffer.cpu()
        return host.numpy()

    def timed(self, run: Callable[[], object]) -> float:
        """Runs ``run`` on the stream and returns its GPU time in ms (CUDA events)."""
        start = self.torch.cuda.Event(enable_timing=True)
        end = self.torch.cuda.Event(enable_timing=True)
        start.record(self.stream)
        run()
        end.record(self.stream)
        end.synchronize()
        return start.elapsed_time(end)


class CudaPythonMemory:
    """CUDA buffers, stream and events through NVIDIA's ``cuda-python`` (runtime API)."""

    name = "cuda-python"

    def __init__(self) -> None:
        try:
            from cuda.bindings import runtime as cudart
        except ImportError:
            from cuda import cudart  # cuda-python before 12.6
        self.cudart = cudart
        self.stream_handle = int(self._check(cudart.cudaStreamCreate()))

    def _check(self, result):
        err, *values = result if isinstance(result, tuple) else (result,)
        if int(err) != 0:
            raise RuntimeError(f"CUDA error {int(err)}: {self.cudart.cudaGetErrorString(err)[1]}")
        return values[0] if len(values) == 1 else values

    def gpu_name(self) -> str:
        name = self._check(self.cudart.cudaGetDeviceProperties(0)).name
        return name.decode().rstrip("\0") if isinstance(name, bytes) else str(name)

    def empty(self, shape: Sequence[int], dtype: np.dtype) -> Tuple[int, tuple, np.dtype]:
        nbytes = max(int(np.prod(shape)) * np.dtype(dtype).itemsize, 1)
        return (int(self._check(self.cudart.cudaMalloc(nbytes))), tuple(shape), np.dtype(dtype))

    @staticmethod
    def address(buffer) -> int:
        return buffer[0]

    def _copy(self, dst: int, src: int, nbytes: int, kind) -> None:
        self._check(self.cudart.cudaMemcpyAsync(dst, src, nbytes, kind, self.stream_handle))
        self._check(self.cudart.cudaStreamSynchronize(self.stream_handle))

    def upload(self, buffer, array: np.ndarray) -> None:
        kind = self.cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._copy(buffer[0], array.ctypes.data, array.nbytes, kind)

    def download(self, buffer) -> np.ndarray:
        host = np.empty(buffer[1], buffer[2])
        kind = self.cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._copy(host.ctypes.data, buffer[0], host.nbytes, kind)
        return host

    def timed(self, run: Callable[[], object]) -> float:
        cudart = self.cudart
        start, end = self._check(cudart.cudaEventCreate()), self._check(cudart.cudaEventCreate())
        self._check(cudart.cudaEventRecord(start, self.stream_handle))
        run()
        self._check(cudart.cudaEventRecord(end, self.stream_handle))
        self._check(cudart.cudaEventSynchronize(end))
        return float(self._check(cudart.cudaEventElapsedTime(start, end)))


def device_memory():
    """:class:`TorchMemory` where PyTorch has CUDA, else :class:`CudaPythonMemory`.

    Raises:
        ImportError: Neither is usable, naming both.
    """
    reasons = []
    for kind in (TorchMemory, CudaPythonMemory):
        try:
            return kind()
        except ImportError as err:
            reasons.append(f"{kind.name}: {err}")
    raise ImportError(
        "--backend tensorrt needs PyTorch with CUDA or cuda-python for the GPU buffers ("
        + "; ".join(reasons)
        + ")"
    )


# ------------------------------------------------------------------------------- engine


def _trt_major(trt) -> int:
    return int(trt.__version__.split(".")[0])


def resolve_precision(trt, builder, precision: str) -> str:
    """``auto`` -> ``fp16`` where the GPU has fast FP16 and TensorRT has the flag, else
    ``fp32``; an explicit precision this TensorRT cannot build is a ValueError."""
    flags = trt.BuilderFlag
    if precision == "auto":
        fast = getattr(builder, "platform_has_fast_fp16", True)
        return "fp16" if hasattr(flags, "FP16") and fast else "fp32"
    if precision in ("fp16", "int8") and not hasattr(flags, precision.upper()):
        raise ValueError(
            f"TensorRT {trt.__version__} has no {precision} builder flag (removed in 11): "
            "use --trt_precision fp32 or auto"
        )
    return precision


def entropy_calibrator(trt, memory, batches: Sequence[np.ndarray], cache_file: str):
    """An ``IInt8EntropyCalibrator2`` feeding ``batches`` (N, C, H, W float32, preprocessed)
    to TensorRT, its ranges cached in ``cache_file``."""

    class Calibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            super().__init__()
            self.pending = list(batches)
            self.buffer = memory.empty(batches[0].shape, np.float32)

        def get_batch_size(self) -> int:
            return int(batches[0].shape[0])

        def get_batch(self, names):
            if not self.pending:
                return None
            memory.upload(self.buffer, np.ascontiguousarray(self.pending.pop(0)))
            return [memory.address(self.buffer)]

        def read_calibration_cache(self):
            if os.path.isfile(cache_file):
                with open(cache_file, "rb") as f:
                    return f.read()
            return None

        def write_calibration_cache(self, cache) -> None:
            with open(cache_file, "wb") as f:
                f.write(bytes(cache))

    return Calibrator()


def build_engine(
    trt,
    onnx: bytes,
    input_shape: Sequence[int],
    precision: str,
    calibrator=None,
) -> bytes:
    """Builds a serialized engine from ONNX bytes at the fixed ``input_shape``.

    Args:
        trt: The ``tensorrt`` module.
        onnx: The ONNX model.
        input_shape: (N, C, H, W), all positive.
        precision: ``fp32``, ``fp16`` or ``int8`` (see :func:`resolve_precision`).
        calibrator: INT8 calibrator (``int8`` only).

    Raises:
        ValueError: The parser rejects the model, or TensorRT builds nothing.
    """
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if _trt_major(trt) < 10:  # explicit batch is the only mode from 10 on
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ValueError(f"TensorRT's ONNX parser rejected the model: {errors}")
    config = builder.create_builder_config()
    if hasattr(config, "set_memory_pool_limit"):
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    else:  # TensorRT < 8.4
        config.max_workspace_size = WORKSPACE_BYTES
    model_input = network.get_input(0)
    if any(int(v) < 0 for v in model_input.shape):
        profile = builder.create_optimization_profile()
        profile.set_shape(model_input.name, input_shape, input_shape, input_shape)
        config.add_optimization_profile(profile)
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)  # INT8 layers fall back to FP16, not FP32
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = calibrator
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ValueError("TensorRT could not build an engine for this model (see its log above)")
    return bytes(serialized)


class _IO:
    """One input or output of an engine, with its device buffer."""

    def __init__(self, name: str, index: int, shape: Tuple[int, ...], dtype: np.dtype) -> None:
        self.name, self.index, self.shape, self.dtype = name, index, shape, dtype
        self.buffer = None


class TrtRunner:
    """A TensorRT engine on the first GPU, built from the export's ONNX model or loaded.

    Args:
        onnx: ``model.onnx`` (path) or its bytes.
        input_shape: The export's (N, C, H, W); -1 batch becomes 1, a dynamic H or W is an
            error (TensorRT engines here have one fixed size).
        precision: One of ``PRECISIONS``.
        cache_dir: Where engines are cached (None: beside ``onnx``; bytes: no cache).
        engine: A prebuilt engine file (or its bytes), tried before the cache.
        engine_name: The file name ``engine`` bytes came from (its TensorRT version and
            precision are read from a name in the cache's form).
        calib_batches: INT8 calibration inputs (N, C, H, W) float32, preprocessed.
        memory: The device-memory provider (None: :func:`device_memory`).

    Raises:
        ImportError: ``tensorrt`` or a device-memory package is missing.
        ValueError: A dynamic H/W, an unknown precision, INT8 without calibration batches,
            or a model TensorRT cannot build.
    """

    name = "tensorrt"

    def __init__(
        self,
        onnx: Union[str, bytes],
        input_shape: Sequence[int],
        precision: str = "auto",
        cache_dir: Optional[str] = None,
        engine: Union[str, bytes, None] = None,
        engine_name: Optional[str] = None,
        calib_batches: Optional[Sequence[np.ndarray]] = None,
        memory=None,
    ) -> None:
        from .backends import _import_backend

        trt = _import_backend("tensorrt", self.name)
        if precision not in PRECISIONS:
            raise ValueError(f"unknown TensorRT precision {precision!r}; expected {PRECISIONS}")
        shape = [1 if i == 0 and int(v) < 0 else int(v) for i, v in enumerate(input_shape)]
        if any(v <= 0 for v in shape):
            raise ValueError(
                f"TensorRT needs a fixed input size, the export has {list(input_shape)}: "
                "export with --input_shape 1 3 H W"
            )
        self.trt, self.input_shape = trt, shape
        self.memory = memory if memory is not None else device_memory()
        self.gpu = self.memory.gpu_name()
        if isinstance(onnx, str):
            if cache_dir is None:
                cache_dir = os.path.dirname(os.path.abspath(onnx))
            with open(onnx, "rb") as f:
                onnx = f.read()
        self.runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = None
        if engine is not None:
            self.engine = self._load(engine, engine_name, onnx_digest(onnx))
        if self.engine is None:
            self.engine = self._cached_or_built(onnx, precision, cache_dir, calib_batches)
        self.context = self.engine.create_execution_context()
        self.tensor_api = hasattr(self.context, "execute_async_v3")
        self.inputs, self.outputs = self._bind()
        self.providers = [self.gpu, self.precision, f"buffers: {self.memory.name}"]
        self.device_ms = 0.0

    # -- engine sources --------------------------------------------------------------

    def _load(self, engine: Union[str, bytes], engine_name: Optional[str], digest: str):
        """A prebuilt engine, or None (with a note) if unusable here."""
        if isinstance(engine, str):
            if not os.path.isfile(engine):
                raise FileNotFoundError(f"TensorRT engine not found: {engine}")
            engine_name = engine
            with open(engine, "rb") as f:
                engine = f.read()
        label = engine_name or "the given engine"
        fields = parse_engine_file_name(engine_name or "")
        if fields:
            built_for = (fields["trt_version"], fields["gpu"], fields["digest"])
            here = (self.trt.__version__, _slug(self.gpu), digest)
            if built_for != here:
                note(
                    f"{os.path.basename(label)} is for TensorRT {built_for[0]} on {built_for[1]} "
                    f"and ONNX {built_for[2]}, this is TensorRT {here[0]} on {here[1]} and "
                    f"ONNX {here[2]}: building a new engine"
                )
                return None
        loaded = self.runtime.deserialize_cuda_engine(engine)
        if loaded is None:
            note(f"TensorRT {self.trt.__version__} cannot load {label}: building a new engine")
            return None
        shape = list(self._engine_input_shape(loaded))
        if any(a != b for a, b in zip(shape, self.input_shape) if a > 0):
            note(f"{label} takes {shape}, the export {self.input_shape}: building a new engine")
            return None
        self.precision = fields["precision"] if fields else "prebuilt"
        return loaded

    def _cached_or_built(self, onnx: bytes, precision: str, cache_dir, calib_batches):
        trt = self.trt
        builder = trt.Builder(trt.Logger(trt.Logger.WARNING))
        self.precision = resolve_precision(trt, builder, precision)
        name = engine_file_name(self.precision, trt.__version__, self.gpu, onnx_digest(onnx))
        path = os.path.join(cache_dir, name) if cache_dir else None
        if path and os.path.isfile(path):
            with open(path, "rb") as f:
                loaded = self.runtime.deserialize_cuda_engine(f.read())
            if loaded is not None:
                return loaded
            note(f"cached engine {path} cannot be loaded: building it again")
        stale = stale_engines(cache_dir, name) if path else []
        if stale:
            note(
                f"not using {', '.join(stale)} (another TensorRT, GPU or ONNX model): "
                f"building {name}"
            )
        calibrator = None
        if self.precision == "int8":
            if not calib_batches:
                raise ValueError("an INT8 engine needs calibration images (--trt_calib_dir)")
            cache = (path or "model") + ".calib"
            calibrator = entropy_calibrator(trt, self.memory, calib_batches, cache)
        print(
            f"Building a TensorRT {trt.__version__} {self.precision} engine for {self.gpu} "
            "(once; minutes on a Jetson)...",
            file=sys.stderr,
        )
        serialized = build_engine(trt, onnx, self.input_shape, self.precision, calibrator)
        if path:
            staging = path + ".part"
            with open(staging, "wb") as f:
                f.write(serialized)
            os.replace(staging, path)
        return self.runtime.deserialize_cuda_engine(serialized)

    # -- I/O -------------------------------------------------------------------------

    def _engine_input_shape(self, engine) -> Tuple[int, ...]:
        if hasattr(engine, "num_io_tensors"):
            return tuple(engine.get_tensor_shape(engine.get_tensor_name(0)))
        return tuple(engine.get_binding_shape(0))

    def _bind(self) -> Tuple[List[_IO], List[_IO]]:
        """Sets the input shape, allocates every input/output buffer, binds them."""
        trt, engine, context = self.trt, self.engine, self.context
        inputs, outputs = [], []
        if self.tensor_api:
            names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
            for i, name in enumerate(names):
                is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
                if is_input:
                    context.set_input_shape(name, self.input_shape)
                dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
                io = _IO(name, i, (), dtype)
                (inputs if is_input else outputs).append(io)
            for io in inputs + outputs:
                io.shape = tuple(context.get_tensor_shape(io.name))
                io.buffer = self.memory.empty(io.shape, io.dtype)
                context.set_tensor_address(io.name, self.memory.address(io.buffer))
        else:
            for i in range(engine.num_bindings):
                is_input = engine.binding_is_input(i)
                if is_input:
                    context.set_binding_shape(i, self.input_shape)
                dtype = np.dtype(trt.nptype(engine.get_binding_dtype(i)))
                io = _IO(engine.get_binding_name(i), i, (), dtype)
                (inputs if is_input else outputs).append(io)
            for io in inputs + outputs:
                io.shape = tuple(context.get_binding_shape(io.index))
                io.buffer = self.memory.empty(io.shape, io.dtype)
            ordered = sorted(inputs + outputs, key=lambda io: io.index)
            self.bindings = [self.memory.address(io.buffer) for io in ordered]
        if len(inputs) != 1 or not outputs:
            raise ValueError(f"expected 1 input and outputs, the engine has {len(inputs)} inputs")
        return inputs, outputs

    def _execute(self) -> None:
        handle = self.memory.stream_handle
        if self.tensor_api:
            ok = self.context.execute_async_v3(handle)
        else:
            ok = self.context.execute_async_v2(self.bindings, handle)
        if not ok:
            raise RuntimeError("TensorRT inference failed (see its log above)")

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Runs one batch ``x`` (N, C, H, W) float32 and returns the first output."""
        x = np.ascontiguousarray(x, dtype=self.inputs[0].dtype)
        if tuple(x.shape) != self.inputs[0].shape:
            raise ValueError(f"input {list(x.shape)} differs from the engine's {self.input_shape}")
        self.memory.upload(self.inputs[0].buffer, x)
        self.device_ms = self.memory.timed(self._execute)
        return self.memory.download(self.outputs[0].buffer)
