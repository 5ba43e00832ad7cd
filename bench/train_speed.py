"""Training throughput on CPU: PaddleSeg 2.8's loop against ours, same model, data and settings.

In one run, trains the model of ``--config`` for ``--iters`` iterations with the stock loop
(``paddleseg.core.train``) and with ours (``tools/train.py``), alternating the two ``--rounds``
times, each run in a fresh process. Prints for each loop: seconds per iteration (median after
``--warmup`` iterations), images per second, data-loading wait per iteration, the split of
the step into forward, loss, backward and optimizer, the cores kept busy and the peak memory;
then the per-sample cost of the data pipeline (read, each transform) and last
``ratio ours/stock step time: X.XX``.

Both loops get the same config: batch ``--batch_size``, a ``--crop`` x ``--crop``
RandomPaddingCrop, the config's loss, optimizer and lr schedule, the same initial weights
(seed ``--seed``). The stock loop runs with its own defaults (``num_workers=0``: batches are
read by its DataLoader's thread), ours with ``tools/train.py``'s defaults plus ``--ours_args``.
``--ours_ranks 2`` runs ours data-parallel (``tools/train.py --ranks 2``: one process per
core, gloo) with the batch split over the ranks, the global batch unchanged. The stock loop
gets Paddle's ``nn.CrossEntropyLoss`` where the config names ``SegCrossEntropyLoss`` (the
same loss; PaddleSeg 2.8's own ``CrossEntropyLoss`` fails on Paddle 3.3), ours the config's.

PaddleSeg 2.8's loop crashes on Paddle 3.3 at its first log line: it averages
``loss.numpy()[0]``, written for Paddle 2's shape-[1] losses, and Paddle 3 returns 0-d ones
(``IndexError: too many indices for array``). Here its loss terms reach the loop wrapped so
that ``.numpy()`` has shape [1] again (:class:`StockLossTerm`). Its closing ``paddle.flops``
report is skipped.

The step is timed from the outside, identically for both loops: hooks on the model's forward,
the loss functions, ``optimizer.step`` and ``lr_scheduler.step`` (called once per iteration
by both) record timestamps (rank 0's are reported; the loss is the mean over the ranks).
This process samples every 0.2 s the resident (RSS) and proportional (PSS: shared pages
split between their users) memory and the CPU time of each run's whole process tree (loader
workers and ranks included).

Usage (timing runs take the shared benchmark lock), then the loss curves of saved runs:
    flock /tmp/pse-bench.lock .venv/bin/python bench/train_speed.py \\
        --config configs/camvid/topformer_tiny_camvid.yml --ours_ranks 2 \\
        --json output/train_speed/topformer.json
    python bench/train_speed.py --json output/train_speed/topformer.json --plot losses.png
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOOPS = ("stock", "ours")
PHASES = ("data", "forward", "loss", "backward", "optimizer")
SAMPLE_SECONDS = 0.2


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="PaddleSeg YAML config to train")
    parser.add_argument("--iters", type=int, default=16, help="Iterations per run")
    parser.add_argument("--warmup", type=int, default=3, help="Leading iterations not timed")
    parser.add_argument("--rounds", type=int, default=2, help="stock, ours runs alternated")
    parser.add_argument("--batch_size", type=int, default=8, help="Global batch size")
    parser.add_argument("--crop", type=int, default=384, help="Square training crop side")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--ours_args", default="", help="Extra tools/train.py flags, e.g. '--num_workers 2'"
    )
    parser.add_argument("--ours_ranks", type=int, default=1, help="Data-parallel ranks of ours")
    parser.add_argument("--loops", default="stock,ours", help="Loops to run, comma-separated")
    parser.add_argument("--data_samples", type=int, default=32, help="Samples for the data profile")
    parser.add_argument("--json", help="Write every measurement (and the loss curves) here")
    parser.add_argument(
        "--plot", help="PNG of the loss curves: one --json file, or several joined by commas"
    )
    parser.add_argument(
        "--reference", help="A --json file of an earlier run: compare ours' loss curve with it"
    )
    parser.add_argument("--child", choices=(*LOOPS, "data"), help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not args.child and not (args.plot and not args.config):
        if not args.config:
            parser.error("--config is required")
        if args.iters <= args.warmup + 1:
            parser.error("--iters must exceed --warmup + 1")
        if args.batch_size % args.ours_ranks:
            parser.error("--batch_size must be a multiple of --ours_ranks")
    return args


def write_config(args: argparse.Namespace, path: str) -> None:
    """The config, merged, with the batch size, iterations and square crop of the bench."""
    import yaml

    import paddleseg_ext  # noqa: F401  (registers our components)
    from paddleseg_ext.config import load_config

    cfg = load_config(args.config, batch_size=args.batch_size, iters=args.iters)
    dic = cfg.dic
    crops = [t for t in dic["train_dataset"]["transforms"] if t["type"] == "RandomPaddingCrop"]
    if not crops:
        raise SystemExit(f"{args.config}: train_dataset has no RandomPaddingCrop to set")
    for crop in crops:
        crop["crop_size"] = [args.crop, args.crop]
    with open(path, "w") as f:
        yaml.safe_dump(dic, f, sort_keys=False)


# --- inside a training process ------------------------------------------------------------


class Probe:
    """Timestamps of each iteration's phases, and the loss values."""

    def __init__(self) -> None:
        self.events: dict[str, list[float]] = {
            k: [] for k in ("fwd_start", "fwd_end", "loss_end", "opt_start", "step_end")
        }
        self.losses: list[float] = []

    def _mark(self, name: str) -> None:
        # CLOCK_MONOTONIC: comparable with the parent's memory and CPU samples.
        self.events[name].append(time.monotonic())

    def attach(self, builder) -> None:
        """Hooks the builder's model, loss functions, optimizer and lr scheduler.

        Args:
            builder: PaddleSeg's ``SegBuilder``; its cached components are the ones the
                loops use.
        """
        model = builder.model
        model.register_forward_pre_hook(lambda *_: self._mark("fwd_start"))
        model.register_forward_post_hook(lambda *_: self._mark("fwd_end"))
        losses = builder.loss
        losses["types"] = [self._timed_loss(fn) for fn in losses["types"]]
        optimizer = builder.optimizer
        step = optimizer.step

        def timed_step(*a, **k):
            self._mark("opt_start")
            return step(*a, **k)

        optimizer.step = timed_step
        lr_sched = builder.lr_scheduler
        lr_step = lr_sched.step

        def timed_lr_step(*a, **k):
            out = lr_step(*a, **k)
            self._mark("step_end")
            return out

        lr_sched.step = timed_lr_step

    def _timed_loss(self, fn):
        def loss(logits, label):
            value = fn(logits, label)
            self.losses.append(float(value))
            self._mark("loss_end")
            return value

        return loss

    def result(self) -> dict:
        """Per-iteration seconds of each phase, from the second iteration on."""
        ev = self.events
        n = len(ev["step_end"])
        per_iter = {"step": [], **{p: [] for p in PHASES}}
        for i in range(1, n):
            prev = ev["step_end"][i - 1]
            per_iter["step"].append(ev["step_end"][i] - prev)
            per_iter["data"].append(ev["fwd_start"][i] - prev)
            per_iter["forward"].append(ev["fwd_end"][i] - ev["fwd_start"][i])
            per_iter["loss"].append(ev["loss_end"][i] - ev["fwd_end"][i])
            per_iter["backward"].append(ev["opt_start"][i] - ev["loss_end"][i])
            per_iter["optimizer"].append(ev["step_end"][i] - ev["opt_start"][i])
        return {"per_iter": per_iter, "step_end": ev["step_end"], "losses": self.losses[:n]}


def _build(config: str, seed: int):
    import paddle

    import paddleseg_ext  # noqa: F401
    from paddleseg_ext.config import build, load_config
    from paddleseg_ext.core.train import set_seed

    paddle.set_device("cpu")
    set_seed(seed)  # as ours does before building: both loops start from the same weights
    return build(load_config(config))


class StockLossTerm:
    """A loss term as PaddleSeg 2.8's loop expects it from Paddle 2.

    The loop sums the terms (``sum(loss_list)``: the tensor comes out, so ``float`` and
    ``backward`` see a plain 0-d tensor) and logs ``term.numpy()[0]``, which needs shape [1].
    """

    def __init__(self, value) -> None:
        self.value = value

    def numpy(self):
        return self.value.numpy().reshape([1])

    def __radd__(self, other):
        return other + self.value


def _plain(loss):
    """Paddle's own cross entropy in place of ``SegCrossEntropyLoss`` (same value)."""
    from paddle import nn

    from paddleseg_ext.losses import SegCrossEntropyLoss

    if type(loss) is not SegCrossEntropyLoss or loss.weight is not None:
        return loss
    ce = nn.CrossEntropyLoss(ignore_index=loss.ignore_index, axis=1)
    return lambda logit, label: ce(logit, label if label.ndim == 4 else label.unsqueeze(1))


def run_stock(spec: dict) -> dict:
    """PaddleSeg 2.8's ``paddleseg.core.train`` with its default ``num_workers=0``."""
    import paddle

    # Imported by name: the package re-exports the function ``train`` over the module.
    stock = importlib.import_module("paddleseg.core.train")
    builder = _build(spec["config"], spec["seed"])
    builder.loss["types"] = [_plain(fn) for fn in builder.loss["types"]]
    probe = Probe()
    probe.attach(builder)
    loss_computation = stock.loss_computation
    stock.loss_computation = lambda **kw: [StockLossTerm(v) for v in loss_computation(**kw)]
    paddle.flops = lambda *a, **k: None  # the loop's closing FLOPs table, not timed
    with tempfile.TemporaryDirectory() as save_dir:
        stock.train(
            builder.model,
            builder.train_dataset,
            optimizer=builder.optimizer,
            losses=builder.loss,
            save_dir=save_dir,
            iters=spec["iters"],
            batch_size=spec["batch_size"],
            save_interval=spec["iters"],
            log_iters=10,
        )
    return probe.result()


def run_ours(spec: dict) -> dict:
    """``tools/train.py`` with its defaults plus ``spec['ours_args']``, on each rank."""
    ours = importlib.import_module("paddleseg_ext.core.train")
    from paddleseg_ext.core.ranks import is_rank

    tool_spec = importlib.util.spec_from_file_location("train_tool", f"{REPO}/tools/train.py")
    tool = importlib.util.module_from_spec(tool_spec)
    tool_spec.loader.exec_module(tool)
    probe = Probe()
    build = ours.build

    def instrumented_build(cfg):
        builder = build(cfg)
        probe.attach(builder)
        return builder

    ours.build = instrumented_build
    ranks = spec["ours_ranks"]
    per_rank = spec["batch_size"] // ranks
    # One folder for all ranks (rank k > 0 re-runs this process's command line).
    save_dir = os.path.join(os.path.dirname(spec["config"]), "ours_run")
    if not is_rank():
        shutil.rmtree(save_dir, ignore_errors=True)
    tool.main(
        [
            "--config", spec["config"], "--device", "cpu", "--save_dir", save_dir,
            "--seed", str(spec["seed"]), "--log_iters", "10", "--batch_size", str(per_rank),
            "--save_interval", str(spec["iters"]), "--ranks", str(ranks),
            *spec["ours_args"].split(),
        ]
    )  # fmt: skip
    return probe.result()


def run_data(spec: dict) -> dict:
    """Per-sample seconds of the training data pipeline: reading and each transform."""
    from paddleseg_ext.core.data import SeededDataset

    dataset = _build(spec["config"], spec["seed"]).train_dataset
    ops = dataset.transforms.transforms
    seconds = {type(op).__name__: 0.0 for op in ops}

    def timed(op):
        def call(data):
            start = time.perf_counter()
            out = op(data)
            seconds[type(op).__name__] += time.perf_counter() - start
            return out

        return call

    dataset.transforms.transforms = [timed(op) for op in ops]
    seeded = SeededDataset(dataset, spec["seed"])
    n = min(spec["data_samples"], len(dataset))
    start = time.perf_counter()
    for idx in range(n):
        seeded[0, idx]
    return {"samples": n, "total": time.perf_counter() - start, "transforms": seconds}


# --- this process: alternate the loops, watch their process trees, summarise ----------------


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants."""
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:
            continue  # exited meanwhile
    return pids


def _tree_sample(pid: int) -> tuple[float, int, int, float]:
    """(monotonic time, RSS bytes, PSS bytes, CPU seconds) of ``pid``'s process tree."""
    rss = pss = 0
    cpu = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for p in _tree(pid):
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Rss:"):
                        rss += int(line.split()[1]) * 1024
                    elif line.startswith("Pss:"):
                        pss += int(line.split()[1]) * 1024
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            cpu += (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError):
            continue
    return time.monotonic(), rss, pss, cpu


def run_child(kind: str, spec: dict, spec_path: str, work: str) -> dict:
    """Runs one measurement in a fresh process tree and adds its memory and CPU samples."""
    out = os.path.join(work, f"{kind}.json")
    cmd = [sys.executable, os.path.abspath(__file__), "--child", kind, "--spec", spec_path]
    cmd += ["--out", out]
    log = os.path.join(work, f"{kind}.log")
    samples = []
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT)
        while proc.poll() is None:
            samples.append(_tree_sample(proc.pid))
            time.sleep(SAMPLE_SECONDS)
    if proc.returncode != 0:
        with open(log) as f:
            tail = f.read()[-4000:]
        raise SystemExit(f"{kind} run failed (exit {proc.returncode}):\n{tail}")
    with open(out) as f:
        result = json.load(f)
    if kind != "data":
        # The loss of the global batch: the mean of the ranks' losses (each over its share).
        ranks = [result["losses"]]
        for r in range(1, spec["ours_ranks"] if kind == "ours" else 1):
            with open(f"{out}.rank{r}") as f:
                ranks.append(json.load(f)["losses"])
        result["losses"] = [statistics.mean(values) for values in zip(*ranks, strict=True)]
    result["monitor"] = samples
    return result


def _cpu_between(samples: list, start: float, end: float) -> float:
    """CPU seconds the tree used between two monotonic times (nearest samples)."""
    first = min(samples, key=lambda s: abs(s[0] - start))
    last = min(samples, key=lambda s: abs(s[0] - end))
    return (last[3] - first[3]) / max(last[0] - first[0], 1e-9)


def summarise(runs: list[dict], warmup: int, batch_size: int) -> dict:
    """Medians over the timed iterations of all rounds of one loop."""
    timed = {k: [] for k in ("step", *PHASES)}
    for run in runs:
        for key, values in run["per_iter"].items():
            timed[key].extend(values[warmup - 1 :])
    step = statistics.median(timed["step"])
    busy = [_cpu_between(r["monitor"], r["step_end"][warmup], r["step_end"][-1]) for r in runs]
    return {
        "step": step,
        "rounds": [statistics.median(r["per_iter"]["step"][warmup - 1 :]) for r in runs],
        "ips": batch_size / step,
        "phases": {p: statistics.median(timed[p]) for p in PHASES},
        "busy": statistics.mean(busy),
        "peak_rss": max(s[1] for r in runs for s in r["monitor"]),
        "peak_pss": max(s[2] for r in runs for s in r["monitor"]),
        "timed_iters": len(timed["step"]),
    }


def format_loop(name: str, s: dict, warmup: int) -> str:
    phases = ", ".join(f"{p} {s['phases'][p]:.3f}" for p in PHASES[1:])
    rounds = "/".join(f"{r:.3f}" for r in s["rounds"])
    return (
        f"{name}: {s['step']:.3f} s/iter (median of {s['timed_iters']} after {warmup} warm-up; "
        f"per round {rounds}), {s['ips']:.2f} img/s, data wait {s['phases']['data']:.3f} s/iter, "
        f"{phases} s, cores busy {s['busy']:.2f}, peak RSS {s['peak_rss'] / 2**30:.2f} GiB, "
        f"peak PSS {s['peak_pss'] / 2**30:.2f} GiB"
    )


def format_data(d: dict, batch_size: int) -> str:
    per_sample = d["total"] / d["samples"]
    ops = ", ".join(f"{k} {v / d['samples'] * 1e3:.1f}" for k, v in d["transforms"].items())
    read = per_sample - sum(d["transforms"].values()) / d["samples"]
    return (
        f"data pipeline (1 core, {d['samples']} samples): {per_sample * 1e3:.1f} ms/sample "
        f"({per_sample * batch_size:.3f} s per batch of {batch_size}): "
        f"read+decode {read * 1e3:.1f}, {ops} ms"
    )


def child_main(args: argparse.Namespace) -> None:
    import paddle.distributed as dist

    with open(args.spec) as f:
        spec = json.load(f)
    result = {"stock": run_stock, "ours": run_ours, "data": run_data}[args.child](spec)
    rank = dist.get_rank()
    with open(args.out if rank == 0 else f"{args.out}.rank{rank}", "w") as f:
        json.dump(result, f)


def plot_losses(json_files: list[str], png: str) -> None:
    """Loss per iteration of each loop (first round), one panel per ``--json`` file."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(json_files), figsize=(6 * len(json_files), 4), squeeze=False)
    for ax, path in zip(axes[0], json_files, strict=True):
        with open(path) as f:
            report = json.load(f)
        for loop, runs in report["runs"].items():
            losses = runs[0]["losses"]
            ratio = report["summary"][loop]["step"]
            ax.plot(range(1, len(losses) + 1), losses, label=f"{loop} ({ratio:.2f} s/iter)")
        ax.set_title(os.path.basename(report["args"]["config"]))
        ax.set_xlabel("iteration")
        ax.set_ylabel("training loss")
        ax.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    print(f"Loss curves written to {png}")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child:
        child_main(args)
        return
    if args.plot and not args.config:
        if not args.json:
            raise SystemExit("--plot without --config needs --json FILE[,FILE...]")
        plot_losses(args.json.split(","), args.plot)
        return
    loops = [loop for loop in args.loops.split(",") if loop]
    with tempfile.TemporaryDirectory() as work:
        config = os.path.join(work, "bench.yml")
        write_config(args, config)
        spec = {
            k: getattr(args, k)
            for k in ("iters", "batch_size", "seed", "ours_args", "ours_ranks", "data_samples")
        }
        spec["config"] = config
        spec_path = os.path.join(work, "spec.json")
        with open(spec_path, "w") as f:
            json.dump(spec, f)
        print(
            f"{args.config}: batch {args.batch_size}, crop {args.crop}, {args.iters} iters x "
            f"{args.rounds} round(s) per loop; ours: {args.ours_ranks} rank(s), extra flags "
            f"'{args.ours_args}'; load {os.getloadavg()[0]:.2f}",
            flush=True,
        )
        runs: dict[str, list[dict]] = {loop: [] for loop in loops}
        for r in range(args.rounds):
            for loop in loops:
                runs[loop].append(run_child(loop, spec, spec_path, work))
                step = statistics.median(runs[loop][-1]["per_iter"]["step"][args.warmup - 1 :])
                print(
                    f"  round {r + 1} {loop}: {step:.3f} s/iter, load {os.getloadavg()[0]:.2f}",
                    flush=True,
                )
        data = run_child("data", spec, spec_path, work)
    summary = {loop: summarise(runs[loop], args.warmup, args.batch_size) for loop in loops}
    for loop in loops:
        print(format_loop(loop, summary[loop], args.warmup))
    print(format_data(data, args.batch_size))
    if args.reference and "ours" in runs:
        with open(args.reference) as f:
            ref = json.load(f)["runs"]["ours"][0]["losses"]
        ours = runs["ours"][0]["losses"]
        n = min(len(ref), len(ours))
        diff = max(abs(a - b) for a, b in zip(ref[:n], ours[:n], strict=True))
        print(f"loss curve vs {args.reference}: max |difference| {diff:.2e} over {n} iterations")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "summary": summary, "data": data, "runs": runs}, f)
    if args.plot and args.json:
        plot_losses([args.json], args.plot)
    if set(LOOPS) <= set(loops):
        ratio = summary["ours"]["step"] / summary["stock"]["step"]
        print(f"ratio ours/stock step time: {ratio:.2f}")


if __name__ == "__main__":
    main()
