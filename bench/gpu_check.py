"""TensorRT engines of our exports against onnxruntime on the CPU, on one NVIDIA GPU.

Two steps, because the GPU machine needs no PaddlePaddle:

    python bench/gpu_check.py prepare output/gpu_check      # here: exports + images
    bash bench/gpu_check.sh output/gpu_check               # there: installs, runs `check`

``prepare`` exports, at 512x512 (the LPCVC input) with ``--formats onnx``: the LPCVC student
(``configs/lpcvc/topformer_tiny_lpcvc_288.yml``, random weights, 14 classes) and
TopFormer-tiny trained on CamVid (``--camvid_model``, 11 classes; random weights when
absent, said in the report), each with the in-graph label head (``argmax``) and the
runtime's exact one (``exact``), and copies CamVid val images (``../shared/data/camvid``).

``check`` builds, for each export, an FP32 and an FP16 engine with ``seg_runtime``'s TensorRT
backend (cache cleared first, so the build is timed), and reports per engine: build seconds,
label agreement with onnxruntime's CPU provider over the images (FP32 bound: >= 99.9%, the
export check's; FP16: reported), and the median latency over ``--repeats`` runs after
``--warmup``: network only (CUDA events around the engine call) and image to labels
(``SegPredictor``). With ``--trtexec``, ``deploy/benchmark.sh --backend trtexec
--save_engine`` builds trtexec's own (FP32) engine of each ``argmax`` export, and its labels
are compared with those of our FP32 engine. Writes
``REPORT.md`` and ``report.json`` into the folder.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "deploy", "python"))

MODELS = {
    "student": "configs/lpcvc/topformer_tiny_lpcvc_288.yml",
    "topformer_tiny_camvid": "configs/camvid/topformer_tiny_camvid.yml",
}
HEADS = ("argmax", "exact")
MIN_FP32_AGREEMENT = 0.999  # the export check's bound


def mean_agreement(labels: list, reference: list) -> float:
    """Mean over the images of the share of equal pixels."""
    return float(np.mean([(a == b).mean() for a, b in zip(labels, reference, strict=True)]))


def prepare(args: argparse.Namespace) -> None:
    import paddleseg_ext  # noqa: F401  (registers the components)
    from paddleseg_ext.config import load_config
    from paddleseg_ext.export import export

    os.makedirs(args.folder, exist_ok=True)
    weights = {"student": None, "topformer_tiny_camvid": args.camvid_model}
    for name, config in MODELS.items():
        model_path = weights[name] if weights[name] and os.path.exists(weights[name]) else None
        cfg = load_config(os.path.join(REPO, config), "val")
        for head in HEADS:
            out = os.path.join(args.folder, f"{name}_{head}")
            print(f"exporting {out}", flush=True)
            export(cfg, out, model_path=model_path, input_shape=[1, 3, 512, 512],
                   output_op=head, formats="onnx", verify=False)  # fmt: skip
        with open(os.path.join(args.folder, f"{name}.weights"), "w") as f:
            f.write(model_path or "random")
    images = os.path.join(args.folder, "images")
    os.makedirs(images, exist_ok=True)
    camvid = os.path.join(REPO, "..", "shared", "data", "camvid")
    with open(os.path.join(camvid, "val.txt")) as f:
        lines = [line.split()[0] for line in f if line.strip()][: args.images]
    for line in lines:
        shutil.copy(os.path.join(camvid, line), images)
    print(f"prepared {args.folder}: {len(MODELS) * len(HEADS)} exports, {len(lines)} images")


def check(args: argparse.Namespace) -> None:
    from seg_runtime import SegPredictor, read_image
    from seg_runtime.backends import OrtRunner, create_runner
    from seg_runtime.files import load_deploy

    images_dir = os.path.join(args.folder, "images")
    images = [read_image(os.path.join(images_dir, n)) for n in sorted(os.listdir(images_dir))]
    rows = []
    for name in MODELS:
        for head in HEADS:
            export_dir = os.path.join(args.folder, f"{name}_{head}")
            deploy = load_deploy(export_dir)
            for engine in os.listdir(export_dir):
                if engine.endswith(".engine"):
                    os.remove(os.path.join(export_dir, engine))
            onnx = os.path.join(export_dir, deploy.model_file("onnx"))
            cpu = SegPredictor.from_runner(
                deploy, OrtRunner(onnx, providers=["CPUExecutionProvider"])
            )
            reference = [cpu(image)[0] for image in images]
            with open(os.path.join(args.folder, f"{name}.weights")) as f:
                weights = f.read()
            for precision in ("fp32", "fp16"):
                start = time.perf_counter()
                try:
                    runner = create_runner(export_dir, "tensorrt", trt_precision=precision)
                except ValueError as err:  # TensorRT 11 has no FP16 flag
                    print(f"{name} {head} {precision}: {err}", flush=True)
                    continue
                build_s = time.perf_counter() - start
                gpu = SegPredictor.from_runner(deploy, runner)
                labels = [gpu(image)[0] for image in images]
                agreement = mean_agreement(labels, reference)
                network, to_labels = [], []
                for i in range(args.warmup + args.repeats):
                    _, ms = gpu(images[i % len(images)])
                    if i >= args.warmup:
                        network.append(gpu.forward_ms)
                        to_labels.append(ms)
                rows.append({
                    "model": name, "head": head, "precision": precision,
                    "weights": weights,
                    "build_s": round(build_s, 1), "agreement": agreement,
                    "network_ms": float(np.median(network)),
                    "to_labels_ms": float(np.median(to_labels)),
                    "gpu": runner.gpu, "buffers": runner.memory.name,
                })  # fmt: skip
                print(json.dumps(rows[-1]), flush=True)
                if args.trtexec and head == "argmax" and precision == "fp32":
                    rows[-1]["trtexec_agreement"] = trtexec_agreement(
                        export_dir, onnx, deploy, images, labels
                    )
    import tensorrt

    with open(os.path.join(args.folder, "report.json"), "w") as f:
        json.dump({"tensorrt": tensorrt.__version__, "rows": rows}, f, indent=1)
    lines = [
        f"TensorRT {tensorrt.__version__} on {rows[0]['gpu']} (buffers: {rows[0]['buffers']}),"
        f" {len(images)} CamVid val images, median of {args.repeats} runs after {args.warmup}",
        "",
        "| model | head | engine | build s | labels = CPU ORT | network ms | to labels ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        flag = (
            ""
            if r["precision"] != "fp32" or r["agreement"] >= MIN_FP32_AGREEMENT
            else " (below 99.9%)"
        )
        lines.append(
            f"| {r['model']} ({r['weights']}) | {r['head']} | {r['precision']} | {r['build_s']} | "
            f"{100 * r['agreement']:.3f}%{flag} | {r['network_ms']:.2f} | {r['to_labels_ms']:.2f} |"
        )
    with open(os.path.join(args.folder, "REPORT.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


def trtexec_agreement(export_dir, onnx, deploy, images, labels) -> float:
    """Labels of the FP32 engine ``deploy/benchmark.sh --backend trtexec`` builds, against
    those of ours."""
    from seg_runtime import SegPredictor
    from seg_runtime.tensorrt_engine import TrtRunner

    engine = os.path.join(export_dir, "trtexec_fp32.engine")
    subprocess.run(["bash", os.path.join(REPO, "deploy", "benchmark.sh"), export_dir,
                    "--backend", "trtexec", "--save_engine", engine], check=True)  # fmt: skip
    theirs = SegPredictor.from_runner(deploy, TrtRunner(onnx, deploy.input_shape, engine=engine))
    other = [theirs(image)[0] for image in images]
    return mean_agreement(other, labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="step", required=True)
    p = sub.add_parser("prepare", help="Export the models and copy images (needs paddleseg_ext)")
    p.add_argument("folder")
    p.add_argument("--camvid_model", default="output/camvid_tiny/iter_800/model.pdparams")
    p.add_argument("--images", type=int, default=8)
    c = sub.add_parser("check", help="Build and compare the engines (needs a GPU)")
    c.add_argument("folder")
    c.add_argument("--warmup", type=int, default=15)
    c.add_argument("--repeats", type=int, default=100)
    c.add_argument("--trtexec", action="store_true", help="Also compare trtexec's engine")
    args = parser.parse_args()
    (prepare if args.step == "prepare" else check)(args)


if __name__ == "__main__":
    main()
