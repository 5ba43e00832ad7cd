"""Config loading: _base_ inheritance, overrides and errors that name the problem."""

from pathlib import Path

import pytest
import yaml

from paddleseg_ext.config import ConfigError, dataset_info, load_config

REPO = Path(__file__).resolve().parents[1]


def write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def test_base_chain_and_overrides(tmp_path, tiny_config):
    child = write(tmp_path / "child.yml", {"_base_": "tiny.yml", "iters": 9})
    cfg = load_config(str(child), batch_size=3, opts=["train_dataset.num_train=5"])
    assert cfg.iters == 9  # child wins over base
    assert cfg.batch_size == 3  # command line wins over both
    assert cfg.dic["train_dataset"]["num_train"] == 5
    assert cfg.dic["model"]["type"] == "TopFormerSeg"  # inherited


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="Config file not found: .*nope.yml"):
        load_config(str(tmp_path / "nope.yml"))


def test_missing_key_is_named(tmp_path, tiny_config):
    cfg = write(tmp_path / "no_opt.yml", {"_base_": "tiny.yml", "optimizer": None})
    with pytest.raises(ConfigError, match="no_opt.yml: missing key.*optimizer.*to train"):
        load_config(str(cfg))
    # Evaluation does not need an optimizer.
    assert load_config(str(cfg), "val").dic["model"]["type"] == "TopFormerSeg"


def test_malformed_opts(tiny_config):
    with pytest.raises(ConfigError, match="key=value.*'iters'"):
        load_config(str(tiny_config), opts=["iters"])


def test_dataset_info_from_registered_and_generic_datasets(tiny_config):
    assert dataset_info(load_config(str(tiny_config)))[:2] == (6, 255)
    camvid = load_config(str(REPO / "configs/camvid/fastscnn_camvid.yml"), "val")
    num_classes, ignore, names = dataset_info(camvid)
    assert (num_classes, ignore, names[0], names[-1]) == (11, 255, "sky", "bicyclist")


def test_class_names_length_is_checked(tmp_path, tiny_config):
    cfg = write(tmp_path / "names.yml", {"_base_": "tiny.yml", "class_names": ["a", "b"]})
    with pytest.raises(ConfigError, match="class_names has 2 entries for 6 classes"):
        dataset_info(load_config(str(cfg)))


@pytest.mark.parametrize("root", [None, "no/such/ADEChallengeData2016"])
def test_missing_dataset_root_fails_before_any_download(tmp_path, root):
    # Stock ADE20K would start a 1 GB download for either of these roots.
    cfg = REPO / "configs" / "ade20k" / "topformer_tiny_ade20k_512.yml"
    child = write(
        tmp_path / "ade.yml", {"_base_": str(cfg), "train_dataset": {"dataset_root": root}}
    )
    with pytest.raises(ConfigError, match="train_dataset.dataset_root (is not set|does not exist)"):
        load_config(str(child))
    assert not (tmp_path / "data").exists() and not (REPO / "data").exists()


def test_generated_datasets_need_no_root(tiny_config):
    assert load_config(str(tiny_config)).dic["train_dataset"].get("dataset_root") is None


def test_cosine_schedule_spans_the_iterations_after_the_warm_up(tmp_path, tiny_config):
    """CosineAnnealingDecay without ``T_max`` ends at ``eta_min`` on the last iteration,
    ``--iters`` included, as PolynomialDecay's ``decay_steps`` does in PaddleSeg."""
    from paddleseg_ext.config import build

    schedule = {"_inherited_": False, "type": "CosineAnnealingDecay", "learning_rate": 0.1,
                "eta_min": 0.001, "warmup_iters": 2, "warmup_start_lr": 0.0}  # fmt: skip
    path = write(tmp_path / "cosine.yml", {"_base_": "tiny.yml", "lr_scheduler": schedule})
    cfg = load_config(str(path), iters=10)
    assert cfg.dic["lr_scheduler"]["T_max"] == 8
    lr = build(cfg).lr_scheduler
    rates = []
    for _ in range(10):
        rates.append(lr.get_lr())
        lr.step()
    assert rates[2] == pytest.approx(0.1)  # the warm-up's end, the cosine's start
    assert lr.get_lr() == pytest.approx(0.001)  # after 10 iterations: eta_min
    explicit = write(tmp_path / "t_max.yml", {"_base_": "cosine.yml",
                                              "lr_scheduler": {"T_max": 3}})  # fmt: skip
    assert load_config(str(explicit), iters=10).dic["lr_scheduler"]["T_max"] == 3
