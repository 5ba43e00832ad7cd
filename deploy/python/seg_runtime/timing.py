"""The latency timer shared by the benchmarks, and Paddle Lite's ``Perf Info`` layout."""

import time
from typing import Callable, Dict, List, Sequence

import numpy as np

PERF_KEYS = ("init", "first", "min", "max", "avg")


def time_interleaved(
    runs: Dict[str, Callable[[], object]], warmup: int, repeats: int
) -> Dict[str, List[float]]:
    """Times several calls against each other: seconds of each call, per name.

    Each call runs ``warmup`` times untimed, then the calls take turns ``repeats`` times,
    so that load from other processes hits all of them alike.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got {repeats}, {warmup}")
    for run in runs.values():
        for _ in range(warmup):
            run()
    times: Dict[str, List[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return times


def time_runs(run: Callable[[], object], warmup: int, repeats: int) -> List[float]:
    """Calls ``run`` ``warmup`` times untimed, then ``repeats`` times; returns seconds each."""
    return time_interleaved({"run": run}, warmup, repeats)["run"]


def summarize_ms(seconds: Sequence[float]) -> Dict[str, float]:
    """``min``, ``max``, ``avg``, ``median`` and ``p90`` of timings, in milliseconds."""
    ms = np.asarray(seconds, dtype=np.float64) * 1000
    return {
        "min": float(ms.min()),
        "max": float(ms.max()),
        "avg": float(ms.mean()),
        "median": float(np.median(ms)),
        "p90": float(np.percentile(ms, 90)),
    }


def measure_latency(
    make_runner: Callable[[], Callable[[np.ndarray], np.ndarray]],
    input_shape: Sequence[int],
    warmup: int = 20,
    repeats: int = 50,
    seed: int = 0,
) -> Dict[str, float]:
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
    if len(input_shape) != 4 or any(int(v) <= 0 for v in input_shape):
        raise ValueError(f"input shape must be 4 positive sizes, got {list(input_shape)}")
    x = np.random.default_rng(seed).standard_normal([int(v) for v in input_shape])
    x = x.astype(np.float32)
    start = time.perf_counter()
    runner = make_runner()
    init = time.perf_counter() - start
    start = time.perf_counter()
    runner(x)
    first = time.perf_counter() - start
    stats = summarize_ms(time_runs(lambda: runner(x), warmup, repeats))
    stats.update(init=init * 1000, first=first * 1000)
    return stats


def format_perf(stats: Dict[str, float]) -> str:
    """The ``Perf Info`` block of Paddle Lite's benchmark tool."""
    lines = ["======= Perf Info =======", "Time(unit: ms):"]
    lines += [f"{key:<5} = {stats[key]:.3f}" for key in PERF_KEYS]
    return "\n".join(lines)
