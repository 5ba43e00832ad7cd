"""deploy.yaml through its one owner, ``seg_runtime.DeployInfo``: version 2 as the export
writes it, version 1 files of earlier exports, and the errors that name the file."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import yaml
from seg_runtime import DeployInfo, SegPredictor, load_deploy, read_image


def write_section(folder, section: dict) -> None:
    with open(os.path.join(folder, "deploy.yaml"), "w") as f:
        yaml.safe_dump({"Deploy": section}, f)


def test_version_2_round_trip(board, tmp_path):
    deploy = load_deploy(os.path.join(board["root"], "model"))
    assert deploy.to_dict()["version"] == 2
    assert deploy.files() == ["model.json", "model.pdiparams", "model.onnx"]
    deploy.set_model("onnx", "int8", "model_int8.onnx", default=True)
    deploy.quantization["onnx"] = {"format": "QDQ"}
    deploy.write(str(tmp_path))
    again = load_deploy(str(tmp_path))
    assert again.to_dict() == deploy.to_dict()
    assert again.model_file("onnx") == "model_int8.onnx"  # the default once quantized
    assert again.model_file("onnx", False) == "model.onnx"
    assert again.model_file("lite") is None and not again.has("lite")


def test_version_1_files_still_load_and_run(board, tmp_path):
    """An earlier export's deploy.yaml (one key per file) opens the same files."""
    model_dir = str(tmp_path / "model")
    shutil.copytree(os.path.join(board["root"], "model"), model_dir)
    new = load_deploy(model_dir)
    old = {"model": "model.json", "params": "model.pdiparams", "onnx_model": "model_int8.onnx",
           "onnx_float_model": "model.onnx", "quantization": {"format": "QDQ"},
           "transforms": new.transforms, "input_shape": new.input_shape,
           "num_classes": new.num_classes, "output_op": new.output_op,
           "class_names": new.class_names}  # fmt: skip
    write_section(model_dir, old)
    deploy = load_deploy(model_dir)
    assert deploy.formats == {
        "paddle": {"float": {"model": "model.json", "params": "model.pdiparams"}},
        "onnx": {"float": "model.onnx", "int8": "model_int8.onnx", "default": "int8"},
    }
    assert deploy.quantization == {"onnx": {"format": "QDQ"}}
    assert deploy.class_names == new.class_names
    predictor = SegPredictor(model_dir, "onnxruntime", int8=False)  # the float file
    for name, expected in board["reference"].items():
        labels, _ = predictor(read_image(os.path.join(board["images"], name)))
        np.testing.assert_array_equal(labels, expected, err_msg=name)


@pytest.mark.parametrize(
    "section, message",
    [
        ({"input_shape": [1, 3, 8, 8]}, r"deploy.yaml: Deploy.num_classes is missing"),
        ({"version": 3, "input_shape": [1, 3, 8, 8], "num_classes": 2},
         r"deploy.yaml: Deploy.version 3 is not one this runtime reads \(1 or 2\)"),
    ],
)  # fmt: skip
def test_bad_sections_name_the_file(section, message, tmp_path):
    write_section(str(tmp_path), section)
    with pytest.raises(ValueError, match=message):
        load_deploy(str(tmp_path))
    with pytest.raises(ValueError, match="unknown format/precision onnx/fp16"):
        DeployInfo([1, 3, 8, 8], 2).set_model("onnx", "fp16", "x.onnx")
