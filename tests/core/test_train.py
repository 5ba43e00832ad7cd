"""Training loop: checkpoints, exact resumption, evaluation hooks and VisualDL scalars."""

import glob
import json
import shutil

import numpy as np
import paddle
import pytest
import yaml
from helpers import TINY_CONFIG

from paddleseg_ext.config import load_config
from paddleseg_ext.core import train
from paddleseg_ext.core.checkpoint import list_checkpoints


def weights(path):
    return {k: np.asarray(v) for k, v in paddle.load(str(path)).items()}


def run(cfg_path, save_dir, **kwargs):
    cfg = load_config(str(cfg_path), iters=kwargs.pop("iters", None))
    return train(cfg, save_dir=str(save_dir), save_interval=3, log_iters=1, **kwargs)


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    """The reference: 6 uninterrupted iterations with checkpoints at 3 and 6."""
    root = tmp_path_factory.mktemp("full")
    cfg = root / "tiny.yml"
    cfg.write_text(yaml.safe_dump(TINY_CONFIG))
    run(cfg, root / "out")
    return cfg, root / "out"


def test_checkpoint_layout(full_run):
    _, out = full_run
    assert list_checkpoints(str(out)) == [3, 6]
    for it in (3, 6):
        for name in ("model.pdparams", "model.pdopt", "train_state.json"):
            assert (out / f"iter_{it}" / name).is_file()
    state = json.loads((out / "iter_6" / "train_state.json").read_text())
    assert state["iter"] == 6
    # Training moved the weights.
    w3, w6 = weights(out / "iter_3/model.pdparams"), weights(out / "iter_6/model.pdparams")
    assert any(not np.array_equal(w3[k], w6[k]) for k in w3)


def test_resume_continues_exactly(full_run, tmp_path, caplog):
    cfg, out = full_run
    # A run killed after its iter_3 save leaves exactly the reference's iter_3 folder.
    shutil.copytree(out / "iter_3", tmp_path / "iter_3")
    opt_saved = paddle.load(str(tmp_path / "iter_3" / "model.pdopt"))
    model = run(cfg, tmp_path, resume_model=str(tmp_path / "iter_3"))
    assert list_checkpoints(str(tmp_path)) == [3, 6]
    resumed, reference = (
        weights(tmp_path / "iter_6/model.pdparams"),
        weights(out / "iter_6/model.pdparams"),
    )
    for key in reference:
        np.testing.assert_allclose(resumed[key], reference[key], rtol=0, atol=1e-6, err_msg=key)
    # The restored schedule continued: the iteration-3 lr state was loaded, not restarted.
    assert opt_saved["LR_Scheduler"]["last_epoch"] == 3
    resumed_opt = paddle.load(str(tmp_path / "iter_6" / "model.pdopt"))
    assert resumed_opt["LR_Scheduler"]["last_epoch"] == 6
    assert isinstance(model, paddle.nn.Layer)


def test_resume_from_a_missing_checkpoint_is_named(tiny_config, tmp_path):
    from paddleseg_ext.core.checkpoint import load_checkpoint  # noqa: PLC0415

    with pytest.raises(FileNotFoundError, match="iter_9.*train_state.json missing"):
        load_checkpoint(str(tmp_path / "iter_9"), None, None)


def test_eval_best_model_and_vdl(tiny_config, tmp_path):
    from visualdl import LogReader  # noqa: PLC0415

    run(tiny_config, tmp_path, do_eval=True, use_vdl=True, keep_checkpoint_max=1)
    assert list_checkpoints(str(tmp_path)) == [6], "keep_checkpoint_max=1 keeps the newest"
    best = json.loads((tmp_path / "best_model" / "metrics.json").read_text())
    assert best["iter"] in (3, 6) and 0.0 <= best["mIoU"] <= 1.0
    assert (tmp_path / "best_model" / "model.pdparams").is_file()
    reader = LogReader(file_path=glob.glob(str(tmp_path / "vdl" / "*"))[0])
    tags = set(reader.get_tags()["scalar"])
    assert {"Train/loss", "Train/lr", "Evaluate/mIoU"} <= tags
    assert [rec.id for rec in reader.get_data("scalar", "Train/loss")] == [1, 2, 3, 4, 5, 6]
    assert [rec.id for rec in reader.get_data("scalar", "Evaluate/mIoU")] == [3, 6]


def test_auto_resume_picks_the_newest_complete_checkpoint(full_run, tmp_path):
    from paddleseg_ext.core.train import latest_checkpoint  # noqa: PLC0415

    _, out = full_run
    for name in ("iter_3", "iter_6"):
        shutil.copytree(out / name, tmp_path / name)
    # What a run killed while saving leaves: a temp folder and a folder with no state file.
    (tmp_path / "iter_9.tmp").mkdir()
    (tmp_path / "iter_12").mkdir()
    (tmp_path / "iter_12" / "model.pdparams").write_bytes(b"partial")
    assert latest_checkpoint(str(tmp_path)) == str(tmp_path / "iter_6")
    assert latest_checkpoint(str(tmp_path / "empty")) is None
