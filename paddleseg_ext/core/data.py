"""Deterministic, resumable data feeding.

Every sample's augmentation is seeded from ``(seed, epoch, index)`` and the shuffle order
from ``(seed, epoch)``, so a run resumed at iteration N sees exactly the batches and
augmentations the uninterrupted run saw, whatever the number of loader workers. The epoch
travels with each index (:class:`RunSampler` yields ``(epoch, index)`` keys), so loader
workers that live through the whole run need no per-epoch state.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import numpy as np
import paddle
from paddleseg.utils import logger


class SampleError(ValueError):
    """A dataset sample that cannot be read or transformed; the message names its files."""


def sample_files(dataset: paddle.io.Dataset, idx: int) -> str:
    """``image`` or ``image, label`` of sample ``idx``, for messages (``#idx`` without a list)."""
    file_list = getattr(dataset, "file_list", None)
    if not file_list or not 0 <= idx < len(file_list):
        return f"#{idx}"
    return ", ".join(str(path) for path in file_list[idx] if path)


def load_sample(dataset: paddle.io.Dataset, idx: int) -> dict:
    """``dataset[idx]``, with any read or transform failure raised as a :class:`SampleError`.

    PaddleSeg reports an unreadable image as ``AttributeError: 'NoneType' object has no
    attribute 'astype'`` and a broken label as a PIL traceback; both name no file.
    """
    try:
        return dataset[idx]
    except Exception as err:  # noqa: BLE001  (every failure is re-raised, with the file names)
        raise SampleError(
            f"cannot load {sample_files(dataset, idx)}: {type(err).__name__}: {err}"
        ) from err


class SeededDataset(paddle.io.Dataset):
    """Wraps a PaddleSeg dataset: seeds ``random``/``numpy`` per sample, returns (img, label).

    Indexed by ``(epoch, index)`` keys. The seeding uses the global ``random`` and
    ``numpy.random`` states (PaddleSeg's transforms draw from them), so samples must be
    loaded by one thread per process.

    Args:
        dataset: A PaddleSeg dataset returning dicts with ``img`` and ``label``.
        seed: Base seed.
        skip_bad: On a sample that fails to load, log it and use the next loadable sample
            in list order instead of raising :class:`SampleError`.
        bad: Indices known to be broken (``data_check``); with ``skip_bad`` they are
            replaced like failing samples, without a new warning.
    """

    def __init__(
        self,
        dataset: paddle.io.Dataset,
        seed: int,
        skip_bad: bool = False,
        bad: set[int] | None = None,
    ):
        super().__init__()
        self.dataset = dataset
        self.seed = seed
        self.skip_bad = skip_bad
        self.bad = frozenset(bad or ())

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        epoch, idx = key
        sample_seed = hash((self.seed, int(epoch), int(idx))) % (2**32)
        n = len(self.dataset)
        for offset in range(n if self.skip_bad else 1):
            pick = (int(idx) + offset) % n
            if self.skip_bad and pick in self.bad:
                continue
            random.seed(sample_seed)
            np.random.seed(sample_seed)
            try:
                data = load_sample(self.dataset, pick)
            except SampleError as err:
                if not self.skip_bad:
                    raise
                logger.warning(f"--skip_bad: sample {pick} is skipped: {err}")
                continue
            return data["img"].astype("float32"), data["label"].astype("int64")
        raise SampleError(f"--skip_bad: none of the {n} samples loads")


class ResumableBatchSampler:
    """Per-epoch batch order: a seeded shuffle, rank sharding and a start offset.

    :class:`RunSampler` walks it across epochs for the run's loader.

    Args:
        num_samples: Dataset length.
        batch_size: Samples per batch on each rank.
        shuffle: Shuffle with ``numpy.random.default_rng(seed + epoch)``.
        seed: Base seed.
        rank, world_size: Data-parallel position; each rank gets a disjoint shard, the
            shuffled order padded by repetition to a multiple of ``world_size``.
        drop_last: Drop the last incomplete batch of each epoch.
    """

    def __init__(
        self,
        num_samples: int,
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = True,
    ):
        if num_samples < batch_size * world_size and drop_last:
            raise ValueError(
                f"{num_samples} training samples cannot fill one batch of {batch_size} "
                f"on each of {world_size} rank(s)"
            )
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.drop_last = drop_last

    def _shard(self, epoch: int) -> np.ndarray:
        if self.shuffle:
            order = np.random.default_rng(self.seed + epoch).permutation(self.num_samples)
        else:
            order = np.arange(self.num_samples)
        per_rank = -(-self.num_samples // self.world_size)
        order = np.resize(order, per_rank * self.world_size)
        return order[self.rank :: self.world_size]

    def __len__(self) -> int:
        per_rank = -(-self.num_samples // self.world_size)
        if self.drop_last:
            return per_rank // self.batch_size
        return -(-per_rank // self.batch_size)

    def epoch_batches(self, epoch: int, skip_batches: int = 0) -> Iterator[list[int]]:
        """Epoch ``epoch``'s batches of sample indices, its first ``skip_batches`` left out."""
        shard = self._shard(epoch)
        for b in range(skip_batches, len(self)):
            yield shard[b * self.batch_size : (b + 1) * self.batch_size].tolist()


class RunSampler(paddle.io.BatchSampler):
    """The batches of iterations ``start + 1 .. total`` of a run, across epoch boundaries.

    Each batch is a list of ``(epoch, index)`` keys for :class:`SeededDataset`. One loader
    (and its workers) can then serve the whole run. Every iteration restarts from the
    same position, so the batches can be read again (see ``train._batches``).

    Args:
        epochs: The per-epoch order.
        start: Iterations already done (a resumed run's checkpoint iteration).
        total: The run's last iteration.
    """

    def __init__(self, epochs: ResumableBatchSampler, start: int, total: int):
        self.epochs = epochs
        self.start = start
        self.total = total

    def __len__(self) -> int:
        return max(self.total - self.start, 0)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        epoch, skip = divmod(self.start, len(self.epochs))
        remaining = len(self)
        while remaining > 0:
            for indices in self.epochs.epoch_batches(epoch, skip):
                yield [(epoch, idx) for idx in indices]
                remaining -= 1
                if remaining == 0:
                    return
            epoch, skip = epoch + 1, 0
