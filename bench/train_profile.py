"""Where a CPU training step's time goes: Paddle's operator profile of a few steps.

Builds the model, loss and optimizer of ``--config`` and times ``--steps`` steps (after two
warm-up steps) of forward, loss, backward and optimizer on one random batch of
``--batch_size`` x 3 x ``--crop`` x ``--crop``, under ``paddle.profiler`` (CPU). Prints
the operators by total CPU time, forward and backward (``...GradNode``) listed apart.

``--loss paddle`` replaces ``SegCrossEntropyLoss`` with Paddle's ``nn.CrossEntropyLoss`` (the
same loss from Paddle's CPU kernels, as ``bench/train_speed.py`` gives the stock loop).

    python bench/train_profile.py --config configs/camvid/topformer_tiny_camvid.yml \\
        --batch_size 8 --loss paddle
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile

import paddle
import paddle.profiler as profiler
from paddle import nn

import paddleseg_ext  # noqa: F401  (registers our components)
from paddleseg_ext.config import build, load_config


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="PaddleSeg YAML config")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--crop", type=int, default=384, help="Square input side")
    parser.add_argument("--steps", type=int, default=2, help="Profiled steps")
    parser.add_argument("--loss", choices=("config", "paddle"), default="config")
    parser.add_argument("--top", type=int, default=25, help="Operators listed")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    paddle.set_device("cpu")
    paddle.seed(0)
    builder = build(load_config(args.config))
    model, optimizer = builder.model, builder.optimizer
    model.train()
    losses = builder.loss
    if args.loss == "paddle":
        ce = nn.CrossEntropyLoss(ignore_index=255, axis=1)
        losses["types"] = [lambda logit, label: ce(logit, label.unsqueeze(1))]
    num_classes = builder.train_dataset.num_classes
    x = paddle.randn([args.batch_size, 3, args.crop, args.crop])
    y = paddle.randint(0, num_classes, [args.batch_size, args.crop, args.crop])

    def step() -> None:
        logits = model(x)
        pairs = zip(logits, losses["types"], losses["coef"], strict=False)
        loss = sum(coef * fn(logit, y) for logit, fn, coef in pairs)
        loss.backward()
        optimizer.step()
        optimizer.clear_grad()

    step()
    step()
    work = tempfile.mkdtemp(prefix="train_profile_")
    cwd = os.getcwd()
    os.chdir(work)  # the profiler writes a profiler_log/ folder into the working directory
    try:
        prof = profiler.Profiler(targets=[profiler.ProfilerTarget.CPU])
        prof.start()
        for _ in range(args.steps):
            step()
            prof.step()
        prof.stop()
    finally:
        os.chdir(cwd)
        shutil.rmtree(work, ignore_errors=True)
    prof.summary(
        sorted_by=profiler.SortedKeys.CPUTotal, op_detail=False, thread_sep=False, time_unit="ms"
    )


if __name__ == "__main__":
    main()
