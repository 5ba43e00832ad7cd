"""Shared fixtures of the model tests."""

from collections.abc import Callable

import numpy as np
import paddle
import pytest
from helpers import random_state


def _randomize(layer: paddle.nn.Layer, seed: int = 0) -> paddle.nn.Layer:
    """Fills `layer` with `helpers.random_state` values and returns it."""
    layer.set_state_dict(random_state(layer, seed))
    return layer


@pytest.fixture
def randomize() -> Callable[..., paddle.nn.Layer]:
    """Returns `randomize(layer, seed=0)`, which fills `layer` with random weights."""
    return _randomize


@pytest.fixture(autouse=True)
def _seed() -> None:
    paddle.seed(0)
    np.random.seed(0)
