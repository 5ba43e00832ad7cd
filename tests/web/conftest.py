"""Exports and a running server shared by the web demo tests.

The runtime tests' case (``runtime_case``: an export, images and a video) is reused; a copy
of its export quantized to INT8 gives the picker a float and an INT8 entry to compare.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest
from helpers import BLOCKER, RUNTIME_DIR
from runtime.conftest import runtime_case  # noqa: F401 (the fixture, shared with these tests)

# Model directories for the served page instead of the test exports: two or more,
# os.pathsep-separated (the browser test compares the first two), e.g. trained models for the
# README screenshot.
MODELS_ENV = "PSE_WEB_MODELS"
SERVER_START_S = 60


@pytest.fixture(scope="session")
def int8_export(runtime_case, tmp_path_factory) -> str:  # noqa: F811
    """A copy of the case's export with ``model_int8.onnx`` as its ONNX INT8 model and
    default, as ``tools/export.py --quantize int8`` leaves it (quantized here without
    calibration: weights only, in a second)."""
    from onnxruntime.quantization import quantize_dynamic
    from seg_runtime import load_deploy

    out = str(tmp_path_factory.mktemp("int8") / "export")
    shutil.copytree(os.path.join(runtime_case, "export"), out)
    deploy = load_deploy(out)
    float_onnx = os.path.join(out, deploy.model_file("onnx"))
    quantize_dynamic(float_onnx, os.path.join(out, "model_int8.onnx"))
    deploy.set_model("onnx", "int8", "model_int8.onnx", default=True)
    deploy.write(out)
    return out


@pytest.fixture(scope="session")
def served_models(runtime_case, int8_export) -> list[str]:  # noqa: F811
    """The model directories of ``server``: ``$PSE_WEB_MODELS`` or the test exports."""
    if os.environ.get(MODELS_ENV):
        return os.environ[MODELS_ENV].split(os.pathsep)
    return [os.path.join(runtime_case, "export"), int8_export]


@pytest.fixture(scope="session")
def server(served_models) -> Iterator[str]:
    """``deploy/python/serve.py`` on a free port, in an interpreter where paddle, paddleseg,
    paddleslim and paddleseg_ext cannot be imported; yields its URL."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONPATH"] = str(BLOCKER)
    args = [arg for model_dir in served_models for arg in ("--model_dir", model_dir)]
    proc = subprocess.Popen(
        [sys.executable, str(RUNTIME_DIR / "serve.py"), *args, "--port", "0", "--cpu_only"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )  # fmt: skip
    # Drained on a thread: the request log would otherwise fill the pipe and block the server.
    lines: list[str] = []

    def drain() -> None:
        for line in proc.stdout:
            lines.append(line)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    deadline = time.monotonic() + SERVER_START_S
    url = None
    while proc.poll() is None and time.monotonic() < deadline:
        found = re.search(r"Serving on (http://\S+/)", "".join(lines))
        if found:
            url = found.group(1)
            break
        time.sleep(0.1)
    if url is None:
        proc.kill()
        reader.join(5)
        pytest.fail(f"the server did not start:\n{''.join(lines)[-3000:]}")
    yield url
    proc.terminate()
    proc.wait(10)
