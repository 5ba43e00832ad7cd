"""Main demo job: train a small model on the embedded synthetic data, evaluate, predict, export.

python tools/demo.py --save_dir output/demo
"""

from __future__ import annotations

import argparse

import paddleseg_ext  # noqa: F401
from paddleseg_ext.cli import run, setup_device
from paddleseg_ext.demo import DEFAULT_CONFIG, run_demo


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=DEFAULT_CONFIG, help="Demo config")
    parser.add_argument("--save_dir", default="output/demo", help="Where outputs go")
    parser.add_argument("--iters", type=int, help="Override the config's iters")
    parser.add_argument("--device", choices=("cpu", "gpu"), help="Default: gpu if available")
    parser.add_argument("--opts", nargs="+", metavar="KEY=VALUE", help="Config overrides")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    setup_device(args.device)
    return run_demo(args.config, args.save_dir, iters=args.iters, opts=args.opts)


if __name__ == "__main__":
    run(main)
