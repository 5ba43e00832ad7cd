"""Fuzz campaign over the image reader and the device predictor: corrupt, truncated and random
bytes as images.

Case ``i`` of ``--seed s`` is one file built from a corpus of small valid images (PNG RGB,
gray, RGBA, 16-bit and palette; JPEG baseline, progressive, gray and EXIF-rotated; BMP; TIFF;
lossy and lossless WebP) by one of: random bytes, a valid file cut at a random offset, random
bits flipped, a random run of bytes overwritten, or a valid file's first bytes followed by
random ones. The case is read with ``seg_runtime.read_image``; an image it returns goes
through ``SegPredictor`` on an exported model (preprocessing, the model, labels back to the
image size), and the labels' size and class range are checked.

Outcomes per case: ``decoded`` (and segmented), ``refused`` (``InputError``, the expected
answer to a bad file), ``unexpected`` (any other exception, or wrong labels), ``hang`` (no
answer within ``--timeout`` seconds) and ``crash`` (the process died: a segfault, an abort, an
out-of-memory kill). Cases run in a worker process watched by this one, so that a hang or a
crash is counted for its case and the campaign goes on in a fresh worker. Each unexpected
outcome is printed with its case; ``--replay I`` runs case ``I`` alone, in this process, with
its traceback. The case is deterministic: the same seed and index give the same bytes.

Usage (an export of the demo model with random weights is enough)::

    python tools/export.py --config configs/demo/topformer_tiny_shapes.yml \\
        --input_shape 1 3 96 96 --formats onnx --no_verify --save_dir output/fuzz_export
    python bench/fuzz_inputs.py --model_dir output/fuzz_export --cases 10000 --seed 0
"""

from __future__ import annotations

import argparse
import collections
import io
import multiprocessing
import os
import platform
import re
import resource
import sys
import tempfile
import time
from collections.abc import Iterable
from multiprocessing.connection import Connection

import numpy as np

MUTATIONS = ("random", "truncate", "flip", "overwrite", "header")
OUTCOMES = ("decoded", "refused", "unexpected", "hang", "crash")
# A worker gets this long to load the model before its first case.
STARTUP_TIMEOUT_S = 300


def _encode(ext: str, image: np.ndarray, params: Iterable[int] = ()) -> bytes:
    import cv2  # noqa: PLC0415

    ok, buffer = cv2.imencode(ext, image, list(params))
    if not ok:
        raise RuntimeError(f"this OpenCV build cannot write {ext}")
    return buffer.tobytes()


def seed_corpus() -> dict[str, bytes]:
    """Small valid files of every kind ``read_image`` handles, at a size that is not a
    multiple of 32 (29x37); PIL writes the palette PNG and the EXIF-rotated JPEG."""
    import cv2  # noqa: PLC0415
    from PIL import Image  # noqa: PLC0415

    rng = np.random.default_rng(0)
    # Smooth content, as in photos: flat noise would make every JPEG block alike.
    bgr = cv2.resize(rng.integers(0, 256, (4, 5, 3), dtype=np.uint8), (37, 29))
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    corpus = {
        "rgb.png": _encode(".png", bgr),
        "gray.png": _encode(".png", gray),
        "rgba.png": _encode(".png", np.dstack([bgr, gray])),
        "16bit.png": _encode(".png", bgr.astype(np.uint16) * 257),
        "baseline.jpg": _encode(".jpg", bgr),
        "progressive.jpg": _encode(".jpg", bgr, (cv2.IMWRITE_JPEG_PROGRESSIVE, 1)),
        "gray.jpg": _encode(".jpg", gray),
        "rgb.bmp": _encode(".bmp", bgr),
        "rgb.tif": _encode(".tif", bgr),
        "lossy.webp": _encode(".webp", bgr, (cv2.IMWRITE_WEBP_QUALITY, 80)),
        "lossless.webp": _encode(".webp", bgr, (cv2.IMWRITE_WEBP_QUALITY, 101)),
    }
    rgb = Image.fromarray(bgr[..., ::-1])
    buffer = io.BytesIO()
    rgb.quantize(colors=16).save(buffer, format="PNG")
    corpus["palette.png"] = buffer.getvalue()
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    buffer = io.BytesIO()
    rgb.save(buffer, format="JPEG", exif=exif.tobytes())
    corpus["exif.jpg"] = buffer.getvalue()
    return corpus


def flip_bits(data: bytes, positions: Iterable[int]) -> bytes:
    """``data`` with the bits at ``positions`` (bit ``p`` is bit ``p % 8`` of byte ``p // 8``)
    inverted."""
    out = bytearray(data)
    for pos in positions:
        out[pos // 8] ^= 1 << (pos % 8)
    return bytes(out)


def make_case(seed: int, index: int, corpus: dict[str, bytes]) -> tuple[str, bytes]:
    """Case ``index`` of campaign ``seed``: ``(description, file bytes)``."""
    rng = np.random.default_rng([seed, index])
    kind = MUTATIONS[index % len(MUTATIONS)]
    name = sorted(corpus)[int(rng.integers(len(corpus)))]
    data = corpus[name]
    if kind == "random":
        size = int(rng.integers(0, 4096))
        return f"{size} random bytes", rng.bytes(size)
    if kind == "truncate":
        cut = int(rng.integers(0, len(data)))
        return f"{name} cut to {cut} of {len(data)} bytes", data[:cut]
    if kind == "flip":
        positions = rng.integers(0, len(data) * 8, int(rng.integers(1, 9)))
        return f"{name} with bits {sorted(positions.tolist())} flipped", flip_bits(data, positions)
    if kind == "overwrite":
        start, length = int(rng.integers(0, len(data))), int(rng.integers(1, 65))
        out = data[:start] + rng.bytes(length) + data[start + length :]
        return f"{name} with bytes {start}..{start + length - 1} random", out[: len(data)]
    keep = int(rng.integers(2, 65))
    tail = rng.bytes(int(rng.integers(0, 2048)))
    return f"{name}'s first {keep} bytes and {len(tail)} random ones", data[:keep] + tail


def run_case(path: str, data: bytes, predictor) -> tuple[str, str]:
    """Writes ``data`` to ``path``, reads and segments it: ``(outcome, detail)``.

    Raises:
        Exception: Anything but an ``InputError``, as raised.
    """
    from seg_runtime import InputError, read_image  # noqa: PLC0415

    with open(path, "wb") as f:
        f.write(data)
    try:
        image = read_image(path)
    except InputError as err:
        message = str(err)
        if not message.startswith(f"{path}: "):
            return "unexpected", f"InputError not naming the file: {message}"
        return "refused", message[len(path) + 2 :]
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        return "unexpected", f"read_image returned {image.dtype} {image.shape}"
    labels, _ = predictor(image)
    if labels.shape != image.shape[:2]:
        return "unexpected", f"labels {labels.shape} for an image of {image.shape[:2]}"
    if labels.min() < 0 or labels.max() >= predictor.num_classes:
        return "unexpected", f"labels outside 0..{predictor.num_classes - 1}"
    return "decoded", f"{image.shape[1]}x{image.shape[0]}"


def _load_predictor(model_dir: str):
    from seg_runtime import SegPredictor  # noqa: PLC0415

    return SegPredictor(model_dir, "onnxruntime", providers=["CPUExecutionProvider"])


def _worker(conn: Connection, args: argparse.Namespace, start: int, workdir: str) -> None:
    """Runs cases ``start..args.cases-1``, sending ``(index, outcome, detail, seconds, peak
    resident memory in kB so far)`` after each."""
    predictor = _load_predictor(args.model_dir)
    corpus = seed_corpus()
    path = os.path.join(workdir, "case")  # read_image goes by content, not by name
    conn.send("ready")
    for index in range(start, args.cases):
        _, data = make_case(args.seed, index, corpus)
        start_s = time.perf_counter()
        try:
            outcome, detail = run_case(path, data, predictor)
        except Exception as err:  # noqa: BLE001  (every other exception is a finding)
            outcome, detail = "unexpected", f"{type(err).__name__}: {err}"
        seconds = time.perf_counter() - start_s
        peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        conn.send((index, outcome, detail, seconds, peak_kb))


def _reason(detail: str) -> str:
    """A refusal message without its numbers and decoder details, to count reasons."""
    return re.sub(r"\d+", "N", detail.split(" (")[0])


def campaign(args: argparse.Namespace) -> dict[str, int]:
    """Runs every case in watched workers; prints findings as they come and the counts."""
    context = multiprocessing.get_context("spawn")  # workers start clean of this one's state
    corpus = seed_corpus()
    counts = collections.Counter({outcome: 0 for outcome in OUTCOMES})
    reasons: collections.Counter = collections.Counter()
    slowest = (0.0, 0)  # (seconds, case)
    peak = (0, 0)  # (resident kB, -case): the first case that reached the peak
    start = time.perf_counter()
    index = 0
    with tempfile.TemporaryDirectory(prefix="fuzz-inputs-") as workdir:
        while index < args.cases:
            receiver, sender = context.Pipe(duplex=False)
            worker = context.Process(target=_worker, args=(sender, args, index, workdir))
            worker.start()
            sender.close()
            try:
                ready = receiver.poll(STARTUP_TIMEOUT_S) and receiver.recv() == "ready"
            except EOFError:  # it died loading the model; its traceback is above
                ready = False
            if not ready:
                worker.kill()
                raise RuntimeError("the worker process did not start")
            while index < args.cases:
                if not receiver.poll(args.timeout):
                    outcome, detail = "hang", f"no answer within {args.timeout} s"
                    worker.kill()
                else:
                    try:
                        index, outcome, detail, seconds, peak_kb = receiver.recv()
                        slowest = max(slowest, (seconds, index))
                        peak = max(peak, (peak_kb, -index))
                    except EOFError:
                        worker.join()
                        outcome, detail = "crash", f"worker exit status {worker.exitcode}"
                counts[outcome] += 1
                if outcome == "refused":
                    reasons[_reason(detail)] += 1
                elif outcome != "decoded":
                    description, _ = make_case(args.seed, index, corpus)
                    print(f"{outcome}: case {index} (seed {args.seed}, {description}): {detail}")
                index += 1
                if outcome in ("hang", "crash"):
                    break  # a fresh worker goes on with the next case
            worker.join()
    elapsed = time.perf_counter() - start
    print(f"{args.cases} cases, seed {args.seed}, {elapsed:.1f} s ({args.cases / elapsed:.0f}/s)")
    print(", ".join(f"{outcome} {counts[outcome]}" for outcome in OUTCOMES))
    description, _ = make_case(args.seed, slowest[1], corpus)
    print(f"slowest case: {slowest[0]:.2f} s, case {slowest[1]} ({description})")
    description, _ = make_case(args.seed, -peak[1], corpus)
    print(f"peak worker memory: {peak[0] / 1024:.0f} MB, from case {-peak[1]} ({description})")
    print("refusal reasons:")
    for reason, count in reasons.most_common():
        print(f"  {count:6d}  {reason}")
    return dict(counts)


def replay(args: argparse.Namespace) -> None:
    """Runs case ``args.replay`` in this process; an unexpected exception propagates."""
    description, data = make_case(args.seed, args.replay, seed_corpus())
    with tempfile.TemporaryDirectory(prefix="fuzz-inputs-") as workdir:
        outcome, detail = run_case(
            os.path.join(workdir, "case"), data, _load_predictor(args.model_dir)
        )
    print(f"case {args.replay} (seed {args.seed}, {description}): {outcome}: {detail}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_dir", required=True, help="Export directory (deploy.yaml, ONNX)")
    parser.add_argument("--cases", type=int, default=10000, help="Number of cases")
    parser.add_argument("--seed", type=int, default=0, help="Campaign seed")
    parser.add_argument("--timeout", type=float, default=20.0, help="Seconds allowed per case")
    parser.add_argument("--replay", type=int, metavar="I", help="Run case I alone, in-process")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Exit status 0 when every case was decoded or refused, 1 otherwise."""
    args = parse_args(argv)
    if args.replay is not None:
        replay(args)
        return 0
    from seg_runtime.machine import cpu_flags  # noqa: PLC0415

    flags = " ".join(f for f in cpu_flags() if f.startswith("avx"))
    import cv2  # noqa: PLC0415

    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {flags}")
    print(f"Python {platform.python_version()}, OpenCV {cv2.__version__}, NumPy {np.__version__}")
    counts = campaign(args)
    return 0 if counts["unexpected"] + counts["hang"] + counts["crash"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
