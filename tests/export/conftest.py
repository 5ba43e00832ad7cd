"""Helpers of the export tests: configs on the embedded shapes data, random weights."""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
import paddle
import pytest
import yaml
from helpers import random_state

from paddleseg_ext.config import build, load_config

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHAPES_BASE = os.path.join(REPO, "configs", "_base_", "shapes.yml")


def write_config(directory: str, model: dict, name: str = "model.yml") -> str:
    """Writes a config over the shapes base with ``model`` and returns its path."""
    path = os.path.join(directory, name)
    with open(path, "w") as f:
        yaml.safe_dump({"_base_": SHAPES_BASE, "model": model}, f)
    return path


def random_weights(config: str, path: str, seed: int = 0) -> str:
    """Saves random weights (BatchNorm statistics included) for ``config``'s model."""
    model = build(load_config(config, "val")).model
    state = {key: paddle.to_tensor(v) for key, v in random_state(model, seed).items()}
    paddle.save(state, path)
    return path


@pytest.fixture
def make_config(tmp_path) -> Callable[..., str]:
    """Returns ``make_config(model_dict, name="model.yml")`` -> a config path in ``tmp_path``."""
    return lambda model, name="model.yml": write_config(str(tmp_path), model, name)


@pytest.fixture
def make_weights() -> Callable[..., str]:
    """Returns ``make_weights(config, path, seed=0)``, see ``random_weights``."""
    return random_weights


@pytest.fixture(autouse=True)
def _seed() -> None:
    paddle.seed(0)
    np.random.seed(0)
