"""Label statistics of a dataset split: class areas, co-occurrence, mutually exclusive pairs.

``tools/analyze_dataset.py`` writes them as JSON; ``seg_runtime.postprocess.PostProcessor``
reads ``min_pixels`` and ``exclusive_pairs`` from that file.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from paddleseg.cvlibs import Config
from seg_runtime.media import read_index_label
from tqdm import tqdm

from .config import ConfigError, build, check_dataset_root, dataset_info


def split_label_files(cfg: Config, split: str) -> list[str]:
    """The label files of ``{split}_dataset`` (any dataset with PaddleSeg's ``file_list``)."""
    if split not in ("train", "val"):
        raise ConfigError(f"--split must be train or val, got {split!r}")
    if not cfg.dic.get(f"{split}_dataset"):
        raise ConfigError(f"the config has no {split}_dataset")
    check_dataset_root(cfg, split)
    dataset = getattr(build(cfg), f"{split}_dataset")
    files = [pair[1] for pair in getattr(dataset, "file_list", [])]
    if not files:
        raise ConfigError(f"{split}_dataset lists no labelled image")
    return files


def label_statistics(
    label_files: Sequence[str], num_classes: int, ignore_index: int = 255, progress: bool = True
) -> dict:
    """Per-class statistics over label maps.

    Returns:
        ``pixel_totals``, ``image_counts`` and ``min_pixels`` (the smallest area of the class
        in a label where it appears; None if it never does) per class; ``cooccurrence``
        (C x C: number of labels holding both classes; the diagonal is ``image_counts``);
        ``exclusive_pairs``: ``[a, b]`` (a < b) of classes that each appear somewhere but
        never in the same label; ``num_images``.

    Raises:
        ValueError: A label holds an id outside [0, num_classes) other than ``ignore_index``.
    """
    totals = np.zeros(num_classes, dtype=np.int64)
    minimum = np.full(num_classes, np.iinfo(np.int64).max, dtype=np.int64)
    cooccurrence = np.zeros((num_classes, num_classes), dtype=np.int64)
    for path in tqdm(label_files, desc="labels", unit="img", disable=not progress):
        label = read_index_label(path).ravel()
        label = label[label != ignore_index]
        if label.size and label.max() >= num_classes:
            raise ValueError(
                f"{path}: class id {int(label.max())} outside [0, {num_classes}) "
                f"(ignore index {ignore_index})"
            )
        counts = np.bincount(label, minlength=num_classes)
        present = counts > 0
        totals += counts
        minimum[present] = np.minimum(minimum[present], counts[present])
        cooccurrence += np.outer(present, present)
    image_counts = np.diag(cooccurrence)
    seen = np.flatnonzero(image_counts)
    exclusive = [
        [int(a), int(b)]
        for i, a in enumerate(seen)
        for b in seen[i + 1 :]
        if not cooccurrence[a, b]
    ]
    return {
        "num_images": len(label_files),
        "num_classes": num_classes,
        "pixel_totals": totals.tolist(),
        "image_counts": image_counts.tolist(),
        "min_pixels": [int(m) if c else None for m, c in zip(minimum, image_counts, strict=True)],
        "cooccurrence": cooccurrence.tolist(),
        "exclusive_pairs": exclusive,
    }


def dataset_statistics(cfg: Config, split: str = "train", progress: bool = True) -> dict:
    """:func:`label_statistics` of a config's split, with the class names and the split."""
    num_classes, ignore_index, class_names = dataset_info(cfg, split)
    stats = label_statistics(split_label_files(cfg, split), num_classes, ignore_index, progress)
    return {"split": split, "class_names": class_names, "ignore_index": ignore_index, **stats}


def format_table(stats: dict) -> str:
    """A readable per-class table and the exclusive pairs."""
    names = stats["class_names"]
    width = max(len(n) for n in names)
    total = sum(stats["pixel_totals"]) or 1
    header = f"{'class':<{width}}  {'pixels':>12}  {'share':>7}  {'images':>6}  {'min px':>8}"
    lines = [f"{stats['num_images']} label(s), split {stats['split']}", header]
    for i, name in enumerate(names):
        minimum = stats["min_pixels"][i]
        lines.append(
            f"{name:<{width}}  {stats['pixel_totals'][i]:>12}  "
            f"{100 * stats['pixel_totals'][i] / total:>6.2f}%  {stats['image_counts'][i]:>6}  "
            f"{'-' if minimum is None else minimum:>8}"
        )
    pairs = ", ".join(f"{names[a]}/{names[b]}" for a, b in stats["exclusive_pairs"])
    lines.append(f"mutually exclusive pairs ({len(stats['exclusive_pairs'])}): {pairs or 'none'}")
    return "\n".join(lines)


def plot_cooccurrence(stats: dict, path: str) -> None:
    """Saves a PNG heatmap of the co-occurrence matrix (share of images of the row class)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cooc = np.asarray(stats["cooccurrence"], dtype=np.float64)
    counts = np.maximum(np.diag(cooc), 1)[:, None]
    names = stats["class_names"]
    size = max(5, 0.45 * len(names) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    image = ax.imshow(cooc / counts, cmap="viridis", vmin=0, vmax=1)
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set_title("images with both classes / images with the row class")
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
