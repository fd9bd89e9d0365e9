"""PNG bytes in, PNG bytes out: the build-time check of NIH's PNGs, the one-time resize, and the one PNG writer.

- :func:`check_png` proves, without building an image, that a PNG will decode: signature, every chunk's CRC-32,
  a header within :data:`MAX_IMAGE_SIDE`, image data that inflates to exactly the size the header declares with a
  valid filter byte on every row, and a closing ``IEND``. A decompression bomb is refused from its header alone.
- :func:`resize_png` checks the header (the same limits), decodes with Pillow, makes the pixels 8-bit grey
  (:func:`gray_pixels`), resizes the shorter side by area averaging and re-encodes with :func:`encode_gray_png`.
  Whatever Pillow cannot decode is refused. One thing Pillow decodes without a word is image data that is valid
  but ends early (or late), which only a faulty encoder writes: it pads the missing rows. :func:`check_png` refuses
  that too, but running it before the decode would cost a large part of a decode again, so the resized configs
  do not (figures: ``benchmarks/README.md``).
- :func:`encode_gray_png` writes an 8-bit grayscale PNG. At ``compress_level=0`` (the resized configs) it writes
  the rows unfiltered in stored deflate blocks, which Pillow's writer cannot: Pillow filters every row, so a
  reader must unfilter on every epoch. Benchmarks: ``benchmarks/README.md``.
"""

from __future__ import annotations

import io
import struct
import zlib
from typing import Iterator, NamedTuple, Sequence, Tuple

import numpy as np
from PIL import Image

from .errors import CorruptImageError

try:  # Intel's ISA-L inflates the same deflate streams several times faster than zlib (benchmarks/README.md)
    from isal import isal_zlib as inflate_library
except ImportError:  # a platform without isal's wheels: the standard library gives the same answers, slower
    inflate_library = zlib

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
RESIZED_COMPRESS_LEVEL = 0
"""zlib level of resized PNGs: 0 stores the rows uncompressed, so that every training epoch decodes them fast."""

MAX_IMAGE_SIDE = 8192
"""Largest width or height accepted. NIH's PNGs are 1024 x 1024 and its largest detector image 3,827 x 4,715; a
header beyond this is a decompression bomb or not an X-ray, and is refused before anything is inflated."""

_ADVICE = "download or extract that file again, or remove it and build with allow_missing_images=True"
_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # PNG colour type → samples per pixel
_BIT_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))
_INFLATE_PIECE = 1 << 22  # inflate at most 4 MiB at a time, so a lying header cannot exhaust memory


class PngHeader(NamedTuple):
    """The fields of a PNG's ``IHDR`` chunk."""

    width: int
    height: int
    bit_depth: int
    colour_type: int
    interlaced: bool


def _chunks(data: bytes, where: str) -> Iterator[Tuple[bytes, memoryview, int]]:
    """``(type, payload, offset)`` of every chunk up to ``IEND``, each CRC-checked."""
    if not data.startswith(PNG_SIGNATURE):
        raise CorruptImageError(f"{where} is not a PNG file (its first bytes are not the PNG signature); {_ADVICE}")
    view = memoryview(data)
    position = len(PNG_SIGNATURE)
    while position + 12 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, position)
        end = position + 12 + length
        if end > len(data):
            break
        (expected,) = struct.unpack_from(">I", data, end - 4)
        if zlib.crc32(view[position + 4:end - 4]) != expected:
            raise CorruptImageError(
                f"{where} is corrupt: the CRC of its {kind.decode('latin-1')!r} chunk at byte {position} does not "
                f"match; {_ADVICE}"
            )
        yield kind, view[position + 8:end - 4], position
        if kind == b"IEND":
            return
        position = end
    raise CorruptImageError(
        f"{where} is truncated: it ends after {len(data)} bytes, before the PNG's IEND chunk; {_ADVICE}"
    )


def _parse_header(kind: bytes, payload: memoryview, where: str) -> PngHeader:
    if kind != b"IHDR" or len(payload) != 13:
        raise CorruptImageError(f"{where} is corrupt: a PNG must start with a 13-byte IHDR chunk; {_ADVICE}")
    width, height, depth, colour, compression, filtering, interlace = struct.unpack(">IIBBBBB", payload)
    if depth not in _BIT_DEPTHS.get(colour, ()) or compression != 0 or filtering != 0 or interlace > 1:
        raise CorruptImageError(
            f"{where} is corrupt: its IHDR declares bit depth {depth}, colour type {colour}, compression "
            f"{compression}, filter {filtering}, interlace {interlace}, which is not a valid PNG; {_ADVICE}"
        )
    if not (1 <= width <= MAX_IMAGE_SIDE and 1 <= height <= MAX_IMAGE_SIDE):
        raise CorruptImageError(
            f"{where} declares {width} x {height} pixels; NIH's images are 1024 x 1024 and at most "
            f"{MAX_IMAGE_SIDE} pixels a side are accepted (a larger header is a decompression bomb); {_ADVICE}"
        )
    return PngHeader(width, height, depth, colour, bool(interlace))


def read_png_header(data: bytes, where: str) -> PngHeader:
    """The header of a PNG, checked: signature, IHDR first, valid fields, sides within :data:`MAX_IMAGE_SIDE`.

    Raises:
        CorruptImageError: naming ``where``, for anything else.
    """
    kind, payload, _ = next(_chunks(data, where))  # only the first chunk is read
    return _parse_header(kind, payload, where)


def _row_starts(header: PngHeader) -> Tuple[np.ndarray, int]:
    """Offsets of the filter byte of every row in the inflated image data (all seven passes when interlaced), and
    the size of that data."""
    bits = _CHANNELS[header.colour_type] * header.bit_depth
    passes: Sequence[Tuple[int, int, int, int]] = _ADAM7 if header.interlaced else ((0, 0, 1, 1),)
    starts, base = [], 0
    for x0, y0, dx, dy in passes:
        columns = max(0, -(-(header.width - x0) // dx))
        rows = max(0, -(-(header.height - y0) // dy))
        if columns and rows:
            stride = 1 + -(-columns * bits // 8)
            starts.append(base + stride * np.arange(rows, dtype=np.int64))
            base += stride * rows
    return np.concatenate(starts), base


def _check_image_data(header: PngHeader, idat: Sequence[memoryview], where: str) -> None:
    """Inflate the image data piece by piece: it must end where the header says, with filter bytes 0-4."""
    starts, expected = _row_starts(header)
    inflater = inflate_library.decompressobj()
    produced = 0
    try:
        for payload in idat:
            pending = payload
            while pending and not inflater.eof and produced <= expected:
                piece = inflater.decompress(pending, _INFLATE_PIECE)
                pending = inflater.unconsumed_tail
                produced = _check_filters(piece, produced, starts, where)
        if produced <= expected:
            produced = _check_filters(inflater.flush(), produced, starts, where)
    except inflate_library.error as error:
        raise CorruptImageError(f"{where} is corrupt: its image data does not inflate ({error}); {_ADVICE}") from None
    if not inflater.eof or produced != expected:
        raise CorruptImageError(
            f"{where} is corrupt: its image data inflates to {produced:,} bytes{'' if inflater.eof else ' (cut short)'}"
            f" where its {header.width} x {header.height} header needs {expected:,}; {_ADVICE}"
        )


def _check_filters(piece: bytes, offset: int, starts: np.ndarray, where: str) -> int:
    """Check the filter bytes that fall in ``piece`` (which starts at ``offset``); return the offset after it."""
    end = offset + len(piece)
    inside = starts[np.searchsorted(starts, offset):np.searchsorted(starts, end)]
    if inside.size and np.frombuffer(piece, dtype=np.uint8)[inside - offset].max() > 4:
        raise CorruptImageError(f"{where} is corrupt: a row of its image data has an unknown filter type; {_ADVICE}")
    return end


def check_png(data: bytes, where: str) -> None:
    """Verify that ``data`` is a PNG that decodes, without decoding it into pixels.

    Checks the signature, every chunk's CRC-32, the ``IHDR`` fields and size (at most :data:`MAX_IMAGE_SIDE` a side),
    a ``PLTE`` for palette images, that the ``IDAT`` data inflates to exactly ``height`` rows of the declared width
    with a valid filter byte each, and the closing ``IEND``.

    Args:
        data: the file's bytes.
        where: the file (or ``archive:member``) to name in the error.

    Raises:
        CorruptImageError: naming ``where`` and the rule broken.
    """
    header = None
    idat = []
    has_palette = False
    for kind, payload, _ in _chunks(data, where):
        if header is None:
            header = _parse_header(kind, payload, where)
        elif kind == b"IDAT":
            idat.append(payload)
        elif kind == b"PLTE":
            has_palette = True
    if not idat:
        raise CorruptImageError(f"{where} is corrupt: it has no image data (IDAT chunk); {_ADVICE}")
    if header.colour_type == 3 and not has_palette:
        raise CorruptImageError(f"{where} is corrupt: a palette image without a PLTE chunk; {_ADVICE}")
    _check_image_data(header, idat, where)


def gray_pixels(image: Image.Image) -> np.ndarray:
    """The pixels of a decoded PNG as an ``(H, W)`` ``float32`` array of grey levels in ``[0, 255]``.

    Every mode Pillow returns for a PNG becomes grey:

    - ``L`` as is (Pillow has already scaled 1-, 2- and 4-bit grey to 0-255); ``1`` as 0 and 255;
    - ``I;16`` (16-bit grey) and ``I`` by the bit depth: ``value * 255 / 65535``, so the full 16-bit range maps onto
      the full 8-bit range and nothing is clipped;
    - ``RGB`` and ``P`` (through its palette) by the ITU-R 601-2 luma that ``Image.convert("L")`` applies;
    - ``LA``, ``RGBA`` and ``PA``: alpha is dropped, then as ``L`` or ``RGB``. Pillow reads 16-bit colour and
      16-bit grey-with-alpha PNGs as 8-bit ``RGB``/``RGBA`` (their high bytes).
    """
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        return np.clip(np.asarray(image, dtype=np.float32), 0, 65535) * np.float32(255 / 65535)
    if image.mode in ("P", "PA"):
        image = image.convert("RGBA")  # through the palette; alpha (tRNS) is then dropped
    if image.mode != "L":
        image = image.convert("L")
    return np.asarray(image, dtype=np.float32)


def resized_size(width: int, height: int, shorter_side: int) -> Tuple[int, int]:
    """The size after scaling so that the shorter side is ``shorter_side``; images already that small keep theirs."""
    shorter = min(width, height)
    if shorter <= shorter_side:
        return width, height
    scale = shorter_side / shorter
    return max(1, round(width * scale)), max(1, round(height * scale))


def encode_gray_png(pixels: np.ndarray, compress_level: int = RESIZED_COMPRESS_LEVEL) -> bytes:
    """Encode an ``(H, W)`` ``uint8`` array as a lossless 8-bit grayscale PNG.

    With ``compress_level`` 0 the rows are stored unfiltered in stored deflate blocks; with 1-9 Pillow writes them
    (adaptive filters, zlib at that level).

    Raises:
        ValueError: unless ``pixels`` is a non-empty 2-D ``uint8`` array and ``compress_level`` is in 0..9.
    """
    if pixels.ndim != 2 or pixels.dtype != np.uint8 or pixels.size == 0:
        raise ValueError(f"expected a non-empty 2-D uint8 array, got shape {pixels.shape} and dtype {pixels.dtype}")
    if not 0 <= compress_level <= 9:
        raise ValueError(f"compress_level must be in 0..9, got {compress_level}")
    if compress_level > 0:
        buffer = io.BytesIO()
        Image.fromarray(pixels, mode="L").save(buffer, format="PNG", compress_level=compress_level)
        return buffer.getvalue()
    height, width = pixels.shape
    rows = np.zeros((height, width + 1), dtype=np.uint8)  # filter type 0 ("None") in the first byte of each row
    rows[:, 1:] = pixels
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8 bits, grayscale, deflate, no interlace
    return PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(rows.tobytes(), 0)) + _chunk(
        b"IEND", b""
    )


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def resize_png(data: bytes, shorter_side: int, where: str, compress_level: int = RESIZED_COMPRESS_LEVEL) -> bytes:
    """Decode a PNG, make it grey (:func:`gray_pixels`), resize its shorter side to ``shorter_side`` by area
    averaging, and encode it as an 8-bit grayscale PNG. Images whose shorter side is already ``shorter_side`` or less
    keep their size.

    Raises:
        CorruptImageError: if the header is refused (:func:`read_png_header`) or the PNG cannot be decoded.
    """
    header = read_png_header(data, where)  # refuses a bomb before Pillow allocates it
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            plane = image if image.mode == "L" else Image.fromarray(gray_pixels(image), mode="F")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise CorruptImageError(f"{where} cannot be decoded ({error}); {_ADVICE}") from None
    target = resized_size(header.width, header.height, shorter_side)
    if target != plane.size:
        factor = header.width // target[0]
        if header.width == target[0] * factor and header.height == target[1] * factor:
            plane = plane.reduce(factor)  # exact area average over factor × factor blocks
        else:
            plane = plane.resize(target, Image.Resampling.BOX)
    pixels = np.asarray(plane)
    if pixels.dtype != np.uint8:
        pixels = np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
    return encode_gray_png(pixels, compress_level)
