"""The machine a figure was measured on, in one line, so that board and host numbers cannot
be confused: architecture, CPU model, cores, and the backend's version and providers."""

import os
import platform

# ``/proc/cpuinfo`` fields that name the CPU: x86 (and some ARM kernels), Raspberry Pi OS,
# older ARM kernels. Without them, the ARM core is named from its part number.
_MODEL_FIELDS = ("model name", "Model", "Hardware")
# (CPU implementer, CPU part) -> core, for the boards this runtime targets.
_ARM_CORES = {
    ("0x41", "0xd03"): "Cortex-A53",  # Raspberry Pi 3, many phones
    ("0x41", "0xd07"): "Cortex-A57",  # Jetson Nano, TX1, TX2
    ("0x41", "0xd08"): "Cortex-A72",  # Raspberry Pi 4
    ("0x41", "0xd0b"): "Cortex-A76",  # Raspberry Pi 5
    ("0x41", "0xd0c"): "Neoverse-N1",
    ("0x41", "0xd42"): "Cortex-A78AE",  # Jetson Orin
    ("0x4e", "0x004"): "NVIDIA Carmel",  # Jetson Xavier
}
_X86_VENDORS = ("GenuineIntel", "AuthenticAMD")
# The top-level Python package of each backend (whose version is the backend's).
BACKEND_PACKAGES = {"onnxruntime": "onnxruntime", "paddle": "paddle", "lite": "paddlelite",
                    "tensorrt": "tensorrt", "openvino": "openvino"}  # fmt: skip


def _cpuinfo(path: str = "/proc/cpuinfo") -> dict:
    """The first value of each field of ``path`` (empty where there is no such file)."""
    fields = {}
    try:
        with open(path) as f:
            for line in f:
                key, sep, value = line.partition(":")
                if sep and key.strip() not in fields:
                    fields[key.strip()] = value.strip()
    except OSError:
        pass
    return fields


def cpu_description(cpuinfo: str = "/proc/cpuinfo") -> str:
    """``"<architecture>, <CPU model>, <N> cores"`` for this machine.

    An ARM interpreter run by user-mode emulation (qemu-user) on an x86 host reads the
    host's ``/proc/cpuinfo``: that case says ``emulated on <host CPU>``.
    """
    arch = platform.machine() or "unknown"
    fields = _cpuinfo(cpuinfo)
    model = next((fields[k] for k in _MODEL_FIELDS if fields.get(k)), "")
    if not model and fields.get("CPU part"):
        part = fields["CPU part"]
        core = _ARM_CORES.get((fields.get("CPU implementer"), part))
        model = f"{core} (CPU part {part})" if core else f"CPU part {part}"
    model = model or platform.processor()
    # The cores this process may use (as nproc counts them), else all of them.
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    emulated = not arch.startswith(("x86", "i686", "AMD64")) and (
        fields.get("vendor_id") in _X86_VENDORS
    )
    cpu = f"emulated on {model} (x86_64)" if emulated else model or "unknown CPU"
    return f"{arch}, {cpu}, {cores} cores"


def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> list:
    """The CPU's feature flags, sorted (x86 ``flags``, ARM ``Features``); empty if unknown."""
    fields = _cpuinfo(cpuinfo)
    return sorted(set((fields.get("flags") or fields.get("Features") or "").split()))


def describe_machine(runner=None) -> str:
    """``machine: <cpu_description()>`` plus the backend of ``runner``: its name, version and,
    for onnxruntime, the execution providers of its session."""
    text = f"machine: {cpu_description()}"
    if runner is None:
        return text
    name = getattr(runner, "name", type(runner).__name__)
    module = BACKEND_PACKAGES.get(name)
    version = ""
    if module:
        try:
            version = " " + __import__(module).__version__
        except (ImportError, AttributeError):
            version = ""
    providers = getattr(runner, "providers", None)
    if providers is None and hasattr(runner, "session"):
        providers = runner.session.get_providers()
    backend = f"{name}{version}" + (f" ({', '.join(providers)})" if providers else "")
    return f"{text}; backend: {backend}"
