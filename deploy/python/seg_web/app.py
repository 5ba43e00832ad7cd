"""The demo's Flask application and its command line (see the package docstring)."""

from __future__ import annotations

import argparse
import atexit
import logging
import os
import shutil
import signal
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from flask import Blueprint, Flask, Response, current_app, jsonify, request, send_from_directory
from seg_runtime.cli import add_backend_args, add_postprocess_args, backend_options, postprocessor
from seg_runtime.media import (
    VIDEO_EXTS,
    InputError,
    list_images,
    max_pixels,
    read_image,
)
from seg_runtime.postprocess import PostProcessor
from seg_runtime.visualize import overlay
from werkzeug.exceptions import BadRequest, HTTPException, NotFound, RequestEntityTooLarge
from werkzeug.serving import make_server

from .jobs import DEFAULT_MAX_FRAMES, FRAMES_DIR, VIDEO_FILE, VideoJob, VideoQueue, probe_video
from .models import DEFAULT_ALPHA, DemoModel, data_url, open_models, segment

STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
# Shapes drawn by paddleseg_ext.datasets.shapes.render_sample, the data `make demo` trains on.
SAMPLES_DIR = os.path.join(STATIC_DIR, "samples")
MB = 1 << 20

log = logging.getLogger(__name__)


@dataclass
class Demo:
    """What the routes serve: the models, the limits, the samples and the video queue."""

    models: Sequence[DemoModel]
    postprocess: PostProcessor | None
    repeats: int
    max_image_bytes: int
    max_video_bytes: int
    max_frames: int
    samples_dir: str
    workdir: str
    videos: VideoQueue
    by_name: dict[str, DemoModel] = field(init=False)
    samples: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.by_name = {m.name: m for m in self.models}
        self.samples = [os.path.relpath(p, self.samples_dir) for p in list_images(self.samples_dir)]

    def check_length(self, limit: int, kind: str) -> None:
        """Refuses a request over ``limit`` from its Content-Length, before reading it."""
        length = request.content_length
        if length is not None and length > limit:
            raise RequestEntityTooLarge(
                f"the {kind} upload is {length / MB:.1f} MB, over the {limit / MB:g} MB limit"
            )

    def save_upload(self, name: str, limit: int, ext: str) -> tuple[str, str, str]:
        """Writes the uploaded file ``name`` to a new temporary folder as ``upload`` + ``ext``.

        Returns ``(folder, path, the file's name as uploaded)``; the caller deletes the folder.
        """
        upload = request.files.get(name)
        if upload is None or not upload.filename:
            raise BadRequest(f"no {name} file in the request")
        uploaded = os.path.basename(upload.filename.replace("\\", "/"))[:200]
        folder = tempfile.mkdtemp(dir=self.workdir)
        path = os.path.join(folder, "upload" + ext)
        upload.save(path)
        size = os.path.getsize(path)
        if size > limit:  # a request without Content-Length (chunked)
            shutil.rmtree(folder)
            raise RequestEntityTooLarge(
                f"the {name} upload {uploaded} is {size / MB:.1f} MB, over the "
                f"{limit / MB:g} MB limit"
            )
        return folder, path, uploaded

    def sample_path(self, name: str) -> str:
        if name not in self.samples:
            raise NotFound(f"no sample named {name!r}")
        return os.path.join(self.samples_dir, name)

    def request_image(self) -> np.ndarray:
        """The uploaded image or the chosen sample, by the rules of ``read_image``."""
        sample = request.form.get("sample")
        if sample:
            return read_image(self.sample_path(sample))
        # The format comes from the content, so the name's extension is not kept.
        folder, path, name = self.save_upload("image", self.max_image_bytes, "")
        try:
            return read_image(path)
        except InputError as err:
            raise InputError(str(err).replace(path, name)) from None
        finally:
            shutil.rmtree(folder)

    def chosen_models(self, at_most: int) -> list[DemoModel]:
        names = request.form.getlist("model") or [self.models[0].name]
        if len(names) > at_most:
            raise BadRequest(f"at most {at_most} model(s) per request, got {len(names)}")
        unknown = [n for n in names if n not in self.by_name]
        if unknown:
            raise BadRequest(
                f"unknown model {unknown[0]!r}; the models are: {', '.join(self.by_name)}"
            )
        return [self.by_name[n] for n in names]

    def options(self) -> tuple[float, PostProcessor | None]:
        """The form's overlay opacity and post-processing."""
        try:
            alpha = float(request.form.get("alpha", DEFAULT_ALPHA))
        except ValueError:
            alpha = -1.0
        if not 0 <= alpha <= 1:
            raise BadRequest(f"alpha must be a number in [0, 1], got {request.form['alpha']!r}")
        if request.form.get("postprocess", "0") in ("", "0", "false"):
            return alpha, None
        if self.postprocess is None:
            raise BadRequest("post-processing needs the server started with --postprocess")
        return alpha, self.postprocess

    def finished_job(self, job_id: str, output: str) -> VideoJob:
        job = self.videos.get(job_id)
        if job.state != "done" or job.output != output:
            raise NotFound(f"video job {job_id} has no {output} output ({job.state})")
        return job


routes = Blueprint("seg_web", __name__)


def demo() -> Demo:
    return current_app.extensions["seg_web"]


@routes.app_errorhandler(HTTPException)
def http_error(err: HTTPException) -> tuple[Response, int]:
    return jsonify(error=err.description), err.code or 500


@routes.app_errorhandler(InputError)
def input_error(err: InputError) -> tuple[Response, int]:
    return jsonify(error=str(err)), 400


@routes.app_errorhandler(Exception)
def internal_error(err: Exception) -> tuple[Response, int]:
    log.exception("request failed")
    return jsonify(error=f"internal error: {type(err).__name__}: {err}"), 500


@routes.get("/")
def index() -> Response:
    return send_from_directory(STATIC_DIR, "index.html")


@routes.get("/api/models")
def list_models() -> Response:
    d = demo()
    return jsonify(
        models=[m.info() for m in d.models],
        postprocess=d.postprocess is not None,
        samples=d.samples,
        repeats=d.repeats,
        limits={
            "image_bytes": d.max_image_bytes,
            "video_bytes": d.max_video_bytes,
            "max_frames": d.max_frames,
            "max_pixels": max_pixels(),
        },
    )


@routes.get("/api/samples/<path:name>")
def sample_file(name: str) -> Response:
    d = demo()
    d.sample_path(name)
    return send_from_directory(d.samples_dir, name)


@routes.post("/api/segment")
def segment_image() -> Response:
    d = demo()
    d.check_length(d.max_image_bytes, "image")
    chosen = d.chosen_models(2)
    alpha, post = d.options()
    image = d.request_image()
    results, maps = [], []
    for model in chosen:
        labels, latency = segment(model, image, d.repeats, post)
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


@routes.post("/api/video")
def start_video() -> tuple[Response, int]:
    d = demo()
    d.check_length(d.max_video_bytes, "video")
    (model,) = d.chosen_models(1)
    alpha, post = d.options()
    upload = request.files.get("video")
    ext = os.path.splitext(upload.filename)[1].lower() if upload else ""
    if upload and ext not in VIDEO_EXTS:
        raise BadRequest(f"{upload.filename}: not a video file ({', '.join(VIDEO_EXTS)})")
    folder, path, name = d.save_upload("video", d.max_video_bytes, ext)
    try:
        fps, total = probe_video(path, name, d.max_frames)
    except InputError:
        shutil.rmtree(folder)
        raise
    job = VideoJob(folder, path, name, model, alpha, post, fps, total)
    d.videos.submit(job)
    return jsonify(job.status()), 202


@routes.get("/api/video/<job_id>")
def video_status(job_id: str) -> Response:
    return jsonify(demo().videos.get(job_id).status())


@routes.get(f"/api/video/<job_id>/{VIDEO_FILE}")
def video_file(job_id: str) -> Response:
    job = demo().finished_job(job_id, "webm")
    return send_from_directory(job.folder, VIDEO_FILE, mimetype="video/webm")


@routes.get("/api/video/<job_id>/frames/<int:index>.jpg")
def video_frame(job_id: str, index: int) -> Response:
    job = demo().finished_job(job_id, "frames")
    return send_from_directory(os.path.join(job.folder, FRAMES_DIR), f"{index:06d}.jpg")


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
    workdir = tempfile.mkdtemp(prefix="seg-web-")
    atexit.register(shutil.rmtree, workdir, True)
    app = Flask(__name__, static_folder=STATIC_DIR, static_url_path="/static")
    # The form parser stops reading past the larger limit; each route checks its own.
    app.config["MAX_CONTENT_LENGTH"] = max(max_image_bytes, max_video_bytes)
    app.extensions["seg_web"] = Demo(
        models, postprocess, repeats, max_image_bytes, max_video_bytes, max_frames,
        samples_dir, workdir, VideoQueue(max_frames),
    )  # fmt: skip
    app.register_blueprint(routes)
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
