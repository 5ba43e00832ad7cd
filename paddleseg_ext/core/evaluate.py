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

from .data import SampleError, load_sample


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


class _CheckedSamples(paddle.io.Dataset):
    """Reads ``dataset``'s samples with :func:`load_sample`; a failure becomes a sample.

    A loader worker re-raises a dataset error with the worker's whole traceback as its
    message; returned as ``{"error": UTF-8 bytes of the message}`` instead, it reaches
    :func:`evaluate` as the one-line :class:`SampleError` naming the sample's files, whatever
    ``num_workers``. The bytes travel as a uint8 array: the loader silently ends the epoch
    on a sample holding a string.
    """

    def __init__(self, dataset: paddle.io.Dataset) -> None:
        super().__init__()
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, idx: int) -> dict:
        try:
            return load_sample(self.dataset, idx)
        except SampleError as err:
            message = " ".join(str(err).split())  # OpenCV errors span several lines
            return {"error": np.frombuffer(message.encode("utf-8"), dtype=np.uint8)}


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

    Raises:
        SampleError: A sample's image or label cannot be read; the message names its files.
    """
    was_training = model.training
    model.eval()
    loader = paddle.io.DataLoader(
        _CheckedSamples(dataset),
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
        if "error" in data:
            raise SampleError(data["error"].numpy()[0].tobytes().decode("utf-8"))
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
