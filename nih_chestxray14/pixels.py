"""PNG bytes in, PNG bytes out: a cheap integrity check for passing NIH's PNGs through, and the one-time resize.

- :func:`check_png` walks the PNG's chunks and verifies each CRC-32 and the closing ``IEND`` without decoding. It
  catches truncated and corrupted files at about the cost of reading the bytes once.
- :func:`resize_png` decodes with Pillow, resizes the shorter side with area interpolation (``Image.reduce`` for whole
  factors, else ``Image.resize`` with ``BOX``), and re-encodes losslessly with :func:`encode_gray_png`.
- :func:`encode_gray_png` writes an 8-bit grayscale PNG. Resized configs store their pixels uncompressed (zlib level
  0: "stored" deflate blocks, filter "None"), because a training epoch decodes every image again and inflating is
  most of the cost: a 256 x 256 X-ray decodes in about 0.04 ms stored against 0.4 ms at level 1 (filter "Up", zlib's
  run-length strategy), for about 2.2x the bytes (64 KB against 30 KB on NIH-like grain). The writer also encodes in
  a tenth of the time. Levels 1-9 remain available and use filter "Up" with the run-length strategy.
"""

from __future__ import annotations

import io
import struct
import zlib
from typing import Tuple

import numpy as np
from PIL import Image

from .errors import CorruptImageError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
RESIZED_COMPRESS_LEVEL = 0
"""zlib level of resized PNGs: 0 stores them uncompressed, ten times faster to decode on every epoch (see above)."""

_ADVICE = "download or extract that file again, or remove it and build with allow_missing_images=True"


def check_png(data: bytes, where: str) -> None:
    """Verify that ``data`` is a whole PNG: signature, every chunk's CRC-32, and an ``IEND`` chunk.

    Args:
        data: the file's bytes.
        where: the file (or ``archive:member``) to name in the error.

    Raises:
        CorruptImageError: if the signature is wrong, a chunk runs past the end, a CRC does not match, or the file
            ends before ``IEND``.
    """
    if not data.startswith(PNG_SIGNATURE):
        raise CorruptImageError(f"{where} is not a PNG file (its first bytes are not the PNG signature); {_ADVICE}")
    view = memoryview(data)
    size = len(data)
    position = len(PNG_SIGNATURE)
    while position + 12 <= size:
        length, kind = struct.unpack_from(">I4s", data, position)
        end = position + 12 + length
        if end > size:
            break
        (expected,) = struct.unpack_from(">I", data, end - 4)
        if zlib.crc32(view[position + 4:end - 4]) != expected:
            raise CorruptImageError(
                f"{where} is corrupt: the CRC of its {kind.decode('latin-1')!r} chunk at byte {position} does not "
                f"match; {_ADVICE}"
            )
        if kind == b"IEND":
            return
        position = end
    raise CorruptImageError(f"{where} is truncated: it ends after {size} bytes, before the PNG's IEND chunk; {_ADVICE}")


def resized_size(width: int, height: int, shorter_side: int) -> Tuple[int, int]:
    """The size after scaling so that the shorter side is ``shorter_side``; images already that small keep theirs."""
    shorter = min(width, height)
    if shorter <= shorter_side:
        return width, height
    scale = shorter_side / shorter
    return max(1, round(width * scale)), max(1, round(height * scale))


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def encode_gray_png(pixels: np.ndarray, compress_level: int = RESIZED_COMPRESS_LEVEL) -> bytes:
    """Encode an ``(H, W)`` ``uint8`` array as a lossless 8-bit grayscale PNG.

    With ``compress_level`` 0 the rows are stored unfiltered and uncompressed; with 1-9 each row gets filter "Up" and
    zlib's run-length strategy.

    Raises:
        ValueError: unless ``pixels`` is a non-empty 2-D ``uint8`` array.
    """
    if pixels.ndim != 2 or pixels.dtype != np.uint8 or pixels.size == 0:
        raise ValueError(f"expected a non-empty 2-D uint8 array, got shape {pixels.shape} and dtype {pixels.dtype}")
    height, width = pixels.shape
    if not 0 <= compress_level <= 9:
        raise ValueError(f"compress_level must be in 0..9, got {compress_level}")
    rows = np.empty((height, width + 1), dtype=np.uint8)
    if compress_level == 0:
        rows[:, 0] = 0  # filter type "None": filtering only helps compression
        rows[:, 1:] = pixels
    else:
        rows[:, 0] = 2  # filter type "Up": each byte minus the byte above it, modulo 256
        rows[0, 1:] = pixels[0]
        np.subtract(pixels[1:], pixels[:-1], out=rows[1:, 1:])  # uint8 arithmetic wraps modulo 256, as PNG wants
    compressor = zlib.compressobj(compress_level, zlib.DEFLATED, 15, 9, zlib.Z_RLE)
    data = compressor.compress(rows.tobytes()) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8 bits, grayscale, deflate, no interlace
    return PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", data) + _chunk(b"IEND", b"")


def resize_png(data: bytes, shorter_side: int, where: str, compress_level: int = RESIZED_COMPRESS_LEVEL) -> bytes:
    """Decode a PNG, resize its shorter side to ``shorter_side`` by area averaging, and encode it as grayscale PNG.

    Colour or alpha PNGs (a few of NIH's are RGBA) are converted to 8-bit grayscale ("L") first; images whose
    shorter side is already ``shorter_side`` or less keep their size.

    Raises:
        CorruptImageError: if the PNG cannot be decoded (truncated, corrupt, or not an image).
    """
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            if image.mode != "L":
                image = image.convert("L")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise CorruptImageError(f"{where} cannot be decoded ({error}); {_ADVICE}") from None
    width, height = image.size
    target = resized_size(width, height, shorter_side)
    if target != (width, height):
        factor = width // target[0]
        if width == target[0] * factor and height == target[1] * factor:
            image = image.reduce(factor)  # exact area average over factor × factor blocks
        else:
            image = image.resize(target, Image.Resampling.BOX)
    return encode_gray_png(np.asarray(image), compress_level)
