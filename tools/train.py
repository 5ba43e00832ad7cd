"""Train a segmentation model from a PaddleSeg config.

python tools/train.py --config configs/demo/topformer_tiny_shapes.yml --save_dir output/run
python tools/train.py --config ... --device cpu --ranks 2     # both CPU cores, data parallel
python -m paddle.distributed.launch --nproc_per_node 2 tools/train.py --config ...
"""

from __future__ import annotations

import argparse

import paddleseg_ext  # noqa: F401
from paddleseg_ext.cli import add_config_args, run, setup_device
from paddleseg_ext.config import ConfigError, load_config
from paddleseg_ext.core import train
from paddleseg_ext.core.data import SampleError
from paddleseg_ext.core.ranks import start_cpu_ranks
from paddleseg_ext.core.train import TrainingDiverged, latest_checkpoint


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_config_args(parser)
    parser.add_argument("--save_dir", default="output", help="Checkpoints, logs, VisualDL")
    parser.add_argument("--iters", type=int, help="Override the config's iters")
    parser.add_argument("--batch_size", type=int, help="Override the per-device batch size")
    parser.add_argument("--learning_rate", type=float, help="Override the base learning rate")
    parser.add_argument("--save_interval", type=int, default=1000, help="Iters per checkpoint")
    parser.add_argument("--log_iters", type=int, default=10, help="Iters per log line")
    parser.add_argument("--keep_checkpoint_max", type=int, default=5, help="iter_N dirs kept")
    parser.add_argument("--do_eval", action="store_true", help="Evaluate at every checkpoint")
    parser.add_argument("--use_vdl", action="store_true", help="Write VisualDL scalars")
    parser.add_argument(
        "--resume_model",
        help="iter_N folder to resume from, or 'auto' for the newest one in --save_dir",
    )
    parser.add_argument("--seed", type=int, default=0, help="Random seed")
    parser.add_argument(
        "--num_workers",
        type=int,
        default=0,
        help="Data loader worker processes (0: a thread loads the next batches during the step)",
    )
    parser.add_argument(
        "--num_threads",
        type=int,
        default=1,
        help="CPU math library (MKL/OpenMP) threads per operator; more help only models "
        "dominated by matrix products (docs/performance.md)",
    )
    parser.add_argument(
        "--ranks",
        type=int,
        default=1,
        help="CPU data parallelism: train in this many processes (one per core), each on "
        "--batch_size images per iteration; rank k logs to SAVE_DIR/rank{k}.log",
    )
    parser.add_argument(
        "--skip_bad",
        action="store_true",
        help="Train without samples that are missing, unreadable or mismatched (checked at "
        "start-up, see tools/check_dataset.py) or that fail to load later; each is logged",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None):
    args = parse_args(argv)
    device = setup_device(args.device)
    cfg = load_config(
        args.config,
        "train",
        learning_rate=args.learning_rate,
        batch_size=args.batch_size,
        iters=args.iters,
        opts=args.opts,
    )
    if args.ranks != 1 and device != "cpu":
        raise ConfigError(
            f"--ranks {args.ranks} is for CPU training (--device cpu); on GPUs use "
            "python -m paddle.distributed.launch"
        )
    start_cpu_ranks(args.ranks, args.save_dir)
    resume = args.resume_model
    if resume == "auto":
        resume = latest_checkpoint(args.save_dir)
    return train(
        cfg,
        save_dir=args.save_dir,
        save_interval=args.save_interval,
        log_iters=args.log_iters,
        keep_checkpoint_max=args.keep_checkpoint_max,
        do_eval=args.do_eval,
        use_vdl=args.use_vdl,
        resume_model=resume,
        seed=args.seed,
        num_workers=args.num_workers,
        skip_bad=args.skip_bad,
        num_threads=args.num_threads,
    )


if __name__ == "__main__":
    run(main, (ConfigError, FileNotFoundError, SampleError, TrainingDiverged))
