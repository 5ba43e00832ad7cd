"""SyntheticShapes: a procedural 6-class segmentation dataset generated on first use.

Each image shows 2-5 textured shapes (disc, rectangle, triangle, ring, cross) over a smooth
noisy background. Every class has its own texture and colour family, jittered per shape, and
shapes overlap, so a model must combine colour, texture and shape, yet a ~1M-parameter CNN
learns it on a CPU in minutes. Nothing is downloaded: the files are drawn with OpenCV/numpy
from a seed, byte-identical for identical parameters.

With ``num_classes`` above 6 (up to 161) the foreground classes are the combinations of
shape x texture x colour family (5 x 4 x 8), so that, as on ADE20K with 150 classes, each
image holds a handful of many classes. The default of 6 is the original dataset, unchanged.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile

import cv2
import numpy as np
from filelock import FileLock
from paddleseg.cvlibs import manager
from paddleseg.datasets import Dataset

__all__ = [
    "SyntheticShapes",
    "SyntheticShapes150",
    "class_names",
    "class_style",
    "default_cache_dir",
    "generate_synthetic_shapes",
    "render_sample",
]

# Bump when the drawing code changes so cached datasets of the old version are not reused.
GENERATOR_VERSION = 1
_SPLITS = ("train", "val")
_META_FILE = "meta.json"
DEFAULT_NUM_CLASSES = 6

# class id -> (texture, OpenCV hue range in [0, 180)). Hue families are disjoint, but with
# saturation/value jitter and the unsaturated background some colours come close, so texture
# and shape matter.
_CLASS_STYLE = {
    1: ("solid", (0, 12)),  # disc: red/orange, shaded
    2: ("stripes", (100, 125)),  # rectangle: blue
    3: ("checker", (45, 75)),  # triangle: green
    4: ("solid", (140, 165)),  # ring: magenta
    5: ("dots", (20, 34)),  # cross: yellow
}
_SHAPES = ("disc", "rectangle", "triangle", "ring", "cross")
_TEXTURES = ("solid", "stripes", "checker", "dots")
# Colour families of the many-class variant: disjoint hue ranges with gaps between them.
_HUE_FAMILIES = ((0, 8), (14, 24), (28, 40), (48, 70), (80, 95), (100, 122), (128, 142), (150, 168))
_HUE_NAMES = ("red", "orange", "yellow", "green", "cyan", "blue", "purple", "magenta")
MAX_NUM_CLASSES = 1 + len(_SHAPES) * len(_TEXTURES) * len(_HUE_FAMILIES)


def class_style(cls: int, num_classes: int = DEFAULT_NUM_CLASSES) -> tuple[str, str, int]:
    """The (shape, texture, colour family index) of foreground class ``cls``.

    With the default 6 classes these are the original classes (their hue ranges are in
    ``_CLASS_STYLE``, family index -1). Otherwise class ``cls`` is combination ``cls - 1``,
    shape varying fastest, then texture, then colour family, so any prefix of the classes
    spreads over all shapes and textures.
    """
    if not 1 <= cls < num_classes:
        raise ValueError(f"foreground class must be in [1, {num_classes}), got {cls}")
    if num_classes == DEFAULT_NUM_CLASSES:
        return _SHAPES[cls - 1], _CLASS_STYLE[cls][0], -1
    combo = cls - 1
    shapes, textures = len(_SHAPES), len(_TEXTURES)
    return (
        _SHAPES[combo % shapes],
        _TEXTURES[combo // shapes % textures],
        combo // (shapes * textures),
    )


def class_names(num_classes: int = DEFAULT_NUM_CLASSES) -> list[str]:
    """Class names: the original 6, or ``colour-texture-shape`` names of the variant."""
    if num_classes == DEFAULT_NUM_CLASSES:
        return list(SyntheticShapes.CLASS_NAMES)
    names = ["background"]
    for cls in range(1, num_classes):
        shape, texture, family = class_style(cls, num_classes)
        names.append(f"{_HUE_NAMES[family]}-{texture}-{shape}")
    return names


def default_cache_dir() -> str:
    """Folder for generated data: ``$PADDLESEG_EXT_CACHE`` or ``~/.cache/paddleseg_ext``."""
    return os.environ.get(
        "PADDLESEG_EXT_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "paddleseg_ext")
    )


def _hsv_colour(rng: np.random.Generator, hue_range: tuple[int, int]) -> np.ndarray:
    hsv = np.array(
        [[[rng.integers(*hue_range), rng.integers(130, 256), rng.integers(110, 256)]]],
        dtype=np.uint8,
    )
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32)


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Low-frequency noise in about [-1, 1]: a small random grid upsampled bicubically."""
    grid = rng.uniform(-1.0, 1.0, size=(cells, cells)).astype(np.float32)
    return cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    # Two unsaturated colours blended along a random direction, plus blotchy noise.
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    angle = rng.uniform(0, 2 * np.pi)
    ramp = np.cos(angle) * xx + np.sin(angle) * yy
    ramp = (ramp - ramp.min()) / max(float(ramp.max() - ramp.min()), 1e-6)
    # A grey level plus a moderate tint: backgrounds may lean towards any shape's hue but are
    # less saturated than the shapes.
    c0 = np.clip(rng.uniform(50, 200) + rng.uniform(-50, 50, size=3), 0, 255)
    c1 = np.clip(c0 + rng.uniform(-60, 60, size=3), 0, 255)
    c0, c1 = c0.astype(np.float32), c1.astype(np.float32)
    img = c0 + (c1 - c0) * ramp[..., None]
    img += 25.0 * _smooth_noise(rng, size, int(rng.integers(3, 8)))[..., None]
    return img


def _texture(
    rng: np.random.Generator, kind: str, hue_range: tuple[int, int], size: int
) -> np.ndarray:
    colour = _hsv_colour(rng, hue_range)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    if kind == "solid":
        shade = 1.0 + 0.2 * _smooth_noise(rng, size, 3)
        return colour * shade[..., None]
    second = colour * rng.uniform(0.35, 0.6)
    if kind == "stripes":
        angle = rng.uniform(0, np.pi)
        period = rng.uniform(5, 9)
        phase = (np.cos(angle) * xx + np.sin(angle) * yy) / period
        on = (np.floor(phase) % 2) == 0
    elif kind == "checker":
        cell = int(rng.integers(4, 8))
        ox, oy = rng.integers(0, cell, size=2)
        on = (((xx + ox) // cell + (yy + oy) // cell) % 2) == 0
    else:  # dots on a darker base
        period = int(rng.integers(6, 10))
        radius = period * rng.uniform(0.25, 0.4)
        dx = (xx % period) - period / 2
        dy = (yy % period) - period / 2
        on = dx * dx + dy * dy <= radius * radius
    return np.where(on[..., None], colour, second)


def _shape_mask(rng: np.random.Generator, shape: str, size: int) -> np.ndarray:
    mask = np.zeros((size, size), dtype=np.uint8)
    cx, cy = (int(v) for v in rng.integers(size // 8, size - size // 8, size=2))
    r = int(rng.integers(size // 10, size // 4))
    angle = float(rng.uniform(0, 180))
    if shape == "disc":
        cv2.circle(mask, (cx, cy), r, 1, thickness=-1)
    elif shape == "rectangle":
        w, h = r * rng.uniform(1.2, 2.0), r * rng.uniform(0.7, 1.4)
        box = cv2.boxPoints(((cx, cy), (w, h), angle))
        cv2.fillPoly(mask, [np.round(box).astype(np.int32)], 1)
    elif shape == "triangle":  # jittered vertex angles
        theta = np.deg2rad(angle) + np.array([0, 2, 4]) * np.pi / 3 + rng.uniform(-0.3, 0.3, 3)
        pts = np.stack([cx + 1.2 * r * np.cos(theta), cy + 1.2 * r * np.sin(theta)], axis=1)
        cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 1)
    elif shape == "ring":
        thickness = max(3, int(r * rng.uniform(0.3, 0.5)))
        cv2.circle(mask, (cx, cy), r, 1, thickness=thickness)
    else:  # cross: two bars through the centre
        arm = max(3, int(r * rng.uniform(0.35, 0.5)))
        for extra in (0.0, 90.0):
            bar = cv2.boxPoints(((cx, cy), (2.2 * r, arm), angle + extra))
            cv2.fillPoly(mask, [np.round(bar).astype(np.int32)], 1)
    return mask.astype(bool)


def render_sample(
    rng: np.random.Generator,
    size: int,
    must_include: int,
    num_classes: int = DEFAULT_NUM_CLASSES,
) -> tuple[np.ndarray, np.ndarray]:
    """Draws one image and its label.

    Args:
        rng: Random generator owned by this sample.
        size: Image side in pixels.
        must_include: Shape class drawn last (never occluded), so that every split with at
            least ``num_classes - 1`` images holds every class.
        num_classes: Number of classes, background included (see ``class_style``).

    Returns:
        tuple: (RGB uint8 image (size, size, 3), uint8 label (size, size)).
    """
    img = _background(rng, size)
    label = np.zeros((size, size), dtype=np.uint8)
    classes = [int(c) for c in rng.integers(1, num_classes, size=int(rng.integers(1, 5)))]
    for cls in [*classes, must_include]:
        shape, texture, family = class_style(cls, num_classes)
        hue_range = _CLASS_STYLE[cls][1] if family < 0 else _HUE_FAMILIES[family]
        mask = _shape_mask(rng, shape, size)
        img[mask] = _texture(rng, texture, hue_range, size)[mask]
        label[mask] = cls
    img = cv2.GaussianBlur(img, (3, 3), 0.6)
    img += rng.normal(0.0, 6.0, size=img.shape).astype(np.float32)
    return np.clip(np.round(img), 0, 255).astype(np.uint8), label


def _params(num_train: int, num_val: int, image_size: int, seed: int, num_classes: int) -> dict:
    params = {
        "version": GENERATOR_VERSION,
        "num_train": num_train,
        "num_val": num_val,
        "image_size": image_size,
        "seed": seed,
    }
    # Only the variant records its class count: the default's metadata and cache key stay
    # those of the datasets generated before the option existed.
    if num_classes != DEFAULT_NUM_CLASSES:
        params["num_classes"] = num_classes
    return params


def _write_split(
    root: str, split: str, count: int, image_size: int, seed: int, num_classes: int
) -> None:
    os.makedirs(os.path.join(root, "images", split))
    os.makedirs(os.path.join(root, "labels", split))
    lines = []
    for index in range(count):
        # One generator per image: any image can be regenerated alone, and changing the size
        # of one split does not change the other.
        rng = np.random.default_rng([seed, _SPLITS.index(split), index])
        must_include = index % (num_classes - 1) + 1
        img, label = render_sample(rng, image_size, must_include, num_classes)
        img_rel = f"images/{split}/{index:06d}.png"
        label_rel = f"labels/{split}/{index:06d}.png"
        cv2.imwrite(os.path.join(root, img_rel), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        cv2.imwrite(os.path.join(root, label_rel), label)
        lines.append(f"{img_rel} {label_rel}\n")
    with open(os.path.join(root, f"{split}.txt"), "w") as f:
        f.writelines(lines)


def _read_meta(root: str) -> dict | None:
    path = os.path.join(root, _META_FILE)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def generate_synthetic_shapes(
    root: str,
    num_train: int = 400,
    num_val: int = 100,
    image_size: int = 128,
    seed: int = 0,
    num_classes: int = DEFAULT_NUM_CLASSES,
) -> str:
    """Generates the dataset into ``root`` unless it is already there.

    The files are written to a temporary sibling folder renamed to ``root`` at the end, so a
    killed run never leaves a partial dataset, and a lock file next to ``root`` makes
    concurrent callers (e.g. distributed ranks) wait for the first one instead of racing.

    Args:
        root: Destination folder. Must not exist, be empty, or hold this same dataset.
        num_train: Number of training images.
        num_val: Number of validation images.
        image_size: Image side in pixels.
        seed: Base seed.
        num_classes: Number of classes, background included, in [3, MAX_NUM_CLASSES].

    Returns:
        str: ``root``.

    Raises:
        FileExistsError: If ``root`` holds other files, or a dataset with other parameters.
    """
    if min(num_train, num_val) < 1 or image_size < 16:
        raise ValueError(
            f"need num_train, num_val >= 1 and image_size >= 16, got {num_train}, {num_val}, "
            f"{image_size}"
        )
    if not 3 <= num_classes <= MAX_NUM_CLASSES:
        raise ValueError(f"num_classes must be in [3, {MAX_NUM_CLASSES}], got {num_classes}")
    root = os.path.abspath(root)
    params = _params(num_train, num_val, image_size, seed, num_classes)

    def ready() -> bool:
        meta = _read_meta(root)
        if meta is not None:
            if meta != params:
                raise FileExistsError(
                    f"{root} holds a synthetic dataset generated with {meta}, not {params}"
                )
            return True
        if os.path.isdir(root) and os.listdir(root):
            raise FileExistsError(f"{root} exists and is not a SyntheticShapes dataset")
        return False

    if ready():
        return root
    parent, name = os.path.split(root)
    os.makedirs(parent, exist_ok=True)
    with FileLock(os.path.join(parent, f".{name}.lock")):
        if ready():  # another process finished while we waited
            return root
        # Only the lock holder writes here, so leftovers of killed runs can go.
        for entry in os.listdir(parent):
            if entry.startswith(f".{name}.tmp-"):
                shutil.rmtree(os.path.join(parent, entry), ignore_errors=True)
        print(f"Generating {num_train + num_val} synthetic images into {root} ...", flush=True)
        tmp = tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=parent)
        try:
            _write_split(tmp, "train", num_train, image_size, seed, num_classes)
            _write_split(tmp, "val", num_val, image_size, seed, num_classes)
            with open(os.path.join(tmp, _META_FILE), "w") as f:
                json.dump(params, f, sort_keys=True)
            os.chmod(tmp, 0o755)  # mkdtemp creates it private
            if os.path.isdir(root):
                os.rmdir(root)  # empty (checked by ready()); rename cannot replace it portably
            os.rename(tmp, root)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return root


@manager.DATASETS.add_component
class SyntheticShapes(Dataset):
    """Procedural shapes dataset, generated into a cache folder on first use.

    Classes: 0 background, 1 disc (solid red/orange), 2 rectangle (blue stripes), 3 triangle
    (green checker), 4 ring (solid magenta), 5 cross (yellow dots). With ``num_classes`` > 6
    the classes are shape x texture x colour family combinations (``class_names``); configs
    use :class:`SyntheticShapes150` for 150 classes, since config checks read the class's
    ``NUM_CLASSES``. Labels are uint8 PNGs of class ids; list files are in PaddleSeg's
    ``image label`` format.

    Args:
        transforms: PaddleSeg transforms applied to each item.
        mode: ``"train"`` or ``"val"``.
        dataset_root: Where the data lives or is generated. ``None`` uses
            ``<default_cache_dir()>/synthetic_shapes_<hash of the parameters>``.
        num_train: Number of training images.
        num_val: Number of validation images.
        image_size: Image side in pixels.
        seed: Base seed; the same parameters always give byte-identical files.
        num_classes: Number of classes, background included; None takes ``NUM_CLASSES``.
        edge: Also return a binary edge map of the label in train mode.
    """

    NUM_CLASSES = 6
    IMG_CHANNELS = 3
    CREATES_ROOT = True  # generated on first use: a missing dataset_root is not an error
    IGNORE_INDEX = 255
    CLASS_NAMES = ("background", "disc", "rectangle", "triangle", "ring", "cross")

    def __init__(
        self,
        transforms: list,
        mode: str = "train",
        dataset_root: str | None = None,
        num_train: int = 400,
        num_val: int = 100,
        image_size: int = 128,
        seed: int = 0,
        num_classes: int | None = None,
        edge: bool = False,
    ) -> None:
        mode = mode.lower()
        if num_classes is None:
            num_classes = self.NUM_CLASSES
        if mode not in _SPLITS:
            raise ValueError(f"mode must be one of {list(_SPLITS)}, got {mode!r}")
        if dataset_root is None:
            dataset_root = os.path.join(
                default_cache_dir(),
                "synthetic_shapes_"
                + self.params_hash(num_train, num_val, image_size, seed, num_classes),
            )
        root = generate_synthetic_shapes(
            dataset_root, num_train, num_val, image_size, seed, num_classes
        )
        super().__init__(
            mode=mode,
            dataset_root=root,
            transforms=transforms,
            num_classes=num_classes,
            train_path=os.path.join(root, "train.txt"),
            val_path=os.path.join(root, "val.txt"),
            ignore_index=self.IGNORE_INDEX,
            edge=edge,
        )

    @staticmethod
    def params_hash(
        num_train: int,
        num_val: int,
        image_size: int,
        seed: int,
        num_classes: int = DEFAULT_NUM_CLASSES,
    ) -> str:
        """Short stable hash naming the cache folder of one parameter set."""
        params = _params(num_train, num_val, image_size, seed, num_classes)
        text = json.dumps(params, sort_keys=True)
        return hashlib.sha1(text.encode()).hexdigest()[:12]


@manager.DATASETS.add_component
class SyntheticShapes150(SyntheticShapes):
    """SyntheticShapes with 150 classes (as ADE20K): background + 149 shape x texture x colour
    combinations, 2-5 shapes per image, so each image holds a handful of the classes."""

    NUM_CLASSES = 150
    CLASS_NAMES = tuple(class_names(150))
