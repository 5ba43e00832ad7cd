"""Host comparison of configs (``tools/benchmark.py``): params, FLOPs, latency, mIoU.

Latency is measured with the device runtime's timer (``seg_runtime.measure_latency``) on a
temporary export of each model.
"""

from __future__ import annotations

import csv
import json
import tempfile
from collections.abc import Sequence

from seg_runtime import create_runner, measure_latency

# The backends a host comparison runs (Paddle Lite needs an arm board or its side env).
HOST_BACKENDS = ("paddle", "onnxruntime")


def benchmark_config(
    cfg,
    name: str,
    input_shape: Sequence[int] | None = None,
    backends: Sequence[str] = HOST_BACKENDS,
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
