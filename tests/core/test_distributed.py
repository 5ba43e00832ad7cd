"""Data-parallel training on CPU: 2 processes (gloo) end with identical weights, with and
without distillation."""

import os
import re
import subprocess
import sys

import numpy as np
import paddle
import pytest
from helpers import REPO, write_distill_configs


@pytest.mark.slow
@pytest.mark.parametrize("distill", [False, True], ids=["plain", "distill"])
def test_two_ranks_hold_identical_weights(distill, tiny_config, tmp_path):
    config = write_distill_configs(tmp_path) if distill else tiny_config
    out = tmp_path / "weights"
    out.mkdir()
    cmd = [
        sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2",
        "--log_dir", str(tmp_path / "log"),
        str(REPO / "tests" / "dist_worker.py"), str(out),
        "--config", str(config), "--device", "cpu", "--iters", "4",
        "--save_interval", "4", "--log_iters", "1", "--save_dir", str(tmp_path / "run"),
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    logs = "".join(p.read_text() for p in sorted((tmp_path / "log").glob("*")) if p.is_file())
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:] + logs[-3000:]
    assert "batch 2 x 2 rank(s)" in logs
    if distill:
        assert re.search(r"cwd: [0-9.]+, nfd: [0-9.]+, teacher_share", logs)
        assert (tmp_path / "run" / "iter_4" / "distill.pdparams").is_file()

    rank0 = paddle.load(str(out / "rank0.pdparams"))
    rank1 = paddle.load(str(out / "rank1.pdparams"))
    saved = paddle.load(str(tmp_path / "run" / "iter_4" / "model.pdparams"))
    assert rank0.keys() == rank1.keys()
    moved = 0
    for key in rank0:
        np.testing.assert_array_equal(np.asarray(rank0[key]), np.asarray(rank1[key]), key)
        np.testing.assert_array_equal(np.asarray(rank0[key]), np.asarray(saved[key]), key)
    # Both ranks trained (the weights left their seeded initialisation).
    paddle.seed(0)
    import paddleseg_ext  # noqa: F401, PLC0415
    from paddleseg_ext.config import build, load_config  # noqa: PLC0415

    fresh = build(load_config(str(tiny_config))).model.state_dict()
    moved = sum(not np.allclose(np.asarray(fresh[k]), np.asarray(rank0[k])) for k in rank0)
    assert moved > len(rank0) // 2


@pytest.mark.slow
def test_ranks_flag_trains_like_the_launcher(tiny_config, tmp_path):
    """``tools/train.py --ranks 2`` starts its second rank itself: same weights as launch."""
    common = [
        "--config", str(tiny_config), "--device", "cpu", "--iters", "4", "--save_interval", "4",
    ]  # fmt: skip
    launched = [
        sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2",
        "--log_dir", str(tmp_path / "log"), str(REPO / "tools" / "train.py"), *common,
        "--save_dir", str(tmp_path / "launch"),
    ]  # fmt: skip
    ours = [
        sys.executable, str(REPO / "tools" / "train.py"), *common,
        "--ranks", "2", "--save_dir", str(tmp_path / "ranks"),
    ]  # fmt: skip
    for cmd in (launched, ours):
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "batch 2 x 2 rank(s)" in proc.stdout + proc.stderr
    assert (tmp_path / "ranks" / "rank1.log").is_file()
    a = paddle.load(str(tmp_path / "launch" / "iter_4" / "model.pdparams"))
    b = paddle.load(str(tmp_path / "ranks" / "iter_4" / "model.pdparams"))
    for key in a:
        np.testing.assert_array_equal(np.asarray(a[key]), np.asarray(b[key]), key)


def test_ranks_flag_errors(tiny_config, tmp_path):
    """A rank count the launcher contradicts, or below 1, is refused with its value."""
    base = [sys.executable, str(REPO / "tools" / "train.py"), "--config", str(tiny_config)]
    base += ["--device", "cpu", "--save_dir", str(tmp_path)]
    env = {**os.environ, "PADDLE_TRAINER_ID": "0", "PADDLE_TRAINERS_NUM": "2"}
    proc = subprocess.run([*base, "--ranks", "3"], capture_output=True, text=True, env=env)
    assert proc.returncode == 2
    assert "--ranks 3: this process already is rank 0 of 2" in proc.stderr
    proc = subprocess.run([*base, "--ranks", "0"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "--ranks must be >= 1, got 0" in proc.stderr


def _free_port() -> int:
    import socket  # noqa: PLC0415

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_two_nodes_train_like_one(tiny_config, tmp_path):
    """Paddle's launcher across two "nodes" (two launchers on 127.0.0.1, one rank each, gloo)
    ends with the weights of one node running two ranks (the same global batch)."""
    common = [
        str(REPO / "tools" / "train.py"), "--config", str(tiny_config), "--device", "cpu",
        "--iters", "4", "--save_interval", "4",
    ]  # fmt: skip
    launch = [sys.executable, "-m", "paddle.distributed.launch"]
    master = f"127.0.0.1:{_free_port()}"
    nodes = [
        subprocess.Popen(
            [
                *launch,
                "--nnodes",
                "2",
                "--master",
                master,
                "--rank",
                str(rank),
                "--nproc_per_node",
                "1",
                "--log_dir",
                str(tmp_path / f"log{rank}"),
                *common,
                "--save_dir",
                str(tmp_path / f"node{rank}"),
            ],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        for rank in (0, 1)
    ]
    for rank, node in enumerate(nodes):
        out, _ = node.communicate(timeout=600)
        logs = "".join(p.read_text() for p in (tmp_path / f"log{rank}").glob("*") if p.is_file())
        assert node.returncode == 0, out[-3000:] + logs[-3000:]
    assert "batch 2 x 2 rank(s)" in "".join(
        p.read_text() for p in (tmp_path / "log0").glob("*") if p.is_file()
    )
    single = [*launch, "--nproc_per_node", "2", "--log_dir", str(tmp_path / "log"), *common,
              "--save_dir", str(tmp_path / "single")]  # fmt: skip
    proc = subprocess.run(single, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    a = paddle.load(str(tmp_path / "node0" / "iter_4" / "model.pdparams"))
    b = paddle.load(str(tmp_path / "single" / "iter_4" / "model.pdparams"))
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(np.asarray(a[key]), np.asarray(b[key]), key)
