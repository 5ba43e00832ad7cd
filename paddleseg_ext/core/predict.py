"""Prediction to PNGs: raw labels, pseudo-colour and an overlay on the image."""

from __future__ import annotations

import os
from collections.abc import Callable

import cv2
import numpy as np
import paddle
from paddleseg.transforms import Compose
from paddleseg.utils import logger
from seg_runtime import color_palette, colorize, overlay, read_images
from seg_runtime.media import ErrorHandler

from .evaluate import predict_labels


@paddle.no_grad()
def predict(
    model: paddle.nn.Layer,
    image_paths: list[str],
    transforms: Compose,
    save_dir: str,
    num_classes: int,
    *,
    image_root: str | None = None,
    overlay_weight: float = 0.6,
    postprocess: Callable[[np.ndarray], np.ndarray] | None = None,
    on_error: ErrorHandler | None = None,
) -> list[str]:
    """Segments each image and writes three PNGs per image under ``save_dir``.

    ``labels/NAME.png`` holds the class ids (uint8, mode L), ``pseudo_color/NAME.png`` the
    colour-coded labels and ``overlay/NAME.png`` the colours blended over the image.
    Names keep their path relative to ``image_root`` (default: the images' common folder).
    ``postprocess`` (an (H, W) label map in, one out) runs on the labels before writing.

    Images are read by ``seg_runtime.read_image``, with the device runtime's rules (grayscale,
    alpha, 16-bit, palette and EXIF orientation handled; corrupt files refused), then go
    through ``transforms`` as PaddleSeg's own reader would give them (BGR float32).

    Args:
        on_error: Called with the ``InputError`` of an unreadable image, which is then
            skipped (e.g. a ``seg_runtime.SkipReport``); None raises it.

    Returns:
        list[str]: the label PNG paths written.

    Raises:
        seg_runtime.InputError: An image cannot be read and ``on_error`` is None.
    """
    model.eval()
    palette = color_palette(num_classes)
    if image_root is None:
        image_root = os.path.commonpath([os.path.dirname(p) for p in image_paths])
    written = []
    for path, original in read_images(image_paths, on_error):
        data = transforms({"img": original.astype("float32"), "trans_info": [], "gt_fields": []})
        img = paddle.to_tensor(data["img"][np.newaxis].astype("float32"))
        labels = predict_labels(model, img, list(original.shape[:2]))[0]
        if postprocess is not None:
            labels = postprocess(labels)
        labels = labels.astype(np.uint8)
        rel = os.path.splitext(os.path.relpath(path, image_root))[0] + ".png"
        color = colorize(labels, palette)
        outputs = {
            "labels": labels,
            "pseudo_color": color,
            "overlay": overlay(original, color, overlay_weight),
        }
        for kind, array in outputs.items():
            out = os.path.join(save_dir, kind, rel)
            os.makedirs(os.path.dirname(out), exist_ok=True)
            cv2.imwrite(out, array)
        written.append(os.path.join(save_dir, "labels", rel))
        logger.info(f"[PREDICT] {len(written)}/{len(image_paths)} {path}")
    return written
