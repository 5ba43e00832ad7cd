"""The CamVid config trains for 20 iterations and validates with a named per-class table."""

import pytest
from helpers import CAMVID, REPO, load_tool, needs_camvid

CONFIG = str(REPO / "configs" / "camvid" / "fastscnn_camvid.yml")


@needs_camvid
@pytest.mark.slow
def test_camvid_trains_20_iters_and_validates(tmp_path, capsys):
    val_list = tmp_path / "val3.txt"
    val_list.write_text("".join((CAMVID / "val.txt").read_text().splitlines(True)[:3]))
    opts = [
        f"train_dataset.dataset_root={CAMVID}",
        f"train_dataset.train_path={CAMVID / 'train.txt'}",
        f"val_dataset.dataset_root={CAMVID}",
        f"val_dataset.val_path={val_list}",
    ]
    common = ["--config", CONFIG, "--device", "cpu"]
    load_tool("train").main(
        common + ["--iters", "20", "--batch_size", "2", "--save_interval", "20",
                  "--log_iters", "10", "--save_dir", str(tmp_path / "out"), "--opts", *opts]
    )  # fmt: skip
    logs = capsys.readouterr().out
    assert "iter: 20/20" in logs
    metrics = load_tool("val").main(
        common + ["--model_path", str(tmp_path / "out" / "iter_20"), "--opts", *opts[2:]]
    )
    table = capsys.readouterr().out
    for name in ("sky", "building", "pedestrian", "bicyclist"):
        assert f"| {name}" in table
    assert 0.0 <= metrics["Acc"] <= 1.0 and len(metrics["class_IoU"]) == 11
