"""Valid-class interpolation (VIM) on trained networks: exported ONNX models on CPU.

The models are trained on the 150-class SyntheticShapes (``configs/vim/``), and every figure
comes from its val images, resized to ``--size`` (default 512) x ``--size``:

- ``mobileseg_full`` / ``mobileseg_vim``: MobileSegExt tiny, bilinear upsampling of all
  150 channels + argmax / VIM (exact class set), the same weights;
- ``stock_topformer``: stock PaddleSeg ``TopFormer`` + ``TopTransformer_Tiny`` + argmax;
- ``ours_full`` / ``ours_vim``: our TopFormerSeg tiny holding the stock model's trained
  weights (``load_paddleseg_weights``), without and with VIM, so all three label alike.

Parts (``--parts``, each adds to the JSON report):

- ``labels``: label agreement between the ONNX outputs, the classes VIM keeps per image
  (exact rule on the low-resolution logits), and mIoU against the resized ground truth;
- ``latency``: median latency, the models interleaved run by run, each run on the next
  val image (the same sequence for every model), 1 and 2 onnxruntime threads;
- ``crossover``: the final stage alone (low-resolution logits -> labels) on the trained
  TopFormer's logits of the val images, VIM against full upsampling + argmax, (a) for models
  of C classes (C of the 150 channels: the classes VIM keeps on the image first) and (b) at
  150 classes with K classes kept (classes added to the kept set by copying a kept class's
  logits). The backbone is the same for both, so VIM pays where its stage is faster.

Exports go through ``paddleseg_ext.export`` (``paddle.jit.save`` then paddle2onnx, opset 13,
``optimize_tool="none"``, then the export's ONNX optimisation: folding, banded label head)
into ``--work_dir``, named after the weights' hash and the size, and are reused by later
runs.

Usage (run ``labels`` first: it exports):
    python bench/vim_trained.py --parts labels,latency,crossover --json out.json
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import sys

import cv2
import numpy as np
import paddle
from seg_runtime import OrtRunner, evaluate_export, summarize_ms, time_interleaved

import paddleseg_ext  # noqa: F401  (registers our components)
from paddleseg_ext.config import build, load_config
from paddleseg_ext.core.checkpoint import load_weights
from paddleseg_ext.export import ExportModel, convert_onnx, save_paddle
from paddleseg_ext.models import LogitsUpsample, load_paddleseg_weights
from paddleseg_ext.models.vim import valid_class_mask

CONFIGS = {
    "mobileseg": "configs/vim/pp_mobileseg_tiny_shapes150.yml",
    "stock": "configs/vim/topformer_tiny_stock_shapes150.yml",
    "ours": "configs/vim/topformer_tiny_shapes150.yml",
}
# (fast, reference) pairs of the label and latency tables.
PAIRS = (
    ("mobileseg_vim", "mobileseg_full"),
    ("ours_vim", "ours_full"),
    ("ours_vim", "stock_topformer"),
    ("ours_full", "stock_topformer"),
)
WARMUP = 3
CROSSOVER_CLASSES = (4, 6, 8, 11, 16, 24, 32, 48, 64, 96, 150)
CROSSOVER_KEPT = (2, 4, 8, 16, 32, 64, 150)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mobileseg", default="output/vim_trained/pp_mobileseg_tiny/iter_1500")
    parser.add_argument("--topformer", default="output/vim_trained/topformer_tiny_stock/iter_2000")
    parser.add_argument("--parts", default="labels,latency,crossover")
    parser.add_argument("--size", type=int, default=512, help="input side (val images resized)")
    parser.add_argument("--images", type=int, default=150, help="val images for labels")
    parser.add_argument("--runs", type=int, default=30, help="timed runs per model")
    parser.add_argument("--threads", default="1,2", help="onnxruntime intra-op threads")
    parser.add_argument("--work_dir", default="output/vim_trained/onnx")
    parser.add_argument("--json", help="merge the results into this JSON file")
    return parser.parse_args(argv)


def val_images(size: int, count: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Normalized (1, 3, size, size) inputs and (size, size) labels of the first val images."""
    dataset = build(load_config(CONFIGS["ours"], "val")).val_dataset
    images, labels = [], []
    for index in range(min(count, len(dataset))):
        item = dataset[index]
        img = cv2.resize(
            item["img"].transpose(1, 2, 0), (size, size), interpolation=cv2.INTER_LINEAR
        )
        images.append(np.ascontiguousarray(img.transpose(2, 0, 1)[None], dtype=np.float32))
        labels.append(
            cv2.resize(
                item["label"].squeeze().astype(np.uint8),
                (size, size),
                interpolation=cv2.INTER_NEAREST,
            )
        )
    return images, labels


def with_upsample(model: paddle.nn.Layer, mode: str) -> paddle.nn.Layer:
    """A copy of our segmentor with bilinear or VIM upsampling and no class-count threshold."""
    model = copy.deepcopy(model)
    old = model.upsample
    model.upsample = LogitsUpsample(
        model.num_classes, mode, old.class_set, min_classes=0, align_corners=old.align_corners
    )
    model.eval()
    return model


def build_models(args: argparse.Namespace) -> dict[str, tuple[paddle.nn.Layer, bool]]:
    """Name -> (eval model, returns labels), with the trained weights loaded."""
    built = {}
    for name, config in CONFIGS.items():
        built[name] = build(load_config(config, "val")).model
    load_weights(built["mobileseg"], args.mobileseg)
    load_weights(built["stock"], args.topformer)
    missing, _ = load_paddleseg_weights(built["ours"], built["stock"].state_dict())
    assert not missing, f"stock weights did not cover {missing}"
    built["stock"].eval()
    return {
        "mobileseg_full": (with_upsample(built["mobileseg"], "bilinear"), False),
        "mobileseg_vim": (with_upsample(built["mobileseg"], "vim"), True),
        "stock_topformer": (built["stock"], False),
        "ours_full": (with_upsample(built["ours"], "bilinear"), False),
        "ours_vim": (with_upsample(built["ours"], "vim"), True),
    }


def export_onnx(layer: paddle.nn.Layer, input_shape: list[int], out_dir: str) -> str:
    """Exports `layer` (unless `out_dir` holds its export already); returns the ONNX file."""
    onnx_file = os.path.join(out_dir, "model.onnx")
    if os.path.isfile(onnx_file):
        return onnx_file
    os.makedirs(out_dir, exist_ok=True)
    files = save_paddle(layer, input_shape, out_dir)
    convert_onnx(
        os.path.join(out_dir, files["model"]), os.path.join(out_dir, files["params"]), onnx_file
    )
    return onnx_file


def weights_digest(args: argparse.Namespace) -> str:
    digest = hashlib.sha1()
    for path in (args.mobileseg, args.topformer):
        path = os.path.join(path, "model.pdparams") if os.path.isdir(path) else path
        with open(path, "rb") as f:
            digest.update(f.read())
    return digest.hexdigest()[:10]


def export_models(args: argparse.Namespace, models: dict) -> dict[str, str]:
    """Name -> ONNX file of every model, at (1, 3, size, size)."""
    root = os.path.join(args.work_dir, f"{weights_digest(args)}_{args.size}")
    shape = [1, 3, args.size, args.size]
    return {
        name: export_onnx(ExportModel(model, "argmax", labels), shape, os.path.join(root, name))
        for name, (model, labels) in models.items()
    }


def low_res_logits(model: paddle.nn.Layer, x: np.ndarray) -> np.ndarray:
    """The (1, C, h, w) logits entering our segmentor's upsampling layer."""
    captured = {}
    handle = model.upsample.register_forward_pre_hook(
        lambda _, inputs: captured.update(x=inputs[0].numpy())
    )
    try:
        with paddle.no_grad():
            model(paddle.to_tensor(x))
    finally:
        handle.remove()
    return captured["x"]


def kept_classes(logits: np.ndarray) -> np.ndarray:
    """Class ids VIM's exact rule keeps, ascending."""
    return np.flatnonzero(valid_class_mask(paddle.to_tensor(logits)).numpy())


def stats(values: list[float]) -> dict[str, float]:
    return {
        "mean": float(np.mean(values)),
        "min": float(np.min(values)),
        "max": float(np.max(values)),
    }


def part_labels(args: argparse.Namespace, models: dict, onnx: dict, data: tuple) -> dict:
    images, gts = data
    runners = {name: OrtRunner(path, 2, ["CPUExecutionProvider"]) for name, path in onnx.items()}
    num_classes = models["ours_full"][0].num_classes
    scores = evaluate_export(runners, zip(images, gts, strict=True), num_classes, None, PAIRS)
    result: dict = {"images": len(images), "size": args.size}
    result["agreement"] = {pair: v["mean"] for pair, v in scores["agreement"].items()}
    result["agreement_min_image"] = {
        pair: v["min_image"] for pair, v in scores["agreement"].items()
    }
    result["miou"] = {name: m["mIoU"] for name, m in scores["models"].items()}
    result["gt_classes"] = stats([len(np.unique(g)) for g in gts])
    for family in ("mobileseg", "ours"):
        model = models[f"{family}_full"][0]
        logits = [low_res_logits(model, x) for x in images]
        result[f"{family}_logits_size"] = list(logits[0].shape[2:])
        result[f"{family}_present"] = stats([len(np.unique(z.argmax(1))) for z in logits])
        result[f"{family}_kept"] = stats([len(kept_classes(z)) for z in logits])
    return result


def cycling(runner: OrtRunner, inputs: list[np.ndarray]):
    """A call running `runner` on the next input of `inputs` each time."""
    state = {"i": 0}

    def call() -> None:
        runner(inputs[state["i"] % len(inputs)])
        state["i"] += 1

    return call


def time_named(runners: dict[str, OrtRunner], inputs: dict, runs: int) -> dict[str, float]:
    """Median ms per name, interleaved run by run; `inputs` maps names to their input list."""
    calls = {name: cycling(runner, inputs[name]) for name, runner in runners.items()}
    times = time_interleaved(calls, WARMUP, runs)
    return {name: summarize_ms(t)["median"] for name, t in times.items()}


def part_latency(args: argparse.Namespace, onnx: dict, data: tuple) -> dict:
    images = data[0]
    result = {}
    for threads in [int(t) for t in args.threads.split(",")]:
        runners = {n: OrtRunner(p, threads, ["CPUExecutionProvider"]) for n, p in onnx.items()}
        median = time_named(runners, dict.fromkeys(runners, images), args.runs)
        result[f"{threads}_threads"] = {
            "median_ms": median,
            "speedup": {f"{f} vs {r}": median[r] / median[f] for f, r in PAIRS},
        }
    return result


class Tail(paddle.nn.Layer):
    """The final stage alone: low-resolution logits -> labels (VIM) or logits (bilinear)."""

    def __init__(self, mode: str, size: int) -> None:
        super().__init__()
        # The class count only gates VIM through min_classes, which is 0 here.
        self.upsample = LogitsUpsample(1, mode)
        self.size = size

    def forward(self, logits: paddle.Tensor) -> list[paddle.Tensor]:
        return [self.upsample(logits, [self.size, self.size])]


def force_kept(logits: np.ndarray, kept: np.ndarray, count: int) -> np.ndarray:
    """Logits with `count` classes kept: absent classes take a copy of a kept class's logits.

    A copy ties with its source everywhere, so VIM keeps it (the argmax picks the lower id).
    """
    out = logits.copy()
    extra = [c for c in range(out.shape[1]) if c not in set(kept)][: max(count - len(kept), 0)]
    for i, c in enumerate(extra):
        out[:, c] = logits[:, kept[i % len(kept)]]
    return out


def subset_logits(logits: np.ndarray, count: int) -> np.ndarray:
    """`count` of the channels: the kept classes (largest low-res area first), then others."""
    kept = kept_classes(logits)
    area = np.bincount(logits.argmax(1).ravel(), minlength=logits.shape[1])
    order = list(kept[np.argsort(-area[kept], kind="stable")])
    order += [c for c in range(logits.shape[1]) if c not in set(kept)]
    return np.ascontiguousarray(logits[:, sorted(order[:count])])


def part_crossover(args: argparse.Namespace, models: dict, data: tuple) -> dict:
    images = data[0][: args.runs]
    model = models["ours_full"][0]
    logits = [low_res_logits(model, x) for x in images]
    _, classes, h, w = logits[0].shape
    root = os.path.join(args.work_dir, f"tail_{h}x{w}_{args.size}")

    def tail(mode: str, channels: int) -> str:
        return export_onnx(
            ExportModel(Tail(mode, args.size), "argmax", mode == "vim"),
            [1, channels, h, w],
            os.path.join(root, f"{mode}_{channels if channels > 0 else 'any'}"),
        )

    # VIM's graph has dynamic channels, one serves every class count. Full upsampling gets
    # a graph per class count: with a static shape the export's optimisation turns its
    # resize + argmax into the banded MatMul head, as in a real export.
    vim = tail("vim", -1)
    full = {count: tail("bilinear", count) for count in sorted({*CROSSOVER_CLASSES, classes})}
    result: dict = {"logits_size": [h, w], "by_classes": {}, "by_kept": {}}

    def runners_for(count: int, threads: int) -> dict[str, OrtRunner]:
        return {
            "bilinear": OrtRunner(full[count], threads, ["CPUExecutionProvider"]),
            "vim": OrtRunner(vim, threads, ["CPUExecutionProvider"]),
        }

    def row(runners: dict[str, OrtRunner], inputs: list[np.ndarray]) -> dict:
        median = time_named(runners, dict.fromkeys(runners, inputs), args.runs)
        kept = [len(kept_classes(z)) for z in inputs]
        return {"full_ms": median["bilinear"], "vim_ms": median["vim"], "kept": stats(kept)}

    for threads in [int(t) for t in args.threads.split(",")]:
        result["by_classes"][f"{threads}_threads"] = {
            count: row(runners_for(count, threads), [subset_logits(z, count) for z in logits])
            for count in CROSSOVER_CLASSES
        }
        runners = runners_for(classes, threads)
        result["by_kept"][f"{threads}_threads"] = {
            count: row(runners, [force_kept(z, kept_classes(z), count) for z in logits])
            for count in CROSSOVER_KEPT
        }
    return result


def print_tables(report: dict) -> None:
    if "labels" in report:
        r = report["labels"]
        print(f"\nlabels ({r['images']} val images at {r['size']} px)")
        for pair, value in r["agreement"].items():
            worst = 100 * r["agreement_min_image"][pair]
            print(f"  agreement {pair}: {100 * value:.4f}% (worst image {worst:.4f}%)")
        for name, value in r["miou"].items():
            print(f"  mIoU {name}: {100 * value:.2f}")
        print(f"  gt classes per image: {r['gt_classes']}")
        for family in ("mobileseg", "ours"):
            size, present = r[f"{family}_logits_size"], r[f"{family}_present"]
            print(f"  {family} logits {size}: present {present}, kept {r[f'{family}_kept']}")
    if "latency" in report:
        for threads, r in report["latency"].items():
            print(
                f"\nlatency, {threads}: "
                + ", ".join(f"{n} {v:.1f} ms" for n, v in r["median_ms"].items())
            )
            print("  " + ", ".join(f"{p}: {v:.2f}x" for p, v in r["speedup"].items()))
    if "crossover" in report:
        for axis in ("by_classes", "by_kept"):
            for threads, rows in report["crossover"][axis].items():
                print(
                    f"\ncrossover {axis}, {threads} (count: full ms, vim ms, full/vim, kept mean)"
                )
                for count, r in rows.items():
                    print(
                        f"  {count}: {r['full_ms']:.2f} {r['vim_ms']:.2f} "
                        f"{r['full_ms'] / r['vim_ms']:.2f}x kept {r['kept']['mean']:.1f}"
                    )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    import onnxruntime

    print(
        f"python {sys.version.split()[0]}, paddle {paddle.__version__}, onnxruntime "
        f"{onnxruntime.__version__}, {os.cpu_count()} CPUs, load {os.getloadavg()}",
        flush=True,
    )
    parts = args.parts.split(",")
    models = build_models(args)
    data = val_images(args.size, args.images if "labels" in parts else args.runs)
    report = {}
    if "labels" in parts or "latency" in parts:
        onnx = export_models(args, models)
    if "labels" in parts:
        report["labels"] = part_labels(args, models, onnx, data)
    if "latency" in parts:
        report["latency"] = part_latency(args, onnx, data)
    if "crossover" in parts:
        report["crossover"] = part_crossover(args, models, data)
    print_tables(report)
    print(f"load after: {os.getloadavg()}")
    if args.json:
        previous = {}
        if os.path.isfile(args.json):
            with open(args.json) as f:
                previous = json.load(f)
        with open(args.json, "w") as f:
            json.dump(previous | report, f, indent=2)


if __name__ == "__main__":
    main()
