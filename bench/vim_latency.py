"""Latency of valid-class interpolation (VIM) in exported ONNX models on CPU.

At 512x512, 150 classes (ADE20K), batch 1, onnxruntime (CPU provider, N intra-op threads),
this script exports and times, in one run:

- ``mobileseg_full``: MobileSegExt tiny, bilinear upsampling of all 150 channels + argmax;
- ``mobileseg_vim``: the same weights with VIM (``upsample: vim``), returning labels;
- ``stock_topformer``: stock PaddleSeg ``TopFormer`` + ``TopTransformer_Tiny`` + argmax;
- ``topformer_vim``: our TopFormerSeg tiny with VIM, holding the stock model's weights
  (converted with ``load_paddleseg_weights``), so its labels are comparable.

Weights are the random initialisation, in two regimes:

- ``random``: the initialised model as is. Its logits are nearly uniform over the classes
  (standard deviation about 2e-5 in MobileSegExt), so many classes win somewhere and VIM
  (exact class set) keeps many of them, and float rounding decides near-ties: a worst case,
  not what a trained model does.
- ``trained-like``: ``--classes`` classes (default 12; a typical ADE20K image shows about a
  dozen) get a nearest-centroid classifier over a k-means clustering of the head's features
  on the input, with logits spread by a standard deviation of 3; the other classes stay
  below them (see ``make_trained_like``). All favoured classes then appear in the
  low-resolution argmax.

Every export goes through ``paddleseg_ext.export`` (``paddle.jit.save`` then paddle2onnx
with ``optimize_tool="none"``). Timing interleaves the models run by run (so that load from
other processes hits all of them alike), after warm-up runs, and reports the median. Label
agreement is measured between the ONNX outputs on the benchmark input.

Usage:
    python bench/vim_latency.py [--runs 30] [--threads 2] [--classes 12] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

import numpy as np
import paddle
from paddleseg.models import TopFormer
from paddleseg.models.backbones import TopTransformer_Tiny
from seg_runtime import OrtRunner, summarize_ms, time_interleaved

import paddleseg_ext  # noqa: F401  (registers our components)
from paddleseg_ext.export import ExportModel, convert_onnx, prepare_model, save_paddle
from paddleseg_ext.models import (
    LogitsUpsample,
    MobileSegExt,
    StrideFormerBackbone,
    TopFormerBackbone,
    TopFormerSeg,
    load_paddleseg_weights,
)
from paddleseg_ext.models.vim import valid_class_mask

NUM_CLASSES = 150
SIZE = 512
WARMUP = 5
PAIRS = (("mobileseg_vim", "mobileseg_full"), ("topformer_vim", "stock_topformer"))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=30, help="timed runs per model (>= 20)")
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads")
    parser.add_argument("--classes", type=int, default=12, help="favoured classes (trained-like)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    if args.runs < 20:
        parser.error("--runs must be at least 20")
    return args


def layer_input(model: paddle.nn.Layer, layer: paddle.nn.Layer, x: paddle.Tensor) -> np.ndarray:
    """The first input of `layer` when `model` runs on `x`."""
    captured = {}

    def hook(_, inputs):
        captured["x"] = inputs[0].numpy()

    handle = layer.register_forward_pre_hook(hook)
    try:
        with paddle.no_grad():
            model(x)
    finally:
        handle.remove()
    return captured["x"]


def make_trained_like(
    conv: paddle.nn.Conv2D, feats: np.ndarray, favoured: np.ndarray, seed: int
) -> None:
    """Gives the classifier trained-like logits on the benchmark input.

    A trained head splits the feature space between the classes of the scene, with margins of
    a few units. Here the `favoured` classes become a nearest-centroid classifier over a
    k-means clustering (one cluster per class) of the head's own features, scaled so that
    their logits spread with a standard deviation of 3 over those classes; every other class
    keeps its initialised weights and gets a bias that puts it below all favoured logits.
    Every favoured class then wins somewhere.

    Args:
        conv: The final 1x1 classifier convolution, (C, D, 1, 1) weights.
        feats: Its input on the benchmark image, (1, D, h, w).
        favoured: Class ids that can win.
        seed: Seed of the k-means initialisation.
    """
    points = feats[0].reshape(feats.shape[1], -1).T.astype("float64")  # (h*w, D)
    rng = np.random.default_rng(seed)
    centroids = points[rng.choice(len(points), len(favoured), replace=False)]
    for _ in range(25):
        dist = ((points[:, None, :] - centroids[None]) ** 2).sum(-1)
        assign = dist.argmin(1)
        for k in range(len(favoured)):
            if (assign == k).any():
                centroids[k] = points[assign == k].mean(0)
    # argmax_k of (f . mu_k - |mu_k|^2 / 2) is the nearest centroid.
    raw = points @ centroids.T - 0.5 * (centroids**2).sum(1)
    scale = 3.0 / float(raw.std(axis=1).mean())
    weight = conv.weight.numpy()
    bias = conv.bias.numpy()
    others = (points @ weight[:, :, 0, 0].T + bias).max()
    bias += float(scale * raw.min() - others) - 1.0  # initialised classes stay below
    weight[favoured, :, 0, 0] = scale * centroids
    bias[favoured] = -0.5 * scale * (centroids**2).sum(1)
    conv.weight.set_value(weight.astype("float32"))
    conv.bias.set_value(bias.astype("float32"))


def low_res_logits(model: paddle.nn.Layer, x: paddle.Tensor) -> np.ndarray:
    """The (1, C, h, w) logits entering the model's final upsampling layer."""
    return layer_input(model, model.upsample, x)


def class_counts(logits: np.ndarray) -> dict[str, int]:
    """Classes of the low-resolution argmax, and classes VIM (exact set) interpolates."""
    present = len(np.unique(logits.argmax(axis=1)))
    kept = int(valid_class_mask(paddle.to_tensor(logits)).astype("int32").sum())
    return {"present": present, "kept": kept}


def export_onnx(layer: paddle.nn.Layer, out_dir: str) -> str:
    """Exports `layer` for a (1, 3, SIZE, SIZE) input; returns the ONNX file."""
    os.makedirs(out_dir, exist_ok=True)
    files = save_paddle(layer, [1, 3, SIZE, SIZE], out_dir)
    onnx_file = os.path.join(out_dir, "model.onnx")
    convert_onnx(
        os.path.join(out_dir, files["model"]), os.path.join(out_dir, files["params"]), onnx_file
    )
    return onnx_file


def time_models(
    runners: dict[str, OrtRunner], x: np.ndarray, runs: int
) -> dict[str, dict[str, float]]:
    """Median / min / max latency in ms, models interleaved run by run."""
    calls = {name: (lambda r=runner: r(x)) for name, runner in runners.items()}
    times = time_interleaved(calls, WARMUP, runs)
    return {
        name: {f"{k}_ms": v for k, v in summarize_ms(t).items() if k in ("median", "min", "max")}
        for name, t in times.items()
    }


def run_regime(
    regime: str, args: argparse.Namespace, x: np.ndarray, work_dir: str
) -> dict[str, dict]:
    """Builds, exports and times the four models under one weight regime."""
    paddle.seed(args.seed)
    mobileseg = MobileSegExt(NUM_CLASSES, StrideFormerBackbone("tiny"))
    stock = TopFormer(NUM_CLASSES, TopTransformer_Tiny(), head_use_dw=True)
    ours = TopFormerSeg(NUM_CLASSES, TopFormerBackbone("tiny"))
    for model in (mobileseg, stock, ours):
        model.eval()
    xt = paddle.to_tensor(x)

    if regime == "trained-like":
        rng = np.random.default_rng(args.seed)
        favoured = rng.choice(NUM_CLASSES, size=args.classes, replace=False)
        for model, conv in (
            (mobileseg, mobileseg.head.classifier),
            (stock, stock.decode_head.conv_seg),
        ):
            make_trained_like(conv, layer_input(model, conv, xt), favoured, args.seed)
    missing, _ = load_paddleseg_weights(ours, stock.state_dict())
    assert not missing, f"stock weights did not cover {missing}"

    counts = {
        "mobileseg": class_counts(low_res_logits(mobileseg, xt)),
        "topformer": class_counts(low_res_logits(ours, xt)),
    }
    onnx_files = {
        "mobileseg_full": export_onnx(
            ExportModel(mobileseg, "argmax", outputs_labels=False), f"{work_dir}/msf"
        )
    }
    # The same weights with VIM (prepare_model swaps the model's upsampling layer).
    mobileseg_vim = prepare_model(mobileseg, "vim", NUM_CLASSES)
    assert isinstance(mobileseg_vim.upsample, LogitsUpsample) and mobileseg_vim.upsample.use_vim
    onnx_files["mobileseg_vim"] = export_onnx(
        ExportModel(mobileseg_vim, "vim", outputs_labels=True), f"{work_dir}/msv"
    )
    onnx_files["stock_topformer"] = export_onnx(
        ExportModel(stock, "argmax", outputs_labels=False), f"{work_dir}/stk"
    )
    ours = prepare_model(ours, "vim", NUM_CLASSES)
    onnx_files["topformer_vim"] = export_onnx(
        ExportModel(ours, "vim", outputs_labels=True), f"{work_dir}/tfv"
    )

    runners = {
        name: OrtRunner(path, args.threads, providers=["CPUExecutionProvider"])
        for name, path in onnx_files.items()
    }
    labels = {name: runner(x).reshape(SIZE, SIZE) for name, runner in runners.items()}
    results: dict[str, dict] = time_models(runners, x, args.runs)
    for fast, slow in PAIRS:
        results[fast]["speedup"] = results[slow]["median_ms"] / results[fast]["median_ms"]
        results[fast]["agreement"] = float((labels[fast] == labels[slow]).mean())
        results[fast]["vs"] = slow
        results[fast].update(counts[fast.split("_")[0]])
    return results


def format_table(regime: str, results: dict[str, dict], args: argparse.Namespace) -> str:
    lines = [
        f"### {regime} ({args.runs} runs, {args.threads} threads)",
        "",
        "| model | median ms | min ms | max ms | vs | speed-up | label agreement | "
        "classes present / interpolated |",
        "|---|---:|---:|---:|---|---:|---:|---:|",
    ]
    for name, r in results.items():
        extra = ["", "", "", ""]
        if "vs" in r:
            extra = [
                r["vs"],
                f"{r['speedup']:.2f}x",
                f"{100 * r['agreement']:.3f}%",
                f"{r['present']} / {r['kept']}",
            ]
        lines.append(
            f"| {name} | {r['median_ms']:.1f} | {r['min_ms']:.1f} | {r['max_ms']:.1f} | "
            + " | ".join(extra)
            + " |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    import onnxruntime

    print(
        f"python {sys.version.split()[0]}, paddle {paddle.__version__}, onnxruntime "
        f"{onnxruntime.__version__}, {os.cpu_count()} CPUs; input 1x3x{SIZE}x{SIZE}, "
        f"{NUM_CLASSES} classes",
        flush=True,
    )
    x = np.random.default_rng(args.seed).standard_normal((1, 3, SIZE, SIZE)).astype("float32")
    report = {}
    with tempfile.TemporaryDirectory(prefix="vim_bench_") as work_dir:
        for regime in ("random", "trained-like"):
            report[regime] = run_regime(regime, args, x, os.path.join(work_dir, regime))
            print("\n" + format_table(regime, report[regime], args), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "results": report}, f, indent=2)


if __name__ == "__main__":
    main()
