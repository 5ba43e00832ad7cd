"""Data-parallel training on the CPU cores of one machine, started from the command itself.

``tools/train.py --ranks N`` makes this process rank 0 of N and starts ranks 1..N-1 as
copies of the same command line, with the environment ``paddle.distributed.launch`` would
give them (gloo backend, local endpoints). Unlike the launcher, no extra process holds a
Paddle runtime while the ranks train: on a 2-core machine that is about 0.2 GiB less.

Each rank trains ``batch_size`` images per iteration (PaddleSeg's per-device batch) on one
core. The ranks end with identical weights; rank 0 logs and saves checkpoints; rank ``k``'s
output goes to ``SAVE_DIR/rank{k}.log``. If one rank fails, the others are stopped and its
log's tail is printed; if rank 0 is killed, the kernel stops the others (Linux
``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import atexit
import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time

from ..config import ConfigError

_PR_SET_PDEATHSIG = 1


def is_rank() -> bool:
    """Whether this process already is a rank (started by us or by ``paddle.distributed``)."""
    return "PADDLE_TRAINER_ID" in os.environ


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _rank_env(rank: int, world: int, endpoints: list[str], master: str) -> dict[str, str]:
    return {
        "PADDLE_TRAINER_ID": str(rank),
        "PADDLE_TRAINERS_NUM": str(world),
        "PADDLE_TRAINER_ENDPOINTS": ",".join(endpoints),
        "PADDLE_CURRENT_ENDPOINT": endpoints[rank],
        "PADDLE_MASTER": master,
        "PADDLE_DISTRI_BACKEND": "gloo",
        "PADDLE_GLOBAL_SIZE": str(world),
        "PADDLE_LOCAL_SIZE": str(world),
        "PADDLE_GLOBAL_RANK": str(rank),
        "PADDLE_LOCAL_RANK": str(rank),
        "PADDLE_RANK_IN_NODE": str(rank),
        "PADDLE_NNODES": "1",
    }


def _die_with_parent() -> None:  # runs in the child between fork and exec
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _tail(path: str, chars: int = 3000) -> str:
    try:
        with open(path, errors="replace") as f:
            return f.read()[-chars:]
    except OSError:
        return ""


def start_cpu_ranks(num_ranks: int, log_dir: str) -> None:
    """Makes this process rank 0 of ``num_ranks`` and starts the others.

    Call before anything reads the distributed environment (``train`` does, at its start).
    The other ranks re-run this process's command line; there :func:`is_rank` holds and
    this returns at once.

    Args:
        num_ranks: Processes in all, this one included (one per core is the useful most).
        log_dir: Where ``rank{k}.log`` files go (created).

    Raises:
        ConfigError: ``num_ranks`` is below 1, or this process is a rank of a different
            number of ranks.
    """
    if num_ranks < 1:
        raise ConfigError(f"--ranks must be >= 1, got {num_ranks}")
    if is_rank():  # one of the ranks started here, or by paddle.distributed.launch
        world = int(os.environ.get("PADDLE_TRAINERS_NUM", "1"))
        if num_ranks not in (1, world):
            raise ConfigError(
                f"--ranks {num_ranks}: this process already is rank "
                f"{os.environ['PADDLE_TRAINER_ID']} of {world} (paddle.distributed.launch); "
                "use one launcher"
            )
        return
    if num_ranks == 1:
        return
    ports = _free_ports(num_ranks + 1)
    endpoints = [f"127.0.0.1:{p}" for p in ports[1:]]
    master = f"127.0.0.1:{ports[0]}"
    os.makedirs(log_dir, exist_ok=True)
    command = [sys.executable, *sys.orig_argv[1:]]
    children: list[tuple[int, subprocess.Popen, str]] = []
    for rank in range(1, num_ranks):
        log = os.path.join(log_dir, f"rank{rank}.log")
        env = {**os.environ, **_rank_env(rank, num_ranks, endpoints, master)}
        with open(log, "w") as f:
            proc = subprocess.Popen(
                command, env=env, stdout=f, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent
            )
        children.append((rank, proc, log))
    os.environ.update(_rank_env(0, num_ranks, endpoints, master))

    def watch() -> None:
        while True:
            for rank, proc, log in children:
                code = proc.poll()
                if code not in (None, 0):
                    sys.stderr.write(
                        f"{_tail(log)}\nerror: rank {rank} exited with status {code} "
                        f"(its log: {log}); stopping\n"
                    )
                    sys.stderr.flush()
                    os._exit(1)  # rank 0 may be waiting in an all-reduce that never ends
            if all(proc.poll() is not None for _, proc, _ in children):
                return
            time.sleep(0.5)

    def finish() -> None:  # at exit: wait for ranks that finish, stop them after an error
        for _, proc, _ in children:
            if proc.poll() is None:
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()

    threading.Thread(target=watch, name="rank-watch", daemon=True).start()
    atexit.register(finish)
