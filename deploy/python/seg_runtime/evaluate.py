"""Scoring exported models on labelled images: the metrics of ``tools/val.py`` per model, and
how often the labels of two models agree.

The models are plain callables (an input -> a label map), so any backend, precision or head
is scored the same way, and labels computed elsewhere (in another process or environment)
are scored by looking them up by index.
"""

from typing import Callable, Dict, Iterable, Mapping, Optional, Sequence, Tuple

import numpy as np

from .metrics import SegMetricAccumulator, resize_nearest

__all__ = ["evaluate_export"]


def _label_map(labels: np.ndarray, name: str) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim > 2:
        if int(np.prod(labels.shape[:-2])) != 1:
            raise ValueError(f"model {name!r} returned {labels.shape}: expected one label map")
        labels = labels.reshape(labels.shape[-2:])
    return labels


def evaluate_export(
    models: Mapping[str, Callable[[object], np.ndarray]],
    samples: Iterable[Tuple[object, np.ndarray]],
    num_classes: int,
    ignore_index: Optional[int] = 255,
    pairs: Optional[Sequence[Tuple[str, str]]] = None,
) -> Dict[str, Dict]:
    """Scores every model on every (input, label) sample.

    Args:
        models: Name -> callable taking a sample's input and returning its labels, (H, W)
            or with leading axes of size 1. Labels of another size than the ground truth are
            resized to it (nearest), as ``tools/val.py`` scores a prediction.
        samples: (input, ground-truth label map) pairs; the input is whatever the models
            take (a preprocessed array, an image, an index into precomputed labels).
        num_classes: Classes of the metrics.
        ignore_index: Ground-truth value left out of the metrics.
        pairs: (model, reference) names whose label agreement to report; by default every
            other model against the first.

    Returns:
        ``{"models": {name: {"mIoU", "Acc", "class_IoU", "images"}}, "agreement":
        {"A vs B": {"mean", "min_image"}}}``: agreement is the fraction of pixels where the
        two models give the same label, averaged over the images and on the worst image.

    Raises:
        ValueError: On no models, no samples, an unknown pair name or a label map that is
            not one image.
    """
    names = list(models)
    if not names:
        raise ValueError("evaluate_export needs at least one model")
    if pairs is None:
        pairs = [(name, names[0]) for name in names[1:]]
    for pair in pairs:
        for name in pair:
            if name not in models:
                raise ValueError(f"agreement pair {pair}: no model named {name!r}")
    accumulators = {name: SegMetricAccumulator(num_classes, ignore_index) for name in names}
    agreement = {pair: [] for pair in pairs}  # type: Dict[Tuple[str, str], list]
    for x, label in samples:
        label = np.asarray(label)
        predicted = {}
        for name in names:
            labels = _label_map(models[name](x), name)
            if labels.shape != label.shape:
                labels = resize_nearest(labels, label.shape)
            accumulators[name].update(labels, label)
            predicted[name] = labels
        for a, b in pairs:
            agreement[(a, b)].append(float((predicted[a] == predicted[b]).mean()))
    if not accumulators[names[0]].num_images:
        raise ValueError("evaluate_export got no samples")
    report = {"models": {}, "agreement": {}}  # type: Dict[str, Dict]
    for name, acc in accumulators.items():
        metrics = acc.compute()
        report["models"][name] = {
            "mIoU": float(metrics["mIoU"]),
            "Acc": float(metrics["Acc"]),
            "class_IoU": [float(v) for v in metrics["class_IoU"]],
            "images": acc.num_images,
        }
    for (a, b), values in agreement.items():
        report["agreement"][f"{a} vs {b}"] = {
            "mean": float(np.mean(values)),
            "min_image": float(np.min(values)),
        }
    return report
