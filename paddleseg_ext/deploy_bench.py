"""Latency of exported models, for ``deploy/benchmark.sh`` and ``tools/benchmark.py``.

``python -m paddleseg_ext.deploy_bench MODEL_DIR --backend onnxruntime --threads 1`` prints
the layout of Paddle Lite's benchmark tool::

    ======= Perf Info =======
    Time(unit: ms):
    init  = 12.345
    first = 6.789
    min   = 4.321
    max   = 5.432
    avg   = 4.567

``init`` is the time to create the predictor/session, ``first`` the first run, and
min/max/avg cover ``repeats`` runs after ``warmup`` untimed ones.
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
import time
from collections.abc import Callable, Sequence

import numpy as np

from .cli import run
from .runtime import BACKENDS, create_runner, load_deploy

PERF_KEYS = ("init", "first", "min", "max", "avg")


def measure_latency(
    make_runner: Callable[[], Callable[[np.ndarray], np.ndarray]],
    input_shape: Sequence[int],
    warmup: int = 20,
    repeats: int = 50,
    seed: int = 0,
) -> dict[str, float]:
    """Times a runner on random input.

    Args:
        make_runner: Creates the runner (timed as ``init``).
        input_shape: (N, C, H, W) with no dynamic (-1) value.
        warmup: Untimed runs after the first one.
        repeats: Timed runs.
        seed: Seed of the random input.

    Returns:
        Milliseconds: ``init``, ``first``, ``min``, ``max``, ``avg``, ``median``, ``p90``.
    """
    if any(int(v) <= 0 for v in input_shape) or len(input_shape) != 4:
        raise ValueError(f"input shape must be 4 positive sizes, got {list(input_shape)}")
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got {repeats}, {warmup}")
    x = np.random.default_rng(seed).standard_normal(list(input_shape)).astype(np.float32)
    start = time.perf_counter()
    runner = make_runner()
    init = time.perf_counter() - start
    start = time.perf_counter()
    runner(x)
    first = time.perf_counter() - start
    for _ in range(warmup):
        runner(x)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        runner(x)
        times.append(time.perf_counter() - start)
    ms = np.asarray(times) * 1000
    return {
        "init": init * 1000,
        "first": first * 1000,
        "min": float(ms.min()),
        "max": float(ms.max()),
        "avg": float(ms.mean()),
        "median": float(np.median(ms)),
        "p90": float(np.percentile(ms, 90)),
    }


def format_perf(stats: dict[str, float]) -> str:
    """The ``Perf Info`` block of Paddle Lite's benchmark tool."""
    lines = ["======= Perf Info =======", "Time(unit: ms):"]
    lines += [f"{key:<5} = {stats[key]:.3f}" for key in PERF_KEYS]
    return "\n".join(lines)


def resolve_input_shape(deploy: dict, input_shape: Sequence[int] | None) -> list[int]:
    """``input_shape`` if given, else deploy.yaml's; it must have no dynamic size.

    Raises:
        ValueError: Mismatch with a fixed exported size, or a dynamic size left unset.
    """
    exported = [int(v) for v in deploy["input_shape"]]
    if input_shape is None:
        shape = [1 if i == 0 and v == -1 else v for i, v in enumerate(exported)]
    else:
        shape = [int(v) for v in input_shape]
        if len(shape) != 4:
            raise ValueError(f"--input_shape needs 4 values N,C,H,W, got {shape}")
        clash = [i for i, (e, s) in enumerate(zip(exported, shape, strict=True)) if -1 < e != s]
        if clash:
            raise ValueError(f"--input_shape {shape} differs from the exported {exported}")
    if any(v <= 0 for v in shape):
        raise ValueError(f"the model has a dynamic input {exported}: pass --input_shape 1,3,H,W")
    return shape


def parse_shape(text: str) -> list[int]:
    """``"1,3,512,512"`` (or ``"1x3x512x512"``) -> [1, 3, 512, 512]."""
    try:
        return [int(v) for v in text.replace("x", ",").split(",")]
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"bad shape {text!r}; expected N,C,H,W") from err


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Benchmarks an export directory with Paddle Inference or onnxruntime."""
    parser = argparse.ArgumentParser(description="Latency of an exported model (Perf Info).")
    parser.add_argument("model_dir", help="Export directory holding deploy.yaml")
    parser.add_argument("--backend", choices=BACKENDS, default="paddle")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--input_shape", type=parse_shape, help="N,C,H,W (dynamic models)")
    args = parser.parse_args(argv)
    deploy = load_deploy(args.model_dir)
    shape = resolve_input_shape(deploy, args.input_shape)
    stats = measure_latency(
        lambda: create_runner(args.model_dir, args.backend, args.threads),
        shape,
        args.warmup,
        args.repeats,
    )
    print(f"model: {args.model_dir}  backend: {args.backend}  threads: {args.threads}")
    print(
        f"input_shape: {','.join(map(str, shape))}  warmup: {args.warmup}  repeats: {args.repeats}"
    )
    print(format_perf(stats))
    return stats


# ------------------------------------------------------------------- host benchmark (tools/)


def benchmark_config(
    cfg,
    name: str,
    input_shape: Sequence[int] | None = None,
    backends: Sequence[str] = BACKENDS,
    threads: int = 1,
    warmup: int = 5,
    repeats: int = 20,
    model_path: str | None = None,
) -> dict:
    """Params, FLOPs and per-backend latency (median, p90, FPS) of a config's model.

    The model is exported with ``argmax`` to a temporary directory (random weights unless
    ``model_path``) and timed there.

    Returns:
        A row: ``name``, ``input_shape``, ``params``, ``flops`` and, per backend B,
        ``B_median_ms``, ``B_p90_ms``, ``B_fps``.
    """
    from .config import build
    from .core.checkpoint import load_weights
    from .export import default_input_shape, export
    from .models.complexity import count_flops, count_params

    shape = list(input_shape) if input_shape else default_input_shape(cfg)
    model = build(cfg).model
    if model_path:
        load_weights(model, model_path)
    row: dict = {"name": name, "input_shape": "x".join(map(str, shape))}
    row["params"] = count_params(model)
    row["flops"] = count_flops(model, shape)
    with tempfile.TemporaryDirectory(prefix="bench_") as tmp:
        export(cfg, tmp, model_path=model_path, input_shape=shape, verify=False)
        for backend in backends:
            stats = measure_latency(
                lambda b=backend: create_runner(tmp, b, threads), shape, warmup, repeats
            )
            row[f"{backend}_median_ms"] = stats["median"]
            row[f"{backend}_p90_ms"] = stats["p90"]
            row[f"{backend}_fps"] = 1000.0 * shape[0] / stats["median"]
    return row


def read_miou(path: str) -> float:
    """mIoU from a metrics JSON (``tools/val.py --json``), as a fraction or a percentage."""
    with open(path) as f:
        metrics = json.load(f)
    if "mIoU" not in metrics:
        raise ValueError(f"{path}: no 'mIoU' key")
    return float(metrics["mIoU"])


def format_table(rows: list[dict], backends: Sequence[str]) -> str:
    """A fixed-width text table of ``benchmark_config`` rows."""
    header = ["model", "input", "params(M)", "GFLOPs"]
    for backend in backends:
        header += [f"{backend} med(ms)", "p90(ms)", "FPS"]
    if any("mIoU" in row for row in rows):
        header.append("mIoU")
    table = [header]
    for row in rows:
        line = [row["name"], row["input_shape"], f"{row['params'] / 1e6:.3f}"]
        line.append(f"{row['flops'] / 1e9:.3f}")
        for backend in backends:
            line += [
                f"{row[f'{backend}_median_ms']:.2f}",
                f"{row[f'{backend}_p90_ms']:.2f}",
                f"{row[f'{backend}_fps']:.1f}",
            ]
        if "mIoU" in header:
            line.append(f"{row['mIoU']:.4f}" if "mIoU" in row else "-")
        table.append(line)
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in table)


def write_csv(rows: list[dict], path: str) -> None:
    """Writes the rows (union of their keys, first-seen order) to ``path``."""
    keys = list(dict.fromkeys(k for row in rows for k in row))
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)


def plot_latency_vs_miou(rows: list[dict], backend: str, path: str) -> None:
    """Saves a PNG scatter plot of ``backend`` median latency against mIoU (Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [r for r in rows if "mIoU" in r]
    if not points:
        raise ValueError("no row has an mIoU to plot")
    fig, ax = plt.subplots(figsize=(6, 4.5))
    xs = [r[f"{backend}_median_ms"] for r in points]
    ys = [r["mIoU"] for r in points]
    ax.scatter(xs, ys)
    for r, x, y in zip(points, xs, ys, strict=True):
        ax.annotate(r["name"], (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.margins(x=0.3, y=0.15)  # room for the labels of the outermost points
    ax.set_xlabel(f"{backend} median latency (ms)")
    ax.set_ylabel("mIoU")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    run(main, errors=(FileNotFoundError, ValueError))
