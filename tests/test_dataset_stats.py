"""Label statistics (tools/analyze_dataset.py) on hand-made labels and a generated dataset."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import yaml
from helpers import TINY_CONFIG, TINY_SHAPES, load_tool
from PIL import Image

from paddleseg_ext.dataset_stats import label_statistics


def write_labels(folder, arrays) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, array in enumerate(arrays):
        path = folder / f"{i}.png"
        Image.fromarray(np.asarray(array, dtype=np.uint8), mode="L").save(path)
        paths.append(str(path))
    return paths


def test_statistics_of_hand_made_labels(tmp_path):
    a = np.array([[0, 0, 1, 1], [0, 0, 1, 255], [2, 2, 2, 2], [0, 0, 0, 0]])  # 0:8 1:3 2:4 255:1
    b = np.array([[0, 0, 0, 0], [0, 3, 3, 3], [0, 0, 0, 0], [0, 0, 0, 0]])  # 0:13 3:3
    c = np.array([[1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 3, 3], [1, 1, 1, 1]])  # 1:14 3:2
    stats = label_statistics(write_labels(tmp_path, [a, b, c]), 5, progress=False)
    assert stats["num_images"] == 3
    assert stats["pixel_totals"] == [21, 17, 4, 5, 0]
    assert stats["image_counts"] == [2, 2, 1, 2, 0]
    assert stats["min_pixels"] == [8, 3, 4, 2, None]
    cooc = np.array(stats["cooccurrence"])
    assert cooc[0, 1] == 1 and cooc[0, 3] == 1 and cooc[1, 3] == 1 and cooc[2, 3] == 0
    # Seen classes 0-3; never together: 2 with 3 only (class 4 never appears: no pair).
    assert stats["exclusive_pairs"] == [[2, 3]]


def test_an_id_outside_the_classes_names_the_file(tmp_path):
    paths = write_labels(tmp_path, [np.zeros((2, 2)), np.full((2, 2), 7)])
    with pytest.raises(ValueError, match=r"1.png: class id 7 outside \[0, 5\)"):
        label_statistics(paths, 5, progress=False)


def test_tool_on_a_generated_dataset(tmp_path, capsys):
    config = tmp_path / "shapes.yml"
    config.write_text(yaml.safe_dump(TINY_CONFIG))
    out = tmp_path / "stats" / "shapes.json"
    stats = load_tool("analyze_dataset").main(["--config", str(config), "--out", str(out)])
    assert json.loads(out.read_text()) == stats
    png = out.with_name("shapes_cooccurrence.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = capsys.readouterr().out
    assert "background" in printed and "mutually exclusive pairs" in printed
    # Independent count: every label file read with OpenCV.
    from paddleseg_ext.config import build, load_config  # noqa: PLC0415

    dataset = build(load_config(str(config), "val")).train_dataset
    labels = [cv2.imread(pair[1], cv2.IMREAD_UNCHANGED) for pair in dataset.file_list]
    assert stats["num_images"] == len(labels) == TINY_SHAPES["num_train"]
    expected = np.bincount(np.concatenate([lab.ravel() for lab in labels]), minlength=6)
    assert stats["pixel_totals"] == expected.tolist()
    assert np.diag(stats["cooccurrence"]).tolist() == stats["image_counts"]
