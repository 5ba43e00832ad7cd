"""Check a config's dataset splits for files that would break or corrupt training.

python tools/check_dataset.py --config X.yml [--split train,val] [--full] [--json report.json]

Lists the problems of each split by kind with their files (missing, unreadable, truncated,
size mismatches, out-of-range label values, colour labels, duplicates, empty splits,
malformed list lines), then a summary table. Without ``--full`` only existence, headers and
sizes are checked; ``--full`` decodes every file. Exit status: 0 clean (warnings allowed),
1 problems found, 2 bad config or arguments.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import paddleseg_ext  # noqa: F401
from paddleseg_ext.cli import add_config_args, run
from paddleseg_ext.config import ConfigError, load_config
from paddleseg_ext.data_check import (
    SPLITS,
    SplitReport,
    check_split,
    format_report,
    summary_table,
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_config_args(parser)
    parser.add_argument(
        "--split", default="train,val", help="Comma-separated splits to check (train, val)"
    )
    parser.add_argument(
        "--full", action="store_true", help="Decode every file and check label values"
    )
    parser.add_argument("--json", help="Write the full report to this JSON file")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> list[SplitReport]:
    args = parse_args(argv)
    splits = [s.strip() for s in args.split.split(",") if s.strip()]
    unknown = [s for s in splits if s not in SPLITS]
    if not splits or unknown:
        raise ConfigError(f"--split takes {' and/or '.join(SPLITS)}, got {args.split!r}")
    # The "model" task requires the least; a dataset check needs no training keys.
    cfg = load_config(args.config, "model", opts=args.opts)
    reports = [check_split(cfg, split, full=args.full) for split in splits]
    for report in reports:
        print(format_report(report))
    print(summary_table(reports))
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(
                {"config": args.config, "splits": [r.to_dict() for r in reports]}, f, indent=1
            )
        print(f"Report written to {args.json}")
    if not all(r.ok for r in reports):
        sys.exit(1)
    return reports


if __name__ == "__main__":
    run(main)
