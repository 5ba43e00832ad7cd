"""Config loading on top of PaddleSeg's ``Config`` (YAML, ``_base_`` inheritance, ``--opts``).

PaddleSeg reports a missing file or key with a bare ``assert``; this wrapper turns those
into errors that name the file and the key before anything is built.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from urllib.parse import urlparse

import yaml
from paddleseg.cvlibs import Config, SegBuilder, manager
from paddleseg.cvlibs.config_checker import ConfigChecker

import paddleseg_ext  # noqa: F401  (registers our components before any config is built)

REQUIRED_FOR = {
    "model": ("model",),
    "train": ("model", "train_dataset", "optimizer", "lr_scheduler", "loss", "batch_size", "iters"),
    "val": ("model", "val_dataset"),
    "predict": ("model", "val_dataset"),
}


class ConfigError(ValueError):
    """A config file is missing, malformed or lacks a key the task needs."""


def load_config(
    path: str,
    task: str = "train",
    *,
    learning_rate: float | None = None,
    batch_size: int | None = None,
    iters: int | None = None,
    opts: list[str] | None = None,
) -> Config:
    """Parses a PaddleSeg YAML config and checks the keys ``task`` needs.

    Args:
        path: YAML file; ``_base_`` files are merged as in PaddleSeg.
        task: One of ``REQUIRED_FOR``'s keys.
        learning_rate, batch_size, iters: Command-line overrides (None keeps the file's value).
        opts: ``key.sub=value`` overrides, as PaddleSeg's ``--opts``.
    """
    if not os.path.isfile(path):
        raise ConfigError(f"Config file not found: {path}")
    if not path.endswith((".yml", ".yaml")):
        raise ConfigError(f"Config file must be YAML (.yml/.yaml): {path}")
    for opt in opts or []:
        if "=" not in opt:
            raise ConfigError(f"--opts entries must look like key=value, got {opt!r}")
    try:
        # PaddleSeg's sanity rules run after the checks below: they raise multi-line errors
        # for problems those checks name by key path.
        cfg = Config(
            path,
            learning_rate=learning_rate,
            batch_size=batch_size,
            iters=iters,
            opts=opts,
            checker=ConfigChecker([]),
        )
    except (AssertionError, KeyError, TypeError, yaml.YAMLError) as err:
        raise ConfigError(f"{path}: {' '.join(str(err).split())}") from err
    # 0 is a value (config_check says why it is wrong), not a missing key.
    missing = [key for key in REQUIRED_FOR[task] if cfg.dic.get(key) in (None, "", [], {})]
    if missing:
        raise ConfigError(f"{path}: missing key(s) {', '.join(missing)} needed to {task}")
    from .config_check import validate  # imports this module's ConfigError

    validate(cfg.dic, task)
    _fit_cosine_schedule(cfg.dic)
    if task == "train" and "distill" in cfg.dic:
        from .distill.distiller import parse_distill  # noqa: PLC0415  (imports PaddleSlim)

        parse_distill(cfg.dic["distill"])  # the teacher's files, before any data is read
    try:
        # The default rules also copy num_classes, in_channels and ignore_index between
        # the dataset, model and loss sections.
        Config._build_default_checker().apply_all_rules(cfg)
    except RuntimeError as err:
        raise ConfigError(f"{path}: {str(err).strip().splitlines()[-1]}") from err
    if task == "train":
        check_dataset_root(cfg, "train")
        check_pretrained(cfg)
    return cfg


def _fit_cosine_schedule(dic: dict) -> None:
    """A CosineAnnealingDecay without ``T_max`` decays over the iterations after the
    warm-up (so ``--iters`` resizes it), as SegBuilder does for PolynomialDecay."""
    schedule = dic.get("lr_scheduler")
    if isinstance(schedule, dict) and schedule.get("type") == "CosineAnnealingDecay":
        if "T_max" not in schedule and isinstance(dic.get("iters"), int):
            schedule["T_max"] = max(dic["iters"] - schedule.get("warmup_iters", 0), 1)


def pretrained_entries(node: object, key: str = "model") -> Iterator[tuple[str, str]]:
    """``(config key, path)`` of every ``pretrained`` file or URL in a ``model`` section.

    Nested sections are searched too: ``model.backbone.pretrained``, the inner model of a
    ``VIMWrapper`` (``model.model.pretrained``), list items (``model.backbones.0.pretrained``).
    """
    if isinstance(node, dict):
        for name, value in node.items():
            sub = f"{key}.{name}"
            if name == "pretrained":
                if isinstance(value, str) and value:
                    yield sub, value
            else:
                yield from pretrained_entries(value, sub)
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from pretrained_entries(item, f"{key}.{i}")


def check_pretrained(cfg: Config) -> None:
    """Fails on a ``pretrained`` weights file that does not exist, before the model is built.

    Stock PaddleSeg models load ``pretrained`` while they are built and report a missing
    file as a multi-line ``RuntimeError`` from the builder; ours load it in the training
    loop. URLs are not checked: PaddleSeg downloads them.
    """
    for key, path in pretrained_entries(cfg.dic.get("model") or {}):
        if urlparse(path).netloc:
            continue
        if not os.path.isfile(path):
            raise ConfigError(
                f"{key}: pretrained weights file not found: {path} (relative paths start at "
                "the working directory)"
            )


def check_dataset_root(cfg: Config, split: str) -> None:
    """Fails on a missing ``{split}_dataset.dataset_root`` before the dataset is built.

    Several stock PaddleSeg datasets (ADE20K, PascalVOC, OpticDiscSeg, ...) start a
    download of up to a gigabyte when their root is unset or missing, instead of failing.
    Datasets that create their own root (``CREATES_ROOT = True``) are exempt.
    """
    ds_cfg = cfg.dic.get(f"{split}_dataset") or {}
    ds_class = manager.DATASETS.components_dict.get(ds_cfg.get("type"))
    if ds_class is None or getattr(ds_class, "CREATES_ROOT", False):
        return
    root = ds_cfg.get("dataset_root")
    hint = f"set it in the config or pass --opts {split}_dataset.dataset_root=PATH"
    if not root:
        raise ConfigError(f"{split}_dataset.dataset_root is not set; {hint}")
    if not os.path.isdir(root):
        raise ConfigError(
            f"{split}_dataset.dataset_root does not exist: {root} (relative paths start at "
            f"the working directory); {hint}"
        )


def build(cfg: Config) -> SegBuilder:
    """Returns PaddleSeg's lazy builder (``.model``, ``.train_dataset``, ``.optimizer``...)."""
    return SegBuilder(cfg)


def dataset_info(cfg: Config, split: str = "val") -> tuple[int, int, list[str]]:
    """Returns ``(num_classes, ignore_index, class_names)`` of a config's dataset.

    Registered datasets carry ``NUM_CLASSES``/``IGNORE_INDEX``/``CLASS_NAMES``; PaddleSeg's
    generic ``Dataset`` takes ``num_classes``/``ignore_index`` in the config, and an
    optional top-level ``class_names`` list names the classes.
    """
    ds_cfg = cfg.dic.get(f"{split}_dataset") or cfg.dic.get("train_dataset") or {}
    ds_type = ds_cfg.get("type", "Dataset")
    if ds_type not in manager.DATASETS.components_dict:
        raise ConfigError(f"{split}_dataset: unknown dataset type {ds_type!r}")
    ds_class = manager.DATASETS.components_dict[ds_type]
    num_classes = ds_cfg.get("num_classes", getattr(ds_class, "NUM_CLASSES", None))
    if num_classes is None:
        num_classes = cfg.dic.get("model", {}).get("num_classes")
    if num_classes is None:
        raise ConfigError(f"{split}_dataset: cannot tell num_classes; set it in the config")
    ignore_index = ds_cfg.get("ignore_index", getattr(ds_class, "IGNORE_INDEX", 255))
    names = cfg.dic.get("class_names") or getattr(ds_class, "CLASS_NAMES", None)
    names = list(names or (str(i) for i in range(num_classes)))
    if len(names) != num_classes:
        raise ConfigError(f"class_names has {len(names)} entries for {num_classes} classes")
    return int(num_classes), int(ignore_index), names


def build_postprocess(cfg: Config, stats: str | None = None):
    """The label post-processing of a config's ``postprocess:`` section, or None.

    ```yaml
    postprocess: {stats: output/lpcvc_stats.json, factor: 0.333, background: 0}
    ```
    ``stats`` (``tools/analyze_dataset.py``'s JSON) may come from the command line instead
    (``--postprocess FILE``), which also turns post-processing on without the section.

    Raises:
        ConfigError: An unknown key, a bad value or a missing statistics file, named.
    """
    from seg_runtime.postprocess import MIN_SIZE_FACTOR, PostProcessor

    from .config_check import check_postprocess

    section = cfg.dic.get("postprocess") or {}
    check_postprocess(section)
    path = stats or section.get("stats")
    if not path:
        if section:
            raise ConfigError("postprocess.stats: missing (tools/analyze_dataset.py --out FILE)")
        return None
    if not os.path.isfile(path):
        raise ConfigError(f"postprocess.stats: file not found: {path}")
    try:
        return PostProcessor.from_stats(
            path, float(section.get("factor", MIN_SIZE_FACTOR)), int(section.get("background", 0))
        )
    except (ValueError, TypeError) as err:
        raise ConfigError(f"postprocess: {err}") from err
