"""Compare models on this host: params, FLOPs, latency (median/p90), FPS, and mIoU.

python tools/benchmark.py --configs configs/lpcvc/a.yml configs/lpcvc/b.yml \
    --input_shape 1 3 512 512 --threads 1 --csv bench.csv \
    --metrics output/a/metrics.json output/b/metrics.json --plot bench.png
"""

from __future__ import annotations

import argparse
import os

import paddleseg_ext  # noqa: F401
from paddleseg_ext.benchmark import (
    HOST_BACKENDS,
    benchmark_config,
    format_table,
    plot_latency_vs_miou,
    read_miou,
    write_csv,
)
from paddleseg_ext.cli import run, setup_device
from paddleseg_ext.config import ConfigError, load_config
from paddleseg_ext.export import check_input_shape


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", required=True, help="PaddleSeg YAML configs")
    parser.add_argument(
        "--model_paths", nargs="+", help="Weights per config (default: random weights)"
    )
    parser.add_argument(
        "--input_shape",
        nargs=4,
        type=int,
        metavar=("N", "C", "H", "W"),
        help="Input shape (default: each config's val Resize size or 512x512)",
    )
    parser.add_argument(
        "--backends", default=",".join(HOST_BACKENDS), help="Comma list of paddle,onnxruntime"
    )
    parser.add_argument("--threads", type=int, default=1, help="CPU threads")
    parser.add_argument("--warmup", type=int, default=5, help="Untimed runs")
    parser.add_argument("--repeats", type=int, default=20, help="Timed runs")
    parser.add_argument("--metrics", nargs="+", help="Metrics JSON per config (tools/val.py)")
    parser.add_argument("--csv", help="Write the table as CSV")
    parser.add_argument("--plot", help="PNG of latency vs mIoU (needs --metrics)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    setup_device("cpu")
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if not backends or any(b not in HOST_BACKENDS for b in backends):
        raise ConfigError(
            f"--backends: choose from {', '.join(HOST_BACKENDS)}, got {args.backends}"
        )
    for option in ("metrics", "model_paths"):
        values = getattr(args, option)
        if values and len(values) != len(args.configs):
            raise ConfigError(f"--{option} needs one entry per config ({len(args.configs)})")
    if args.plot and not args.metrics:
        raise ConfigError("--plot needs --metrics (mIoU per config)")
    for path in args.metrics or []:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"--metrics file not found: {path}")
    shape = check_input_shape(args.input_shape) if args.input_shape else None
    if shape and any(v < 0 for v in shape):
        raise ConfigError("--input_shape: benchmarks need a fixed shape (no -1)")
    cfgs = [load_config(path, "val") for path in args.configs]

    rows = []
    for i, (path, cfg) in enumerate(zip(args.configs, cfgs, strict=True)):
        name = os.path.splitext(os.path.basename(path))[0]
        row = benchmark_config(
            cfg,
            name,
            shape,
            backends,
            threads=args.threads,
            warmup=args.warmup,
            repeats=args.repeats,
            model_path=args.model_paths[i] if args.model_paths else None,
        )
        if args.metrics:
            row["mIoU"] = read_miou(args.metrics[i])
        rows.append(row)
    print(format_table(rows, backends))
    if args.csv:
        write_csv(rows, args.csv)
        print(f"CSV written to {args.csv}")
    if args.plot:
        plot_latency_vs_miou(rows, backends[0], args.plot)
        print(f"Plot written to {args.plot}")
    return rows


if __name__ == "__main__":
    run(main)
