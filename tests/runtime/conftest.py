"""A deployment case shared by the runtime tests: an export, inputs and reference labels.

Under the main environment the case is built here (export with paddleseg_ext, reference
labels from Paddle Inference). Under the Paddle Lite side environment (CPython 3.10, no
PaddleSeg) the runtime tests read a case built beforehand, named by ``$SEG_RUNTIME_CASE``.
"""

from __future__ import annotations

import os
import shutil

import pytest
from helpers import CAMVID, RUNTIME_DIR

CASE_ENV = "SEG_RUNTIME_CASE"


def build_case(root: str) -> str:
    """Writes ``root/{model.yml, weights.pdparams, export, images, video.avi, reference.npz}``
    and returns ``root``."""
    import cv2
    import numpy as np
    import paddle
    import yaml
    from seg_runtime import SegPredictor, iter_inputs

    from paddleseg_ext.config import build, load_config
    from paddleseg_ext.export import export

    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    config = os.path.join(root, "model.yml")
    model = {"type": "TopFormerSeg", "num_classes": 6,
             "backbone": {"type": "TopFormerBackbone", "preset": "tiny"}}  # fmt: skip
    with open(config, "w") as f:
        yaml.safe_dump({"_base_": os.path.join(repo, "configs", "_base_", "shapes.yml"),
                        "model": model}, f)  # fmt: skip
    paddle.seed(0)
    weights = os.path.join(root, "weights.pdparams")
    paddle.save(build(load_config(config, "val")).model.state_dict(), weights)
    export(load_config(config, "val"), os.path.join(root, "export"), model_path=weights,
           input_shape=[1, 3, 96, 96], verify=False)  # fmt: skip
    rng = np.random.default_rng(0)
    images = os.path.join(root, "images")
    os.makedirs(images)
    for i, (h, w) in enumerate([(120, 100), (64, 200)]):
        # Smooth blobs rather than noise, so the labels are not all one class.
        small = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
        cv2.imwrite(os.path.join(images, f"img{i}.png"), cv2.resize(small, (w, h)))
    writer = cv2.VideoWriter(os.path.join(root, "video.avi"), cv2.VideoWriter_fourcc(*"MJPG"),
                             5, (100, 80))  # fmt: skip
    for _ in range(3):
        writer.write(cv2.resize(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8), (100, 80)))
    writer.release()
    predictor = SegPredictor(os.path.join(root, "export"), "paddle")
    reference = {}
    for source in (images, os.path.join(root, "video.avi")):
        for name, image in iter_inputs(source):
            reference[name], _ = predictor(image)
    np.savez(os.path.join(root, "reference.npz"), **reference)
    return root


@pytest.fixture(scope="session")
def runtime_case(tmp_path_factory) -> str:
    """The case directory (see the module docstring)."""
    if os.environ.get(CASE_ENV):
        return os.environ[CASE_ENV]
    pytest.importorskip("paddleseg_ext", reason="building the case needs the training side")
    return build_case(str(tmp_path_factory.mktemp("runtime_case")))


@pytest.fixture(scope="session")
def board(runtime_case, tmp_path_factory) -> dict:
    """A folder as on a device: the runtime, the case's export, real images, and their
    labels from this interpreter's onnxruntime (the first run of a fresh session each).

    ``images/`` holds two CamVid val images (when ``../shared`` is there), two SyntheticShapes
    val images, and the first image again under a later name, so that a session runs it
    once first and once after the others.
    """
    import cv2
    from seg_runtime import SegPredictor, read_image

    from paddleseg_ext.datasets.shapes import generate_synthetic_shapes

    root = str(tmp_path_factory.mktemp("board"))
    shutil.copytree(RUNTIME_DIR, os.path.join(root, "runtime"),
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    shutil.copytree(os.path.join(runtime_case, "export"), os.path.join(root, "model"))
    images = os.path.join(root, "images")
    os.makedirs(images)
    sources = []
    if (CAMVID / "val.txt").is_file():
        lines = (CAMVID / "val.txt").read_text().split("\n")[:2]
        sources += [("camvid", str(CAMVID / line.split()[0]), 4) for line in lines]
    shapes = generate_synthetic_shapes(
        os.path.join(root, "shapes"), num_train=1, num_val=2, image_size=128, seed=0
    )
    val = sorted(os.listdir(os.path.join(shapes, "images", "val")))
    sources += [("shapes", os.path.join(shapes, "images", "val", n), 1) for n in val]
    names = []
    for i, (kind, path, shrink) in enumerate(sources):
        image = cv2.imread(path, cv2.IMREAD_COLOR)
        h, w = image.shape[:2]
        image = cv2.resize(image, (w // shrink, h // shrink), interpolation=cv2.INTER_AREA)
        names.append(f"{i}_{kind}.png")
        cv2.imwrite(os.path.join(images, names[-1]), image)
    shutil.copy(os.path.join(images, names[0]), os.path.join(images, f"9_again_{names[0]}"))
    reference = {}
    for name in sorted(os.listdir(images)):
        predictor = SegPredictor(os.path.join(root, "model"), "onnxruntime")
        reference[name] = predictor(read_image(os.path.join(images, name)))[0]
    return {"root": root, "images": images, "reference": reference, "case": runtime_case}


@pytest.fixture(scope="session")
def exact_export(board, tmp_path_factory) -> str:
    """The board's model exported with ``--output_op exact`` (head-resolution logits)."""
    pytest.importorskip("paddleseg_ext", reason="exporting the model needs the training side")
    from paddleseg_ext.config import load_config
    from paddleseg_ext.export import export

    out = str(tmp_path_factory.mktemp("exact") / "export")
    case = board["case"]
    export(load_config(os.path.join(case, "model.yml"), "val"), out, output_op="exact",
           model_path=os.path.join(case, "weights.pdparams"), input_shape=[1, 3, 96, 96],
           formats="onnx", verify=False)  # fmt: skip
    return out


@pytest.fixture
def changing_solution(board, tmp_path) -> tuple:
    """``(solution.pyz, expected labels)``: the board's export packaged with post-processing
    statistics that change its labels. Each class's minimum area is three times its smallest
    predicted area (rule (a) removes it there), and the two largest foreground classes are
    exclusive (rule (b)); the expected labels are the reference ones post-processed."""
    import json
    import subprocess
    import sys

    import numpy as np
    from seg_runtime.postprocess import MIN_SIZE_FACTOR, PostProcessor

    reference = board["reference"]
    counts = np.stack([np.bincount(r.ravel(), minlength=6) for r in reference.values()])
    present = np.where(counts > 0, counts, np.iinfo(np.int64).max).min(axis=0)
    min_pixels = [int(3 * p) if p < np.iinfo(np.int64).max else None for p in present]
    largest = [int(c) for c in np.argsort(-counts.sum(axis=0)) if c != 0][:2]
    stats = {"min_pixels": min_pixels, "exclusive_pairs": [largest]}
    stats_file = tmp_path / "stats.json"
    stats_file.write_text(json.dumps(stats))
    post = PostProcessor.from_stats(stats, MIN_SIZE_FACTOR, 0)
    expected = {name: post(labels) for name, labels in reference.items()}
    assert any(not np.array_equal(expected[n], reference[n]) for n in reference)
    pyz = tmp_path / "solution.pyz"
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    build = subprocess.run(
        [sys.executable, os.path.join(repo, "tools", "package_solution.py"), "--model_dir",
         os.path.join(board["root"], "model"), "--postprocess", str(stats_file), "--out",
         str(pyz)], capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr
    return pyz, expected
