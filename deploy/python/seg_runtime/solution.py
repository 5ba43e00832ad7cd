"""An LPCVC-style solution: one ``.pyz`` file holding the ONNX model, this runtime and the
post-processing statistics.

Built by :func:`build_solution` (``tools/package_solution.py``); run as::

    python3 solution.pyz -i IMG_DIR -o OUT_DIR

It writes one mode-L PNG of class ids per input image into ``OUT_DIR`` (same file name; a
non-PNG input name gets ``.png``), at the input's size, and prints exactly one line: the
total seconds spent in the model's forward pass over all images (after one untimed warm-up
run), as the challenge's referee expects: the network call only, so the labels of an
``--output_op exact`` export (upsampling + argmax in ``seg_runtime.labelhead``) are made
outside the timed part, as the 2023 winners' were. Everything else goes to stderr. At run
time it needs Python >= 3.6 (the 2023 LPCVC Nano), NumPy, OpenCV and onnxruntime (TensorRT or
CUDA execution provider when present, else the CPU).

Images are read by :func:`seg_runtime.media.read_image`. One that cannot be read is skipped
with a ``skipped: PATH: reason`` line on stderr, and the run goes on and exits with status 0:
the referee scores a missing output as 0 for that image, while an aborted run would score
every image after it as 0. A closing ``warning:`` line on stderr counts the skipped images.
"""

import argparse
import io
import json
import os
import pkgutil
import sys
import zipapp
import zipfile
from typing import List, Optional

import numpy as np

from .postprocess import MIN_SIZE_FACTOR

# Data files live inside the package, where pkgutil.get_data finds them in the archive.
DATA_DIR = "solution_data"
MODEL_ENTRY = f"{DATA_DIR}/model.onnx"
DEPLOY_ENTRY = f"{DATA_DIR}/deploy.json"  # deploy.yaml as JSON: no PyYAML needed at run time
STATS_ENTRY = f"{DATA_DIR}/postprocess.json"
MAIN = "from seg_runtime.cli import run\nfrom seg_runtime.solution import main\n\nrun(main)\n"


# Runtime modules a solution never runs: the web demo (it also needs Flask).
NOT_PACKAGED = ("web.py",)


def build_solution(
    model_dir: str,
    out: str,
    stats: Optional[str] = None,
    factor: float = MIN_SIZE_FACTOR,
    background: int = 0,
) -> str:
    """Writes the ``.pyz`` for the export in ``model_dir``; returns ``out``.

    Raises:
        ValueError: The export has no ONNX model, or its files are missing.
    """
    from .files import load_deploy
    from .postprocess import PostProcessor

    deploy = load_deploy(model_dir)
    onnx_name = deploy.get("onnx_model")
    if not onnx_name or not os.path.isfile(os.path.join(model_dir, onnx_name)):
        raise ValueError(f"{model_dir}: no ONNX model (export with --formats onnx)")
    post = None
    if stats:
        PostProcessor.from_stats(stats, factor, background)  # fails here on a bad file
        with open(stats) as f:
            post = {"stats": json.load(f), "factor": factor, "background": background}
    package_dir = os.path.dirname(os.path.abspath(__file__))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("__main__.py", MAIN)
        for name in sorted(os.listdir(package_dir)):
            if name.endswith(".py") and name not in NOT_PACKAGED:
                zf.write(os.path.join(package_dir, name), f"seg_runtime/{name}")
        zf.write(os.path.join(model_dir, onnx_name), f"seg_runtime/{MODEL_ENTRY}")
        zf.writestr(f"seg_runtime/{DEPLOY_ENTRY}", json.dumps(deploy))
        if post is not None:
            zf.writestr(f"seg_runtime/{STATS_ENTRY}", json.dumps(post))
    staging = out + ".zip"
    with open(staging, "wb") as f:
        f.write(buffer.getvalue())
    try:  # adds the shebang and makes the file executable
        zipapp.create_archive(staging, out, interpreter="/usr/bin/env python3")
    finally:
        os.remove(staging)
    return out


def _read(entry: str) -> Optional[bytes]:
    """A data file of the archive, or None when it has none."""
    try:
        return pkgutil.get_data("seg_runtime", entry)
    except OSError:  # FileNotFoundError from a folder, OSError from the zip importer
        return None


def main(argv: Optional[List[str]] = None) -> float:
    parser = argparse.ArgumentParser(description="Segment every image of a folder.")
    parser.add_argument("-i", "--input", required=True, help="Folder of input images")
    parser.add_argument("-o", "--output", required=True, help="Folder for the label PNGs")
    args = parser.parse_args(argv)

    import cv2

    from .backends import OrtRunner
    from .media import IMAGE_EXTS, SkipReport, read_images
    from .postprocess import PostProcessor
    from .predictor import SegPredictor

    model, deploy_json = _read(MODEL_ENTRY), _read(DEPLOY_ENTRY)
    if model is None or deploy_json is None:
        raise FileNotFoundError("this archive holds no model (build it with package_solution)")
    post, post_data = None, _read(STATS_ENTRY)
    if post_data:
        spec = json.loads(post_data)
        post = PostProcessor.from_stats(spec["stats"], spec["factor"], spec["background"])
    predictor = SegPredictor.from_runner(json.loads(deploy_json), OrtRunner(model), post)

    if not os.path.isdir(args.input):
        raise FileNotFoundError(f"input folder not found: {args.input}")
    names = sorted(n for n in os.listdir(args.input) if n.lower().endswith(IMAGE_EXTS))
    os.makedirs(args.output, exist_ok=True)
    total, done = 0.0, 0
    skipped = SkipReport()
    for path, image in read_images([os.path.join(args.input, n) for n in names], skipped):
        if not done:
            predictor(image)  # untimed warm-up: session initialisation, engine building
        labels, _ = predictor(image)
        # The referee times the network call alone: the label head of an ``exact`` export
        # (upsampling + argmax) stays outside, as in the challenge's sample solution.
        total += predictor.forward_ms / 1000
        done += 1
        name = os.path.basename(path)
        out_name = name if name.lower().endswith(".png") else os.path.splitext(name)[0] + ".png"
        if not cv2.imwrite(os.path.join(args.output, out_name), labels.astype(np.uint8)):
            raise OSError(f"cannot write {os.path.join(args.output, out_name)}")
    if skipped.count:
        print(f"warning: {skipped.summary(done)}", file=sys.stderr)
    print(f"{total:.6f}")
    sys.stdout.flush()
    return total
