"""Post-processing from the training side: the ``postprocess:`` section, val and predict."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from helpers import TINY_CONFIG, load_tool

from paddleseg_ext.config import ConfigError, build, build_postprocess, load_config


def write(tmp_path, section=None, stats=None):
    config = dict(TINY_CONFIG)
    if section is not None:
        config["postprocess"] = section
    path = tmp_path / "tiny.yml"
    path.write_text(yaml.safe_dump(config))
    if stats is not None:
        (tmp_path / "stats.json").write_text(json.dumps(stats))
    return str(path)


# Every class but the background is "too small" whatever it covers: all pixels become 0.
ALL_TO_BACKGROUND = {"min_pixels": [None] + [10**9] * 5, "exclusive_pairs": []}


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"stats": "missing.json"}, "postprocess.stats: file not found: missing.json"),
        ({"factor": 0.5}, r"postprocess.stats: missing \(tools/analyze_dataset.py"),
        ({"stats": "STATS", "factr": 0.5}, "postprocess.factr: unexpected key; closest: factor"),
        ({"factor": "a third"}, "postprocess.factor: expected float, got 'a third'"),
        ({"stats": "STATS", "background": 9}, r"postprocess: background class 9 is not in"),
        ([1], "postprocess: expected a mapping"),
    ],
)
def test_bad_sections_are_named(section, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    if isinstance(section, dict) and section.get("stats") == "STATS":
        section["stats"] = str(tmp_path / "stats.json")
    # The section's keys and types fail in load_config, its statistics in build_postprocess.
    with pytest.raises(ConfigError, match=message):
        build_postprocess(load_config(write(tmp_path, section, ALL_TO_BACKGROUND), "val"))


def test_no_section_and_no_flag_means_no_postprocessing(tmp_path):
    assert build_postprocess(load_config(write(tmp_path), "val")) is None


def test_val_scores_the_postprocessed_labels(tmp_path):
    config = write(tmp_path, {"factor": 0.5}, ALL_TO_BACKGROUND)
    weights = tmp_path / "w.pdparams"
    import paddle  # noqa: PLC0415

    paddle.save(build(load_config(config, "val")).model.state_dict(), str(weights))
    metrics = load_tool("val").main(
        ["--config", config, "--model_path", str(weights), "--device", "cpu",
         "--postprocess", str(tmp_path / "stats.json")]
    )  # fmt: skip
    # Every prediction is background: accuracy = the background share of the labels.
    dataset = build(load_config(config, "val")).val_dataset
    labels = np.concatenate([np.asarray(dataset[i]["label"]).ravel() for i in range(len(dataset))])
    labels = labels[labels != 255]
    assert metrics["Acc"] == pytest.approx(float((labels == 0).mean()), abs=1e-9)
    assert all(v == 0 for v in metrics["class_IoU"][1:] if v == v)  # NaN for absent classes


def test_predict_writes_postprocessed_labels(tmp_path):
    import cv2  # noqa: PLC0415
    import paddle  # noqa: PLC0415

    config = write(tmp_path, {"stats": str(tmp_path / "stats.json")}, ALL_TO_BACKGROUND)
    weights = tmp_path / "w.pdparams"
    paddle.save(build(load_config(config, "val")).model.state_dict(), str(weights))
    image = tmp_path / "img.png"
    cv2.imwrite(str(image), np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8))
    written = load_tool("predict").main(
        ["--config", config, "--model_path", str(weights), "--image_path", str(image),
         "--save_dir", str(tmp_path / "out"), "--device", "cpu"]
    )  # fmt: skip
    assert (cv2.imread(written[0], cv2.IMREAD_UNCHANGED) == 0).all()
