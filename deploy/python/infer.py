"""Segment images, a folder or a video with an exported model, without PaddlePaddle.

python deploy/python/infer.py --model_dir output/export --image_path img.png \
    --save_dir output/infer --backend onnxruntime

Needs Python >= 3.6, NumPy, OpenCV, PyYAML and one backend: onnxruntime (``model.onnx``,
TensorRT or CUDA provider when present), Paddle Inference (``model.json``) or Paddle Lite
(``model.nb``). Copy this folder (``infer.py``, ``benchmark.py``, ``seg_runtime/``) and an
export directory to the device; nothing else is needed.

Writes ``labels/NAME.png`` (class ids, uint8) and ``pseudo_color/NAME.png`` per image (for a
video, ``labels/VIDEO/000000.png`` per frame) and prints the machine and backend (one
``machine:`` line, see ``benchmark.py``) and the inference latency of each image.

Images are read by ``seg_runtime.read_image`` (its docstring lists the rules). A single image
that cannot be read is an error: one ``error: PATH: reason`` line, exit status 2. In a folder
or a video, an unreadable image or a broken frame is skipped with one ``skipped: PATH: reason``
line on stderr and the others are processed; the run then ends with an ``error:`` line
counting the skipped inputs and exit status 2.
"""

import argparse
import os
from typing import List, Optional

import cv2
import numpy as np
from seg_runtime import (
    InputError,
    SegPredictor,
    SkipReport,
    color_palette,
    colorize,
    iter_inputs,
)
from seg_runtime.cli import (
    add_backend_args,
    add_postprocess_args,
    backend_options,
    postprocessor,
    run,
)
from seg_runtime.machine import describe_machine


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_dir", required=True, help="Export directory (deploy.yaml)")
    parser.add_argument("--image_path", required=True, help="Image, image folder or video")
    parser.add_argument("--save_dir", default="output/infer", help="Output directory")
    parser.add_argument("--max_frames", type=int, default=0, help="Video: stop after N (0: all)")
    add_backend_args(parser)
    add_postprocess_args(parser, "Post-process labels with these statistics")
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> List[float]:
    """Runs the model on every input; returns the per-image latencies in ms.

    Raises:
        InputError: A single image cannot be read, or inputs of a folder or video were
            skipped (after the others were processed).
    """
    args = parse_args(argv)
    predictor = SegPredictor(
        args.model_dir, **backend_options(args), postprocess=postprocessor(args)
    )
    print(describe_machine(predictor.runner))
    palette = color_palette(predictor.num_classes)
    latencies = []
    skipped = SkipReport()
    for name, image in iter_inputs(args.image_path, args.max_frames, on_error=skipped):
        labels, latency = predictor(image)
        latencies.append(latency)
        outputs = {
            "labels": labels.astype(np.uint8),
            "pseudo_color": colorize(labels, palette),
        }
        for kind, array in outputs.items():
            out = os.path.join(args.save_dir, kind, name)
            os.makedirs(os.path.dirname(out), exist_ok=True)
            if not cv2.imwrite(out, array):
                raise OSError(f"Cannot write {out}")
        print(f"{name}: {latency:.2f} ms")
    if latencies:
        print(
            f"{len(latencies)} image(s), {getattr(predictor.runner, 'name', args.backend)}: "
            f"mean {np.mean(latencies):.2f} ms, "
            f"median {np.median(latencies):.2f} ms; results in {args.save_dir}"
        )
    if skipped.count:
        raise InputError(skipped.summary(len(latencies)))
    return latencies


if __name__ == "__main__":
    run(main)
