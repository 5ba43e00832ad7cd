"""tools/train.py, val.py and predict.py end to end on a tiny synthetic run."""

import json
import sys

import cv2
import numpy as np
import pytest
from helpers import load_tool
from seg_runtime import color_palette
from seg_runtime.metrics import confusion_matrix, segmentation_metrics


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny config trained for 6 iterations by tools/train.py."""
    import yaml  # noqa: PLC0415
    from helpers import TINY_CONFIG  # noqa: PLC0415

    root = tmp_path_factory.mktemp("trained")
    cfg = root / "tiny.yml"
    cfg.write_text(yaml.safe_dump(TINY_CONFIG))
    argv = ["--config", str(cfg), "--device", "cpu", "--save_dir", str(root / "out")]
    load_tool("train").main(argv + ["--save_interval", "6", "--learning_rate", "0.01"])
    return cfg, root / "out" / "iter_6" / "model.pdparams"


def test_val_prints_table_and_writes_json(trained, tmp_path, capsys):
    cfg, weights = trained
    out = tmp_path / "metrics.json"
    metrics = load_tool("val").main(
        ["--config", str(cfg), "--model_path", str(weights), "--json", str(out)]
    )
    printed = capsys.readouterr().out
    assert "mIoU" in printed and "Kappa" in printed
    assert "| id | class" in printed and "disc" in printed.lower()
    saved = json.loads(out.read_text())
    assert saved["mIoU"] == pytest.approx(metrics["mIoU"])
    assert len(saved["class_IoU"]) == len(saved["class_names"]) == 6


def test_predict_pngs_agree_with_val_metrics(trained, tmp_path):
    """Labels written by predict.py, scored independently, give val.py's mIoU."""
    from paddleseg_ext.config import build, load_config  # noqa: PLC0415

    cfg, weights = trained
    val_set = build(load_config(str(cfg), "val")).val_dataset
    image_dir = tmp_path / "images"
    image_dir.mkdir()
    for img, _ in val_set.file_list:
        (image_dir / img.split("/")[-1]).write_bytes(open(img, "rb").read())
    written = load_tool("predict").main(
        ["--config", str(cfg), "--model_path", str(weights), "--image_path", str(image_dir),
         "--save_dir", str(tmp_path / "pred")]
    )  # fmt: skip
    assert len(written) == len(val_set.file_list)

    cm = np.zeros((6, 6), dtype=np.int64)
    palette = color_palette(6)
    for (img, gt_path), label_png in zip(val_set.file_list, written, strict=True):
        pred = cv2.imread(label_png, cv2.IMREAD_UNCHANGED)
        gt = cv2.imread(gt_path, cv2.IMREAD_UNCHANGED)
        assert pred.shape == gt.shape and pred.dtype == np.uint8 and pred.max() < 6
        colour = cv2.imread(label_png.replace("/labels/", "/pseudo_color/"))[..., ::-1]
        np.testing.assert_array_equal(colour, palette[pred])
        overlay = cv2.imread(label_png.replace("/labels/", "/overlay/"))
        assert overlay.shape == cv2.imread(img).shape
        cm += confusion_matrix(pred, gt, 6)
    metrics = load_tool("val").main(["--config", str(cfg), "--model_path", str(weights)])
    assert segmentation_metrics(cm)["mIoU"] == pytest.approx(metrics["mIoU"], abs=1e-9)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["val", "--config", "missing.yml", "--model_path", "x"],
         "Config file not found: missing.yml"),
        (["val", "--config", "{cfg}", "--model_path", "/nope/w.pdparams"],
         "weights not found: /nope/w.pdparams"),
        (["predict", "--config", "{cfg}", "--model_path", "{w}", "--image_path", "/nope"],
         "--image_path not found: /nope"),
        (["train", "--config", "{cfg}", "--opts", "iters"], "key=value, got 'iters'"),
    ],
)  # fmt: skip
def test_input_errors_exit_2_with_a_named_cause(trained, argv, message, monkeypatch, capsys):
    from paddleseg_ext.cli import run  # noqa: PLC0415

    cfg, weights = trained
    tool, *args = [a.format(cfg=cfg, w=weights) for a in argv]
    monkeypatch.setattr(sys, "argv", [tool, *args])
    with pytest.raises(SystemExit) as exit_info:
        run(load_tool(tool).main)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_mismatched_weights_are_rejected(trained, tmp_path):
    from paddleseg_ext.config import ConfigError  # noqa: PLC0415

    cfg, weights = trained
    with pytest.raises(ConfigError, match="iter_6/model.pdparams does not match the model"):
        load_tool("val").main(
            ["--config", str(cfg), "--model_path", str(weights), "--opts",
             "model.backbone.preset=small"]
        )  # fmt: skip


def test_val_refuses_a_missing_dataset_root(tmp_path):
    from helpers import REPO  # noqa: PLC0415

    from paddleseg_ext.config import ConfigError  # noqa: PLC0415

    cfg = str(REPO / "configs" / "ade20k" / "topformer_tiny_ade20k_512.yml")
    root = str(tmp_path / "ADEChallengeData2016")
    with pytest.raises(ConfigError, match=f"val_dataset.dataset_root does not exist: {root}"):
        load_tool("val").main(
            ["--config", cfg, "--model_path", "x", "--opts", f"val_dataset.dataset_root={root}"]
        )
    assert not (tmp_path / "ADEChallengeData2016").exists()
