"""Label statistics of a dataset split, for LPCVC-style post-processing.

python tools/analyze_dataset.py --config X.yml [--split train] --out stats.json

Prints per-class pixel totals, image counts and the smallest area of each class where it
appears, and the mutually exclusive class pairs; writes them with the co-occurrence matrix
to ``--out`` and a heatmap of the co-occurrence next to it (``stats_cooccurrence.png``).
"""

from __future__ import annotations

import argparse
import json
import os

import paddleseg_ext  # noqa: F401
from paddleseg_ext.cli import add_config_args, run
from paddleseg_ext.config import load_config
from paddleseg_ext.dataset_stats import dataset_statistics, format_table, plot_cooccurrence


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_config_args(parser)
    parser.add_argument("--split", default="train", choices=("train", "val"), help="Split")
    parser.add_argument("--out", required=True, help="Statistics JSON to write")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    cfg = load_config(args.config, "val", opts=args.opts)
    stats = dataset_statistics(cfg, args.split)
    print(format_table(stats))
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(stats, f, indent=1)
    heatmap = os.path.splitext(args.out)[0] + "_cooccurrence.png"
    plot_cooccurrence(stats, heatmap)
    print(f"Statistics written to {args.out}; co-occurrence heatmap {heatmap}")
    return stats


if __name__ == "__main__":
    run(main, errors=(ValueError, FileNotFoundError))
