"""Segmentation metrics in plain numpy: confusion matrix, IoU/Dice/accuracy/kappa, LPCVC 2023 Dice.

Everything is derived from integer confusion matrices, so a dataset-level score is exact however
the images are batched, and no framework tensor op (whose 0-d behaviour changed in Paddle 3) is
involved.
"""

from typing import Any, Dict, Iterable, List, Optional, Tuple, Union

import numpy as np

__all__ = [
    "SegMetricAccumulator",
    "confusion_matrix",
    "lpcvc_accuracy",
    "lpcvc_image_dice",
    "resize_nearest",
    "segmentation_metrics",
]


def _to_numpy(x: Any) -> np.ndarray:
    """Converts arrays, lists or framework tensors (anything with ``.numpy()``) to numpy."""
    if hasattr(x, "numpy") and not isinstance(x, np.ndarray):
        x = x.numpy()
    return np.asarray(x)


def _safe_divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """Element-wise ``num / den`` as float64, NaN where ``den == 0`` (no runtime warning)."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.full(np.broadcast(num, den).shape, np.nan)
    np.divide(num, den, out=out, where=den != 0)
    return out


def _nanmean(values: np.ndarray) -> float:
    """Mean over the non-NaN entries; NaN (without a warning) when every entry is NaN."""
    values = np.asarray(values, dtype=np.float64)
    valid = ~np.isnan(values)
    if not valid.any():
        return float("nan")
    return float(values[valid].mean())


def confusion_matrix(
    pred: Any, label: Any, num_classes: int, ignore_index: Optional[int] = 255
) -> np.ndarray:
    """Counts (ground truth, prediction) pixel pairs.

    Args:
        pred: Predicted class ids, any shape, e.g. (H, W) or (N, H, W).
        label: Ground-truth class ids, same shape as ``pred``.
        num_classes: Number of classes C; valid ids are ``0 .. C-1``.
        ignore_index: Pixels whose label equals this value are skipped. ``None`` keeps every pixel.

    Returns:
        np.ndarray: int64 array of shape (C, C); entry ``[g, p]`` is the number of pixels with
        ground truth ``g`` predicted as ``p`` (rows = ground truth, columns = prediction).

    Raises:
        ValueError: If the shapes differ, or a kept pixel has an id outside ``0 .. C-1`` (it
            would otherwise be counted in the wrong cell).
    """
    pred = _to_numpy(pred)
    label = _to_numpy(label)
    if pred.shape != label.shape:
        raise ValueError(
            f"pred and label must have the same shape, got pred {pred.shape} and label "
            f"{label.shape}"
        )
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    label = label.reshape(-1).astype(np.int64)
    pred = pred.reshape(-1).astype(np.int64)
    if ignore_index is not None:
        keep = label != ignore_index
        label, pred = label[keep], pred[keep]
    for name, values in (("label", label), ("pred", pred)):
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            bad = values[(values < 0) | (values >= num_classes)][0]
            raise ValueError(
                f"{name} contains class id {bad}, outside [0, {num_classes}) "
                f"(ignore_index={ignore_index})"
            )
    counts = np.bincount(label * num_classes + pred, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).astype(np.int64)


def segmentation_metrics(cm: np.ndarray) -> Dict[str, Any]:
    """Dataset-level metrics from a confusion matrix.

    Per class c with TP = ``cm[c, c]``, GT = row sum, P = column sum:
    IoU = TP / (GT + P - TP) and Dice = 2 TP / (GT + P). A class absent from both the ground
    truth and the prediction has an undefined score, stored as NaN. ``mIoU`` and ``mDice`` are
    the NaN-skipping means over classes: an absent class says nothing about the model, so it
    neither rewards (as 1) nor punishes (as 0) it. A class that is predicted but absent from the
    ground truth (or the reverse) scores 0 and counts.

    Args:
        cm: (C, C) confusion matrix, rows = ground truth, columns = prediction.

    Returns:
        dict: ``mIoU``, ``mDice``, ``Acc`` (pixel accuracy), ``Kappa`` (Cohen's kappa) as
        floats, ``class_IoU`` and ``class_Dice`` as lists of C floats. Scalars are NaN when
        undefined: everything for an empty matrix, and Kappa when the expected agreement is 1
        (a single class in both ground truth and prediction), as in scikit-learn.
    """
    cm = np.asarray(cm, dtype=np.float64)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"confusion matrix must be square (C, C), got shape {cm.shape}")
    tp = np.diag(cm)
    gt = cm.sum(axis=1)
    pr = cm.sum(axis=0)
    total = cm.sum()

    class_iou = _safe_divide(tp, gt + pr - tp)
    class_dice = _safe_divide(2.0 * tp, gt + pr)

    if total > 0:
        acc = float(tp.sum() / total)
        # Cohen's kappa: observed agreement p_o against the agreement p_e expected by chance
        # from the two marginal distributions.
        p_e = float((gt * pr).sum() / (total * total))
        kappa = (acc - p_e) / (1.0 - p_e) if p_e < 1.0 else float("nan")
    else:
        acc = float("nan")
        kappa = float("nan")

    return {
        "mIoU": _nanmean(class_iou),
        "mDice": _nanmean(class_dice),
        "Acc": acc,
        "Kappa": float(kappa),
        "class_IoU": [float(v) for v in class_iou],
        "class_Dice": [float(v) for v in class_dice],
    }


def resize_nearest(label: Any, size: Union[int, Tuple[int, int]]) -> np.ndarray:
    """Nearest-neighbour resize of a 2-D id map, for any integer dtype.

    Uses the same sampling as ``cv2.resize(..., interpolation=cv2.INTER_NEAREST)``
    (source index ``floor(dst * src_len / dst_len)``), which OpenCV itself does not offer for
    int64 arrays such as argmax outputs.

    Args:
        label: (H, W) array.
        size: Output side, or (height, width).

    Returns:
        np.ndarray: (height, width) array with ``label``'s dtype.
    """
    label = _to_numpy(label)
    if label.ndim != 2:
        raise ValueError(f"expected a 2-D (H, W) map, got shape {label.shape}")
    out_h, out_w = (size, size) if isinstance(size, int) else size
    in_h, in_w = label.shape
    if (in_h, in_w) == (out_h, out_w):
        return label
    rows = np.minimum((np.arange(out_h) * in_h) // out_h, in_h - 1)
    cols = np.minimum((np.arange(out_w) * in_w) // out_w, in_w - 1)
    return label[rows[:, None], cols[None, :]]


def lpcvc_image_dice(
    pred: Any,
    label: Any,
    num_classes: int = 14,
    size: int = 512,
    ignore_index: Optional[int] = 255,
) -> float:
    """LPCVC 2023 accuracy of one image.

    Both maps are brought to ``size`` x ``size`` (nearest), a per-image confusion matrix is
    built, and per class dice_c = 2 TP_c / (pred_c + gt_c). A class absent from both maps is
    NaN and skipped; a class predicted but absent from the ground truth scores 0. The image
    score is the mean over the remaining classes.

    Args:
        pred: (H, W) predicted class ids.
        label: (H', W') ground-truth class ids (the sizes may differ; both are resized).
        num_classes: Number of classes (14 in the challenge).
        size: Side both maps are resized to before scoring (512 in the challenge).
        ignore_index: Ground-truth value to skip. The challenge labels contain none, so the
            default leaves its score unchanged while allowing datasets with void pixels.

    Returns:
        float: The image's mean Dice in [0, 1] (NaN only if every pixel is ignored).
    """
    pred = resize_nearest(pred, size)
    label = resize_nearest(label, size)
    cm = confusion_matrix(pred, label, num_classes, ignore_index=ignore_index)
    tp = np.diag(cm)
    dice = _safe_divide(2.0 * tp, cm.sum(axis=0) + cm.sum(axis=1))
    return _nanmean(dice)


def lpcvc_accuracy(
    preds: Iterable[Any], labels: Iterable[Any], num_classes: int = 14, size: int = 512
) -> float:
    """LPCVC 2023 accuracy of a set of images: the mean of :func:`lpcvc_image_dice`.

    Args:
        preds: Sequence of (H, W) prediction maps, or an (N, H, W) array.
        labels: Matching sequence of ground-truth maps, or an (N, H, W) array.
        num_classes: Number of classes.
        size: Side both maps are resized to before scoring.

    Returns:
        float: Mean per-image Dice.
    """
    preds = list(preds)
    labels = list(labels)
    if len(preds) != len(labels):
        raise ValueError(f"got {len(preds)} predictions but {len(labels)} labels")
    if not preds:
        raise ValueError("lpcvc_accuracy needs at least one image")
    scores = [
        lpcvc_image_dice(p, g, num_classes=num_classes, size=size) for p, g in zip(preds, labels)
    ]
    return float(np.mean(scores))


def _as_batch(x: Any, name: str) -> np.ndarray:
    """Brings (H, W), (N, H, W) or (N, 1, H, W) maps to (N, H, W)."""
    x = _to_numpy(x)
    if x.ndim == 2:
        return x[None]
    if x.ndim == 4 and x.shape[1] == 1:
        return x[:, 0]
    if x.ndim != 3:
        raise ValueError(f"{name} must be (H, W), (N, H, W) or (N, 1, H, W), got {x.shape}")
    return x


class SegMetricAccumulator:
    """Accumulates a dataset-level confusion matrix (and per-image LPCVC Dice) over batches.

    Args:
        num_classes: Number of classes.
        ignore_index: Label value excluded from every metric.
        lpcvc: Also compute the LPCVC 2023 per-image Dice (``LPCVC_Dice`` in :meth:`compute`).
        lpcvc_size: Side maps are resized to for the LPCVC Dice.

    Example:
        >>> acc = SegMetricAccumulator(num_classes=6)
        >>> acc.update(pred_batch, label_batch)  # (N, H, W) arrays
        >>> acc.compute()["mIoU"]
    """

    def __init__(
        self,
        num_classes: int,
        ignore_index: int = 255,
        lpcvc: bool = False,
        lpcvc_size: int = 512,
    ) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.lpcvc = lpcvc
        self.lpcvc_size = lpcvc_size
        self.reset()

    def reset(self) -> None:
        """Forgets everything seen so far."""
        self.confusion = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)
        self.image_dice: List[float] = []
        self.num_images = 0

    def update(self, pred: Any, label: Any) -> None:
        """Adds one image or a batch.

        Args:
            pred: Predicted ids, (H, W), (N, H, W) or (N, 1, H, W); numpy or framework tensor.
            label: Ground-truth ids with the same layout and size.
        """
        pred = _as_batch(pred, "pred")
        label = _as_batch(label, "label")
        self.confusion += confusion_matrix(pred, label, self.num_classes, self.ignore_index)
        self.num_images += pred.shape[0]
        if self.lpcvc:
            for p, g in zip(pred, label):  # equal shapes: confusion_matrix checked them
                self.image_dice.append(
                    lpcvc_image_dice(
                        p,
                        g,
                        num_classes=self.num_classes,
                        size=self.lpcvc_size,
                        ignore_index=self.ignore_index,
                    )
                )

    def compute(self) -> Dict[str, Any]:
        """Returns :func:`segmentation_metrics` of the accumulated matrix.

        With ``lpcvc=True`` the dict also holds ``LPCVC_Dice``, the mean per-image Dice
        (images whose pixels are all ignored are skipped).
        """
        metrics = segmentation_metrics(self.confusion)
        if self.lpcvc:
            metrics["LPCVC_Dice"] = _nanmean(np.asarray(self.image_dice))
        return metrics
