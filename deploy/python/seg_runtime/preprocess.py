"""Preprocessing of ``deploy.yaml``'s transforms in NumPy/OpenCV, and the input-size rule.

The transforms are the training config's val transforms, with PaddleSeg's semantics and
values: the image as RGB float32, each op on (H, W, C), the result transposed to (C, H, W).
The ops run on the BGR image instead (every op here treats the channels alike, and
``Normalize`` takes its constants in BGR order), and the swap to RGB happens in the final
copy to (C, H, W), which saves a pass over the image. Supported: ``Resize`` (``target_size``
(w, h), ``keep_ratio``, ``size_divisor``, ``interp``), ``ResizeByLong``, ``ResizeByShort``,
``Normalize`` and ``Padding`` (bottom-right). Each geometric op is recorded, so that
predicted labels can be brought back to the image (:meth:`Preprocessor.restore`).
"""

import math
from typing import Callable, Dict, List, Sequence, Tuple

import cv2
import numpy as np

# Dynamic-size inputs are brought to a multiple of this (the backbones' output stride).
STRIDE = 32

INTERPOLATIONS = {
    "NEAREST": cv2.INTER_NEAREST,
    "LINEAR": cv2.INTER_LINEAR,
    "CUBIC": cv2.INTER_CUBIC,
    "AREA": cv2.INTER_AREA,
    "LANCZOS4": cv2.INTER_LANCZOS4,
}

# A record of one geometric op: ("resize" | "padding", (h, w) of its input).
Step = Tuple[str, Tuple[int, int]]


def model_input_size(height: int, width: int, input_shape: Sequence[int]) -> Tuple[int, int]:
    """The (h, w) a preprocessed image of ``height`` x ``width`` is fed to the model at.

    The export's fixed H/W when it has one; for a dynamic size (-1), the image's own size
    rounded to the nearest multiple of ``STRIDE`` (at least one stride). Export checks,
    INT8 calibration and deployment all use this rule.
    """
    h, w = int(input_shape[2]), int(input_shape[3])
    if h <= 0:
        h = max(STRIDE, int(round(height / STRIDE)) * STRIDE)
    if w <= 0:
        w = max(STRIDE, int(round(width / STRIDE)) * STRIDE)
    return h, w


def resize_to_input(chw: np.ndarray, input_shape: Sequence[int]) -> np.ndarray:
    """Bilinear resize of a (C, H, W) float array to :func:`model_input_size`."""
    h, w = model_input_size(chw.shape[1], chw.shape[2], input_shape)
    if chw.shape[1:] == (h, w):
        return chw
    hwc = cv2.resize(chw.transpose(1, 2, 0), (w, h), interpolation=cv2.INTER_LINEAR)
    return hwc.reshape(h, w, -1).transpose(2, 0, 1)


def _pair(value, name: str) -> Tuple[int, int]:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ValueError(f"deploy.yaml: {name} must be [width, height], got {value!r}")
    return int(value[0]), int(value[1])


def _resize(img: np.ndarray, w: int, h: int, interp: int) -> np.ndarray:
    out = cv2.resize(img, (w, h), interpolation=interp)
    return out.reshape(h, w, *img.shape[2:])


def _make_resize(target_size=(512, 512), keep_ratio=False, size_divisor=None, interp="LINEAR"):
    target_w, target_h = _pair(target_size, "Resize.target_size")
    if interp not in INTERPOLATIONS:
        raise ValueError(
            f"deploy.yaml: Resize.interp {interp!r} is not one of {', '.join(INTERPOLATIONS)}"
        )

    def op(img: np.ndarray) -> np.ndarray:
        w, h = target_w, target_h
        if keep_ratio:
            # The largest scale that fits the long side to the long target and the short
            # side to the short target, as PaddleSeg's rescale_size.
            img_h, img_w = img.shape[:2]
            scale = min(max(target_w, target_h) / max(img_w, img_h),
                        min(target_w, target_h) / min(img_w, img_h))  # fmt: skip
            w, h = round(img_w * scale), round(img_h * scale)
        if size_divisor:
            w = math.ceil(w / size_divisor) * size_divisor
            h = math.ceil(h / size_divisor) * size_divisor
        return _resize(img, w, h, INTERPOLATIONS[interp])

    return op, True


def _make_resize_by_long(long_size):
    def op(img: np.ndarray) -> np.ndarray:
        h, w = img.shape[:2]
        scale = long_size / max(h, w)
        return _resize(img, int(round(w * scale)), int(round(h * scale)), cv2.INTER_LINEAR)

    return op, True


def _make_resize_by_short(short_size, max_size=1e10):
    # PaddleSeg keeps a short side reduced for one large image for all later ones; here
    # each image gets its own.
    if isinstance(short_size, (list, tuple)):
        raise ValueError("deploy.yaml: ResizeByShort.short_size must be one size at inference")

    def op(img: np.ndarray) -> np.ndarray:
        h, w = img.shape[:2]
        short = short_size
        if short / min(h, w) * max(h, w) > max_size:
            short = int(max_size / max(h, w) * min(h, w))
        scale = short / min(h, w)
        return _resize(img, int(round(w * scale)), int(round(h * scale)), cv2.INTER_LINEAR)

    return op, True


def _make_normalize(mean=(0.5,), std=(0.5,)):
    # BGR order (see the module docstring); one value applies to every channel.
    mean_bgr = np.broadcast_to(np.asarray(mean, dtype=np.float32), (3,))[::-1]
    std_bgr = np.broadcast_to(np.asarray(std, dtype=np.float32), (3,))[::-1]
    if not np.all(std_bgr != 0):
        raise ValueError(f"deploy.yaml: Normalize.std must be non-zero, got {list(std)}")

    def op(img: np.ndarray) -> np.ndarray:
        # (x / 255 - mean) / std in float32, on the (H, W*3) view with the constants tiled
        # along a row: broadcasting (H, W, 3) against (3,) runs numpy's inner loop over 3
        # values at a time, about 15 times slower. uint8 input is divided as float32.
        h, w = img.shape[:2]
        out = np.divide(img.reshape(h, w * 3), np.float32(255.0), dtype=np.float32)
        np.subtract(out, np.tile(mean_bgr, w), out=out)
        np.divide(out, np.tile(std_bgr, w), out=out)
        return out.reshape(h, w, 3)

    def to_chw(img: np.ndarray) -> np.ndarray:
        # The last transform: the same operations, written straight into the (C, H, W) RGB
        # planes (one strided read per channel instead of a copy of the normalized image).
        chw = np.empty((3, *img.shape[:2]), dtype=np.float32)
        for channel in range(3):
            bgr = 2 - channel
            np.divide(img[:, :, bgr], np.float32(255.0), out=chw[channel], dtype=np.float32)
            np.subtract(chw[channel], mean_bgr[bgr], out=chw[channel])
            np.divide(chw[channel], std_bgr[bgr], out=chw[channel])
        return chw

    op.to_chw = to_chw
    return op, False


def _make_padding(target_size, im_padding_value=127.5, label_padding_value=255):
    if isinstance(target_size, int):
        target_size = (target_size, target_size)
    target_w, target_h = _pair(target_size, "Padding.target_size")

    def op(img: np.ndarray) -> np.ndarray:
        h, w = img.shape[:2]
        if h > target_h or w > target_w:
            raise ValueError(
                f"image of {w}x{h} is larger than Padding.target_size {target_w}x{target_h}"
            )
        channels = 1 if img.ndim == 2 else img.shape[2]
        return cv2.copyMakeBorder(img, 0, target_h - h, 0, target_w - w, cv2.BORDER_CONSTANT,
                                  value=(im_padding_value,) * channels)  # fmt: skip

    return op, True


# Transform name -> factory returning (op, changes_geometry).
_FACTORIES: Dict[str, Callable] = {
    "Resize": _make_resize,
    "ResizeByLong": _make_resize_by_long,
    "ResizeByShort": _make_resize_by_short,
    "Normalize": _make_normalize,
    "Padding": _make_padding,
}
SUPPORTED_TRANSFORMS = tuple(_FACTORIES)


class Preprocessor:
    """BGR uint8 image -> (C, H, W) float32, as PaddleSeg's val ``Compose`` would give.

    Args:
        transforms: ``deploy.yaml``'s ``transforms`` list (dicts with ``type``).

    Raises:
        ValueError: An unsupported transform or a bad argument, named.
    """

    def __init__(self, transforms: Sequence[dict]) -> None:
        self.ops: List[Tuple[str, Callable, bool]] = []
        for i, spec in enumerate(transforms):
            spec = dict(spec)
            name = spec.pop("type", None)
            if name not in _FACTORIES:
                raise ValueError(
                    f"deploy.yaml: transforms[{i}] {name!r} is not supported on the device "
                    f"runtime (supported: {', '.join(SUPPORTED_TRANSFORMS)})"
                )
            try:
                op, geometric = _FACTORIES[name](**spec)
            except TypeError as err:
                raise ValueError(f"deploy.yaml: transforms[{i}] {name}: {err}") from err
            self.ops.append((name, op, geometric))

    def __call__(self, image_bgr: np.ndarray) -> Tuple[np.ndarray, List[Step]]:
        """Returns the (C, H, W) float32 RGB array and the geometric steps taken."""
        if image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
            raise ValueError(f"expected an (H, W, 3) BGR image, got shape {image_bgr.shape}")
        img = image_bgr
        steps: List[Step] = []
        last = self.ops[-1][1] if self.ops else None
        for name, op, geometric in self.ops:
            if geometric:
                steps.append(("padding" if name == "Padding" else "resize", img.shape[:2]))
                img = img.astype(np.float32, copy=False)  # PaddleSeg resizes the float image
            if op is last and hasattr(op, "to_chw"):
                return op.to_chw(img), steps
            img = op(img)
        chw = np.empty((3, *img.shape[:2]), dtype=np.float32)
        for channel in range(3):  # BGR -> RGB, one strided copy per channel
            chw[channel] = img[:, :, 2 - channel]
        return chw, steps

    @staticmethod
    def restore(labels: np.ndarray, steps: Sequence[Step]) -> np.ndarray:
        """Undoes the geometric steps on (H, W) labels: crops paddings, resizes back."""
        for kind, (h, w) in reversed(list(steps)):
            if kind == "padding":
                labels = labels[:h, :w]
            elif labels.shape[:2] != (h, w):
                labels = cv2.resize(labels, (w, h), interpolation=cv2.INTER_NEAREST)
        return labels
