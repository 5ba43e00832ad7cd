"""Inputs and outputs on disk: image lists, image and video reading.

Every tool that segments images reads them with :func:`read_image`, so the rules below are
the same for ``infer.py``, the packaged solution and ``tools/predict.py``. A bad input raises
:class:`InputError`, whose message starts with the file's path; over a folder or a video the
caller may skip it instead (``on_error``, e.g. a :class:`SkipReport`).
"""

import os
import sys
from typing import Callable, Iterator, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from .headers import FORMATS, image_format, image_size, structure_problem

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")
# Default pixel limit of read_image: 48 MP photos (8000x6000) pass, 8000x8000 does not. The
# runtime preprocesses at the image's size in float32 before resizing to the model input:
# about 40 bytes per pixel at peak, 2.7 GB for 8000x8000.
DEFAULT_MAX_PIXELS = 50_000_000
MAX_PIXELS_ENV = "SEG_RUNTIME_MAX_PIXELS"
# Broken frames in a row after which the rest of a video is skipped as unreadable.
MAX_BROKEN_FRAMES = 25


def list_images(image_path: str) -> List[str]:
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


class InputError(ValueError):
    """An image, a video or a frame that cannot be used; the message starts with its path
    (or, for a bad ``$SEG_RUNTIME_MAX_PIXELS``, with the variable's name)."""


# Receives the InputError of an input that is skipped (see iter_inputs).
ErrorHandler = Callable[[InputError], None]


def max_pixels() -> int:
    """The pixel limit of :func:`read_image`: ``$SEG_RUNTIME_MAX_PIXELS`` or the default.

    Raises:
        InputError: The variable is set to something else than a positive whole number.
    """
    value = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not value:
        return DEFAULT_MAX_PIXELS
    try:
        limit = int(value)
    except ValueError:
        limit = 0
    if limit <= 0:
        raise InputError(f"{MAX_PIXELS_ENV} must be a positive number of pixels, got {value!r}")
    return limit


def _check_pixels(path: str, width: int, height: int, limit: int) -> None:
    if width * height > limit:
        raise InputError(
            f"{path}: {width}x{height} is {width * height / 1e6:.1f} megapixels, over the "
            f"{limit / 1e6:g}-megapixel limit (raise it with {MAX_PIXELS_ENV}=PIXELS)"
        )


def read_image(path: str, limit: Optional[int] = None) -> np.ndarray:
    """Reads an image file as (H, W, 3) uint8 BGR, the input of :class:`SegPredictor`.

    The format comes from the content (PNG, JPEG, BMP, TIFF or WebP), not the name. Rules:

    - grayscale (and 1-bit) images: the gray value replicated to 3 channels;
    - RGBA / gray + alpha: the alpha channel dropped (colours as stored, not composited);
    - palette images: their colours;
    - 16-bit images: scaled to 8 bits as round(x / 257), so 65535 -> 255 (no clipping);
    - other sample types (float or 32-bit TIFF): refused;
    - an EXIF orientation (JPEG, PNG, TIFF, WebP) is applied, as ``cv2.IMREAD_COLOR`` does
      (``cv2.IMREAD_UNCHANGED`` ignores it): a 40x20 photo tagged "rotate 90" gives a 20x40
      image, and labels at that size;
    - more than ``limit`` pixels (width x height, default :data:`DEFAULT_MAX_PIXELS` or
      ``$SEG_RUNTIME_MAX_PIXELS``): refused, from the header when it can be parsed, before
      anything is allocated;
    - an empty file, other content (random bytes, another format), a header or data that
      do not decode: refused;
    - a JPEG cut short (no end-of-image marker after its last scan; ``cv2.imread`` fills the
      missing part with gray and only warns on stderr), a PNG cut short or with a chunk
      length past the end of the file: refused before decoding
      (:func:`~seg_runtime.headers.structure_problem`);
    - a JPEG whose compressed data is damaged but complete: decoded as libjpeg does, with
      its warning on stderr (the damage cannot be told from valid content).

    Any size from 1x1 up to the limit is accepted, multiples of 32 or not:
    :class:`SegPredictor` resizes the image to the model input and its labels back to the
    image size.

    Args:
        path: Image file.
        limit: Pixel limit; None reads :func:`max_pixels`.

    Returns:
        np.ndarray: (H, W, 3) uint8, BGR order.

    Raises:
        InputError: The file cannot be read or is refused; the message starts with ``path``.
    """
    limit = max_pixels() if limit is None else limit
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as err:
        raise InputError(f"{path}: cannot be read ({err.strerror or err})") from None
    if not data:
        raise InputError(f"{path}: empty file")
    fmt = image_format(data)
    if fmt is None:
        raise InputError(f"{path}: not an image ({', '.join(FORMATS)} content expected)")
    size = image_size(data, fmt)
    if size is not None:
        _check_pixels(path, size[0], size[1], limit)
    problem = structure_problem(data, fmt)
    if problem:
        raise InputError(f"{path}: {problem}")
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH)
    except cv2.error as err:  # a few decoders throw instead of returning nothing
        reason = str(err).strip().splitlines()[-1]
        raise InputError(f"{path}: not a decodable {fmt} image ({reason})") from None
    if image is None or image.size == 0:
        raise InputError(f"{path}: not a decodable {fmt} image (corrupt or truncated)")
    _check_pixels(path, image.shape[1], image.shape[0], limit)
    if image.dtype == np.uint16:
        image = ((image.astype(np.uint32) + 128) // 257).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise InputError(f"{path}: {image.dtype} samples are not supported (8 or 16 bits only)")
    return image


def _report(on_error: Optional[ErrorHandler], err: InputError) -> None:
    if on_error is None:
        raise err
    on_error(err)


def read_images(
    paths: Sequence[str], on_error: Optional[ErrorHandler] = None
) -> Iterator[Tuple[str, np.ndarray]]:
    """Yields ``(path, image)`` for each path with :func:`read_image`.

    Args:
        paths: Image files.
        on_error: Called with the :class:`InputError` of an unreadable file, which is then
            skipped; None raises it.

    Raises:
        InputError: See ``on_error``; a bad ``$SEG_RUNTIME_MAX_PIXELS`` always raises.
    """
    limit = max_pixels()  # outside the loop: a bad setting is no reason to skip a file
    for path in paths:
        try:
            image = read_image(path, limit)
        except InputError as err:
            _report(on_error, err)
            continue
        yield path, image


class SkipReport:
    """An ``on_error`` handler: one ``skipped: PATH: reason`` line on stderr per input, counted."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, err: InputError) -> None:
        print(f"skipped: {err}", file=sys.stderr, flush=True)
        self.count += 1

    def summary(self, done: int) -> str:
        """One line: how many inputs were skipped, how many processed."""
        return f"{self.count} input(s) skipped (named above), {done} processed"


def _iter_video(
    path: str, max_frames: int, on_error: Optional[ErrorHandler]
) -> Iterator[Tuple[str, np.ndarray]]:
    capture = cv2.VideoCapture(path)
    if not capture.isOpened():
        raise InputError(f"{path}: cannot open the video")
    stem = os.path.splitext(os.path.basename(path))[0]
    # read() is False both at the end and on a frame that does not decode; in the second
    # case the next read() goes on with the following frame. The container's frame count
    # tells the two apart (none, e.g. a stream: the first failure ends the video).
    count = capture.get(cv2.CAP_PROP_FRAME_COUNT)
    total = int(count) if count > 0 else 0
    index = read = broken = 0
    try:
        while not max_frames or index < max_frames:
            ok, frame = capture.read()
            if ok:
                yield os.path.join(stem, f"{index:06d}.png"), frame
                read += 1
                broken = 0
            elif index >= total:
                break
            elif broken == MAX_BROKEN_FRAMES:
                _report(
                    on_error,
                    InputError(
                        f"{path}: frames {index}..{total - 1} skipped: {broken} frames in a row "
                        "failed to decode"
                    ),
                )
                break
            else:
                broken += 1
                _report(on_error, InputError(f"{path}: frame {index} cannot be decoded"))
            index += 1
    finally:
        capture.release()
    if read == 0:
        raise InputError(f"{path}: no frame could be read")


def iter_inputs(
    path: str, max_frames: int = 0, on_error: Optional[ErrorHandler] = None
) -> Iterator[Tuple[str, np.ndarray]]:
    """Yields ``(relative output name, BGR image)`` for an image, a folder or a video.

    Video frames are named ``VIDEO/000000.png`` after their position in the video; images
    keep their relative path with a ``.png`` suffix. Images are read by :func:`read_image`.

    Args:
        path: An image file, a folder of images (recursively) or a video file.
        max_frames: Video: stop after this many frames (0: all).
        on_error: Called with the :class:`InputError` of an unreadable image of a folder or a
            broken video frame, which is then skipped; None raises it. A single image path,
            a video that cannot be opened or yields no frame always raise.

    Raises:
        InputError: See ``on_error``; also a file that is neither an image nor a video.
        FileNotFoundError: ``path`` does not exist, or a folder holds no image.
    """
    if os.path.isfile(path) and path.lower().endswith(VIDEO_EXTS):
        yield from _iter_video(path, max_frames, on_error)
        return
    if os.path.isfile(path) and not path.lower().endswith(IMAGE_EXTS):
        raise InputError(f"{path}: not an image ({', '.join(IMAGE_EXTS)}) or a video file")
    single = os.path.isfile(path)
    root = os.path.dirname(path) if single else path
    for image_path, image in read_images(list_images(path), None if single else on_error):
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
