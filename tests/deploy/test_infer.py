"""deploy/python/infer.py on an exported model: images, folders, videos, both backends."""

from __future__ import annotations

import importlib.util
import os

import cv2
import numpy as np
import pytest
from seg_runtime import SegPredictor, color_palette, create_runner, load_deploy

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load_infer():
    spec = importlib.util.spec_from_file_location(
        "deploy_infer", os.path.join(REPO, "deploy", "python", "infer.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_images(folder, count: int = 2, size=(120, 100)) -> list[str]:
    """Random BGR PNGs of (h, w) = size, not the model's 96x96 input."""
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        path = os.path.join(folder, f"img{i}.png")
        cv2.imwrite(path, rng.integers(0, 256, (*size, 3), dtype=np.uint8))
        paths.append(path)
    return paths


@pytest.mark.parametrize("backend", ["paddle", "onnxruntime"])
def test_infer_folder(backend, exported_dir, tmp_path, capsys) -> None:
    images = write_images(str(tmp_path / "images"))
    save_dir = tmp_path / "out"
    latencies = load_infer().main(
        [
            "--model_dir",
            exported_dir,
            "--image_path",
            str(tmp_path / "images"),
            "--save_dir",
            str(save_dir),
            "--backend",
            backend,
            "--cpu_only",
        ]
    )
    assert len(latencies) == 2 and all(t > 0 for t in latencies)
    printed = capsys.readouterr().out
    assert "img0.png:" in printed and " ms" in printed
    palette = color_palette(6)
    for path in images:
        name = os.path.basename(path)
        labels = cv2.imread(str(save_dir / "labels" / name), cv2.IMREAD_UNCHANGED)
        color = cv2.imread(str(save_dir / "pseudo_color" / name), cv2.IMREAD_COLOR)
        assert labels.shape == (120, 100) and labels.dtype == np.uint8
        assert labels.max() < 6
        np.testing.assert_array_equal(color[..., ::-1], palette[labels])


def test_backends_agree_and_match_direct_run(exported_dir) -> None:
    """Both backends give the same labels; labels = the model output resized back."""
    image = np.random.default_rng(3).integers(0, 256, (120, 100, 3), dtype=np.uint8)
    by_backend = {}
    for backend in ("paddle", "onnxruntime"):
        predictor = SegPredictor(exported_dir, backend, providers=["CPUExecutionProvider"])
        by_backend[backend], _ = predictor(image)
    assert (by_backend["paddle"] == by_backend["onnxruntime"]).mean() >= 0.999
    x = predictor.preprocess(image)
    assert x.shape == (1, 3, 96, 96)
    direct = create_runner(exported_dir, "onnxruntime")(x)[0, 0]
    expected = cv2.resize(direct, (100, 120), interpolation=cv2.INTER_NEAREST)
    np.testing.assert_array_equal(by_backend["onnxruntime"], expected)


def test_infer_video(exported_dir, tmp_path) -> None:
    video = str(tmp_path / "clip.avi")
    writer = cv2.VideoWriter(video, cv2.VideoWriter_fourcc(*"MJPG"), 5, (100, 80))
    if not writer.isOpened():
        pytest.skip("this OpenCV build cannot write MJPG .avi files")
    rng = np.random.default_rng(1)
    for _ in range(3):
        writer.write(rng.integers(0, 256, (80, 100, 3), dtype=np.uint8))
    writer.release()
    save_dir = tmp_path / "out"
    latencies = load_infer().main(
        ["--model_dir", exported_dir, "--image_path", video, "--save_dir", str(save_dir)]
    )
    assert len(latencies) == 3
    for index in range(3):
        frame = cv2.imread(str(save_dir / "labels" / "clip" / f"{index:06d}.png"), -1)
        assert frame.shape == (80, 100)
        assert (save_dir / "pseudo_color" / "clip" / f"{index:06d}.png").is_file()


def test_infer_errors(exported_dir, tmp_path) -> None:
    infer = load_infer()
    with pytest.raises(FileNotFoundError, match="deploy.yaml not found"):
        infer.main(["--model_dir", str(tmp_path), "--image_path", str(tmp_path)])
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="not an image"):
        infer.main(["--model_dir", exported_dir, "--image_path", str(tmp_path / "notes.txt")])


def test_deploy_yaml_names_existing_files(exported_dir) -> None:
    files = load_deploy(exported_dir).files()
    assert sorted(files) == ["model.json", "model.onnx", "model.pdiparams"]
    for name in files:
        assert os.path.isfile(os.path.join(exported_dir, name)), name


@pytest.mark.slow
def test_infer_dynamic_model_on_odd_size(tmp_path) -> None:
    """A dynamic-size export gets the image at the nearest multiple of 32, labels at full size."""
    import yaml

    from paddleseg_ext.config import load_config
    from paddleseg_ext.export import export

    config = tmp_path / "ms.yml"
    model = {
        "type": "MobileSegExt",
        "num_classes": 6,
        "backbone": {"type": "StrideFormerBackbone", "preset": "tiny"},
    }
    base = os.path.join(REPO, "configs", "_base_", "shapes.yml")
    config.write_text(yaml.safe_dump({"_base_": base, "model": model}))
    out = str(tmp_path / "export")
    export(load_config(str(config), "val"), out, input_shape=[1, 3, -1, -1], formats="onnx",
           verify=False)  # fmt: skip
    predictor = SegPredictor(out, "onnxruntime", providers=["CPUExecutionProvider"])
    image = np.random.default_rng(0).integers(0, 256, (75, 110, 3), dtype=np.uint8)
    assert predictor.preprocess(image).shape == (1, 3, 64, 96)
    labels, latency = predictor(image)
    assert labels.shape == (75, 110) and latency > 0
