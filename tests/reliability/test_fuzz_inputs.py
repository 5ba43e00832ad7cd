"""Corrupt, truncated and random bytes as images and labels, through every reader.

In-process, seeded hypothesis campaigns (460 cases) on ``seg_runtime.read_image`` and, for
labels, ``paddleseg_ext.core.data.load_sample``: an image or a refusal naming the file, never
another exception. Then one run of each tool over a folder mixing odd but valid images with
fuzzed files (``deploy/python/infer.py`` without Paddle, ``tools/predict.py``, the packaged
solution): every bad file is named on stderr and skipped, every good one gets its labels at
its size, no traceback, exit status as documented, each run under a time limit. Also: a
single bad image, a video with a broken frame, and ``tools/val.py`` on a corrupt label or
image. The long campaign is ``bench/fuzz_inputs.py``, whose corpus and cases this reuses.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys

import cv2
import fuzz_inputs as bench  # bench/ is on the tests' path (pyproject.toml)
import numpy as np
import pytest
import yaml
from helpers import BLOCKER, REPO, RUNTIME_DIR, load_tool
from hypothesis import given, settings
from hypothesis import strategies as st
from runtime.conftest import build_case
from seg_runtime import InputError, iter_inputs, read_image
from seg_runtime.cli import run as runtime_run
from seg_runtime.headers import image_format, image_size

from paddleseg_ext.core.data import SampleError, load_sample

CORPUS = bench.seed_corpus()
CORPUS_NAMES = sorted(CORPUS)
# Seeded and repeatable: the same cases on every run, no example database written.
FUZZ = {"derandomize": True, "database": None, "deadline": None}
TOOL_TIMEOUT_S = 300


@pytest.fixture(scope="module")
def case(tmp_path_factory) -> str:
    """The runtime tests' case: config, weights, export, a video (tests/runtime/conftest.py)."""
    return build_case(str(tmp_path_factory.mktemp("case")))


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp("scratch")


def check_read(path) -> np.ndarray | None:
    """read_image's contract: an (H, W, 3) uint8 image, or None for an InputError that names
    the file on one line; any other exception fails the test."""
    try:
        image = read_image(str(path))
    except InputError as err:
        assert str(err).startswith(f"{path}: ") and "\n" not in str(err)
        return None
    assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8
    assert image.shape[0] * image.shape[1] <= 50_000_000
    return image


@settings(max_examples=150, **FUZZ)
@given(data=st.binary(max_size=4096))
def test_random_bytes(scratch, data):
    path = scratch / "random.png"
    path.write_bytes(data)
    check_read(path)


@settings(max_examples=100, **FUZZ)
@given(name=st.sampled_from(CORPUS_NAMES), share=st.floats(0, 1, exclude_max=True))
def test_truncated_files_are_refused(scratch, name, share):
    path = scratch / "truncated.png"
    path.write_bytes(CORPUS[name][: int(share * len(CORPUS[name]))])
    assert check_read(path) is None


@settings(max_examples=150, **FUZZ)
@given(name=st.sampled_from(CORPUS_NAMES), bits=st.lists(st.integers(0, 2**31), min_size=1,
                                                          max_size=8))  # fmt: skip
def test_bit_flipped_files(scratch, name, bits):
    data = CORPUS[name]
    path = scratch / "flipped.png"
    path.write_bytes(bench.flip_bits(data, [b % (len(data) * 8) for b in bits]))
    check_read(path)


def test_corpus_headers_state_the_decoded_size():
    """The sizes read from headers (for the pixel limit) are the decoders' sizes."""
    for name, data in CORPUS.items():
        fmt = image_format(data)
        decoded = cv2.imdecode(np.frombuffer(data, np.uint8),
                               cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)  # fmt: skip
        assert fmt is not None and image_size(data, fmt) == decoded.shape[1::-1], name


@pytest.fixture(scope="module")
def label_dataset(scratch):
    """A one-sample PaddleSeg val dataset whose label file the label campaign rewrites."""
    from paddleseg.datasets import Dataset  # noqa: PLC0415
    from paddleseg.transforms import Normalize  # noqa: PLC0415

    root = scratch / "labels"
    root.mkdir()
    cv2.imwrite(str(root / "img.png"), cv2.imdecode(np.frombuffer(CORPUS["rgb.png"], np.uint8), 1))
    (root / "val.txt").write_text("img.png lbl.png\n")
    dataset = Dataset(mode="val", dataset_root=str(root), transforms=[Normalize()], num_classes=6,
                      val_path=str(root / "val.txt"))  # fmt: skip
    label = (np.arange(29 * 37).reshape(29, 37) % 6).astype(np.uint8)
    return dataset, root / "lbl.png", cv2.imencode(".png", label)[1].tobytes()


@settings(max_examples=60, **FUZZ)
@given(kind=st.sampled_from(["random", "truncate", "flip"]), draw=st.data())
def test_fuzzed_labels_load_or_name_the_label(label_dataset, kind, draw):
    dataset, path, valid = label_dataset
    if kind == "random":
        data = draw.draw(st.binary(max_size=2048))
    elif kind == "truncate":
        data = valid[: draw.draw(st.integers(0, len(valid) - 1))]
    else:
        bits = draw.draw(st.lists(st.integers(0, len(valid) * 8 - 1), min_size=1, max_size=8))
        data = bench.flip_bits(valid, bits)
    path.write_bytes(data)
    try:
        sample = load_sample(dataset, 0)
    except SampleError as err:
        assert str(path) in str(err)
        return
    assert sample["label"].shape[-2:] == (29, 37)


def fuzz_folder(root) -> dict[str, tuple[int, int] | None]:
    """Writes odd valid images and fuzzed files into ``root``; returns each file's name and
    the (H, W) its labels must have, or None for a file that must be skipped."""
    root.mkdir()
    # Valid, stored 37 wide x 29 high; exif.jpg is shown rotated, 29 wide x 37 high.
    expected = {name: (29, 37) for name in ("gray.png", "rgba.png", "16bit.png", "palette.png",
                                            "rgb.bmp", "lossless.webp")}  # fmt: skip
    expected["exif.jpg"] = (37, 29)
    for name in expected:
        (root / name).write_bytes(CORPUS[name])
    cv2.imwrite(str(root / "one_pixel.png"), np.full((1, 1, 3), 200, np.uint8))
    expected["one_pixel.png"] = (1, 1)
    bad = {
        "empty.png": b"",
        "text.jpg": b"not an image\n" * 10,
        "cut_png.png": CORPUS["rgb.png"][:1000],
        "cut_jpeg.jpg": CORPUS["baseline.jpg"][:-2],
    }
    for name, data in bad.items():
        (root / name).write_bytes(data)
        expected[name] = None
    for index in range(15):  # bench cases: whatever read_image makes of them
        _, data = bench.make_case(0, index, CORPUS)
        path = root / f"case{index:02d}.png"
        path.write_bytes(data)
        image = check_read(path)
        expected[path.name] = None if image is None else image.shape[:2]
    assert sum(v is None for v in expected.values()) >= 10
    return expected


def check_tool_run(proc, folder, expected, labels_dir) -> None:
    """Every bad file named and skipped, every good one labelled at its size, no traceback."""
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    for name, shape in expected.items():
        out = labels_dir / (os.path.splitext(name)[0] + ".png")
        if shape is None:
            assert re.search(rf"^skipped: {re.escape(str(folder / name))}: \S", proc.stderr,
                             re.M), name  # fmt: skip
            assert not out.exists(), name
        else:
            labels = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
            assert labels is not None and labels.shape == shape, name
    skipped = sum(shape is None for shape in expected.values())
    assert len(re.findall("^skipped: ", proc.stderr, re.M)) == skipped


def run_tool(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True,
                          timeout=TOOL_TIMEOUT_S, **kwargs)  # fmt: skip


def error_summary(expected: dict) -> str:
    bad = sum(shape is None for shape in expected.values())
    return f"error: {bad} input(s) skipped (named above), {len(expected) - bad} processed"


def test_infer_over_a_fuzzed_folder_skips_the_bad_files(case, tmp_path):
    folder = tmp_path / "in"
    expected = fuzz_folder(folder)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    proc = run_tool([str(RUNTIME_DIR / "infer.py"), "--model_dir", os.path.join(case, "export"),
                     "--image_path", str(folder), "--save_dir", str(tmp_path / "out"),
                     "--cpu_only"], env=env | {"PYTHONPATH": str(BLOCKER)})  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-3000:]
    check_tool_run(proc, folder, expected, tmp_path / "out" / "labels")
    assert proc.stderr.strip().splitlines()[-1] == error_summary(expected)


def test_predict_tool_over_a_fuzzed_folder_skips_the_bad_files(case, tmp_path):
    folder = tmp_path / "in"
    expected = fuzz_folder(folder)
    proc = run_tool([str(REPO / "tools" / "predict.py"), "--config",
                     os.path.join(case, "model.yml"), "--model_path",
                     os.path.join(case, "weights.pdparams"), "--image_path", str(folder),
                     "--save_dir", str(tmp_path / "out"), "--device", "cpu"])  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-3000:]
    check_tool_run(proc, folder, expected, tmp_path / "out" / "labels")
    assert proc.stderr.strip().splitlines()[-1] == error_summary(expected)


def test_solution_over_a_fuzzed_folder_skips_the_bad_files(case, tmp_path):
    from seg_runtime.solution import build_solution  # noqa: PLC0415

    folder = tmp_path / "in"
    expected = fuzz_folder(folder)
    pyz = build_solution(os.path.join(case, "export"), str(tmp_path / "solution.pyz"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    proc = run_tool([pyz, "-i", str(folder), "-o", str(tmp_path / "out")],
                    env=env | {"PYTHONPATH": str(BLOCKER), "BLOCK_EXTRA": "yaml,PIL"})  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert re.fullmatch(r"[0-9]+\.[0-9]+\n", proc.stdout), proc.stdout
    check_tool_run(proc, folder, expected, tmp_path / "out")
    summary = error_summary(expected).replace("error: ", "warning: ")
    assert proc.stderr.strip().splitlines()[-1] == summary


def run_infer(argv: list[str]) -> int:
    """``deploy/python/infer.py`` in this process, as its command line runs it: exit status."""
    spec = importlib.util.spec_from_file_location("infer_script", RUNTIME_DIR / "infer.py")
    infer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(infer)
    with pytest.raises(SystemExit) as exit_info:
        runtime_run(lambda: infer.main(argv + ["--cpu_only"]))
    return exit_info.value.code


def test_a_single_bad_image_is_one_error_line(case, tmp_path, capsys):
    data = bytearray(CORPUS["rgb.png"])
    assert data[37:41] == b"IDAT" and int.from_bytes(data[33:37], "big") > 100
    data[100:110] = bytes(10)  # inside the IDAT chunk after IHDR: its CRC no longer matches
    (tmp_path / "bad.png").write_bytes(bytes(data))
    argv = ["--model_dir", os.path.join(case, "export"), "--image_path",
            str(tmp_path / "bad.png"), "--save_dir", str(tmp_path / "out")]  # fmt: skip
    capsys.readouterr()
    assert run_infer(argv) == 2
    err = capsys.readouterr().err
    assert (
        err == f"error: {tmp_path / 'bad.png'}: not a decodable PNG image (corrupt or truncated)\n"
    )
    predict = load_tool("predict")
    with pytest.raises(InputError, match=f"^{re.escape(str(tmp_path / 'bad.png'))}: not a dec"):
        predict.main(["--config", os.path.join(case, "model.yml"), "--model_path",
                      os.path.join(case, "weights.pdparams"), "--image_path",
                      str(tmp_path / "bad.png"), "--device", "cpu"])  # fmt: skip


def avi_frames(path: str) -> list[tuple[int, int]]:
    """(offset, size) of each MJPG frame's JPEG data in an AVI file ('00dc' chunks)."""
    data = open(path, "rb").read()
    chunks = []
    for match in re.finditer(b"00dc", data):
        size = int.from_bytes(data[match.end() : match.end() + 4], "little")
        if data[match.end() + 4 : match.end() + 6] == b"\xff\xd8":
            chunks.append((match.end() + 4, size))
    return chunks


def test_a_broken_video_frame_is_reported_and_the_others_processed(case, tmp_path, capsys):
    video = str(tmp_path / "clip.avi")
    writer = cv2.VideoWriter(video, cv2.VideoWriter_fourcc(*"MJPG"), 5, (100, 80))
    if not writer.isOpened():
        pytest.skip("this OpenCV build cannot write MJPG .avi files")
    rng = np.random.default_rng(0)
    for _ in range(5):
        writer.write(cv2.resize(rng.integers(0, 256, (8, 10, 3), dtype=np.uint8), (100, 80)))
    writer.release()
    intact = dict(iter_inputs(video))
    assert len(intact) == 5
    data = bytearray(open(video, "rb").read())
    frames = avi_frames(video)
    assert len(frames) == 5
    offset, size = frames[2]
    data[offset : offset + size] = bytes(size)  # frame 2's JPEG data, zeroed
    broken = str(tmp_path / "broken.avi")
    open(broken, "wb").write(bytes(data))

    kept = [f"broken/{i:06d}.png" for i in (0, 1, 3, 4)]
    read = dict(iter_inputs(broken, on_error=lambda err: None))
    assert sorted(read) == kept
    for name in kept:  # each frame under its own index: the same pixels as in the intact video
        np.testing.assert_array_equal(read[name], intact[name.replace("broken/", "clip/")])
    with pytest.raises(InputError, match=f"^{re.escape(broken)}: frame 2 cannot be decoded$"):
        list(iter_inputs(broken))

    out = tmp_path / "out"
    capsys.readouterr()
    argv = ["--model_dir", os.path.join(case, "export"), "--image_path", broken, "--save_dir",
            str(out)]  # fmt: skip
    assert run_infer(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-2:] == [f"skipped: {broken}: frame 2 cannot be decoded",
                        "error: 1 input(s) skipped (named above), 4 processed"]  # fmt: skip
    assert sorted(os.listdir(out / "labels" / "broken")) == [n.split("/")[1] for n in kept]


def write_val_config(case: str, root) -> str:
    """A config of the case's model over a two-sample val set in ``root``."""
    images, labels = root / "images", root / "labels"
    images.mkdir(parents=True)
    labels.mkdir()
    for i in range(2):
        cv2.imwrite(
            str(images / f"{i}.png"), cv2.resize(np.full((2, 2, 3), 60 * i, np.uint8), (40, 48))
        )
        cv2.imwrite(str(labels / f"{i}.png"), np.full((48, 40), i, np.uint8))
    (root / "val.txt").write_text("images/0.png labels/0.png\nimages/1.png labels/1.png\n")
    config = root / "val.yml"
    val = {"type": "Dataset", "mode": "val", "dataset_root": str(root), "num_classes": 6,
           "val_path": str(root / "val.txt"), "transforms": [{"type": "Normalize"}]}  # fmt: skip
    config.write_text(
        yaml.safe_dump({"_base_": os.path.join(case, "model.yml"), "val_dataset": val})
    )
    return str(config)


def test_val_names_a_corrupt_label_in_one_error_line(case, tmp_path):
    config = write_val_config(case, tmp_path)
    label = tmp_path / "labels" / "1.png"
    label.write_bytes(label.read_bytes()[:60])
    proc = run_tool([str(REPO / "tools" / "val.py"), "--config", config, "--model_path",
                     os.path.join(case, "weights.pdparams"), "--device", "cpu"])  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: cannot load {tmp_path / 'images' / '1.png'}, {label}: "), last


def test_val_names_a_corrupt_image_from_a_loader_worker(case, tmp_path):
    config = write_val_config(case, tmp_path)
    image = tmp_path / "images" / "0.png"
    image.write_bytes(os.urandom(500))
    with pytest.raises(SampleError) as err:
        load_tool("val").main(["--config", config, "--model_path",
                               os.path.join(case, "weights.pdparams"), "--device", "cpu",
                               "--num_workers", "1"])  # fmt: skip
    message = str(err.value)
    assert message.startswith(f"cannot load {image}, {tmp_path / 'labels' / '0.png'}: ")
    assert "\n" not in message and "Traceback" not in message
