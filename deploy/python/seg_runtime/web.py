"""A local web page over exported models: images, videos, and two models side by side.

Started by ``deploy/python/serve.py`` (or ``tools/serve.py``), flags in :func:`parse_args`.
The page (``static/``: plain HTML, CSS and JavaScript, no build step, nothing fetched from
the network) uses this JSON API; errors answer ``{"error": message}`` with a 4xx/5xx status:

- ``GET /api/models``: the model picker's entries (name, input size, backend, classes), the
  upload limits, the bundled samples and whether post-processing can be toggled.
- ``POST /api/segment``, multipart: ``image`` (a file) or ``sample`` (a sample's name);
  ``model`` once, or twice to compare; ``alpha`` (overlay opacity, 0..1, default 0.5);
  ``postprocess`` (``1``: apply ``--postprocess``). Answers the decoded input and, per model,
  the labels (a class-id PNG), the colour-coded labels, the overlay, the legend (classes
  present and their pixel share) and the latency (median of ``--repeats`` runs); with two
  models their label agreement (share of equal labels at the input's size).
- ``POST /api/video``, multipart: ``video``, ``model``, ``alpha``, ``postprocess``. Starts a
  job (202); ``GET /api/video/JOB`` reports its progress, then its result: the mean latency
  per frame and the overlay, ``GET /api/video/JOB/overlay.webm`` (VP8, played by the
  page's ``<video>``) or, where this OpenCV cannot write VP8, one JPEG per frame at
  ``GET /api/video/JOB/frames/N.jpg``, played by the page's script.

Uploads are refused over their size limit (``--max_image_mb``, ``--max_video_mb``), images
over the pixel limit of :func:`~seg_runtime.media.read_image` (``$SEG_RUNTIME_MAX_PIXELS``)
from their header, before they are decoded. They are written only to a folder made by
:func:`tempfile.mkdtemp`, under a name chosen here, and deleted once read; a video's overlay
is kept there for playback until newer jobs replace it, and the folder goes when the server
stops.

Flask is the one package needed beyond the runtime's. Only the server imports this module,
so ``infer.py`` and ``benchmark.py`` run without it.
"""

from __future__ import annotations

import argparse
import atexit
import base64
import logging
import os
import queue
import shutil
import signal
import tempfile
import threading
import uuid
from collections import OrderedDict
from collections.abc import Sequence

import cv2
import numpy as np
from flask import Flask, Response, jsonify, request, send_from_directory
from werkzeug.exceptions import BadRequest, HTTPException, NotFound, RequestEntityTooLarge
from werkzeug.serving import make_server

from .cli import add_backend_args, add_postprocess_args, backend_options, postprocessor
from .files import load_deploy
from .media import (
    MAX_PIXELS_ENV,
    VIDEO_EXTS,
    InputError,
    iter_inputs,
    list_images,
    max_pixels,
    read_image,
)
from .postprocess import PostProcessor
from .predictor import SegPredictor
from .timing import summarize_ms, time_runs
from .visualize import color_palette, colorize, hex_color, legend, overlay

STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
# Shapes drawn by paddleseg_ext.datasets.shapes.render_sample, the data `make demo` trains on.
SAMPLES_DIR = os.path.join(STATIC_DIR, "samples")
MB = 1 << 20
# A short clip: 300 frames are 10 s at 30 fps; later frames are left out.
DEFAULT_MAX_FRAMES = 300
# Finished video jobs whose overlays are kept for playback; older ones are deleted.
KEPT_JOBS = 4
# VP8 in WebM: opencv-python(-headless)'s FFmpeg writes it and every browser's <video> plays
# it offline. Those wheels have no H.264 encoder, and browsers do not play the MPEG-4 part 2
# ('mp4v') or MJPEG that they do write.
VIDEO_FOURCC = "VP80"
VIDEO_FILE = "overlay.webm"
FRAMES_DIR = "frames"
DEFAULT_ALPHA = 0.5
JPEG_QUALITY = 90

log = logging.getLogger(__name__)


class DemoModel:
    """One entry of the model picker: a predictor and how it runs.

    Args:
        name: Shown in the picker and used in requests.
        model_dir: The export directory.
        predictor: Its predictor (without post-processing: the page toggles that).
        backend: The backend's name.
        threads: CPU threads of the backend.
        precision: ``"float"`` or ``"INT8"``.
    """

    def __init__(
        self,
        name: str,
        model_dir: str,
        predictor: SegPredictor,
        backend: str,
        threads: int,
        precision: str,
    ) -> None:
        self.name = name
        self.model_dir = model_dir
        self.predictor = predictor
        self.backend = backend
        self.threads = threads
        self.precision = precision
        self.palette = color_palette(predictor.num_classes)  # RGB
        # One inference at a time per model: Paddle Inference and Paddle Lite predictors are
        # not thread-safe, and runs competing for the CPU would distort the latencies.
        self.lock = threading.Lock()

    @property
    def backend_label(self) -> str:
        """The backend, with the onnxruntime execution provider actually in use."""
        providers = getattr(self.predictor.runner, "providers", None)
        return f"{self.backend} ({providers[0]})" if providers else self.backend

    def info(self) -> dict:
        """The picker's description: input size (W x H), backend, precision, classes."""
        height, width = self.predictor.input_shape[2:]
        size = f"{width}x{height}" if height > 0 and width > 0 else "dynamic"
        classes = [
            {"id": i, "name": str(name), "color": hex_color(self.palette[i])}
            for i, name in enumerate(self.predictor.class_names)
        ]
        return {
            "name": self.name,
            "model_dir": self.model_dir,
            "input_size": size,
            "backend": self.backend_label,
            "threads": self.threads,
            "precision": self.precision,
            "classes": classes,
        }

    def predict(
        self, image: np.ndarray, postprocess: PostProcessor | None
    ) -> tuple[np.ndarray, float]:
        """Labels (H, W) of a BGR image, post-processed when asked, and the inference ms."""
        with self.lock:
            labels, latency = self.predictor(image)
        if postprocess is not None:
            labels = postprocess(labels)
        return labels, latency

    def colorize(self, labels: np.ndarray) -> np.ndarray:
        """The colour-coded labels as a BGR image."""
        return colorize(labels, self.palette)

    def legend(self, labels: np.ndarray) -> list[dict]:
        """The classes present in ``labels``, largest first, with their share of pixels."""
        return legend(labels, self.palette, self.predictor.class_names)


def picker_names(model_dirs: Sequence[str]) -> list[str]:
    """The shortest trailing parts of the paths that tell the export directories apart
    (``output/a/export`` and ``output/b/export`` are ``a/export`` and ``b/export``).

    Raises:
        ValueError: A directory is given twice.
    """
    parts = [os.path.abspath(d).split(os.sep) for d in model_dirs]
    for depth in range(1, max(len(p) for p in parts) + 1):
        names = ["/".join(p[-depth:]) for p in parts]
        if len(set(names)) == len(names):
            return names
    raise ValueError(f"--model_dir given twice: {' '.join(model_dirs)}")


def open_models(
    model_dirs: Sequence[str],
    backend: str = "onnxruntime",
    threads: int = 1,
    **runner_options,
) -> list[DemoModel]:
    """Opens each export directory with ``backend`` and ``runner_options`` (see
    :func:`~seg_runtime.backends.create_runner`); one picker entry per model in it.

    An export quantized to INT8 keeps its float model (onnxruntime and Paddle Lite alike),
    so it gives two entries, ``NAME (INT8)`` and ``NAME (float)``, to compare.

    Raises:
        FileNotFoundError, ValueError, ImportError: As :class:`SegPredictor`.
    """
    models = []
    for name, model_dir in zip(picker_names(model_dirs), model_dirs):
        fmt = {"onnxruntime": "onnx", "lite": "lite"}.get(backend)
        if fmt and load_deploy(model_dir).has(fmt, "int8"):
            variants = [
                (label, SegPredictor(model_dir, backend, threads, **runner_options, int8=int8))
                for label, int8 in (("INT8", True), ("float", False))
            ]
        else:
            variants = [("float", SegPredictor(model_dir, backend, threads, **runner_options))]
        for precision, predictor in variants:
            label = f"{name} ({precision})" if len(variants) > 1 else name
            models.append(DemoModel(label, model_dir, predictor, backend, threads, precision))
    return models


def segment(
    model: DemoModel, image: np.ndarray, repeats: int, postprocess: PostProcessor | None = None
) -> tuple[np.ndarray, dict]:
    """Labels of a BGR image and their latency: the median of ``repeats`` inference runs.

    The first run gives the labels and warms the backend up; the timed runs repeat the
    inference call alone on the same preprocessed input, as ``SegPredictor`` times it.
    """
    labels, _ = model.predict(image, postprocess)
    x = model.predictor.preprocess(image)
    with model.lock:
        seconds = time_runs(lambda: model.predictor.runner(x), warmup=0, repeats=repeats)
    latency = {
        "median_ms": summarize_ms(seconds)["median"],
        "runs": repeats,
        "backend": model.backend_label,
        "threads": model.threads,
    }
    return labels, latency


def data_url(image: np.ndarray, ext: str) -> str:
    """An image as a ``data:`` URL: ``.png`` (exact) or ``.jpg`` (photos)."""
    params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY] if ext == ".jpg" else []
    ok, encoded = cv2.imencode(ext, image, params)
    if not ok:
        raise ValueError(f"cannot encode a {image.shape} image as {ext}")
    mime = "image/png" if ext == ".png" else "image/jpeg"
    return f"data:{mime};base64,{base64.b64encode(encoded.tobytes()).decode('ascii')}"


class VideoJob:
    """One uploaded video: its settings, then its progress, then its result."""

    def __init__(
        self,
        folder: str,
        source: str,
        name: str,
        model: DemoModel,
        alpha: float,
        postprocess: PostProcessor | None,
        fps: float,
        total: int,
    ) -> None:
        self.id = uuid.uuid4().hex
        self.folder = folder
        self.source = source
        self.name = name
        self.model = model
        self.alpha = alpha
        self.postprocess = postprocess
        self.fps = fps
        self.total = total  # frames to process, 0 where the container does not tell
        self.state = "queued"
        self.done = 0
        self.skipped: list[str] = []
        self.latencies: list[float] = []
        self.output = ""  # "webm" or "frames"
        self.error = ""

    @property
    def finished(self) -> bool:
        return self.state in ("done", "error")

    def skip(self, err: InputError) -> None:
        """``on_error`` of the frame reader: a frame that does not decode is left out."""
        self.skipped.append(str(err).replace(self.source, self.name))

    def status(self) -> dict:
        """Progress, and once done the result: format, mean latency per frame, skipped frames."""
        body = {
            "job": self.id,
            "name": self.name,
            "model": self.model.name,
            "state": self.state,
            "done": self.done,
            "total": self.total,
        }
        if self.state == "done":
            body.update(
                format=self.output,
                fps=self.fps,
                frames=self.done,
                skipped=self.skipped,
                mean_latency_ms=float(np.mean(self.latencies)),
                backend=self.model.backend_label,
                threads=self.model.threads,
            )
        if self.error:
            body["error"] = self.error
        return body

    def run(self, max_frames: int) -> None:
        """Segments the frames and writes the overlay: a VP8 WebM, else one JPEG per frame."""
        self.state = "running"
        writer = None
        try:
            for _, frame in iter_inputs(self.source, max_frames, on_error=self.skip):
                labels, latency = self.model.predict(frame, self.postprocess)
                blended = overlay(frame, self.model.colorize(labels), self.alpha)
                if not self.output:  # the first frame gives the size
                    writer = self._open_writer(frame.shape[1], frame.shape[0])
                if writer is not None:
                    writer.write(blended)
                else:
                    path = os.path.join(self.folder, FRAMES_DIR, f"{self.done:06d}.jpg")
                    cv2.imwrite(path, blended, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
                self.latencies.append(latency)
                self.done += 1
            self.state = "done"
        except InputError as err:
            self.error = str(err).replace(self.source, self.name)
            self.state = "error"
        except Exception as err:  # the server goes on; the page shows what happened
            log.exception("video job %s failed", self.id)
            self.error = f"{self.name}: processing failed ({type(err).__name__}: {err})"
            self.state = "error"
        finally:
            if writer is not None:
                writer.release()
            os.remove(self.source)

    def _open_writer(self, width: int, height: int) -> cv2.VideoWriter | None:
        """The WebM writer, or None (and a folder for JPEG frames) where VP8 is missing."""
        path = os.path.join(self.folder, VIDEO_FILE)
        writer = cv2.VideoWriter(
            path, cv2.VideoWriter_fourcc(*VIDEO_FOURCC), self.fps, (width, height)
        )
        if writer.isOpened():
            self.output = "webm"
            return writer
        self.output = "frames"
        os.makedirs(os.path.join(self.folder, FRAMES_DIR))
        return None


class VideoQueue:
    """Runs video jobs one at a time on a background thread and keeps the latest ones."""

    def __init__(self, max_frames: int, kept: int = KEPT_JOBS) -> None:
        self.max_frames = max_frames
        self.kept = kept
        self._jobs: OrderedDict[str, VideoJob] = OrderedDict()
        self._lock = threading.Lock()
        self._queue: queue.Queue[VideoJob] = queue.Queue()
        self._worker: threading.Thread | None = None

    def submit(self, job: VideoJob) -> None:
        """Queues a job and deletes the overlays of the oldest finished ones."""
        with self._lock:
            self._jobs[job.id] = job
            finished = [j for j in self._jobs.values() if j.finished]
            for old in finished[: max(0, len(finished) - self.kept)]:
                del self._jobs[old.id]
                shutil.rmtree(old.folder, ignore_errors=True)
            if self._worker is None:
                self._worker = threading.Thread(target=self._work, name="video", daemon=True)
                self._worker.start()
        self._queue.put(job)

    def get(self, job_id: str) -> VideoJob:
        """The job ``job_id``.

        Raises:
            NotFound: No such job (or no longer kept).
        """
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise NotFound(f"no video job {job_id} (finished jobs are kept {self.kept} at most)")
        return job

    def _work(self) -> None:
        while True:
            self._queue.get().run(self.max_frames)


def probe_video(path: str, name: str, max_frames: int) -> tuple[float, int]:
    """``(fps, frames to process)`` of a video, checked before it is queued.

    Raises:
        InputError: It does not open, or its frames are over the pixel limit.
    """
    capture = cv2.VideoCapture(path)
    try:
        if not capture.isOpened():
            raise InputError(f"{name}: cannot open the video (corrupt, or not a video)")
        width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        fps = capture.get(cv2.CAP_PROP_FPS)
        count = int(max(capture.get(cv2.CAP_PROP_FRAME_COUNT), 0))
    finally:
        capture.release()
    limit = max_pixels()
    if width * height > limit:
        raise InputError(
            f"{name}: {width}x{height} frames are over the {limit / 1e6:g}-megapixel limit "
            f"(raise it with {MAX_PIXELS_ENV}=PIXELS)"
        )
    # Some containers state no rate (0 or NaN): play those at 25 fps.
    fps = fps if 0 < fps <= 240 else 25.0
    return fps, min(count, max_frames) if max_frames else count


def create_app(
    models: Sequence[DemoModel],
    *,
    postprocess: PostProcessor | None = None,
    repeats: int = 5,
    max_image_bytes: int = 20 * MB,
    max_video_bytes: int = 50 * MB,
    max_frames: int = DEFAULT_MAX_FRAMES,
    samples_dir: str = SAMPLES_DIR,
) -> Flask:
    """The Flask application of the page and its API (see the module docstring).

    Args:
        models: The picker's entries (:func:`open_models`).
        postprocess: Post-processing the page may toggle; None hides the toggle.
        repeats: Timed inference runs per image (their median is shown).
        max_image_bytes: Largest image upload.
        max_video_bytes: Largest video upload.
        max_frames: Frames of a video processed at most (0: all).
        samples_dir: Images offered as samples.
    """
    if not models:
        raise ValueError("no model to serve")
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    by_name = {m.name: m for m in models}
    samples = [os.path.relpath(p, samples_dir) for p in list_images(samples_dir)]
    workdir = tempfile.mkdtemp(prefix="seg-web-")
    atexit.register(shutil.rmtree, workdir, True)
    videos = VideoQueue(max_frames)

    app = Flask(__name__, static_folder=STATIC_DIR, static_url_path="/static")
    # The form parser stops reading past the larger limit; each route checks its own.
    app.config["MAX_CONTENT_LENGTH"] = max(max_image_bytes, max_video_bytes)

    def check_length(limit: int, kind: str) -> None:
        """Refuses a request over ``limit`` from its Content-Length, before reading it."""
        length = request.content_length
        if length is not None and length > limit:
            raise RequestEntityTooLarge(
                f"the {kind} upload is {length / MB:.1f} MB, over the {limit / MB:g} MB limit"
            )

    def save_upload(field: str, limit: int, ext: str) -> tuple[str, str, str]:
        """Writes the uploaded ``field`` to a new temporary folder as ``upload`` + ``ext``.

        Returns ``(folder, path, the file's name as uploaded)``; the caller deletes the folder.
        """
        upload = request.files.get(field)
        if upload is None or not upload.filename:
            raise BadRequest(f"no {field} file in the request")
        name = os.path.basename(upload.filename.replace("\\", "/"))[:200]
        folder = tempfile.mkdtemp(dir=workdir)
        path = os.path.join(folder, "upload" + ext)
        upload.save(path)
        size = os.path.getsize(path)
        if size > limit:  # a request without Content-Length (chunked)
            shutil.rmtree(folder)
            raise RequestEntityTooLarge(
                f"the {field} upload {name} is {size / MB:.1f} MB, over the {limit / MB:g} MB limit"
            )
        return folder, path, name

    def request_image() -> np.ndarray:
        """The uploaded image or the chosen sample, by the rules of ``read_image``."""
        sample = request.form.get("sample")
        if sample:
            if sample not in samples:
                raise NotFound(f"no sample named {sample!r}")
            return read_image(os.path.join(samples_dir, sample))
        # The format comes from the content, so the name's extension is not kept.
        folder, path, name = save_upload("image", max_image_bytes, "")
        try:
            return read_image(path)
        except InputError as err:
            raise InputError(str(err).replace(path, name)) from None
        finally:
            shutil.rmtree(folder)

    def chosen_models(at_most: int) -> list[DemoModel]:
        names = request.form.getlist("model") or [models[0].name]
        if len(names) > at_most:
            raise BadRequest(f"at most {at_most} model(s) per request, got {len(names)}")
        unknown = [n for n in names if n not in by_name]
        if unknown:
            raise BadRequest(f"unknown model {unknown[0]!r}; the models are: {', '.join(by_name)}")
        return [by_name[n] for n in names]

    def options() -> tuple[float, PostProcessor | None]:
        """The form's overlay opacity and post-processing."""
        try:
            alpha = float(request.form.get("alpha", DEFAULT_ALPHA))
        except ValueError:
            alpha = -1.0
        if not 0 <= alpha <= 1:
            raise BadRequest(f"alpha must be a number in [0, 1], got {request.form['alpha']!r}")
        if request.form.get("postprocess", "0") in ("", "0", "false"):
            return alpha, None
        if postprocess is None:
            raise BadRequest("post-processing needs the server started with --postprocess")
        return alpha, postprocess

    @app.errorhandler(HTTPException)
    def http_error(err: HTTPException) -> tuple[Response, int]:
        return jsonify(error=err.description), err.code or 500

    @app.errorhandler(InputError)
    def input_error(err: InputError) -> tuple[Response, int]:
        return jsonify(error=str(err)), 400

    @app.errorhandler(Exception)
    def internal_error(err: Exception) -> tuple[Response, int]:
        log.exception("request failed")
        return jsonify(error=f"internal error: {type(err).__name__}: {err}"), 500

    @app.get("/")
    def index() -> Response:
        return send_from_directory(STATIC_DIR, "index.html")

    @app.get("/api/models")
    def list_models() -> Response:
        return jsonify(
            models=[m.info() for m in models],
            postprocess=postprocess is not None,
            samples=samples,
            repeats=repeats,
            limits={
                "image_bytes": max_image_bytes,
                "video_bytes": max_video_bytes,
                "max_frames": max_frames,
                "max_pixels": max_pixels(),
            },
        )

    @app.get("/api/samples/<path:name>")
    def sample_file(name: str) -> Response:
        if name not in samples:
            raise NotFound(f"no sample named {name!r}")
        return send_from_directory(samples_dir, name)

    @app.post("/api/segment")
    def segment_image() -> Response:
        check_length(max_image_bytes, "image")
        chosen = chosen_models(2)
        alpha, post = options()
        image = request_image()
        results, maps = [], []
        for model in chosen:
            labels, latency = segment(model, image, repeats, post)
            color = model.colorize(labels)
            results.append(
                {
                    "model": model.name,
                    "labels": data_url(labels.astype(np.uint8), ".png"),
                    "color": data_url(color, ".png"),
                    "overlay": data_url(overlay(image, color, alpha), ".jpg"),
                    "legend": model.legend(labels),
                    "latency": latency,
                    "postprocessed": post is not None,
                }
            )
            maps.append(labels)
        body = {
            "width": image.shape[1],
            "height": image.shape[0],
            "input": data_url(image, ".jpg"),
            "results": results,
        }
        if len(maps) == 2:
            body["agreement"] = float(np.mean(maps[0] == maps[1]))
        return jsonify(body)

    @app.post("/api/video")
    def start_video() -> tuple[Response, int]:
        check_length(max_video_bytes, "video")
        (model,) = chosen_models(1)
        alpha, post = options()
        upload = request.files.get("video")
        ext = os.path.splitext(upload.filename)[1].lower() if upload else ""
        if upload and ext not in VIDEO_EXTS:
            raise BadRequest(f"{upload.filename}: not a video file ({', '.join(VIDEO_EXTS)})")
        folder, path, name = save_upload("video", max_video_bytes, ext)
        try:
            fps, total = probe_video(path, name, max_frames)
        except InputError:
            shutil.rmtree(folder)
            raise
        job = VideoJob(folder, path, name, model, alpha, post, fps, total)
        videos.submit(job)
        return jsonify(job.status()), 202

    @app.get("/api/video/<job_id>")
    def video_status(job_id: str) -> Response:
        return jsonify(videos.get(job_id).status())

    def finished_job(job_id: str, output: str) -> VideoJob:
        job = videos.get(job_id)
        if job.state != "done" or job.output != output:
            raise NotFound(f"video job {job_id} has no {output} output ({job.state})")
        return job

    @app.get(f"/api/video/<job_id>/{VIDEO_FILE}")
    def video_file(job_id: str) -> Response:
        job = finished_job(job_id, "webm")
        return send_from_directory(job.folder, VIDEO_FILE, mimetype="video/webm")

    @app.get("/api/video/<job_id>/frames/<int:index>.jpg")
    def video_frame(job_id: str, index: int) -> Response:
        job = finished_job(job_id, "frames")
        return send_from_directory(os.path.join(job.folder, FRAMES_DIR), f"{index:06d}.jpg")

    return app


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The server's flags (PaddleSeg style)."""
    parser = argparse.ArgumentParser(
        description="Local web page: segment images and videos with exported models"
    )
    parser.add_argument(
        "--model_dir", action="append", required=True,
        help="Export directory (deploy.yaml); repeat it to offer several models",
    )  # fmt: skip
    parser.add_argument("--host", default="127.0.0.1", help="Address to listen on")
    parser.add_argument("--port", type=int, default=8000, help="Port (0: any free one)")
    add_backend_args(parser, int8=False)
    add_postprocess_args(parser, "Offer post-processing with these statistics")
    parser.add_argument("--repeats", type=int, default=5, help="Timed runs per image (median)")
    parser.add_argument("--max_image_mb", type=float, default=20, help="Largest image upload")
    parser.add_argument("--max_video_mb", type=float, default=50, help="Largest video upload")
    parser.add_argument(
        "--max_frames", type=int, default=DEFAULT_MAX_FRAMES, help="Video frames at most (0: all)"
    )
    parser.add_argument("--samples", default=SAMPLES_DIR, help="Folder of sample images")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Opens the models and serves the page until interrupted.

    Raises:
        FileNotFoundError, ValueError, ImportError: A bad export directory, statistics file
            or flag, a backend that is not installed, a port that cannot be listened on.
    """
    args = parse_args(argv)
    models = open_models(args.model_dir, **backend_options(args))
    postprocess = postprocessor(args)
    if postprocess is not None:
        for model in models:
            if model.predictor.num_classes != postprocess.num_classes:
                raise ValueError(
                    f"{args.postprocess} has statistics of {postprocess.num_classes} classes, "
                    f"{model.name} predicts {model.predictor.num_classes}"
                )
    app = create_app(
        models,
        postprocess=postprocess,
        repeats=args.repeats,
        max_image_bytes=int(args.max_image_mb * MB),
        max_video_bytes=int(args.max_video_mb * MB),
        max_frames=args.max_frames,
        samples_dir=args.samples,
    )
    try:
        server = make_server(args.host, args.port, app, threaded=True)
    except OSError as err:
        raise ValueError(f"cannot listen on {args.host}:{args.port}: {err.strerror}") from None
    for model in models:
        info = model.info()
        print(f"model {info['name']}: {info['input_size']}, {info['backend']}, {info['precision']}")
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: listening on {args.host}: other machines can reach the page (no login)")
    print(f"Serving on http://{args.host}:{server.server_port}/ (Ctrl+C stops)", flush=True)
    # SIGTERM (a service manager, kill) stops it as Ctrl+C does, so that the temporary folder
    # is removed at exit.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
