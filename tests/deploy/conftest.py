"""An exported model shared by the deployment tests (TopFormer-Tiny, shapes data, 96x96)."""

from __future__ import annotations

import os

import numpy as np
import paddle
import pytest
import yaml

from paddleseg_ext.config import load_config
from paddleseg_ext.export import export

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODEL = {
    "type": "TopFormerSeg",
    "num_classes": 6,
    "backbone": {"type": "TopFormerBackbone", "preset": "tiny"},
}


@pytest.fixture(scope="session")
def exported_dir(tmp_path_factory) -> str:
    """Export directory with model.json/model.pdiparams/model.onnx at a fixed 1x3x96x96."""
    root = tmp_path_factory.mktemp("deploy_model")
    config = root / "model.yml"
    base = os.path.join(REPO, "configs", "_base_", "shapes.yml")
    config.write_text(yaml.safe_dump({"_base_": base, "model": MODEL}))
    paddle.seed(0)
    np.random.seed(0)
    out = str(root / "export")
    export(load_config(str(config), "val"), out, input_shape=[1, 3, 96, 96], verify=False)
    return out
