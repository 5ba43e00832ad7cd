"""seg_runtime.machine: the machine line printed with every latency figure."""

from __future__ import annotations

import platform

from seg_runtime.machine import cpu_description, cpu_flags, describe_machine

X86_CPUINFO = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Gold\n"
# A Jetson Nano's /proc/cpuinfo (no "model name" on older kernels; one block per core).
JETSON_CPUINFO = (
    "processor\t: 0\nBogoMIPS\t: 38.40\nCPU implementer\t: 0x41\nCPU part\t: 0xd07\n\n"
    "processor\t: 1\nCPU part\t: 0xd07\n"
)


def test_x86_host(tmp_path, monkeypatch):
    info = tmp_path / "cpuinfo"
    info.write_text(X86_CPUINFO)
    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    text = cpu_description(str(info))
    assert text.startswith("x86_64, Intel(R) Xeon(R) Gold, ") and text.endswith(" cores")


def test_arm_interpreter_on_an_x86_cpuinfo_is_emulation(tmp_path, monkeypatch):
    info = tmp_path / "cpuinfo"
    info.write_text(X86_CPUINFO)
    monkeypatch.setattr(platform, "machine", lambda: "aarch64")
    assert cpu_description(str(info)).startswith(
        "aarch64, emulated on Intel(R) Xeon(R) Gold (x86_64), "
    )


def test_arm_board(tmp_path, monkeypatch):
    info = tmp_path / "cpuinfo"
    info.write_text(JETSON_CPUINFO)
    monkeypatch.setattr(platform, "machine", lambda: "aarch64")
    assert cpu_description(str(info)).startswith("aarch64, Cortex-A57 (CPU part 0xd07), ")
    missing = str(tmp_path / "none")
    assert cpu_description(missing).startswith("aarch64, ")


def test_backend_and_providers():
    class Runner:
        name = "onnxruntime"
        providers = ["CPUExecutionProvider"]

    import onnxruntime

    line = describe_machine(Runner())
    assert line.startswith(f"machine: {platform.machine()}, ")
    assert line.endswith(f"; backend: onnxruntime {onnxruntime.__version__} (CPUExecutionProvider)")
    assert "; backend:" not in describe_machine()


def test_cpu_flags_read_x86_flags_and_arm_features(tmp_path):
    x86 = tmp_path / "x86"
    x86.write_text("processor\t: 0\nflags\t\t: sse avx2 avx512_vnni avx2\n\nprocessor\t: 1\n"
                   "flags\t\t: other\n")  # fmt: skip
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd crc32\nCPU part\t: 0xd07\n")
    assert cpu_flags(str(x86)) == ["avx2", "avx512_vnni", "sse"]
    assert cpu_flags(str(arm)) == ["asimd", "crc32", "fp"]
    assert cpu_flags(str(tmp_path / "missing")) == []
