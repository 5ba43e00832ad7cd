"""Dataset checks: the files of a split that would break or corrupt training, named.

Two levels:

* cheap (default): file existence, headers (PIL ``Image.open`` reads size and mode without
  decoding pixels; OpenCV is asked whether it has a decoder), image/label sizes, label modes,
  duplicate entries, empty splits and list file lines PaddleSeg rejects. A few hundred bytes
  per file, fast enough to run before every training.
* full: also decodes every file the way the loader does (images with ``cv2.imread``, labels
  with the dataset's label reader) and checks the label values.

Kinds only the full check finds: ``truncated`` (intact header, pixel data cut short) and
``label_values``; ``unreadable`` comes from both (a header nothing can parse is found cheaply,
pixel data OpenCV cannot decode only by the full check).

Sizes: OpenCV applies the EXIF orientation when it loads an image, PIL does not when PaddleSeg
loads a label. The image size compared is the one OpenCV loads (width and height swapped for
orientations 5-8), the label size the stored one, so ``size_mismatch`` is reported exactly when
the loader gets arrays of different shapes, whichever orientation the label was drawn in.
Orientations that flip or turn by 180 degrees keep the size and are not reported. The
orientation is read from EXIF data stored before the pixel data (always so in JPEG, usual in
PNG) to keep the check cheap.

Labels: PaddleSeg's ``Compose`` reads a label with ``np.asarray(Image.open(path))``, so a
palette or grayscale PNG gives its indices and a colour PNG gives 3 channels that fail later;
datasets whose transforms read labels with ``read_index_label`` (LPCVC) keep channel 0. A
colour label is an error for the former and a warning for the latter.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import cv2
import numpy as np
import paddle
from paddleseg.cvlibs import Config
from PIL import Image, UnidentifiedImageError
from prettytable import PrettyTable
from seg_runtime.media import read_index_label
from tqdm import tqdm

from .config import ConfigError, build, check_dataset_root, dataset_info

# The LPCVC dataset's label reader; its Compose subclass tells which reader a dataset uses.
from .datasets.lpcvc import _IndexLabelCompose

KINDS = {
    "missing": "file not found",
    "unreadable": "not an image the loader can decode",
    "truncated": "header intact, pixel data cut short or corrupt",
    "size_mismatch": "image and label sizes differ as loaded",
    "label_values": "label values outside [0, num_classes) other than the ignore index",
    "color_label": "multi-channel label where an index map is expected",
    "duplicate": "image listed more than once",
    "empty_split": "the split lists no sample",
    "malformed_line": "list file line that is not 'image label'",
}
FULL_ONLY_KINDS = ("truncated", "label_values")
SPLITS = ("train", "val")
# Below this many samples a progress bar is only shown on a terminal.
PROGRESS_MIN_SAMPLES = 200
# Offending label values named per problem.
MAX_VALUES_SHOWN = 5
# EXIF orientations that turn the image by 90 degrees (OpenCV swaps width and height).
_TRANSPOSING_ORIENTATIONS = (5, 6, 7, 8)
_EXIF_ORIENTATION_TAG = 0x0112
# What PIL raises on a file it cannot parse or decode.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


@dataclass(frozen=True)
class Problem:
    """One finding.

    Attributes:
        kind: One of :data:`KINDS`.
        files: The file(s) concerned (the list file for ``malformed_line``).
        message: One line saying what is wrong, without the file names.
        index: Sample index in the dataset's ``file_list``; None when no sample is concerned.
        severity: ``"error"`` (the sample must not be trained on) or ``"warning"``.
    """

    kind: str
    files: tuple[str, ...]
    message: str
    index: int | None = None
    severity: str = "error"


@dataclass
class SplitReport:
    """The findings of one split.

    Attributes:
        split: ``"train"`` or ``"val"``.
        num_samples: Entries in the split's file list.
        full: Whether every file was decoded.
        problems: Findings in sample order (list-level ones first).
    """

    split: str
    num_samples: int
    full: bool
    problems: list[Problem] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        """Problems of severity ``error``."""
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        """Problems of severity ``warning``."""
        return [p for p in self.problems if p.severity == "warning"]

    @property
    def ok(self) -> bool:
        """True when nothing is in the way of training on the split."""
        return not self.errors

    @property
    def bad_indices(self) -> set[int]:
        """Indices of the samples that must not be trained on."""
        return {p.index for p in self.errors if p.index is not None}

    def counts(self) -> dict[str, int]:
        """Number of problems per kind, in :data:`KINDS` order, kinds found only."""
        found = Counter(p.kind for p in self.problems)
        return {kind: found[kind] for kind in KINDS if found[kind]}

    def to_dict(self) -> dict:
        """A JSON-ready copy with the counts and the sorted bad indices."""
        return {
            "split": self.split,
            "num_samples": self.num_samples,
            "full": self.full,
            "ok": self.ok,
            "counts": self.counts(),
            "bad_indices": sorted(self.bad_indices),
            "problems": [asdict(p) for p in self.problems],
        }


@dataclass(frozen=True)
class _Reading:
    """How a dataset loads its samples, and what the check compares against."""

    full: bool
    image_flag: int  # cv2.imread flag of the dataset's Compose
    first_channel: bool  # multi-channel labels are reduced to channel 0
    num_classes: int
    ignore_index: int

    @property
    def read_label(self) -> Callable[[str], np.ndarray]:
        return read_index_label if self.first_channel else _read_label_stock


def _read_label_stock(path: str) -> np.ndarray:
    """A label as PaddleSeg's ``Compose`` reads it (all channels kept)."""
    with Image.open(path) as img:
        return np.asarray(img)


def _reading_of(dataset: paddle.io.Dataset, full: bool) -> _Reading:
    transforms = getattr(dataset, "transforms", None)
    return _Reading(
        full=full,
        image_flag=getattr(transforms, "read_flag", cv2.IMREAD_COLOR),
        first_channel=isinstance(transforms, _IndexLabelCompose),
        num_classes=int(dataset.num_classes),
        ignore_index=int(dataset.ignore_index),
    )


def check_samples(
    dataset: paddle.io.Dataset, split: str = "train", *, full: bool = False, progress: bool = True
) -> SplitReport:
    """Checks the ``file_list`` of a built PaddleSeg dataset.

    Args:
        dataset: A dataset with ``file_list`` (``[image, label]`` pairs), ``num_classes``,
            ``ignore_index`` and PaddleSeg's ``transforms`` (which tell how files are read).
        split: Name for the report.
        full: Decode every file and check label values (see the module docstring).
        progress: Allow a progress bar on stderr (shown on a terminal, or for more than
            :data:`PROGRESS_MIN_SAMPLES` samples).

    Returns:
        The report; ``bad_indices`` index ``dataset.file_list``.
    """
    return _check_pairs(
        split,
        dataset.file_list,
        _reading_of(dataset, full),
        progress=progress,
        source=str(getattr(dataset, "dataset_root", "")),
    )


def check_split(
    cfg: Config, split: str, *, full: bool = False, progress: bool = True
) -> SplitReport:
    """Checks ``{split}_dataset`` of a config without decoding anything unless ``full``.

    The dataset is built with PaddleSeg's builder, whose constructors only list the files.
    When the constructor rejects a line of the list file (PaddleSeg names neither the file
    nor the line), the list file is read here instead: each rejected line becomes a
    ``malformed_line`` problem and the other lines are checked, numbered as PaddleSeg will
    number them once the rejected lines are removed; labels are then assumed to be read by
    PaddleSeg's stock ``Compose``.

    Args:
        cfg: A loaded config.
        split: ``"train"`` or ``"val"``.
        full: Decode every file and check label values.
        progress: Allow a progress bar (see :func:`check_samples`).

    Returns:
        The report; ``bad_indices`` index the ``file_list`` of the dataset the builder makes
        from ``cfg``.

    Raises:
        ConfigError: Unknown split, no such dataset section, missing ``dataset_root`` or a
            dataset that cannot be built for another reason (named).
    """
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    ds_cfg = cfg.dic.get(f"{split}_dataset")
    if not ds_cfg:
        raise ConfigError(f"the config has no {split}_dataset")
    check_dataset_root(cfg, split)
    mode = str(ds_cfg.get("mode", "train")).lower()
    list_path = ds_cfg.get(f"{mode}_path")
    source = list_path or str(ds_cfg.get("dataset_root", ""))
    try:
        dataset = build(cfg).build_component(ds_cfg)
    except RuntimeError as err:  # the builder wraps the constructor's error in a RuntimeError
        cause = err.__context__ or err
        # PaddleSeg rejects a list line with a ValueError naming neither the file nor the line.
        pairs, rejected = (
            _scan_list(ds_cfg, list_path) if isinstance(cause, ValueError) else ([], [])
        )
        if not rejected:
            raise ConfigError(f"{split}_dataset cannot be built: {cause}") from cause
        num_classes, ignore_index, _ = dataset_info(cfg, split)
        gray = ds_cfg.get("img_channels", 3) == 1
        reading = _Reading(
            full=full,
            image_flag=cv2.IMREAD_GRAYSCALE if gray else cv2.IMREAD_COLOR,
            first_channel=False,
            num_classes=num_classes,
            ignore_index=ignore_index,
        )
        report = _check_pairs(split, pairs, reading, progress=progress, source=source)
        report.problems[:0] = rejected
        return report
    return _check_pairs(
        split, dataset.file_list, _reading_of(dataset, full), progress=progress, source=source
    )


def _scan_list(ds_cfg: dict, list_path: str | None) -> tuple[list[list[str]], list[Problem]]:
    """The pairs of a PaddleSeg list file and the lines PaddleSeg rejects, by line number."""
    if not list_path or not os.path.isfile(list_path):
        return [], []
    root = str(ds_cfg.get("dataset_root", ""))
    separator = ds_cfg.get("separator", " ")
    pairs, rejected = [], []
    # Undecodable bytes are kept visible rather than failing the scan; PaddleSeg's own
    # decoding error is reported when no line is rejected.
    with open(list_path, errors="replace") as f:
        for number, line in enumerate(f, 1):
            fields = line.strip().split(separator)
            if len(fields) == 2:
                pairs.append([os.path.join(root, fields[0]), os.path.join(root, fields[1])])
                continue
            found = (
                "a blank line"
                if not line.strip()
                else f"{len(fields)} field(s): {line.strip()[:80]!r}"
            )
            rejected.append(
                Problem(
                    "malformed_line",
                    (list_path,),
                    f"line {number}: expected 'image{separator}label', found {found}",
                )
            )
    return pairs, rejected


def _check_pairs(
    split: str,
    pairs: Sequence[Sequence[str | None]],
    reading: _Reading,
    *,
    progress: bool,
    source: str,
) -> SplitReport:
    report = SplitReport(split=split, num_samples=len(pairs), full=reading.full)
    if not pairs:
        report.problems.append(
            Problem("empty_split", (source,) if source else (), f"the {split} split is empty")
        )
        return report
    show = progress and (len(pairs) > PROGRESS_MIN_SAMPLES or sys.stderr.isatty())
    first_seen: dict[str, tuple[int, str | None]] = {}
    samples = tqdm(pairs, desc=f"check {split}", unit="sample", file=sys.stderr, disable=not show)
    for index, (image, label) in enumerate(samples):
        key = os.path.normpath(image)
        first, first_label = first_seen.setdefault(key, (index, label))
        if first != index:
            files = (image, label) if label else (image,)
            if _same_path(label, first_label):
                # Everything else was checked at the first entry.
                report.problems.append(Problem("duplicate", files, f"same pair as #{first}", index))
                continue
            report.problems.append(
                Problem(
                    "duplicate", files, f"image also at #{first} with label {first_label}", index
                )
            )
        report.problems.extend(_check_sample(index, image, label, reading))
    return report


def _same_path(a: str | None, b: str | None) -> bool:
    return (a is None and b is None) or (
        a is not None and b is not None and os.path.normpath(a) == os.path.normpath(b)
    )


def _check_sample(index: int, image: str, label: str | None, reading: _Reading) -> list[Problem]:
    problems: list[Problem] = []

    def add(kind: str, path: str, message: str, severity: str = "error") -> None:
        problems.append(Problem(kind, (path,), message, index, severity))

    image_size = _check_image(image, reading, add)
    if label is None:
        return problems
    label_size = _check_label(label, reading, add)
    if image_size and label_size and image_size[0] != label_size:
        loaded, note = image_size
        problems.append(
            Problem(
                "size_mismatch",
                (image, label),
                f"image {_wh(loaded)}{note}, label {_wh(label_size)}",
                index,
            )
        )
    return problems


def _wh(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


def _check_image(
    path: str, reading: _Reading, add: Callable[..., None]
) -> tuple[tuple[int, int], str] | None:
    """Checks an image; returns (the size OpenCV loads, a note on EXIF) or None if broken."""
    if not os.path.isfile(path):
        add("missing", path, "image not found")
        return None
    try:
        img = Image.open(path)
    except _DECODE_ERRORS as err:
        add("unreadable", path, _open_failure("image", err))
        return None
    with img:
        stored, image_format = img.size, img.format
        orientation = _exif_orientation(img)
        if reading.full:
            try:
                img.load()
            except _DECODE_ERRORS as err:
                add(*_decode_failure(path, "image", err))
                return None
    if not cv2.haveImageReader(path):
        add("unreadable", path, f"OpenCV has no decoder for this {image_format} file")
        return None
    if reading.full and cv2.imread(path, reading.image_flag) is None:
        add("unreadable", path, f"OpenCV cannot decode this {image_format} file")
        return None
    if orientation in _TRANSPOSING_ORIENTATIONS:
        note = f" as loaded (EXIF orientation {orientation} turns the stored {_wh(stored)})"
        return (stored[1], stored[0]), note
    return stored, ""


def _exif_orientation(img: Image.Image) -> int | None:
    # Image.getexif() decodes a whole PNG to look for EXIF after the pixel data; the EXIF
    # block PIL met while reading the header is enough here.
    raw = img.info.get("exif")
    if not raw:
        return None
    exif = Image.Exif()
    try:
        exif.load(raw)
    except _DECODE_ERRORS:
        return None  # unparsable EXIF: no orientation to apply
    return exif.get(_EXIF_ORIENTATION_TAG)


def _open_failure(what: str, err: Exception) -> str:
    if isinstance(err, UnidentifiedImageError):  # its message only repeats the path
        return f"{what} file of no known image format"
    return f"{what} header cannot be parsed: {err}"


def _decode_failure(path: str, what: str, err: Exception) -> tuple[str, str, str]:
    """``(kind, path, message)`` of a file whose header parses but whose pixels do not."""
    if "truncated" in str(err):
        return "truncated", path, f"{what} data cut short: {err}"
    return "unreadable", path, f"{what} data cannot be decoded: {err}"


def _check_label(path: str, reading: _Reading, add: Callable[..., None]) -> tuple[int, int] | None:
    """Checks a label; returns its size, or None if it is missing or broken."""
    if not os.path.isfile(path):
        add("missing", path, "label not found")
        return None
    try:
        with Image.open(path) as img:
            size, mode, bands = img.size, img.mode, len(img.getbands())
    except _DECODE_ERRORS as err:
        add("unreadable", path, _open_failure("label", err))
        return None
    if bands > 1:
        if reading.first_channel:
            add(
                "color_label",
                path,
                f"{mode} label with {bands} channels where an index map is expected: "
                "channel 0 would be read as the class id",
                "warning",
            )
        else:
            add(
                "color_label",
                path,
                f"{mode} label with {bands} channels where an index map is expected: "
                "PaddleSeg's reader keeps all channels and the sample would fail",
            )
    if not reading.full:
        return size
    try:
        label = reading.read_label(path)
    except _DECODE_ERRORS as err:
        add(*_decode_failure(path, "label", err))
        return None
    if label.ndim == 2:  # a multi-channel label is reported above
        message = _value_problem(label, reading.num_classes, reading.ignore_index)
        if message:
            add("label_values", path, message)
    return size


def _value_problem(label: np.ndarray, num_classes: int, ignore_index: int) -> str | None:
    """Names the values outside [0, num_classes) other than ``ignore_index``, or None."""
    values, counts = np.unique(label, return_counts=True)
    outside = ((values < 0) | (values >= num_classes)) & (values != ignore_index)
    if not outside.any():
        return None
    bad_values, bad_counts = values[outside], counts[outside]
    shown = ", ".join(
        f"{v.item()} ({c} px)"
        for v, c in zip(bad_values[:MAX_VALUES_SHOWN], bad_counts[:MAX_VALUES_SHOWN], strict=True)
    )
    more = (
        f" and {len(bad_values) - MAX_VALUES_SHOWN} more"
        if len(bad_values) > MAX_VALUES_SHOWN
        else ""
    )
    return (
        f"{int(bad_counts.sum())} px with values outside [0, {num_classes}) "
        f"(ignore index {ignore_index}): {shown}{more}"
    )


def format_report(report: SplitReport, limit: int = 20) -> str:
    """The problems of a split grouped by kind, at most ``limit`` lines per kind."""
    mode = "full" if report.full else "cheap"
    lines = [
        f"{report.split}: {report.num_samples} sample(s), {len(report.errors)} error(s), "
        f"{len(report.warnings)} warning(s) ({mode} check)"
    ]
    for kind, count in report.counts().items():
        lines.append(f"  {kind} ({count}): {KINDS[kind]}")
        found = [p for p in report.problems if p.kind == kind]
        for problem in found[:limit]:
            where = "" if problem.index is None else f"#{problem.index} "
            level = "warning: " if problem.severity == "warning" else ""
            lines.append(f"    {where}{', '.join(problem.files)}: {level}{problem.message}")
        if count > limit:
            lines.append(f"    ... and {count - limit} more")
    return "\n".join(lines)


def summary_table(reports: Sequence[SplitReport]) -> str:
    """One row per split: samples, errors, warnings and the count of each kind found."""
    kinds = [k for k in KINDS if any(k in r.counts() for r in reports)]
    table = PrettyTable(["split", "samples", "errors", "warnings", *kinds])
    for r in reports:
        counts = r.counts()
        table.add_row(
            [
                r.split,
                r.num_samples,
                len(r.errors),
                len(r.warnings),
                *(counts.get(k, 0) for k in kinds),
            ]
        )
    return table.get_string()
