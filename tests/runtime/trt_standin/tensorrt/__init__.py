"""A CPU stand-in for the part of TensorRT's Python API that ``seg_runtime.tensorrt_engine``
uses, in both generations, so that the backend's code runs where no GPU is.

It is no TensorRT: an "engine" is the ONNX model run by onnxruntime, "device memory" is host
arrays keyed by fake addresses (:class:`HostMemory`). What it does model is the contract:
- ``set_version("8.2.1.8")`` gives the binding API of 8.0-8.4 only (``num_bindings``,
  ``execute_async_v2``); 8.5 onwards the named-tensor API (``num_io_tensors``,
  ``execute_async_v3``), 10 and later without the bindings; 11 without ``BuilderFlag.FP16``
  and ``INT8``. Explicit batch must be requested before 10.
- A serialized engine loads only in the same version (``deserialize_cuda_engine`` returns
  None otherwise, as TensorRT does) and records its precision and build count.
"""

import json

import numpy as np
import onnxruntime

__version__ = "8.2.1.8"
builds = []  # (version, precision) of each engine built


class Logger:
    WARNING = 2

    def __init__(self, severity=WARNING):
        self.severity = severity


class NetworkDefinitionCreationFlag:
    EXPLICIT_BATCH = 0


class MemoryPoolType:
    WORKSPACE = 0


class TensorIOMode:
    NONE, INPUT, OUTPUT = 0, 1, 2


class DataType:
    FLOAT, INT32, INT64 = np.float32, np.int32, np.int64


class BuilderFlag:
    pass


class IInt8EntropyCalibrator2:
    def __init__(self):
        pass


def nptype(dtype):
    return dtype


def _major_minor(version):
    return tuple(int(v) for v in version.split(".")[:2])


def set_version(version):
    """Switches the stand-in to another TensorRT release (see the module docstring)."""
    global __version__
    __version__ = version
    for flag in ("FP16", "INT8"):
        if _major_minor(version) >= (11, 0):
            if hasattr(BuilderFlag, flag):
                delattr(BuilderFlag, flag)
        else:
            setattr(BuilderFlag, flag, flag)


set_version(__version__)


class HostMemory:
    """Device memory for the stand-in: host arrays under integer addresses."""

    name = "host stand-in"
    stream_handle = 0
    arrays = {}

    def gpu_name(self):
        return "Stand-in GPU"

    def empty(self, shape, dtype):
        array = np.zeros(shape, dtype)
        HostMemory.arrays[id(array)] = array
        return array

    @staticmethod
    def address(buffer):
        return id(buffer)

    def upload(self, buffer, array):
        buffer[...] = array

    def download(self, buffer):
        return buffer.copy()

    def timed(self, run):
        run()
        return 1.0


class _Tensor:
    def __init__(self, name, shape):
        self.name, self.shape = name, shape


class _Network:
    def __init__(self, explicit_batch):
        self.explicit_batch = explicit_batch
        self.onnx = None

    def get_input(self, index):
        session = onnxruntime.InferenceSession(self.onnx, providers=["CPUExecutionProvider"])
        spec = session.get_inputs()[index]
        return _Tensor(spec.name, [d if isinstance(d, int) else -1 for d in spec.shape])


class OnnxParser:
    num_errors = 0

    def __init__(self, network, logger):
        self.network = network

    def parse(self, data):
        self.network.onnx = bytes(data)
        return True

    def get_error(self, index):
        return ""


class _Profile:
    def set_shape(self, name, low, opt, high):
        self.shape = list(opt)


class _Config:
    def __init__(self):
        self.flags = set()
        self.profiles = []
        if _major_minor(__version__) < (8, 4):
            self.max_workspace_size = 0

    def __getattr__(self, name):
        if name == "set_memory_pool_limit" and _major_minor(__version__) >= (8, 4):
            return lambda pool, size: None
        raise AttributeError(name)

    def set_flag(self, flag):
        self.flags.add(flag)

    def add_optimization_profile(self, profile):
        self.profiles.append(profile)


class Builder:
    platform_has_fast_fp16 = True

    def __init__(self, logger):
        pass

    def create_network(self, flags=0):
        explicit = _major_minor(__version__) >= (10, 0) or bool(flags & 1)
        return _Network(explicit)

    def create_builder_config(self):
        return _Config()

    def create_optimization_profile(self):
        return _Profile()

    def build_serialized_network(self, network, config):
        if not network.explicit_batch:
            raise RuntimeError("implicit batch networks cannot take ONNX models")
        flags = config.flags
        precision = "int8" if "INT8" in flags else "fp16" if "FP16" in flags else "fp32"
        builds.append((__version__, precision))
        header = json.dumps({"version": __version__, "precision": precision}).encode()
        return len(header).to_bytes(4, "little") + header + network.onnx


class Runtime:
    def __init__(self, logger):
        pass

    def deserialize_cuda_engine(self, data):
        data = bytes(data)
        size = int.from_bytes(data[:4], "little")
        try:
            header = json.loads(data[4 : 4 + size])
        except ValueError:
            return None
        if header.get("version") != __version__:
            return None  # TensorRT refuses engines of another release
        return _Engine(data[4 + size :], header["precision"])


class _Engine:
    def __init__(self, onnx, precision):
        self.precision = precision
        self.session = onnxruntime.InferenceSession(onnx, providers=["CPUExecutionProvider"])
        self.io = [(i.name, True) for i in self.session.get_inputs()]
        self.io += [(o.name, False) for o in self.session.get_outputs()]
        if _major_minor(__version__) >= (8, 5):
            self.num_io_tensors = len(self.io)
        if _major_minor(__version__) < (10, 0):
            self.num_bindings = len(self.io)

    def _spec(self, name):
        specs = self.session.get_inputs() + self.session.get_outputs()
        return next(s for s in specs if s.name == name)

    def _dtype(self, name):
        kind = self._spec(name).type
        return {"tensor(float)": np.float32, "tensor(int64)": np.int32}.get(kind, np.int32)

    def _shape(self, name):
        return tuple(d if isinstance(d, int) else -1 for d in self._spec(name).shape)

    # named-tensor API (8.5+)
    def get_tensor_name(self, index):
        return self.io[index][0]

    def get_tensor_mode(self, name):
        is_input = dict(self.io)[name]
        return TensorIOMode.INPUT if is_input else TensorIOMode.OUTPUT

    def get_tensor_shape(self, name):
        return self._shape(name)

    def get_tensor_dtype(self, name):
        return self._dtype(name)

    # binding API (before 10)
    def binding_is_input(self, index):
        return self.io[index][1]

    def get_binding_name(self, index):
        return self.io[index][0]

    def get_binding_shape(self, index):
        return self._shape(self.io[index][0])

    def get_binding_dtype(self, index):
        return self._dtype(self.io[index][0])

    def create_execution_context(self):
        return _Context(self)


class _Context:
    def __init__(self, engine):
        self.engine = engine
        self.input_shape = None
        self.addresses = {}
        if _major_minor(__version__) >= (8, 5):
            self.execute_async_v3 = self._v3
        if _major_minor(__version__) < (10, 0):
            self.execute_async_v2 = self._v2

    def _output_shape(self, name):
        feed = {self.engine.io[0][0]: np.zeros(self.input_shape, np.float32)}
        index = [n for n, _ in self.engine.io].index(name) - 1
        return tuple(self.engine.session.run(None, feed)[index].shape)

    def set_input_shape(self, name, shape):
        self.input_shape = tuple(shape)

    def set_binding_shape(self, index, shape):
        self.input_shape = tuple(shape)

    def get_tensor_shape(self, name):
        if dict(self.engine.io)[name]:
            return self.input_shape
        return self._output_shape(name)

    def get_binding_shape(self, index):
        return self.get_tensor_shape(self.engine.io[index][0])

    def set_tensor_address(self, name, address):
        self.addresses[name] = address

    def _run(self, addresses):
        names = [n for n, _ in self.engine.io]
        feed = {names[0]: HostMemory.arrays[addresses[names[0]]]}
        for name, value in zip(names[1:], self.engine.session.run(None, feed), strict=True):
            HostMemory.arrays[addresses[name]][...] = value
        return True

    def _v3(self, stream):
        return self._run(self.addresses)

    def _v2(self, bindings, stream):
        return self._run(dict(zip([n for n, _ in self.engine.io], bindings, strict=True)))
