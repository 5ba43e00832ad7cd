"""Loading a run's batches: RunSampler across epochs, the read-ahead thread, loader modes."""

import importlib
import threading

import numpy as np
import pytest
import yaml
from helpers import TINY_CONFIG

from paddleseg_ext.config import load_config
from paddleseg_ext.core import train
from paddleseg_ext.core.data import ResumableBatchSampler, RunSampler

# The module, which ``paddleseg_ext.core.train`` (the function) hides.
train_module = importlib.import_module("paddleseg_ext.core.train")


def test_run_sampler_spans_epochs_with_their_keys():
    epochs = ResumableBatchSampler(10, 3, seed=1)  # 3 batches per epoch
    run = list(RunSampler(epochs, 0, 7))
    keyed = [[(e, idx) for idx in batch] for e in range(3) for batch in epochs.epoch_batches(e)]
    expected = keyed[:7]
    assert run == expected and len(RunSampler(epochs, 0, 7)) == 7
    assert run[2] != run[5], "epochs are shuffled differently"


def test_run_sampler_resumes_mid_epoch_and_reads_again():
    epochs = ResumableBatchSampler(10, 3, seed=1)
    full = list(RunSampler(epochs, 0, 8))
    resumed = RunSampler(epochs, 4, 8)
    assert list(resumed) == full[4:] == list(resumed)
    assert list(RunSampler(epochs, 8, 8)) == [] and len(RunSampler(epochs, 9, 8)) == 0


def _loading_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "train-prefetch"]


def test_prefetched_keeps_order_and_raises_in_place():
    def load(i):
        if i == 3:
            raise ValueError("sample 3 is broken")
        return i * 10

    got = []
    with pytest.raises(ValueError, match="sample 3 is broken"):
        for value in train_module._prefetched(range(6), load):
            got.append(value)
    assert got == [0, 10, 20]
    assert not _loading_threads()


def test_prefetched_stops_its_thread_when_left_early():
    loaded = []
    batches = train_module._prefetched(range(1000), lambda i: loaded.append(i) or i, depth=2)
    assert next(batches) == 0
    batches.close()
    assert not _loading_threads()
    assert len(loaded) <= 4, "reads at most depth + 1 batches ahead"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("loading")
    cfg = root / "tiny.yml"
    # 8 images, batch 2: 4 iterations per epoch, so 6 iterations cross an epoch boundary.
    cfg.write_text(yaml.safe_dump(TINY_CONFIG))
    return cfg


def _weights(cfg, out, **kwargs):
    model = train(load_config(str(cfg)), save_dir=str(out), save_interval=6, log_iters=3, **kwargs)
    return {k: np.asarray(v) for k, v in model.state_dict().items()}


def test_thread_and_workers_train_the_same_weights(tiny, tmp_path, capsys):
    in_thread = _weights(tiny, tmp_path / "thread")
    assert "1 CPU math thread(s), loading in a thread" in capsys.readouterr().out
    with_workers = _weights(tiny, tmp_path / "workers", num_workers=2)
    assert "2 loader worker(s)" in capsys.readouterr().out
    for key, value in in_thread.items():
        np.testing.assert_array_equal(value, with_workers[key], err_msg=key)


def test_cpu_threads_are_checked():
    with pytest.raises(ValueError, match="num_threads must be >= 1"):
        train_module.set_cpu_threads(0)
