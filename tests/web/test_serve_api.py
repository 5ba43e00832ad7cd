"""The web demo's HTTP API, in-process (Flask's test client), and its server without Paddle."""

from __future__ import annotations

import base64
import io
import json
import os
import struct
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

import cv2
import numpy as np
import pytest
from helpers import REPO
from seg_runtime import (
    SegPredictor,
    color_palette,
    iter_inputs,
    load_deploy,
    overlay,
    read_image,
)
from seg_runtime.postprocess import PostProcessor
from seg_web import app as web_app
from seg_web import jobs as web_jobs
from seg_web import models as web_models

CPU = ["CPUExecutionProvider"]
MB = 1 << 20


def decode_bytes(data: bytes) -> np.ndarray:
    """An encoded image, as stored (labels stay one channel)."""
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)


def decode(url: str) -> np.ndarray:
    """The image of a ``data:`` URL."""
    return decode_bytes(base64.b64decode(url.split(",", 1)[1]))


def mean_diff(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape
    return float(np.abs(a.astype(np.float32) - b.astype(np.float32)).mean())


def png_bytes(image: np.ndarray) -> bytes:
    return cv2.imencode(".png", image)[1].tobytes()


@pytest.fixture(scope="module")
def exports(runtime_case, int8_export) -> list[str]:
    return [os.path.join(runtime_case, "export"), int8_export]


@pytest.fixture(scope="module")
def models(exports) -> list[web_models.DemoModel]:
    return web_models.open_models(exports, providers=CPU)


@pytest.fixture(scope="module")
def names(exports) -> dict[str, str]:
    """Picker names: the case's export, and the INT8 and float entries of its quantized copy."""
    case, quantized = web_models.picker_names(exports)
    return {"case": case, "int8": f"{quantized} (INT8)", "float": f"{quantized} (float)"}


@pytest.fixture
def tmp_root(tmp_path, monkeypatch):
    """The temporary folder of the app's uploads and outputs, to check what is left there."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


def left_files(root) -> list[str]:
    return sorted(
        os.path.relpath(os.path.join(d, n), root) for d, _, files in os.walk(root) for n in files
    )


@pytest.fixture
def client(models, tmp_root):
    return web_app.create_app(models, repeats=3).test_client()


def post_image(client, content: bytes, filename: str = "image.png", **form):
    data = {"image": (io.BytesIO(content), filename), **form}
    return client.post("/api/segment", data=data, content_type="multipart/form-data")


def test_the_picker_lists_each_export_with_both_models_of_an_int8_one(client, exports, names):
    body = client.get("/api/models").get_json()
    assert [m["name"] for m in body["models"]] == [names["case"], names["int8"], names["float"]]
    assert [m["precision"] for m in body["models"]] == ["float", "INT8", "float"]
    deploy = load_deploy(exports[0])
    palette = color_palette(6)
    for model in body["models"]:
        assert model["input_size"] == "96x96"
        assert model["backend"] == "onnxruntime (CPUExecutionProvider)" and model["threads"] == 1
        assert [c["name"] for c in model["classes"]] == [str(n) for n in deploy.class_names]
        assert model["classes"][1]["color"] == "#{:02x}{:02x}{:02x}".format(*palette[1])
    assert body["postprocess"] is False and body["repeats"] == 3
    assert body["samples"] == ["shapes-1.png", "shapes-2.png", "shapes-3.png"]
    assert body["limits"]["image_bytes"] == 20 * MB and body["limits"]["video_bytes"] == 50 * MB


def test_picker_names_tell_the_directories_apart():
    assert web_models.picker_names(["out/a/export", "out/b/export"]) == ["a/export", "b/export"]
    assert web_models.picker_names(["out/teacher", "out/student"]) == ["teacher", "student"]
    with pytest.raises(ValueError, match="--model_dir given twice"):
        web_models.picker_names(["out/a", "out/./a"])


def test_the_page_loads_nothing_from_the_network(client):
    page = client.get("/")
    assert page.status_code == 200 and b'id="image-file"' in page.data
    for name in ("index.html", "app.js", "style.css"):
        text = client.get(f"/static/{name}").get_data(as_text=True)
        assert "http://" not in text and "https://" not in text and "//cdn" not in text, name


def test_an_image_gives_the_runtime_predictors_labels_an_overlay_and_the_latency(
    client, runtime_case, names
):
    path = os.path.join(runtime_case, "images", "img0.png")
    image = read_image(path)
    expected, _ = SegPredictor(os.path.join(runtime_case, "export"), providers=CPU)(image)
    assert len(np.unique(expected)) > 1
    with open(path, "rb") as f:
        response = post_image(client, f.read(), "img0.png", model=names["case"], alpha="0.4")
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert (body["width"], body["height"]) == (100, 120) and "agreement" not in body
    assert mean_diff(decode(body["input"]), image) < 3  # JPEG
    (result,) = body["results"]
    labels = decode(result["labels"])
    assert labels.dtype == np.uint8 and np.array_equal(labels, expected)
    color = decode(result["color"])
    assert np.array_equal(color, color_palette(6)[expected][..., ::-1])
    assert mean_diff(decode(result["overlay"]), overlay(image, color, 0.4)) < 3
    counts = np.bincount(expected.ravel(), minlength=6)
    assert [e["id"] for e in result["legend"]] == sorted(
        np.flatnonzero(counts), key=lambda c: -counts[c]
    )
    assert [e["share"] for e in result["legend"]] == pytest.approx(
        sorted(counts[counts > 0] / expected.size, reverse=True)
    )
    latency = result["latency"]
    assert latency["median_ms"] > 0 and latency["runs"] == 3 and latency["threads"] == 1
    assert latency["backend"] == "onnxruntime (CPUExecutionProvider)"
    assert result["postprocessed"] is False


def test_two_models_report_their_label_agreement(client, runtime_case, int8_export, names):
    path = os.path.join(runtime_case, "images", "img1.png")
    image = read_image(path)
    int8, _ = SegPredictor(int8_export, providers=CPU)(image)  # onnx_model: the INT8 file
    float_, _ = SegPredictor(os.path.join(runtime_case, "export"), providers=CPU)(image)
    with open(path, "rb") as f:
        response = post_image(client, f.read(), model=[names["int8"], names["float"]])
    body = response.get_json()
    assert response.status_code == 200, body
    assert [r["model"] for r in body["results"]] == [names["int8"], names["float"]]
    assert np.array_equal(decode(body["results"][0]["labels"]), int8)
    assert np.array_equal(decode(body["results"][1]["labels"]), float_)
    assert body["agreement"] == pytest.approx(np.mean(int8 == float_))


def test_a_sample_with_a_transparent_overlay(client):
    body = client.post("/api/segment", data={"sample": "shapes-2.png", "alpha": "0"}).get_json()
    assert (body["width"], body["height"]) == (128, 128)
    assert body["results"][0]["overlay"] == body["input"]  # the same JPEG of the same pixels
    sample = client.get("/api/samples/shapes-2.png")
    with open(os.path.join(web_app.SAMPLES_DIR, "shapes-2.png"), "rb") as f:
        assert sample.status_code == 200 and sample.data == f.read()
    assert client.get("/api/samples/..%2Fapp.py").status_code == 404
    response = client.post("/api/segment", data={"sample": "../app.py"})
    assert response.status_code == 404 and "no sample named '../app.py'" in response.json["error"]


def _huge_png() -> bytes:
    """An 8x8 PNG whose header states 20000x20000: refused before anything is decoded."""
    data = png_bytes(np.zeros((8, 8, 3), np.uint8))
    return data[:16] + struct.pack(">II", 20000, 20000) + data[24:]


BAD_IMAGES = {
    "empty.png": (b"", "empty.png: empty file"),
    "notes.png": (b"just some text", "notes.png: not an image (PNG, JPEG, BMP, TIFF, WebP"),
    "cut.png": (
        png_bytes(np.full((64, 64, 3), 90, np.uint8))[:60],
        "cut.png: truncated or corrupt PNG",
    ),
    "huge.png": (_huge_png(), "huge.png: 20000x20000 is 400.0 megapixels, over the 50-megapixel"),
}


@pytest.mark.parametrize("filename", BAD_IMAGES)
def test_a_bad_image_gets_a_clear_message_and_the_server_goes_on(
    filename, client, tmp_root, monkeypatch
):
    monkeypatch.delenv("SEG_RUNTIME_MAX_PIXELS", raising=False)
    content, message = BAD_IMAGES[filename]
    response = post_image(client, content, filename)
    assert response.status_code == 400
    assert response.get_json()["error"].startswith(message)
    assert left_files(tmp_root) == []  # the upload was deleted
    assert client.post("/api/segment", data={"sample": "shapes-1.png"}).status_code == 200


def test_uploads_over_the_size_limits_are_refused(models, tmp_root):
    client = web_app.create_app(models, max_image_bytes=MB, max_video_bytes=2 * MB).test_client()
    response = post_image(client, os.urandom(MB + MB // 2))
    assert response.status_code == 413
    assert response.get_json()["error"].startswith("the image upload is 1.5 MB, over the 1 MB")
    data = {"video": (io.BytesIO(os.urandom(3 * MB)), "clip.mp4")}
    response = client.post("/api/video", data=data, content_type="multipart/form-data")
    assert response.status_code == 413
    assert response.get_json()["error"].startswith("the video upload is 3.0 MB, over the 2 MB")
    # Chunked, without Content-Length: the size is checked once the upload is received.
    boundary = "b0undary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="big.png"\r\n'
            f"Content-Type: image/png\r\n\r\n"
        ).encode()
        + os.urandom(MB + MB // 2)
        + f"\r\n--{boundary}--\r\n".encode()
    )
    response = client.post(
        "/api/segment",
        input_stream=io.BytesIO(body),
        content_type=f"multipart/form-data; boundary={boundary}",
        environ_overrides={"wsgi.input_terminated": True, "CONTENT_LENGTH": ""},
    )
    assert response.status_code == 413
    assert response.get_json()["error"] == (
        "the image upload big.png is 1.5 MB, over the 1 MB limit"
    )
    assert left_files(tmp_root) == []


def test_bad_requests_are_named(client, models, names, monkeypatch):
    def error(response, status: int) -> str:
        assert response.status_code == status, response.get_json()
        return response.get_json()["error"]

    sample = {"sample": "shapes-1.png"}
    assert error(client.post("/api/segment", data={}), 400) == "no image file in the request"
    message = error(client.post("/api/segment", data={**sample, "model": "nope"}), 400)
    assert message == f"unknown model 'nope'; the models are: {', '.join(names.values())}"
    three = {**sample, "model": [names["case"]] * 3}
    assert "at most 2 model(s) per request, got 3" in error(
        client.post("/api/segment", data=three), 400
    )
    message = error(client.post("/api/segment", data={**sample, "alpha": "1.5"}), 400)
    assert message == "alpha must be a number in [0, 1], got '1.5'"
    message = error(client.post("/api/segment", data={**sample, "postprocess": "1"}), 400)
    assert message == "post-processing needs the server started with --postprocess"
    assert error(client.get("/api/nothing"), 404)

    def broken(image):
        raise RuntimeError("backend crashed")

    with monkeypatch.context() as patch:
        patch.setattr(models[0], "predictor", broken)
        message = error(client.post("/api/segment", data=sample), 500)
    assert message == "internal error: RuntimeError: backend crashed"
    assert client.post("/api/segment", data=sample).status_code == 200


def test_postprocessing_is_a_toggle(models, runtime_case, tmp_root):
    # Every class but the background is too small to keep: all labels become 0.
    post = PostProcessor.from_stats({"min_pixels": [None] + [10**9] * 5, "exclusive_pairs": []})
    client = web_app.create_app(models, postprocess=post, repeats=1).test_client()
    assert client.get("/api/models").get_json()["postprocess"] is True
    path = os.path.join(runtime_case, "images", "img0.png")
    expected, _ = SegPredictor(os.path.join(runtime_case, "export"), providers=CPU)(
        read_image(path)
    )
    for flag, postprocessed in (("1", True), ("0", False)):
        with open(path, "rb") as f:
            body = post_image(client, f.read(), postprocess=flag).get_json()
        (result,) = body["results"]
        assert result["postprocessed"] is postprocessed
        labels = decode(result["labels"])
        assert np.array_equal(labels, np.zeros_like(expected) if postprocessed else expected)


def wait_for_job(client, job_id: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.get(f"/api/video/{job_id}").get_json()
        if status["state"] in ("done", "error"):
            return status
        time.sleep(0.1)
    pytest.fail(f"video job {job_id} did not finish: {status}")


@pytest.mark.parametrize("fourcc", ["VP80", "none"])
def test_a_video_comes_back_as_an_overlay(fourcc, client, runtime_case, tmp_root, monkeypatch):
    """VP8 WebM, or one JPEG per frame where OpenCV cannot write VP8 (fourcc 'none')."""
    monkeypatch.setattr(web_jobs, "VIDEO_FOURCC", fourcc)
    video = os.path.join(runtime_case, "video.avi")
    predictor = SegPredictor(os.path.join(runtime_case, "export"), providers=CPU)
    palette = color_palette(6)
    expected = []
    for _, frame in iter_inputs(video):
        labels, _ = predictor(frame)
        expected.append(overlay(frame, palette[labels][..., ::-1], 0.5))
    with open(video, "rb") as f:
        data = {"video": (f, "clip.avi"), "alpha": "0.5"}
        response = client.post("/api/video", data=data, content_type="multipart/form-data")
    assert response.status_code == 202, response.get_json()
    started = response.get_json()
    assert started["state"] in ("queued", "running", "done") and started["total"] == 3
    status = wait_for_job(client, started["job"])
    assert status["state"] == "done", status
    assert status["frames"] == 3 and status["skipped"] == [] and status["name"] == "clip.avi"
    assert status["mean_latency_ms"] > 0 and status["fps"] == 5
    job = f"/api/video/{started['job']}"
    if fourcc == "VP80":
        assert status["format"] == "webm"
        response = client.get(f"{job}/overlay.webm")
        assert response.status_code == 200 and response.mimetype == "video/webm"
        webm = tmp_root / "back.webm"
        webm.write_bytes(response.data)
        frames = [frame for _, frame in iter_inputs(str(webm))]
        assert client.get(f"{job}/frames/0.jpg").status_code == 404
    else:
        assert status["format"] == "frames"
        frames = [decode_bytes(client.get(f"{job}/frames/{i}.jpg").data) for i in range(3)]
        assert client.get(f"{job}/frames/3.jpg").status_code == 404
    for got, want in zip(frames, expected, strict=True):
        assert mean_diff(got, want) < 8  # lossy
    # Only the overlay is left; the upload was deleted.
    left = [os.path.basename(p) for p in left_files(tmp_root) if not p.endswith("back.webm")]
    assert left == (["overlay.webm"] if fourcc == "VP80" else [f"{i:06d}.jpg" for i in range(3)])


def test_bad_videos_are_named(client, tmp_root):
    def error(content: bytes, filename: str) -> str:
        data = {"video": (io.BytesIO(content), filename)}
        response = client.post("/api/video", data=data, content_type="multipart/form-data")
        assert response.status_code == 400
        return response.get_json()["error"]

    assert error(b"abc", "clip.txt").startswith("clip.txt: not a video file (.mp4, .avi")
    assert error(os.urandom(2000), "clip.mp4") == (
        "clip.mp4: cannot open the video (corrupt, or not a video)"
    )
    response = client.get("/api/video/0123")
    assert response.status_code == 404 and response.get_json()["error"].startswith(
        "no video job 0123"
    )
    assert left_files(tmp_root) == []


def test_cli_errors_are_one_line(tmp_path, runtime_case):
    proc = subprocess.run(
        [sys.executable, str(REPO / "tools" / "serve.py"), "--model_dir", str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    message = f"error: deploy.yaml not found in {tmp_path} (export the model first)"
    assert proc.returncode == 2 and proc.stderr.strip() == message
    stats = tmp_path / "stats.json"
    stats.write_text(json.dumps({"min_pixels": [None, 5, 5], "exclusive_pairs": []}))
    export = os.path.join(runtime_case, "export")
    with pytest.raises(ValueError, match=r"statistics of 3 classes, export predicts 6"):
        web_app.main(["--model_dir", export, "--postprocess", str(stats), "--cpu_only"])


def test_the_server_runs_without_paddle(server, served_models):
    with urllib.request.urlopen(server + "api/models", timeout=30) as response:
        listed = json.load(response)["models"]
    assert len(listed) >= len(served_models)
    form = urllib.parse.urlencode({"sample": "shapes-1.png", "model": listed[0]["name"]})
    with urllib.request.urlopen(server + "api/segment", form.encode(), timeout=60) as response:
        body = json.load(response)
    assert body["results"][0]["latency"]["median_ms"] > 0
    assert decode(body["results"][0]["labels"]).shape == (128, 128)
