"""Distillation study on CamVid: no distillation vs CWD, CGD and P&KL + NFD, several seeds.

One run of this script, resumable (finished runs are kept, interrupted ones resume from
their newest checkpoint):

1. trains the teacher, TopFormer-Base (``configs/camvid/topformer_base_camvid.yml``), with
   ``tools/train.py`` and evaluates it on val and test with ``tools/val.py``;
2. trains the student, the LPCVC-style TopFormer-Tiny
   (``configs/camvid/topformer_tiny_camvid_288.yml``), once per method and seed, at equal
   iterations: without distillation and with the shipped recipes
   ``topformer_tiny_camvid_288_{cwd,cgd,pkl_nfd}.yml`` pointed at that teacher;
3. evaluates every final checkpoint (no selection on val) on val and test and writes
   ``summary.json`` and ``summary.md`` (per run and mean / spread per method, seconds per
   iteration, teacher share, CPU time) in ``--out_dir``.

To fit a 2-core CPU the whole study runs at half CamVid resolution (``--scale 0.5``): the
training crops are 240x176 from images scaled by 0.25-1.0, evaluation images are resized to
240x180 (rounded up to multiples of 32) and the predictions are scored against the
full-size 480x360 labels; the student's fixed internal size and token grid are halved
(288x384 -> 144x192, 5x6 -> 3x3). ``--scale 1`` runs the recipes as shipped.

Usage:
    python bench/distill_camvid.py --out_dir output/distill_camvid --jobs 2
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEACHER_CONFIG = "configs/camvid/topformer_base_camvid.yml"
STUDENT_CONFIG = "configs/camvid/topformer_tiny_camvid_288.yml"
METHODS = {
    "none": STUDENT_CONFIG,
    "cwd": "configs/camvid/topformer_tiny_camvid_288_cwd.yml",
    "cgd": "configs/camvid/topformer_tiny_camvid_288_cgd.yml",
    "pkl_nfd": "configs/camvid/topformer_tiny_camvid_288_pkl_nfd.yml",
}
# CamVid's size (W, H), its shipped training crop and the student's internal size (H, W).
IMAGE_WH, CROP_WH, STUDENT_HW = (480, 360), (480, 352), (288, 384)
TOKEN_STRIDE = 64


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out_dir", default="output/distill_camvid", help="Study folder")
    parser.add_argument("--data", default="../shared/data/camvid", help="CamVid root")
    parser.add_argument("--teacher_iters", type=int, default=1200)
    parser.add_argument("--student_iters", type=int, default=800)
    parser.add_argument("--warmup_iters", type=int, default=100, help="Both models")
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--scale", type=float, default=0.5, help="Resolution scale")
    parser.add_argument("--jobs", type=int, default=2, help="Student runs at a time")
    return parser.parse_args(argv)


def _multiple(value: float, base: int) -> int:
    return max(base, int(round(value / base)) * base)


def scaled_overrides(args: argparse.Namespace) -> dict:
    """Config entries shared by teacher and students: data paths, resolution, schedule."""
    s = args.scale
    data = os.path.abspath(os.path.join(REPO, args.data))
    crop = [_multiple(CROP_WH[0] * s, 16), _multiple(CROP_WH[1] * s, 16)]
    return {
        "batch_size": args.batch_size,
        "train_dataset": {
            "dataset_root": data,
            "train_path": os.path.join(data, "train.txt"),
            "transforms": [
                {
                    "type": "ResizeStepScaling",
                    "min_scale_factor": 0.5 * s,
                    "max_scale_factor": 2.0 * s,
                    "scale_step_size": 0.25 * s,
                },
                {"type": "RandomPaddingCrop", "crop_size": crop},
                {"type": "RandomHorizontalFlip"},
                {
                    "type": "RandomDistort",
                    "brightness_range": 0.4,
                    "contrast_range": 0.4,
                    "saturation_range": 0.4,
                },
                {"type": "Normalize"},
            ],
        },
        "val_dataset": {
            "dataset_root": data,
            "val_path": os.path.join(data, "val.txt"),
            "transforms": [
                {
                    "type": "Resize",
                    "target_size": [round(IMAGE_WH[0] * s), round(IMAGE_WH[1] * s)],
                    "size_divisor": 32,
                },
                {"type": "Normalize"},
            ],
        },
        "lr_scheduler": {"warmup_iters": args.warmup_iters},
    }


def write_config(path: str, base: str, overrides: dict) -> str:
    with open(path, "w") as f:
        yaml.safe_dump({"_base_": os.path.join(REPO, base), **overrides}, f, sort_keys=False)
    return path


def run_logged(cmd: list[str], log_path: str) -> float:
    """Runs ``cmd`` in the repository with its output in ``log_path``; returns CPU seconds."""
    print(f"$ {' '.join(cmd)}  > {log_path}", flush=True)
    with open(log_path, "a") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed ({os.waitstatus_to_exitcode(status)}): see {log_path}")
    return usage.ru_utime + usage.ru_stime


def train_and_eval(name: str, config: str, iters: int, seed: int, out: str) -> dict:
    """Trains (resuming if interrupted) and evaluates the final weights on val and test."""
    result_file = os.path.join(out, "results", f"{name}.json")
    if os.path.isfile(result_file):
        with open(result_file) as f:
            return json.load(f)
    save_dir = os.path.join(out, "runs", name)
    log = os.path.join(out, "logs", f"{name}.log")
    tic = time.time()
    cpu = run_logged(
        [sys.executable, "tools/train.py", "--config", config, "--save_dir", save_dir,
         "--iters", str(iters), "--seed", str(seed), "--save_interval", str(max(iters // 4, 1)),
         "--log_iters", "20", "--keep_checkpoint_max", "1", "--resume_model", "auto",
         "--device", "cpu"],
        log,
    )  # fmt: skip
    wall = time.time() - tic
    with open(log) as f:
        text = f.read()
    costs = [float(v) for v in re.findall(r"batch_cost: ([0-9.]+)", text)]
    shares = [float(v) / 100 for v in re.findall(r"teacher_share: ([0-9]+)%", text)]
    result = {"name": name, "seed": seed, "iters": iters, "train_cpu_s": cpu, "train_wall_s": wall}
    result["s_per_iter"] = statistics.median(costs[1:] or costs)
    if shares:
        result["teacher_share"] = statistics.median(shares)
    weights = os.path.join(save_dir, f"iter_{iters}", "model.pdparams")
    for split in ("val", "test"):
        metrics_file = os.path.join(out, "results", f"{name}_{split}_metrics.json")
        split_list = os.path.join(os.path.dirname(_val_path(config)), f"{split}.txt")
        result["train_cpu_s"] += run_logged(
            [sys.executable, "tools/val.py", "--config", config, "--model_path", weights,
             "--json", metrics_file, "--device", "cpu", "--opts",
             f"val_dataset.val_path={split_list}"],
            log,
        )  # fmt: skip
        with open(metrics_file) as f:
            result[f"{split}_mIoU"] = json.load(f)["mIoU"]
    with open(result_file, "w") as f:
        json.dump(result, f, indent=2)
    print(f"{name}: val {result['val_mIoU']:.4f} test {result['test_mIoU']:.4f}", flush=True)
    return result


def _val_path(config: str) -> str:
    with open(config) as f:
        return yaml.safe_load(f)["val_dataset"]["val_path"]


def _mean_spread(values: list[float]) -> str:
    mean = statistics.mean(values)
    spread = (max(values) - min(values)) / 2
    return f"{100 * mean:.2f} ± {100 * spread:.2f}"


def summarize(teacher: dict, runs: list[dict], args: argparse.Namespace, out: str) -> str:
    lines = [
        f"Teacher TopFormer-Base, {teacher['iters']} iterations: val mIoU "
        f"{100 * teacher['val_mIoU']:.2f}, test mIoU {100 * teacher['test_mIoU']:.2f}, "
        f"{teacher['s_per_iter']:.2f} s/iter.",
        "",
        "| run | seed | val mIoU | test mIoU | s/iter | teacher share |",
        "|---|---|---|---|---|---|",
    ]
    for r in runs:
        share = f"{100 * r['teacher_share']:.0f}%" if "teacher_share" in r else "-"
        lines.append(
            f"| {r['method']} | {r['seed']} | {100 * r['val_mIoU']:.2f} | "
            f"{100 * r['test_mIoU']:.2f} | {r['s_per_iter']:.2f} | {share} |"
        )
    lines += ["", "| method | val mIoU (mean ± half range) | test mIoU | Δ test vs none |"]
    lines.append("|---|---|---|---|")
    by_method: dict[str, list[dict]] = {}
    for r in runs:
        by_method.setdefault(r["method"], []).append(r)
    base = by_method.get("none")
    base_test = statistics.mean(r["test_mIoU"] for r in base) if base else math.nan
    for method, rs in by_method.items():
        test_mean = statistics.mean(r["test_mIoU"] for r in rs)
        lines.append(
            f"| {method} | {_mean_spread([r['val_mIoU'] for r in rs])} | "
            f"{_mean_spread([r['test_mIoU'] for r in rs])} | {100 * (test_mean - base_test):+.2f} |"
        )
    cpu_h = (teacher["train_cpu_s"] + sum(r["train_cpu_s"] for r in runs)) / 3600
    lines += [
        "",
        f"Student iterations {args.student_iters}, batch {args.batch_size}, scale {args.scale}, "
        f"seeds {args.seeds}; CPU time of the study (all processes, user + system): "
        f"{cpu_h:.2f} h on {platform.processor() or platform.machine()}, {os.cpu_count()} cores.",
    ]
    text = "\n".join(lines) + "\n"
    with open(os.path.join(out, "summary.md"), "w") as f:
        f.write(text)
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump({"teacher": teacher, "runs": runs, "args": vars(args)}, f, indent=2)
    return text


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    out = os.path.abspath(args.out_dir)
    for sub in ("configs", "results", "logs", "runs"):
        os.makedirs(os.path.join(out, sub), exist_ok=True)
    common = scaled_overrides(args)
    teacher_cfg = write_config(os.path.join(out, "configs", "teacher.yml"), TEACHER_CONFIG, common)
    teacher_weights = os.path.join(out, "runs", "teacher", f"iter_{args.teacher_iters}")

    hw = [round(v * args.scale) for v in STUDENT_HW]
    student = dict(common)
    student["model"] = {
        "backbone": {"input_size": hw, "token_grid": [math.ceil(v / TOKEN_STRIDE) for v in hw]}
    }
    jobs = []
    for method in args.methods:
        overrides = dict(student)
        if method != "none":
            overrides["distill"] = {
                "teacher": {
                    "config": teacher_cfg,
                    "model_path": os.path.join(teacher_weights, "model.pdparams"),
                }
            }
        cfg_path = os.path.join(out, "configs", f"{method}.yml")
        cfg = write_config(cfg_path, METHODS[method], overrides)
        jobs += [(method, seed, cfg) for seed in args.seeds]

    def one(job):
        method, seed, cfg = job
        result = train_and_eval(f"{method}_s{seed}", cfg, args.student_iters, seed, out)
        return result | {"method": method}

    with ThreadPoolExecutor(args.jobs) as pool:
        # Runs without distillation share the machine with the teacher's training.
        teacher_run = pool.submit(
            train_and_eval, "teacher", teacher_cfg, args.teacher_iters, 0, out
        )
        futures = [pool.submit(one, job) for job in jobs if job[0] == "none"]
        teacher = teacher_run.result() | {"method": "teacher"}
        futures += [pool.submit(one, job) for job in jobs if job[0] != "none"]
        runs = [future.result() for future in futures]
    print(summarize(teacher, runs, args, out))


if __name__ == "__main__":
    main()
