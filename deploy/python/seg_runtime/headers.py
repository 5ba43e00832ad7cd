"""Image format, size and completeness from a file's bytes, before anything is decoded.

OpenCV picks its decoder from the file's content, whatever the name, and allocates what the
file states before reading it: the full image from the header's size, a PNG chunk from its
length field. Knowing the format lets the reader refuse content outside the formats it lists
(PFM, PxM, Sun raster and the like have no integrity checks), the size lets it refuse a
header claiming a huge image, and the structure checks a file cut short, all without
allocating anything.
"""

import struct
from typing import Optional, Tuple

Size = Tuple[int, int]  # (width, height)

FORMATS = ("PNG", "JPEG", "BMP", "TIFF", "WebP")

# JPEG start-of-frame markers: every 0xC0..0xCF except DHT (C4), JPG (C8) and DAC (CC).
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers without a length field: TEM and the restart markers.
_STANDALONE_MARKERS = frozenset([0x01, *range(0xD0, 0xD8)])


def image_format(data: bytes) -> Optional[str]:
    """One of :data:`FORMATS` from the file's signature, or None."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data.startswith(b"BM"):
        return "BMP"
    if data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "TIFF"
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return "WebP"
    return None


def image_size(data: bytes, fmt: str) -> Optional[Size]:
    """(width, height) stated by the header of a ``fmt`` file, or None when it cannot be
    parsed (the decoder then has the last word)."""
    try:
        return _PARSERS[fmt](data)
    except (struct.error, IndexError):  # a header cut short
        return None


def structure_problem(data: bytes, fmt: str) -> Optional[str]:
    """Why a ``fmt`` file must be refused before decoding, or None.

    - JPEG: no end-of-image marker after the last start-of-scan. Inside entropy-coded data
      a 0xFF byte is always stuffed (FF 00) or a restart marker, so FF D9 after the last
      FF DA can only be the end of the image; ``cv2.imread`` would decode a JPEG cut short
      with the missing part gray and only a warning on stderr.
    - PNG: a chunk whose length runs past the end of the file, or no IEND chunk. OpenCV
      allocates a chunk's stated length (up to 4 GB) before finding the data missing.
    """
    if fmt == "JPEG":
        scan = data.rfind(b"\xff\xda")
        if scan < 0 or data.find(b"\xff\xd9", scan) < 0:
            return "truncated JPEG (no end-of-image marker after the image data)"
    elif fmt == "PNG":
        pos = 8
        while pos + 8 <= len(data):
            length = int.from_bytes(data[pos : pos + 4], "big")
            if pos + 12 + length > len(data):
                return (
                    f"truncated or corrupt PNG (the chunk at byte {pos} states {length} bytes, "
                    "past the end of the file)"
                )
            if data[pos + 4 : pos + 8] == b"IEND":
                return None
            pos += 12 + length
        return "truncated PNG (no IEND chunk)"
    return None


def _png_size(data: bytes) -> Optional[Size]:
    if data[12:16] != b"IHDR":
        return None
    return struct.unpack(">II", data[16:24])


def _jpeg_size(data: bytes) -> Optional[Size]:
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
        elif marker in _STANDALONE_MARKERS:
            pos += 2
        elif marker in _SOF_MARKERS:
            height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
            return width, height
        elif marker in (0xD9, 0xDA):  # end of image or start of scan before any frame
            return None
        else:
            pos += 2 + struct.unpack(">H", data[pos + 2 : pos + 4])[0]
    return None


def _bmp_size(data: bytes) -> Optional[Size]:
    (header_size,) = struct.unpack("<I", data[14:18])
    if header_size == 12:  # OS/2 BITMAPCOREHEADER: 16-bit sizes
        return struct.unpack("<HH", data[18:22])
    width, height = struct.unpack("<ii", data[18:26])
    return abs(width), abs(height)  # a negative height means top-down rows


def _tiff_size(data: bytes) -> Optional[Size]:
    order = "<" if data[:2] == b"II" else ">"
    if struct.unpack(order + "H", data[2:4])[0] != 42:  # BigTIFF: left to the decoder
        return None
    (ifd,) = struct.unpack(order + "I", data[4:8])
    (count,) = struct.unpack(order + "H", data[ifd : ifd + 2])
    found = {}
    for entry in range(ifd + 2, ifd + 2 + 12 * count, 12):
        tag, kind = struct.unpack(order + "HH", data[entry : entry + 4])
        if tag in (256, 257):  # ImageWidth, ImageLength: SHORT (3) or LONG (4)
            value = data[entry + 8 : entry + 12]
            fmt = order + ("H" if kind == 3 else "I")
            found[tag] = struct.unpack(fmt, value[: struct.calcsize(fmt)])[0]
    if len(found) < 2:
        return None
    return found[256], found[257]


def _webp_size(data: bytes) -> Optional[Size]:
    chunk = data[12:16]
    if chunk == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":  # lossy: 14-bit sizes
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L" and data[20:21] == b"\x2f":  # lossless: 14-bit sizes minus one
        (bits,) = struct.unpack("<I", data[21:25])
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":  # extended: 24-bit canvas sizes minus one
        if len(data) < 30:
            return None
        return 1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(data[27:30], "little")
    return None


_PARSERS = {
    "PNG": _png_size,
    "JPEG": _jpeg_size,
    "BMP": _bmp_size,
    "TIFF": _tiff_size,
    "WebP": _webp_size,
}
