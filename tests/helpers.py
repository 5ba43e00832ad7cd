"""Constants and helpers shared by the tests (importable as ``helpers``)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
CAMVID = SHARED_DATA / "camvid"
needs_camvid = pytest.mark.skipif(
    not (CAMVID / "train.txt").is_file(), reason=f"needs the CamVid copy at {CAMVID}"
)


# The device runtime (deploy/python) and the sitecustomize folder that blocks the training
# stack (paddle, paddleseg, paddleslim, paddleseg_ext) in a child interpreter.
RUNTIME_DIR = REPO / "deploy" / "python"
BLOCKER = REPO / "tests" / "runtime" / "blocker"
# The export check's bound: an exported model agrees with its reference on >= 99.9% of pixels.
MIN_AGREEMENT = 0.999


def run_device_python(python, *args: str, cwd) -> subprocess.CompletedProcess:
    """Runs ``python *args`` in ``cwd`` (a device interpreter: the emulated board, CPython
    3.6) with no ``PYTHON*`` variable of this one; asserts it succeeded."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    proc = subprocess.run([str(python), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=900)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def read_labels(folder) -> dict:
    """``{relative path: uint8 array}`` of the label PNGs under ``folder``."""
    import cv2  # noqa: PLC0415

    labels = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            labels[os.path.relpath(path, folder)] = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    return labels


TINY_SHAPES = {"type": "SyntheticShapes", "num_train": 8, "num_val": 3, "image_size": 64}

TINY_CONFIG = {
    "batch_size": 2,
    "iters": 6,
    "train_dataset": {
        **TINY_SHAPES,
        "mode": "train",
        "transforms": [{"type": "RandomHorizontalFlip"}, {"type": "Normalize"}],
    },
    "val_dataset": {**TINY_SHAPES, "mode": "val", "transforms": [{"type": "Normalize"}]},
    "model": {
        "type": "TopFormerSeg",
        "num_classes": 6,
        "backbone": {"type": "TopFormerBackbone", "preset": "tiny"},
    },
    "optimizer": {"type": "AdamW", "weight_decay": 0.01},
    "lr_scheduler": {
        "type": "PolynomialDecay",
        "learning_rate": 0.002,
        "end_lr": 0.0,
        "power": 0.9,
    },
    "loss": {"types": [{"type": "SegCrossEntropyLoss"}], "coef": [1]},
}


DISTILL_LOSSES = [
    {"type": "CWD", "student": "logits", "teacher": "logits", "weight": 1.2, "tau": 3.0},
    {"type": "NFD", "student": "backbone.injections.0", "teacher": "backbone.injections.0",
     "weight": 0.01},
]  # fmt: skip


def write_distill_configs(root: Path, iters: int = 4) -> Path:
    """Writes a TopFormer-tiny teacher (config, random weights) and a ``TINY_CONFIG`` student
    distilling from it with ``DISTILL_LOSSES``; returns the student config's path."""
    import copy  # noqa: PLC0415

    import paddle  # noqa: PLC0415
    import yaml  # noqa: PLC0415

    from paddleseg_ext.config import build, load_config  # noqa: PLC0415
    from paddleseg_ext.core.checkpoint import save_weights  # noqa: PLC0415

    teacher_cfg = root / "teacher.yml"
    teacher_cfg.write_text(yaml.safe_dump(TINY_CONFIG))
    paddle.seed(1)
    save_weights(str(root / "teacher"), build(load_config(str(teacher_cfg))).model)
    student = copy.deepcopy(TINY_CONFIG) | {"iters": iters}
    student["distill"] = {
        "teacher": {"config": str(teacher_cfg), "model_path": str(root / "teacher/model.pdparams")},
        "losses": DISTILL_LOSSES,
    }
    student_cfg = root / "student.yml"
    student_cfg.write_text(yaml.safe_dump(student))
    return student_cfg


def load_tool(name: str):
    """Imports ``tools/<name>.py`` as a module (tools are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f"tool_{name}", REPO / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def random_state(layer, seed: int = 0) -> dict:
    """Random values for every entry of ``layer.state_dict()`` (BatchNorm variances > 0).

    Fresh models have zero-initialised BatchNorm scales on several branches, which would hide
    wrong wiring in parity tests; random statistics also exercise eval-mode BatchNorm.
    """
    import numpy as np  # noqa: PLC0415

    rng = np.random.default_rng(seed)
    state = {}
    for key, value in layer.state_dict().items():
        array = rng.standard_normal(value.shape).astype("float32") * 0.2
        if key.endswith("_variance"):
            array = np.abs(array) + 0.5
        state[key] = array.astype(value.numpy().dtype)
    return state
