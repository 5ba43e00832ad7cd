"""ResumableBatchSampler: deterministic order, disjoint shards, exact skipping."""

import numpy as np
import pytest

from paddleseg_ext.core.data import ResumableBatchSampler


def batches(sampler, epoch, skip=0):
    return list(sampler.epoch_batches(epoch, skip))


def test_same_epoch_same_order_and_epochs_differ():
    a = ResumableBatchSampler(10, 3, seed=1)
    b = ResumableBatchSampler(10, 3, seed=1)
    assert batches(a, 2) == batches(b, 2)
    assert batches(a, 2) != batches(a, 3)
    assert len(a) == 3 and all(len(batch) == 3 for batch in batches(a, 0))


def test_skip_resumes_mid_epoch():
    s = ResumableBatchSampler(20, 4, seed=0)
    assert batches(s, 1, skip=2) == batches(s, 1)[2:]


def test_ranks_get_disjoint_shards_covering_the_data():
    shards = [batches(ResumableBatchSampler(8, 2, rank=r, world_size=2, seed=3), 0) for r in (0, 1)]
    flat = [np.concatenate(s) for s in shards]
    assert set(flat[0]).isdisjoint(flat[1])
    assert sorted(np.concatenate(flat)) == list(range(8))


def test_too_few_samples_is_explained():
    with pytest.raises(
        ValueError, match="3 training samples cannot fill one batch of 2 on each of 2"
    ):
        ResumableBatchSampler(3, 2, world_size=2)
