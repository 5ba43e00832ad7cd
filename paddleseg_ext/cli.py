"""Command-line plumbing shared by ``tools/*.py``: common flags, device, error reporting."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

import paddle

from .config import ConfigError


def add_config_args(parser: argparse.ArgumentParser) -> None:
    """``--config``, ``--device`` and ``--opts``, as in PaddleSeg's tools."""
    parser.add_argument("--config", required=True, help="PaddleSeg YAML config file")
    parser.add_argument(
        "--device",
        choices=("cpu", "gpu"),
        default=None,
        help="Device to run on (default: gpu when Paddle is built with CUDA and sees one)",
    )
    parser.add_argument(
        "--opts",
        nargs="+",
        default=None,
        metavar="KEY=VALUE",
        help="Override config entries, e.g. --opts train_dataset.num_train=64",
    )


def add_postprocess_arg(parser: argparse.ArgumentParser) -> None:
    """``--postprocess STATS_JSON``: label post-processing (see ``config.build_postprocess``)."""
    parser.add_argument(
        "--postprocess",
        metavar="STATS_JSON",
        help="Post-process labels with these statistics (tools/analyze_dataset.py); "
        "factor/background from the config's postprocess: section",
    )


def setup_device(device: str | None) -> str:
    """Selects ``device`` (or the best available) for Paddle and returns its name."""
    has_gpu = paddle.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0
    if device is None:
        device = "gpu" if has_gpu else "cpu"
    if device == "gpu" and not has_gpu:
        raise ConfigError("--device gpu: this Paddle build has no CUDA device (use --device cpu)")
    paddle.set_device(device)
    return device


def run(
    main: Callable[[list[str] | None], object],
    errors: tuple[type[Exception], ...] = (ConfigError, FileNotFoundError),
) -> None:
    """Runs a tool's ``main``; ``errors`` (bad input) print one line and exit with status 2."""
    try:
        main(None)
    except errors as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
