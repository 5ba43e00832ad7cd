"""Paddle inference program -> ONNX with paddle2onnx, in a child process.

paddle2onnx's default optimizer ("polygraphy") sets ``POLYGRAPHY_AUTOINSTALL_DEPS=1`` and
pip-installs packages at run time. The conversion here uses ``optimize_tool="none"`` with
``POLYGRAPHY_AUTOINSTALL_DEPS=0``, and runs in a child process, because paddle2onnx aborts
the whole process (SIGABRT) on an operator it cannot convert (e.g. adaptive pooling with a
dynamic input size); the child's error lines are reported instead. The child dies with
its parent, so an export killed during the conversion leaves no converter writing into its
folder. The converted graph is then optimised in this process (:mod:`.onnx_optimize`).
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Sequence

import paddle.nn as nn

from .graph import save_paddle

# Before anything imports paddle2onnx (and polygraphy): never install packages at run time.
os.environ["POLYGRAPHY_AUTOINSTALL_DEPS"] = "0"

# The opsets paddle2onnx 2.1 accepts; any other aborts the conversion ("The Opset Version
# must be between 7 and 21").
ONNX_OPSETS = range(7, 22)
# prctl option: signal sent to this process when its parent dies (Linux).
_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int) -> None:
    """Has the kernel SIGKILL this process when ``parent`` dies (Linux; elsewhere a no-op)."""
    if not sys.platform.startswith("linux"):
        return
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


def _convert_onnx_child(
    model_file: str, params_file: str, onnx_file: str, opset: int, log_file: str, parent: int
) -> None:
    """Child process body of ``convert_onnx``: paddle2onnx with its output sent to a file."""
    import faulthandler

    _die_with_parent(parent)
    # An abort is reported by the parent from the log; no inherited crash dump to stderr.
    faulthandler.disable()
    log_fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.environ["POLYGRAPHY_AUTOINSTALL_DEPS"] = "0"
    import paddle2onnx

    paddle2onnx.export(
        model_file,
        params_file,
        onnx_file,
        opset_version=opset,
        auto_upgrade_opset=False,
        enable_onnx_checker=True,
        optimize_tool="none",
    )


def write_onnx(
    layer: nn.Layer, input_shape: Sequence[int], onnx_file: str, opset: int = 13,
    optimize: bool = True,
) -> None:  # fmt: skip
    """``layer`` traced as written, saved as a Paddle program in a folder beside
    ``onnx_file`` (removed after), and converted by :func:`convert_onnx`. The ONNX
    optimisation picks the resizes to rewrite itself, so the trace keeps Paddle's."""
    program_dir = os.path.join(os.path.dirname(os.path.abspath(onnx_file)), "onnx_program")
    os.makedirs(program_dir)
    try:
        program = save_paddle(layer, input_shape, program_dir)
        convert_onnx(os.path.join(program_dir, program["model"]),
                     os.path.join(program_dir, program["params"]), onnx_file, opset,
                     optimize=optimize)  # fmt: skip
    finally:
        shutil.rmtree(program_dir, ignore_errors=True)


def convert_onnx(
    model_file: str,
    params_file: str,
    onnx_file: str,
    opset: int = 13,
    timeout: float = 600,
    optimize: bool = True,
) -> None:
    """Converts a Paddle inference program to ONNX with paddle2onnx, in a child process.

    The child is forked where the platform allows it (it then shares the loaded Paddle and
    starts in well under a second), else spawned.

    Args:
        model_file: ``model.json`` (or ``model.pdmodel``).
        params_file: ``model.pdiparams``.
        onnx_file: The ONNX file to write.
        opset: ONNX opset.
        timeout: Seconds the conversion may take.
        optimize: Optimise the converted graph (:func:`.onnx_optimize.optimize_onnx`).

    Raises:
        RuntimeError: The conversion failed or timed out; the message holds paddle2onnx's
            error lines.
    """
    if os.path.exists(onnx_file):
        os.remove(onnx_file)
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    with tempfile.NamedTemporaryFile(suffix=".log", delete=False) as log:
        log_file = log.name
    try:
        child = multiprocessing.get_context(method).Process(
            target=_convert_onnx_child,
            args=(model_file, params_file, onnx_file, opset, log_file, os.getpid()),
        )
        child.start()
        child.join(timeout)
        if child.is_alive():
            child.kill()
            child.join()
        with open(log_file, errors="replace") as f:
            lines = f.read().splitlines()
    finally:
        os.remove(log_file)
    if child.exitcode != 0 or not os.path.isfile(onnx_file):
        errors = [line for line in lines if "ERROR" in line or "Error" in line] or lines[-5:]
        raise RuntimeError(
            f"paddle2onnx could not convert {model_file} (exit code {child.exitcode}):\n"
            + "\n".join(errors[-8:])
        )
    if optimize:
        # Imported here: the Paddle Lite side environment imports this package without onnx.
        from .onnx_optimize import optimize_onnx

        optimize_onnx(onnx_file)
