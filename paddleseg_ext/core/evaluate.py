"""Dataset-level evaluation: mIoU, mDice, pixel accuracy, kappa and per-class scores."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import paddle
import paddle.nn.functional as F
from paddleseg.utils import logger
from prettytable import PrettyTable
from seg_runtime.metrics import SegMetricAccumulator


def predict_labels(model: paddle.nn.Layer, img: paddle.Tensor, size: list[int]) -> np.ndarray:
    """Runs ``model`` on ``img`` (N, 3, h, w) and returns int labels (N, H, W) at ``size``.

    Accepts models returning logits (float, C channels) or labels (int, 1 channel, as the
    valid-class interpolation head does in eval mode); logits are resized bilinearly to
    ``size`` before the argmax, labels with nearest neighbour.
    """
    out = model(img)[0]
    if out.dtype in (paddle.int32, paddle.int64):
        if list(out.shape[-2:]) != list(size):
            out = F.interpolate(out.astype("float32"), size=size, mode="nearest")
        return out.squeeze(1).numpy().astype("int64")
    if list(out.shape[-2:]) != list(size):
        out = F.interpolate(out, size=size, mode="bilinear", align_corners=False)
    return paddle.argmax(out, axis=1).numpy()


@paddle.no_grad()
def evaluate(
    model: paddle.nn.Layer,
    dataset: paddle.io.Dataset,
    num_classes: int,
    *,
    ignore_index: int = 255,
    class_names: list[str] | None = None,
    num_workers: int = 0,
    lpcvc: bool = False,
    print_detail: bool = True,
    postprocess: Callable[[np.ndarray], np.ndarray] | None = None,
) -> dict:
    """Evaluates ``model`` over a PaddleSeg val dataset, one image at a time.

    Labels stay at their original size (PaddleSeg's val mode does not transform them);
    predictions are brought to the label's size, then through ``postprocess`` (an (H, W)
    label map in, one out; e.g. ``seg_runtime.postprocess.PostProcessor``) when given.

    Returns:
        dict: ``mIoU``, ``mDice``, ``Acc``, ``Kappa``, ``class_IoU``, ``class_Dice``
        (plus ``LPCVC_Dice`` when ``lpcvc``).
    """
    was_training = model.training
    model.eval()
    loader = paddle.io.DataLoader(
        dataset,
        batch_size=1,
        shuffle=False,
        num_workers=num_workers,
        return_list=True,
        # The buffer thread swallows dataset errors and then waits forever; without it a
        # bad image raises here.
        use_buffer_reader=False,
    )
    acc = SegMetricAccumulator(num_classes, ignore_index=ignore_index, lpcvc=lpcvc)
    total = len(loader)
    start = time.time()
    if print_detail:
        logger.info(f"Start evaluating (total_samples: {len(dataset)}) ...")
    for i, data in enumerate(loader):
        label = data["label"].numpy().astype("int64")
        label = label.reshape(label.shape[0], *label.shape[-2:])
        pred = predict_labels(model, data["img"], list(label.shape[-2:]))
        if postprocess is not None:
            pred = np.stack([postprocess(p) for p in pred])
        acc.update(pred, label)
        if print_detail and ((i + 1) % max(1, total // 10) == 0 or i + 1 == total):
            elapsed = time.time() - start
            logger.info(f"[EVAL] {i + 1}/{total} images, {elapsed / (i + 1) * 1000:.1f} ms/img")
    metrics = acc.compute()
    if was_training:
        model.train()
    if print_detail:
        logger.info(format_metrics(metrics, class_names))
    return metrics


def format_metrics(metrics: dict, class_names: list[str] | None = None) -> str:
    """Summary line plus a per-class IoU/Dice table."""
    summary = (
        f"[EVAL] mIoU: {metrics['mIoU']:.4f}  mDice: {metrics['mDice']:.4f}  "
        f"Acc: {metrics['Acc']:.4f}  Kappa: {metrics['Kappa']:.4f}"
    )
    if "LPCVC_Dice" in metrics:
        summary += f"  LPCVC Dice: {metrics['LPCVC_Dice']:.4f}"
    names = class_names or [str(i) for i in range(len(metrics["class_IoU"]))]
    table = PrettyTable(["id", "class", "IoU", "Dice"])
    for i, (iou, dice) in enumerate(zip(metrics["class_IoU"], metrics["class_Dice"], strict=True)):
        table.add_row([i, names[i], f"{iou:.4f}", f"{dice:.4f}"])
    table.align["class"] = "l"
    return f"{summary}\n{table}"
