"""Inputs and outputs on disk: image lists, video frames, the colour palette."""

from __future__ import annotations

import os
from collections.abc import Iterator

import cv2
import numpy as np

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")


def list_images(image_path: str) -> list[str]:
    """One image file, or every image under a folder (recursively, sorted)."""
    if os.path.isfile(image_path):
        return [image_path]
    if not os.path.isdir(image_path):
        raise FileNotFoundError(f"--image_path not found: {image_path}")
    found = [
        os.path.join(root, name)
        for root, _, names in os.walk(image_path)
        for name in names
        if name.lower().endswith(IMAGE_EXTS)
    ]
    if not found:
        raise FileNotFoundError(f"No images ({', '.join(IMAGE_EXTS)}) under {image_path}")
    return sorted(found)


def color_palette(num_classes: int) -> np.ndarray:
    """A (num_classes, 3) uint8 RGB palette: the PASCAL VOC bit-interleaving scheme."""
    palette = np.zeros((num_classes, 3), dtype=np.uint8)
    for cls in range(num_classes):
        c, shift = cls, 7
        while c:
            for ch in range(3):
                palette[cls, ch] |= ((c >> ch) & 1) << shift
            c >>= 3
            shift -= 1
    return palette


def iter_inputs(path: str, max_frames: int = 0) -> Iterator[tuple[str, np.ndarray]]:
    """Yields ``(relative output name, BGR image)`` for an image, a folder or a video.

    Video frames are named ``VIDEO/000000.png``; images keep their relative path with a
    ``.png`` suffix.
    """
    if os.path.isfile(path) and path.lower().endswith(VIDEO_EXTS):
        capture = cv2.VideoCapture(path)
        if not capture.isOpened():
            raise FileNotFoundError(f"Cannot open video {path}")
        stem = os.path.splitext(os.path.basename(path))[0]
        index = 0
        try:
            while not max_frames or index < max_frames:
                ok, frame = capture.read()
                if not ok:
                    break
                yield os.path.join(stem, f"{index:06d}.png"), frame
                index += 1
        finally:
            capture.release()
        if index == 0:
            raise ValueError(f"No frame could be read from {path}")
        return
    if os.path.isfile(path) and not path.lower().endswith(IMAGE_EXTS):
        raise ValueError(f"{path}: not an image ({', '.join(IMAGE_EXTS)}) or a video file")
    images = list_images(path)
    root = os.path.dirname(path) if os.path.isfile(path) else path
    for image_path in images:
        image = cv2.imread(image_path, cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError(f"Cannot read image {image_path}")
        yield os.path.splitext(os.path.relpath(image_path, root))[0] + ".png", image


def read_index_label(path: str) -> np.ndarray:
    """Reads a class-index PNG as a 2-D uint8 array.

    Palette and grayscale PNGs hold the ids directly. Some LPCVC ground truths are stored as
    3-channel images; the challenge's scorer reads those with imageio (RGB order) and keeps
    channel 0, so we keep the first stored channel too (not OpenCV's BGR channel 0).

    Args:
        path: Label file.

    Returns:
        np.ndarray: (H, W) uint8 class ids.

    Raises:
        ValueError: The file cannot be decoded, or holds no 2-D id map.
    """
    from PIL import Image  # host-side readers only: the device runtime decodes with OpenCV

    try:
        with Image.open(path) as img:
            label = np.array(img)  # a writable copy: transforms may modify it in place
    except OSError as err:
        raise ValueError(f"cannot read label image {path}: {err}") from err
    if label.ndim == 3:
        label = label[:, :, 0]
    if label.ndim != 2:
        raise ValueError(f"label {path} has unsupported shape {label.shape}")
    if label.dtype != np.uint8:
        if label.size and (label.min() < 0 or label.max() > 255):
            raise ValueError(f"label {path} has ids outside 0..255")
        label = label.astype(np.uint8)
    return np.ascontiguousarray(label)
