"""Label post-processing from training-set statistics (the LPCVC 2023 runner-up's rules).

Two rules, applied in this order to one predicted label map:

(a) minimum size: a predicted class with fewer pixels than ``factor`` times the smallest
    area it ever covers in a training label becomes background;
(b) mutually exclusive classes: classes that never appear together in a training label
    cannot both stay. The present classes are visited from the largest to the smallest
    (equal counts: the lower class id first); a class is kept unless it is exclusive with
    one already kept, else it becomes background. Every conflicting pair is thus resolved,
    the smaller class losing, and a chain A-B-C (A, C compatible) keeps A and C when B is
    the smallest of A and B.

The statistics are those ``tools/analyze_dataset.py`` writes (``min_pixels``,
``exclusive_pairs``); pixel counts are compared at the prediction's own resolution, so
predict at the label resolution the statistics were taken at.
"""

import json
from typing import Dict, Iterable, Optional, Sequence, Union

import numpy as np

# Rule (a)'s default threshold, as a share of ``min_pixels`` (the runner-up's 1/3).
MIN_SIZE_FACTOR = 1 / 3


class PostProcessor:
    """Applies the minimum-size and mutual-exclusion rules to (H, W) class-id maps.

    Args:
        min_pixels: Per class, the smallest pixel count in a training label where it appears
            (None: never seen, the rule does not apply).
        exclusive_pairs: Class pairs that never share a training label.
        factor: Rule (a) threshold as a share of ``min_pixels`` (the runner-up used 1/3).
        background: The class that removed pixels become; never removed itself.
    """

    def __init__(
        self,
        min_pixels: Sequence[Optional[int]],
        exclusive_pairs: Iterable[Sequence[int]],
        factor: float = MIN_SIZE_FACTOR,
        background: int = 0,
    ) -> None:
        self.num_classes = len(min_pixels)
        if not 0 <= background < self.num_classes:
            raise ValueError(f"background class {background} is not in [0, {self.num_classes})")
        if factor < 0:
            raise ValueError(f"factor must be >= 0, got {factor}")
        self.min_pixels = list(min_pixels)
        self.factor = factor
        self.background = background
        self.exclusive: Dict[int, set] = {c: set() for c in range(self.num_classes)}
        for pair in exclusive_pairs:
            a, b = (int(v) for v in pair)
            for c in (a, b):
                if not 0 <= c < self.num_classes:
                    raise ValueError(f"exclusive pair {list(pair)}: class {c} out of range")
            self.exclusive[a].add(b)
            self.exclusive[b].add(a)

    @classmethod
    def from_stats(
        cls, stats: Union[str, dict], factor: float = MIN_SIZE_FACTOR, background: int = 0
    ) -> "PostProcessor":
        """Builds one from a statistics dict or JSON file (``min_pixels``, ``exclusive_pairs``)."""
        if isinstance(stats, str):
            with open(stats) as f:
                stats = json.load(f)
        for key in ("min_pixels", "exclusive_pairs"):
            if key not in stats:
                raise ValueError(f"post-processing statistics lack {key!r}")
        return cls(stats["min_pixels"], stats["exclusive_pairs"], factor, background)

    def __call__(self, labels: np.ndarray) -> np.ndarray:
        """Returns a post-processed copy of ``labels`` (H, W)."""
        out = np.array(labels, copy=True)
        if out.size and (out.min() < 0 or out.max() >= self.num_classes):
            raise ValueError(f"labels hold ids outside [0, {self.num_classes})")
        counts = np.bincount(out.ravel(), minlength=self.num_classes)
        for cls, count in enumerate(counts):  # (a) minimum size
            floor = self.min_pixels[cls]
            if count and cls != self.background and floor is not None:
                if count < self.factor * floor:
                    out[out == cls] = self.background
                    counts[self.background] += count
                    counts[cls] = 0
        present = [c for c in range(self.num_classes) if counts[c] and c != self.background]
        kept: set = set()
        for cls in sorted(present, key=lambda c: (-counts[c], c)):  # (b) exclusion
            if self.exclusive[cls] & kept:
                out[out == cls] = self.background
            else:
                kept.add(cls)
        return out
