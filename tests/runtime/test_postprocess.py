"""Post-processing rules on hand-made label maps."""

from __future__ import annotations

import json

import numpy as np
import pytest
from seg_runtime.postprocess import PostProcessor


def label_map(counts: dict, side: int = 10, fill: int = 0) -> np.ndarray:
    """A side x side map holding ``counts[c]`` pixels of each class c, the rest ``fill``."""
    flat = np.full(side * side, fill, dtype=np.int64)
    start = 0
    for cls, count in counts.items():
        flat[start : start + count] = cls
        start += count
    return flat.reshape(side, side)


def counts_of(labels: np.ndarray, num_classes: int = 6) -> list:
    return np.bincount(labels.ravel(), minlength=num_classes).tolist()


NO_MIN = [None] * 6


def test_small_classes_become_background():
    pp = PostProcessor([None, 10, 12, 12, None, None], [], factor=1 / 3)
    out = pp(label_map({1: 3, 2: 3, 3: 4, 4: 2}))
    # 1: 3 < 10/3 -> removed; 2: 3 < 4 -> removed; 3: 4 is not < 4 -> kept; 4: no minimum.
    assert counts_of(out) == [88 + 6, 0, 0, 4, 2, 0]


def test_factor_and_background_are_configurable():
    labels = label_map({1: 5}, fill=2)  # class 1: 5 pixels, class 2: 95
    # 5 < 0.5 x 12: class 1 goes to the background (class 0).
    assert counts_of(PostProcessor([None, 12, None, None, None, None], [], factor=0.5)(labels)) \
        == [5, 0, 95, 0, 0, 0]  # fmt: skip
    assert counts_of(PostProcessor([None, 12, None, None, None, None], [], factor=0.4)(labels)) \
        == [0, 5, 95, 0, 0, 0]  # fmt: skip
    # The background class itself is never removed, however small.
    assert counts_of(PostProcessor([None, None, 99, None, None, None], [], background=2)(
        label_map({1: 5, 2: 1}, fill=3))) == [0, 5, 1, 94, 0, 0]  # fmt: skip


def test_exclusive_pair_keeps_the_larger_class():
    out = PostProcessor(NO_MIN, [[1, 2]])(label_map({1: 10, 2: 30}))
    assert counts_of(out) == [70, 0, 30, 0, 0, 0]


def test_every_conflicting_pair_is_resolved():
    out = PostProcessor(NO_MIN, [[1, 2], [1, 3]])(label_map({1: 30, 2: 20, 3: 10}))
    assert counts_of(out) == [70, 30, 0, 0, 0, 0]


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        # 1-2 and 2-3 exclusive, 1-3 compatible: the middle class loses to the largest...
        ({1: 30, 2: 20, 3: 10}, [60, 30, 0, 10, 0, 0]),
        # ...and when it is the largest, both ends lose.
        ({1: 20, 2: 30, 3: 10}, [70, 0, 30, 0, 0, 0]),
    ],
)
def test_chains_of_exclusive_pairs(counts, expected):
    out = PostProcessor(NO_MIN, [[1, 2], [2, 3]])(label_map(counts))
    assert counts_of(out) == expected


def test_ties_keep_the_lower_class_id():
    out = PostProcessor(NO_MIN, [[4, 2]])(label_map({4: 10, 2: 10}))
    assert counts_of(out) == [80 + 10, 0, 10, 0, 0, 0]


def test_size_rule_runs_first():
    # Class 1 is too small and goes; its exclusive partner 2 then has no conflict left.
    out = PostProcessor([None, 30, None, None, None, None], [[1, 2]])(label_map({1: 8, 2: 5}))
    assert counts_of(out) == [95, 0, 5, 0, 0, 0]


def test_from_stats_file_and_errors(tmp_path):
    stats = tmp_path / "stats.json"
    stats.write_text(json.dumps({"min_pixels": [None, 10, None], "exclusive_pairs": [[1, 2]]}))
    pp = PostProcessor.from_stats(str(stats), factor=0.5)
    assert pp.factor == 0.5 and pp.exclusive[2] == {1}
    with pytest.raises(ValueError, match="lack 'exclusive_pairs'"):
        PostProcessor.from_stats({"min_pixels": [None]})
    with pytest.raises(ValueError, match=r"labels hold ids outside \[0, 3\)"):
        pp(np.full((2, 2), 3))
    with pytest.raises(ValueError, match=r"exclusive pair \[1, 7\]: class 7 out of range"):
        PostProcessor([None] * 3, [[1, 7]])
    with pytest.raises(ValueError, match="background class 5"):
        PostProcessor([None] * 3, [], background=5)
