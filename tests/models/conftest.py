"""Shared fixtures of the model tests."""

from collections.abc import Callable

import numpy as np
import paddle
import pytest


def _randomize(layer: paddle.nn.Layer, seed: int = 0) -> paddle.nn.Layer:
    """Gives every parameter and BatchNorm statistic random values (variances > 0).

    Fresh models have zero-initialised BatchNorm scales on several branches, which would hide
    wrong wiring in parity tests; random statistics also exercise the eval-mode BatchNorm.
    """
    rng = np.random.default_rng(seed)
    state = {}
    for key, value in layer.state_dict().items():
        array = rng.standard_normal(value.shape).astype("float32") * 0.2
        if key.endswith("_variance"):
            array = np.abs(array) + 0.5
        state[key] = array
    layer.set_state_dict(state)
    return layer


@pytest.fixture
def randomize() -> Callable[..., paddle.nn.Layer]:
    """Returns `randomize(layer, seed=0)`, which fills `layer` with random weights."""
    return _randomize


@pytest.fixture(autouse=True)
def _seed() -> None:
    paddle.seed(0)
    np.random.seed(0)
