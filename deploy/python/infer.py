"""Segment images, a folder or a video with an exported model (Paddle Inference or ONNX).

python deploy/python/infer.py --model_dir output/export --image_path img.png \
    --save_dir output/infer --backend onnxruntime

Writes ``labels/NAME.png`` (class ids, uint8) and ``pseudo_color/NAME.png`` per image (for a
video, ``labels/VIDEO/000000.png`` per frame) and prints the inference latency of each image.
onnxruntime uses the TensorRT or CUDA execution provider when it has one.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator

import cv2
import numpy as np

from paddleseg_ext.cli import run
from paddleseg_ext.core.predict import IMAGE_EXTS, color_palette, list_images
from paddleseg_ext.runtime import BACKENDS, SegPredictor

VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_dir", required=True, help="Export directory (deploy.yaml)")
    parser.add_argument("--image_path", required=True, help="Image, image folder or video")
    parser.add_argument("--save_dir", default="output/infer", help="Output directory")
    parser.add_argument("--backend", choices=BACKENDS, default="onnxruntime", help="Runtime")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads")
    parser.add_argument("--use_gpu", action="store_true", help="Paddle Inference on GPU")
    parser.add_argument(
        "--cpu_only", action="store_true", help="onnxruntime: CPU provider only (no TensorRT)"
    )
    parser.add_argument("--max_frames", type=int, default=0, help="Video: stop after N (0: all)")
    return parser.parse_args(argv)


def iter_inputs(path: str, max_frames: int = 0) -> Iterator[tuple[str, np.ndarray]]:
    """Yields ``(relative output name, BGR image)`` for an image, a folder or a video."""
    if os.path.isfile(path) and path.lower().endswith(VIDEO_EXTS):
        capture = cv2.VideoCapture(path)
        if not capture.isOpened():
            raise FileNotFoundError(f"Cannot open video {path}")
        stem = os.path.splitext(os.path.basename(path))[0]
        index = 0
        try:
            while not max_frames or index < max_frames:
                ok, frame = capture.read()
                if not ok:
                    break
                yield os.path.join(stem, f"{index:06d}.png"), frame
                index += 1
        finally:
            capture.release()
        if index == 0:
            raise ValueError(f"No frame could be read from {path}")
        return
    if os.path.isfile(path) and not path.lower().endswith(IMAGE_EXTS):
        raise ValueError(f"{path}: not an image ({', '.join(IMAGE_EXTS)}) or a video file")
    images = list_images(path)
    root = os.path.dirname(path) if os.path.isfile(path) else path
    for image_path in images:
        image = cv2.imread(image_path, cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError(f"Cannot read image {image_path}")
        yield os.path.splitext(os.path.relpath(image_path, root))[0] + ".png", image


def main(argv: list[str] | None = None) -> list[float]:
    """Runs the model on every input; returns the per-image latencies in ms."""
    args = parse_args(argv)
    providers = ["CPUExecutionProvider"] if args.cpu_only else None
    predictor = SegPredictor(
        args.model_dir, args.backend, args.threads, use_gpu=args.use_gpu, providers=providers
    )
    if hasattr(predictor.runner, "providers"):
        print(f"onnxruntime providers: {', '.join(predictor.runner.providers)}")
    palette = color_palette(predictor.num_classes)
    latencies = []
    for name, image in iter_inputs(args.image_path, args.max_frames):
        labels, latency = predictor(image)
        latencies.append(latency)
        outputs = {
            "labels": labels.astype(np.uint8),
            "pseudo_color": palette[labels][..., ::-1],  # RGB palette -> BGR for OpenCV
        }
        for kind, array in outputs.items():
            out = os.path.join(args.save_dir, kind, name)
            os.makedirs(os.path.dirname(out), exist_ok=True)
            if not cv2.imwrite(out, array):
                raise OSError(f"Cannot write {out}")
        print(f"{name}: {latency:.2f} ms")
    print(
        f"{len(latencies)} image(s), {args.backend}: mean {np.mean(latencies):.2f} ms, "
        f"median {np.median(latencies):.2f} ms; results in {args.save_dir}"
    )
    return latencies


if __name__ == "__main__":
    run(main, errors=(FileNotFoundError, ValueError))
