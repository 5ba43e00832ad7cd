"""An LPCVC-style solution: one ``.pyz`` file holding the ONNX model, this runtime and the
post-processing statistics (and, if given, a prebuilt TensorRT engine).

Built by :func:`build_solution` (``tools/package_solution.py``); run as::

    python3 solution.pyz -i IMG_DIR -o OUT_DIR

It writes one mode-L PNG of class ids per input image into ``OUT_DIR`` (same file name; a
non-PNG input name gets ``.png``), at the input's size, and prints exactly one line: the
total seconds of the network's forward pass over all images, after ``--warmup`` untimed runs
(15, as the challenge's sample solution). That is what the referee's sample times: the
network call from the preprocessed input to its raw output (on TensorRT, the GPU time
between two CUDA events), so the labels of an ``--output_op exact`` export (upsampling +
argmax in ``seg_runtime.labelhead``) are made outside the timed part, as the 2023 winners'
were. ``--time_labels`` times up to the labels instead. Everything else goes to stderr.

The backend is chosen when packaging: ``tensorrt`` (an engine built from the ONNX model on
the first run and cached beside the ``.pyz``, or the packed engine where this TensorRT and
GPU can use it), ``onnxruntime``, or ``auto`` (TensorRT when importable, else onnxruntime).
At run time it needs Python >= 3.6 (the 2023 LPCVC Nano), NumPy, OpenCV and that runtime;
TensorRT also needs PyTorch with CUDA (as on the Jetson images) or cuda-python.

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
FLOAT_MODEL_ENTRY = f"{DATA_DIR}/model_float.onnx"  # for TensorRT beside an INT8 ONNX model
ENGINE_ENTRY = f"{DATA_DIR}/model.engine"
SETTINGS_ENTRY = f"{DATA_DIR}/solution.json"  # backend, the packed engine's file name
DEPLOY_ENTRY = f"{DATA_DIR}/deploy.json"  # deploy.yaml as JSON: no PyYAML needed at run time
STATS_ENTRY = f"{DATA_DIR}/postprocess.json"
MAIN = "from seg_runtime.cli import run\nfrom seg_runtime.solution import main\n\nrun(main)\n"
SOLUTION_BACKENDS = ("auto", "tensorrt", "onnxruntime")
WARMUP_RUNS = 15  # the challenge's sample solution warms up on 15 images


def build_solution(
    model_dir: str,
    out: str,
    stats: Optional[str] = None,
    factor: float = MIN_SIZE_FACTOR,
    background: int = 0,
    backend: str = "auto",
    engine: Optional[str] = None,
) -> str:
    """Writes the ``.pyz`` for the export in ``model_dir``; returns ``out``.

    Args:
        model_dir: Export directory (``deploy.yaml`` and an ONNX model).
        out: The ``.pyz`` to write.
        stats: ``tools/analyze_dataset.py`` statistics for the post-processing.
        factor: Minimum-size rule of the post-processing.
        background: The post-processing's background class.
        backend: One of ``SOLUTION_BACKENDS``, resolved on the board.
        engine: A TensorRT engine built on the target board, packed to save the build there.

    Raises:
        ValueError: The export has no ONNX model, its files are missing, or an unknown
            backend or an engine for ``onnxruntime``.
        FileNotFoundError: ``engine`` does not exist.
    """
    from .files import load_deploy
    from .postprocess import PostProcessor

    if backend not in SOLUTION_BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; expected one of {SOLUTION_BACKENDS}")
    if engine and backend == "onnxruntime":
        raise ValueError("--engine is a TensorRT engine: use --backend tensorrt or auto")
    if engine and not os.path.isfile(engine):
        raise FileNotFoundError(f"TensorRT engine not found: {engine}")
    deploy = load_deploy(model_dir)
    models = {MODEL_ENTRY: deploy.model_file("onnx")}
    if backend != "onnxruntime" and deploy.precision("onnx") == "int8":
        models[FLOAT_MODEL_ENTRY] = deploy.model_file("onnx", False)
    for name in models.values():
        if not name or not os.path.isfile(os.path.join(model_dir, name)):
            raise ValueError(f"{model_dir}: no ONNX model (export with --formats onnx)")
    post = None
    if stats:
        PostProcessor.from_stats(stats, factor, background)  # fails here on a bad file
        with open(stats) as f:
            post = {"stats": json.load(f), "factor": factor, "background": background}
    settings = {"backend": backend, "engine": os.path.basename(engine) if engine else None}
    package_dir = os.path.dirname(os.path.abspath(__file__))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("__main__.py", MAIN)
        for name in sorted(os.listdir(package_dir)):
            if name.endswith(".py"):
                zf.write(os.path.join(package_dir, name), f"seg_runtime/{name}")
        for entry, name in models.items():
            zf.write(os.path.join(model_dir, name), f"seg_runtime/{entry}")
        if engine:
            zf.write(engine, f"seg_runtime/{ENGINE_ENTRY}")
        zf.writestr(f"seg_runtime/{DEPLOY_ENTRY}", json.dumps(deploy.to_dict()))
        zf.writestr(f"seg_runtime/{SETTINGS_ENTRY}", json.dumps(settings))
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


def resolve_backend(requested: str) -> str:
    """The backend to run: ``requested``, or for ``auto`` TensorRT when importable, else
    onnxruntime.

    Raises:
        ImportError: None of the candidates imports; one line naming each.
    """
    candidates = ("tensorrt", "onnxruntime") if requested == "auto" else (requested,)
    missing = []
    for name in candidates:
        try:
            __import__(name)
            return name
        except ImportError as err:
            missing.append(f"{name} ({err})")
    raise ImportError(f"this solution runs on {' or '.join(candidates)}: {'; '.join(missing)}")


def open_runner(backend: str, model: bytes, deploy, settings: dict):
    """The runner of the archive's ``model`` on ``backend`` (``tensorrt`` or
    ``onnxruntime``)."""
    if backend == "onnxruntime":
        from .backends import OrtRunner

        return OrtRunner(model)
    from .tensorrt_engine import TrtRunner

    # Engines built here are cached beside the archive, when that folder is writable.
    cache_dir = os.path.dirname(os.path.abspath(sys.argv[0]))
    return TrtRunner(
        _read(FLOAT_MODEL_ENTRY) or model,
        deploy.input_shape,
        cache_dir=cache_dir if os.access(cache_dir, os.W_OK) else None,
        engine=_read(ENGINE_ENTRY),
        engine_name=settings.get("engine"),
    )


def main(argv: Optional[List[str]] = None) -> float:
    parser = argparse.ArgumentParser(description="Segment every image of a folder.")
    parser.add_argument("-i", "--input", required=True, help="Folder of input images")
    parser.add_argument("-o", "--output", required=True, help="Folder for the label PNGs")
    parser.add_argument(
        "--warmup", type=int, default=WARMUP_RUNS, help="Untimed runs on the first image"
    )
    parser.add_argument(
        "--time_labels", action="store_true",
        help="Time up to the labels (default: the network's forward only, as the referee)",
    )  # fmt: skip
    args = parser.parse_args(argv)

    import cv2

    from .files import DeployInfo
    from .media import IMAGE_EXTS, SkipReport, read_images
    from .postprocess import PostProcessor
    from .predictor import SegPredictor

    model, deploy_json = _read(MODEL_ENTRY), _read(DEPLOY_ENTRY)
    if model is None or deploy_json is None:
        raise FileNotFoundError("this archive holds no model (build it with package_solution)")
    deploy = DeployInfo.from_dict(json.loads(deploy_json), DEPLOY_ENTRY)
    settings = json.loads(_read(SETTINGS_ENTRY) or b'{"backend": "onnxruntime"}')
    post, post_data = None, _read(STATS_ENTRY)
    if post_data:
        spec = json.loads(post_data)
        post = PostProcessor.from_stats(spec["stats"], spec["factor"], spec["background"])
    if not os.path.isdir(args.input):
        raise FileNotFoundError(f"input folder not found: {args.input}")
    runner = open_runner(resolve_backend(settings["backend"]), model, deploy, settings)
    predictor = SegPredictor.from_runner(deploy, runner, post)

    names = sorted(n for n in os.listdir(args.input) if n.lower().endswith(IMAGE_EXTS))
    os.makedirs(args.output, exist_ok=True)
    total, done = 0.0, 0
    skipped = SkipReport()
    for path, image in read_images([os.path.join(args.input, n) for n in names], skipped):
        for _ in range(args.warmup if not done else 0):
            predictor(image)  # untimed: session initialisation, GPU clocks, caches
        labels, to_labels_ms = predictor(image)
        total += (to_labels_ms if args.time_labels else predictor.forward_ms) / 1000
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
