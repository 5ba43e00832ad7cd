"""Video jobs of the demo: one worker thread segments uploaded clips frame by frame and
keeps the newest overlays for playback."""

from __future__ import annotations

import logging
import os
import queue
import shutil
import threading
import uuid
from collections import OrderedDict

import cv2
import numpy as np
from seg_runtime.media import (
    MAX_PIXELS_ENV,
    InputError,
    iter_inputs,
    max_pixels,
)
from seg_runtime.postprocess import PostProcessor
from seg_runtime.visualize import overlay
from werkzeug.exceptions import NotFound

from .models import JPEG_QUALITY, DemoModel

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

log = logging.getLogger(__name__)


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
