"""seg_runtime.read_image on odd but valid images, and the sizes SegPredictor gives them.

Grayscale, RGBA, 16-bit, palette, EXIF-rotated, 1x1, non-multiple-of-32 and very large
images, each with the rule read_image documents (tools/*.py, infer.py and the packaged
solution read images with it; tests/reliability/test_fuzz_inputs.py runs them on such files).
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image
from seg_runtime import InputError, SegPredictor, read_image
from seg_runtime.media import MAX_PIXELS_ENV

DEPLOY = {"input_shape": [1, 3, 96, 96], "num_classes": 6, "transforms": [{"type": "Normalize"}]}


def smooth_bgr(height: int, width: int, seed: int = 0) -> np.ndarray:
    small = np.random.default_rng(seed).integers(0, 256, (3, 4, 3), dtype=np.uint8)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)


def test_grayscale_is_replicated_to_three_channels(tmp_path):
    gray = smooth_bgr(20, 30)[..., 0]
    cv2.imwrite(str(tmp_path / "g.png"), gray)
    image = read_image(str(tmp_path / "g.png"))
    assert image.shape == (20, 30, 3) and image.dtype == np.uint8
    for channel in range(3):
        np.testing.assert_array_equal(image[..., channel], gray)


def test_alpha_is_dropped_not_composited(tmp_path):
    bgr = smooth_bgr(20, 30)
    alpha = np.tile(np.linspace(0, 255, 30).astype(np.uint8), (20, 1))  # 0 = transparent
    cv2.imwrite(str(tmp_path / "rgba.png"), np.dstack([bgr, alpha]))
    np.testing.assert_array_equal(read_image(str(tmp_path / "rgba.png")), bgr)


@pytest.mark.parametrize("channels", [1, 3])
def test_16_bit_is_scaled_by_257_not_clipped(tmp_path, channels):
    values = np.array([0, 1, 128, 129, 257, 385, 386, 32896, 40000, 65279, 65535], np.uint16)
    plane = np.tile(values, (4, 1))
    image16 = plane if channels == 1 else np.dstack([plane, plane[:, ::-1], plane // 2])
    cv2.imwrite(str(tmp_path / "x16.png"), image16)
    image = read_image(str(tmp_path / "x16.png"))
    expected = np.rint(image16.astype(np.float64) / 257).astype(np.uint8)
    if channels == 1:
        expected = np.dstack([expected] * 3)
    np.testing.assert_array_equal(image, expected)
    assert image[0, -1, 0] == 255 and image[0, values.tolist().index(40000), 0] == 156


def test_palette_png_gives_its_colours(tmp_path):
    colours = np.array([[255, 0, 0], [0, 128, 0], [10, 20, 250], [200, 200, 0]], np.uint8)  # RGB
    indices = np.arange(12 * 16, dtype=np.uint8).reshape(12, 16) % 4
    img = Image.fromarray(indices, mode="P")
    img.putpalette(colours.ravel().tolist())
    img.save(tmp_path / "p.png")
    np.testing.assert_array_equal(read_image(str(tmp_path / "p.png")), colours[indices][..., ::-1])


def test_exif_orientation_is_applied(tmp_path):
    """Stored 40 wide x 20 high, tagged "rotate 90 clockwise": read 20 wide x 40 high."""
    rgb = np.zeros((20, 40, 3), np.uint8)
    rgb[:, :20] = (255, 0, 0)  # left half red
    rgb[:, 20:] = (0, 0, 255)  # right half blue
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(rgb).save(tmp_path / "rot.jpg", exif=exif.tobytes(), quality=95)
    image = read_image(str(tmp_path / "rot.jpg"))
    assert image.shape == (40, 20, 3)
    expected = np.rot90(rgb, k=-1)[..., ::-1]  # clockwise, then BGR
    assert np.abs(image.astype(int) - expected).mean() < 8  # JPEG's loss only
    assert image[:20, :, 2].mean() > 200 and image[20:, :, 0].mean() > 200  # red above blue


@pytest.mark.parametrize("size", [(1, 1), (33, 47), (97, 31)])
def test_any_size_is_resized_to_the_input_and_labels_come_back(tmp_path, size):
    path = str(tmp_path / "odd.png")
    cv2.imwrite(path, smooth_bgr(*size))
    image = read_image(path)
    assert image.shape == (*size, 3)
    seen = []

    def runner(x: np.ndarray) -> np.ndarray:
        seen.append(x.shape)
        # Left half class 1, right half class 2, at the model's 96x96 output.
        return np.repeat([[[1] * 48 + [2] * 48]], 96, axis=1)[:, None].astype(np.int32)

    labels, _ = SegPredictor.from_runner(DEPLOY, runner)(image)
    assert seen == [(1, 3, 96, 96)]
    assert labels.shape == size and labels.dtype == np.int64
    assert labels[:, 0].tolist() == [1] * size[0]  # the left column is class 1
    halves = np.array([[1, 2]], np.int32)
    expected = cv2.resize(halves, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)
    np.testing.assert_array_equal(labels, expected)


@pytest.mark.slow
def test_8000x8000_is_refused_by_default_and_read_under_a_raised_limit(tmp_path, monkeypatch):
    path = str(tmp_path / "big.jpg")
    cv2.imwrite(path, cv2.resize(smooth_bgr(8, 8), (8000, 8000), interpolation=cv2.INTER_NEAREST))
    with pytest.raises(InputError) as refused:
        read_image(path)
    assert str(refused.value) == (
        f"{path}: 8000x8000 is 64.0 megapixels, over the 50-megapixel limit "
        f"(raise it with {MAX_PIXELS_ENV}=PIXELS)"
    )
    monkeypatch.setenv(MAX_PIXELS_ENV, str(8000 * 8000))
    assert read_image(path).shape == (8000, 8000, 3)


@pytest.mark.parametrize("ext", [".png", ".jpg", ".bmp"])
def test_a_header_claiming_a_huge_image_is_refused_before_decoding(tmp_path, ext):
    """The header says 60000 x 50000 over a few hundred bytes of data: nothing is allocated."""
    ok, buffer = cv2.imencode(ext, smooth_bgr(20, 30))
    data = bytearray(buffer.tobytes())
    if ext == ".png":
        data[16:24] = (60000).to_bytes(4, "big") + (50000).to_bytes(4, "big")
    elif ext == ".jpg":
        sof = data.index(b"\xff\xc0")
        data[sof + 5 : sof + 9] = (50000).to_bytes(2, "big") + (60000).to_bytes(2, "big")
    else:
        data[18:26] = (60000).to_bytes(4, "little") + (50000).to_bytes(4, "little")
    path = tmp_path / f"huge{ext}"
    path.write_bytes(bytes(data))
    with pytest.raises(InputError, match=r"60000x50000 is 3000\.0 megapixels, over the 50-"):
        read_image(str(path))


def test_refused_files_are_named_with_the_reason(tmp_path):
    bgr = smooth_bgr(20, 30)
    cases = {"empty.png": (b"", "empty file")}
    cv2.imwrite(str(tmp_path / "f.tiff"), bgr.astype(np.float32) / 255)
    cases["f.tiff"] = (None, "float32 samples are not supported (8 or 16 bits only)")
    ok, ppm = cv2.imencode(".ppm", bgr)  # OpenCV decodes PxM, but it is not a listed format
    cases["ppm.png"] = (ppm.tobytes(), "not an image (PNG, JPEG, BMP, TIFF, WebP content expected)")
    ok, jpeg = cv2.imencode(".jpg", bgr)
    jpeg = jpeg.tobytes()
    (tmp_path / "half.jpg").write_bytes(jpeg[: (jpeg.rfind(b"\xff\xda") + len(jpeg)) // 2])
    assert cv2.imread(str(tmp_path / "half.jpg"), cv2.IMREAD_COLOR) is not None  # gray-filled
    cases["half.jpg"] = (None, "truncated JPEG (no end-of-image marker after the image data)")
    for name, (data, reason) in cases.items():
        if data is not None:
            (tmp_path / name).write_bytes(data)
        with pytest.raises(InputError) as err:
            read_image(str(tmp_path / name))
        assert str(err.value) == f"{tmp_path / name}: {reason}"
    with pytest.raises(InputError, match=r": cannot be read \(Is a directory\)$"):
        read_image(str(tmp_path))


def test_a_complete_jpeg_with_trailing_bytes_is_read(tmp_path):
    ok, jpeg = cv2.imencode(".jpg", smooth_bgr(20, 30))
    (tmp_path / "t.jpg").write_bytes(jpeg.tobytes() + b"\x00" * 100 + b"trailer")
    assert read_image(str(tmp_path / "t.jpg")).shape == (20, 30, 3)


def test_the_pixel_limit_setting_is_checked(tmp_path, monkeypatch):
    cv2.imwrite(str(tmp_path / "a.png"), smooth_bgr(20, 30))
    monkeypatch.setenv(MAX_PIXELS_ENV, "599")
    with pytest.raises(InputError, match="30x20 is 0.0 megapixels, over the 0.000599-megapixel"):
        read_image(str(tmp_path / "a.png"))
    for value in ("lots", "0"):
        monkeypatch.setenv(MAX_PIXELS_ENV, value)
        with pytest.raises(InputError) as err:
            read_image(str(tmp_path / "a.png"))
        assert (
            str(err.value) == f"{MAX_PIXELS_ENV} must be a positive number of pixels, got {value!r}"
        )
