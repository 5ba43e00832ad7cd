"""`pretrained:` in a config: loaded before the first training step, for our models and stock
PaddleSeg models alike; a missing file is a one-line error before anything is built."""

import copy
import subprocess
import sys

import numpy as np
import paddle
import pytest
import yaml
from helpers import REPO, TINY_CONFIG, load_tool, random_state

from paddleseg_ext.config import ConfigError, build, load_config
from paddleseg_ext.core import train
from paddleseg_ext.models.convert import load_pretrained_weights
from paddleseg_ext.models.topformer import TopFormerBackbone

OURS = TINY_CONFIG["model"]
STOCK = {
    "type": "TopFormer",
    "num_classes": 6,
    "backbone": {"type": "TopTransformer_Tiny"},
    "head_use_dw": True,
}


def write_config(path, model, **top):
    """``TINY_CONFIG`` with ``model`` and top-level overrides, written to ``path``."""
    cfg = copy.deepcopy(TINY_CONFIG) | {"model": copy.deepcopy(model)} | top
    path.write_text(yaml.safe_dump(cfg))
    return path


def save_random(layer, path, seed=1):
    """Saves random values for every tensor of ``layer`` and returns them as arrays."""
    state = random_state(layer, seed)
    paddle.save({k: paddle.to_tensor(v) for k, v in state.items()}, str(path))
    return state


def build_model(cfg_path):
    return build(load_config(str(cfg_path))).model


@pytest.mark.parametrize("model_cfg", [OURS, STOCK], ids=["ours", "stock"])
def test_training_starts_from_the_pretrained_weights(tmp_path, model_cfg):
    # The file's weights are random values, far from any initialisation.
    plain = build_model(write_config(tmp_path / "plain.yml", model_cfg))
    weights = save_random(plain, tmp_path / "w.pdparams")
    assert not any(np.array_equal(v.numpy(), weights[k]) for k, v in plain.state_dict().items())

    # One step with a zero learning rate: no trained parameter can move, so the result holds
    # the weights training started from.
    frozen = copy.deepcopy(TINY_CONFIG["lr_scheduler"]) | {"learning_rate": 0.0}
    model_cfg = copy.deepcopy(model_cfg) | {"pretrained": str(tmp_path / "w.pdparams")}
    cfg = write_config(tmp_path / "pre.yml", model_cfg, iters=1, lr_scheduler=frozen)
    model = train(load_config(str(cfg)), save_dir=str(tmp_path / "out"), save_interval=1)
    trained = {name: p for name, p in model.named_parameters() if not p.stop_gradient}
    assert trained
    for name, param in trained.items():
        np.testing.assert_array_equal(param.numpy(), weights[name], err_msg=name)


def test_backbone_file_into_a_segmentor_logs_the_missing_keys(tmp_path, capsys):
    backbone = save_random(TopFormerBackbone("tiny"), tmp_path / "backbone.pdparams")
    cfg = write_config(
        tmp_path / "c.yml", OURS | {"pretrained": str(tmp_path / "backbone.pdparams")}
    )
    model = build_model(cfg)
    head_init = {k: v.numpy() for k, v in model.head.state_dict().items()}
    capsys.readouterr()
    assert load_pretrained_weights(model) == [str(tmp_path / "backbone.pdparams")]
    log = capsys.readouterr().out

    for key, value in model.backbone.state_dict().items():
        np.testing.assert_array_equal(value.numpy(), backbone[key], err_msg=key)
    for key, value in model.head.state_dict().items():
        np.testing.assert_array_equal(value.numpy(), head_init[key], err_msg=key)
    head_keys = [f"head.{k}" for k in head_init]
    missing_line = next(line for line in log.splitlines() if "left at their initial" in line)
    assert f"{len(head_keys)} tensor(s) of TopFormerSeg not in" in missing_line
    assert missing_line.split("initial values: ")[1].split(", ") == head_keys
    total = len(model.state_dict())
    assert f"Loaded {total - len(head_keys)}/{total} tensors of TopFormerSeg" in log


def test_backbone_pretrained_takes_the_backbone_of_a_segmentor_file(tmp_path, capsys):
    segmentor = build_model(write_config(tmp_path / "a.yml", OURS))
    full = save_random(segmentor, tmp_path / "f.pdparams")
    backbone_cfg = OURS["backbone"] | {"pretrained": str(tmp_path / "f.pdparams")}
    model = build_model(write_config(tmp_path / "b.yml", OURS | {"backbone": backbone_cfg}))
    capsys.readouterr()
    load_pretrained_weights(model)
    log = capsys.readouterr().out
    for key, value in model.backbone.state_dict().items():
        np.testing.assert_array_equal(value.numpy(), full[f"backbone.{key}"], err_msg=key)
    total = len(model.backbone.state_dict())
    assert f"Loaded {total}/{total} tensors of TopFormerBackbone from" in log
    assert "left at their initial values" not in log


def test_a_file_of_another_model_is_refused(tmp_path):
    paddle.save({"conv.weight": paddle.zeros([4, 3, 3, 3])}, str(tmp_path / "other.pdparams"))
    backbone_cfg = OURS["backbone"] | {"pretrained": str(tmp_path / "other.pdparams")}
    model = build_model(write_config(tmp_path / "c.yml", OURS | {"backbone": backbone_cfg}))
    with pytest.raises(ConfigError, match="model.backbone.pretrained: no tensor of .*other"):
        load_pretrained_weights(model)


def test_missing_file_is_one_line_from_tools_train(tmp_path):
    missing = tmp_path / "nope.pdparams"
    cfg = write_config(tmp_path / "c.yml", OURS | {"pretrained": str(missing)})
    proc = subprocess.run(
        [sys.executable, "tools/train.py", "--config", str(cfg), "--device", "cpu",
         "--save_dir", str(tmp_path / "out")],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    # Paddle's import may print warnings first; the error is one line, the last.
    *_, last = proc.stderr.strip().splitlines()
    expected = f"error: model.pretrained: pretrained weights file not found: {missing} ("
    assert last.startswith(expected), proc.stderr
    assert proc.stderr.count(str(missing)) == 1
    assert not (tmp_path / "out").exists()


def test_missing_file_of_a_stock_backbone_fails_before_building(tmp_path, monkeypatch):
    import paddleseg.models.backbones.top_transformer as stock  # noqa: PLC0415

    def never_built(*args, **kwargs):
        raise AssertionError("the backbone was built")

    monkeypatch.setattr(stock.TopTransformer, "__init__", never_built)
    backbone_cfg = STOCK["backbone"] | {"pretrained": "nope/backbone.pdparams"}
    cfg = write_config(tmp_path / "c.yml", STOCK | {"backbone": backbone_cfg})
    message = "model.backbone.pretrained: pretrained weights file not found: nope/backbone"
    with pytest.raises(ConfigError, match=message):
        load_tool("train").main(["--config", str(cfg), "--device", "cpu"])
    with pytest.raises(ConfigError, match=message):  # a Config not checked by load_config
        train(load_config(str(cfg), "model"), save_dir=str(tmp_path / "out"))
