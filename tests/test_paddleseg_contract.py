"""What the config validator takes as SegBuilder's behaviour, checked against PaddleSeg itself:
the optimizer spellings it rewrites, the warm-up keys it pops from ``lr_scheduler``, and where
it puts the dataset's ``in_channels``. A PaddleSeg release that changes one of them fails here
instead of letting the validator accept or refuse the wrong configs."""

from __future__ import annotations

import copy

import paddle
import pytest
from helpers import TINY_CONFIG
from paddleseg.cvlibs import Config, SegBuilder
from paddleseg.utils.utils import set_in_channels

from paddleseg_ext import config_check


def builder(tmp_path, **sections) -> SegBuilder:
    import yaml

    path = tmp_path / "contract.yml"
    path.write_text(yaml.safe_dump({**copy.deepcopy(TINY_CONFIG), **sections}))
    return SegBuilder(Config(str(path)))


@pytest.mark.parametrize("alias, target", sorted(config_check._OPTIMIZER_ALIASES.items()))
def test_optimizer_aliases_are_segbuilders(alias, target, tmp_path):
    optimizer = builder(tmp_path, optimizer={"type": alias}).optimizer
    assert type(optimizer).__name__ == target


def test_sgd_with_momentum_becomes_momentum(tmp_path):
    optimizer = builder(tmp_path, optimizer={"type": "sgd", "momentum": 0.9}).optimizer
    assert type(optimizer).__name__ == "Momentum"


def test_warmup_keys_are_the_ones_segbuilder_pops(tmp_path):
    schedule = {"type": "PolynomialDecay", "learning_rate": 0.1, "end_lr": 0.0, "power": 1.0}
    warm = {key: value for key, value in zip(config_check._WARMUP, (3, 0.0), strict=True)}
    lr = builder(tmp_path, lr_scheduler={**schedule, **warm}).lr_scheduler
    assert isinstance(lr, paddle.optimizer.lr.LinearWarmup)
    assert lr.warmup_steps == 3 and lr.start_lr == 0.0 and lr.end_lr == 0.1


def test_in_channels_goes_where_the_validator_expects_it():
    """PaddleSeg gives the dataset's channels to the backbone when there is one, else to the
    model: the two slots whose ``in_channels`` the validator treats as injected."""
    with_backbone = set_in_channels({"type": "M", "backbone": {"type": "B"}}, 3)
    assert with_backbone == {"type": "M", "backbone": {"type": "B", "in_channels": 3}}
    assert set_in_channels({"type": "M"}, 3) == {"type": "M", "in_channels": 3}
    assert set(config_check._INJECTED) == {"model", "backbone"}
    assert all(keys == {"in_channels"} for keys in config_check._INJECTED.values())
