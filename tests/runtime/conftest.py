"""A deployment case shared by the runtime tests: an export, inputs and reference labels.

Under the main environment the case is built here (export with paddleseg_ext, reference
labels from Paddle Inference). Under the Paddle Lite side environment (CPython 3.10, no
PaddleSeg) the runtime tests read a case built beforehand, named by ``$SEG_RUNTIME_CASE``.
"""

from __future__ import annotations

import os

import pytest

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
