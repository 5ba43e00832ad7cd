"""Dataset checks (paddleseg_ext.data_check, tools/check_dataset.py) on a hand-broken dataset.

The train split holds one sample of each per-sample problem kind among good ones; the val
split a line PaddleSeg rejects. The cheap check finds everything but ``truncated`` and
``label_values``, which need the pixels decoded (``--full``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import CAMVID, REPO, load_tool, needs_camvid
from PIL import Image
from reliability.broken_dataset import (
    BAD_VALUE_PIXELS,
    NUM_CLASSES,
    TRAIN_LINES,
    H,
    W,
    index_label,
    random_image,
    write_broken_dataset,
    write_config,
)

from paddleseg_ext.config import ConfigError, load_config
from paddleseg_ext.data_check import FULL_ONLY_KINDS, check_samples, check_split
from paddleseg_ext.datasets.lpcvc import LPCVC2023


@pytest.fixture(scope="module")
def broken(tmp_path_factory) -> Path:
    """Root of the broken dataset; ``broken.yml`` and ``clean.yml`` configs beside it."""
    base = tmp_path_factory.mktemp("check")
    root = base / "data"
    write_broken_dataset(root)
    write_config(base / "broken.yml", root, "train.txt", "val.txt")
    write_config(base / "clean.yml", root, "clean_train.txt", "clean_val.txt")
    return root


def found(report) -> set[tuple[str, tuple[str, ...], int | None]]:
    return {(p.kind, p.files, p.index) for p in report.problems}


def expected_train(root: Path, full: bool) -> set[tuple[str, tuple[str, ...], int | None]]:
    def f(rel: str) -> str:
        return os.path.join(str(root), rel)

    cheap = {
        ("missing", (f("images/missing.png"),), 2),
        ("unreadable", (f("images/3.png"),), 3),
        ("size_mismatch", (f("images/5.png"), f("labels/5.png")), 5),
        ("color_label", (f("labels/7.png"),), 7),
        ("duplicate", (f("images/0.png"), f("labels/0.png")), 8),
    }
    full_only = {
        ("truncated", (f("images/4.png"),), 4),
        ("label_values", (f("labels/6.png"),), 6),
    }
    return cheap | full_only if full else cheap


@pytest.mark.parametrize("full", [False, True], ids=["cheap", "full"])
def test_train_split_problems_found_exactly(broken, full):
    cfg = load_config(str(broken.parent / "broken.yml"), "model")
    report = check_split(cfg, "train", full=full, progress=False)
    assert report.num_samples == len(TRAIN_LINES)
    assert found(report) == expected_train(broken, full)
    assert report.bad_indices == {2, 3, 5, 7, 8} | ({4, 6} if full else set())
    assert not report.ok and not report.warnings
    if not full:  # the cheap check misses exactly the kinds documented as full-only
        missed = expected_train(broken, full=True) - found(report)
        assert {kind for kind, _, _ in missed} == set(FULL_ONLY_KINDS)
    if full:
        (values,) = [p for p in report.problems if p.kind == "label_values"]
        assert f"{BAD_VALUE_PIXELS} px with values outside [0, {NUM_CLASSES})" in values.message
        assert f"7 ({BAD_VALUE_PIXELS} px)" in values.message and "255 (" not in values.message
    (colour,) = [p for p in report.problems if p.kind == "color_label"]
    assert "would fail" in colour.message  # PaddleSeg's stock reader keeps 3 channels


def test_rejected_list_line_named_and_other_lines_checked(broken):
    """PaddleSeg refuses the whole list over one line; the check names the line."""
    cfg = load_config(str(broken.parent / "broken.yml"), "model")
    report = check_split(cfg, "val", full=True, progress=False)
    (problem,) = report.problems
    assert problem.kind == "malformed_line" and problem.index is None
    assert problem.files == (str(broken / "val.txt"),)
    assert problem.message.startswith("line 2: ") and "1 field(s)" in problem.message
    assert report.num_samples == 2 and not report.ok and report.bad_indices == set()


def test_empty_split_and_config_errors(broken, tmp_path):
    (broken / "empty.txt").write_text("")
    cfg = load_config(
        str(write_config(tmp_path / "empty.yml", broken, "clean_train.txt", "empty.txt")), "model"
    )
    report = check_split(cfg, "val", progress=False)
    assert found(report) == {("empty_split", (str(broken / "empty.txt"),), None)}
    (broken / "blank.txt").write_text("\n")  # PaddleSeg rejects a blank line
    cfg.dic["val_dataset"]["val_path"] = str(broken / "blank.txt")
    report = check_split(cfg, "val", progress=False)
    assert [(p.kind, p.message) for p in report.problems] == [
        ("malformed_line", "line 1: expected 'image label', found a blank line"),
        ("empty_split", "the val split is empty"),
    ]
    with pytest.raises(ConfigError, match="split must be one of"):
        check_split(cfg, "test")
    cfg.dic["train_dataset"]["train_path"] = str(broken / "no_such_list.txt")
    with pytest.raises(ConfigError, match="no_such_list.txt"):
        check_split(cfg, "train")


def test_exif_rotation_sizes_as_opencv_loads_them(tmp_path):
    """OpenCV turns an image by its EXIF orientation; labels are compared with that size."""
    rng = np.random.default_rng(1)
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    exif = Image.Exif()
    exif[0x0112] = 6  # turn 90 degrees clockwise on display
    # stored 24x32, displayed 32x24 like its label: fine for the loader
    random_image(rng, H, W).save(tmp_path / "images/upright.jpg", exif=exif)
    # stored 32x24 like its label, but loaded turned to 24x32: a mismatch for the loader
    random_image(rng).save(tmp_path / "images/turned.jpg", exif=exif)
    for name in ("upright", "turned"):
        Image.fromarray(index_label(rng), mode="L").save(tmp_path / f"labels/{name}.png")
    assert cv2.imread(str(tmp_path / "images/upright.jpg")).shape[:2] == (H, W)
    assert cv2.imread(str(tmp_path / "images/turned.jpg")).shape[:2] == (W, H)
    (tmp_path / "train.txt").write_text(
        "images/upright.jpg labels/upright.png\nimages/turned.jpg labels/turned.png\n"
    )
    write_config(tmp_path / "exif.yml", tmp_path, "train.txt", "train.txt")
    report = check_split(load_config(str(tmp_path / "exif.yml"), "model"), "train", progress=False)
    (problem,) = report.problems
    assert (problem.kind, problem.index) == ("size_mismatch", 1)
    assert "image 24x32 as loaded (EXIF orientation 6" in problem.message
    assert "label 32x24" in problem.message


def test_lpcvc_colour_label_reads_channel_zero(tmp_path):
    """LPCVC keeps channel 0 of a colour label: a warning, and its values are checked."""
    rng = np.random.default_rng(2)
    for folder in ("IMG/train", "GT_Updated/train"):
        (tmp_path / folder).mkdir(parents=True)
    for name, first in (("a", 13), ("b", 20)):  # 14 classes: 20 is out of range
        random_image(rng).save(tmp_path / f"IMG/train/{name}.png")
        rgb = np.full((H, W, 3), 200, dtype=np.uint8)
        rgb[..., 0] = first
        Image.fromarray(rgb, mode="RGB").save(tmp_path / f"GT_Updated/train/{name}.png")
    dataset = LPCVC2023(transforms=[], dataset_root=str(tmp_path))
    cheap = check_samples(dataset, progress=False)
    assert [(p.kind, p.index, p.severity) for p in cheap.problems] == [
        ("color_label", 0, "warning"),
        ("color_label", 1, "warning"),
    ]
    assert "channel 0 would be read" in cheap.problems[0].message
    assert cheap.ok and cheap.bad_indices == set()
    full = check_samples(dataset, full=True, progress=False)
    (values,) = full.errors
    assert (values.kind, values.index) == ("label_values", 1)
    assert f"20 ({H * W} px)" in values.message
    assert full.bad_indices == {1}


def test_tool_end_to_end(broken, tmp_path):
    """Exit 1 on the broken dataset with the listing, the table and the JSON; 0 when clean."""
    out = tmp_path / "report.json"
    proc = subprocess.run(
        [sys.executable, str(REPO / "tools/check_dataset.py"), "--config",
         str(broken.parent / "broken.yml"), "--full", "--json", str(out)],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    # A crash exits 1 too: the table shows the run got to the end.
    assert "| split | samples | errors | warnings |" in proc.stdout, proc.stderr
    assert "missing (1)" in proc.stdout and "images/missing.png: image not found" in proc.stdout
    assert "check train" not in proc.stderr  # no progress bar for a small list off a terminal
    saved = json.loads(out.read_text())
    train, val = saved["splits"]
    assert train["counts"] == {
        "missing": 1,
        "unreadable": 1,
        "truncated": 1,
        "size_mismatch": 1,
        "label_values": 1,
        "color_label": 1,
        "duplicate": 1,
    }
    assert train["bad_indices"] == [2, 3, 4, 5, 6, 7, 8]
    assert val["counts"] == {"malformed_line": 1} and not val["ok"]

    reports = load_tool("check_dataset").main(
        ["--config", str(broken.parent / "clean.yml"), "--full"]
    )
    assert [(r.split, r.num_samples, r.problems) for r in reports] == [
        ("train", 3, []),
        ("val", 1, []),
    ]


@needs_camvid
def test_camvid_cheap_check_is_clean():
    cfg = load_config(
        str(REPO / "configs/camvid/topformer_tiny_camvid.yml"),
        "model",
        opts=[
            f"{split}_dataset.{key}={value}"
            for split in ("train", "val")
            for key, value in (
                ("dataset_root", CAMVID),
                (f"{split}_path", CAMVID / f"{split}.txt"),
            )
        ],
    )
    for split in ("train", "val"):
        report = check_split(cfg, split, progress=False)
        lines = (CAMVID / f"{split}.txt").read_text().splitlines()
        assert report.num_samples == len(lines)
        assert report.problems == [], [(p.kind, p.files, p.message) for p in report.problems]
