"""The builder's pixel work: the PNG integrity check of ``default`` and the one-time resize of ``resized-*``."""

from __future__ import annotations

import io
import struct
import warnings
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from nih_chestxray14.errors import CorruptImageError
import nih_chestxray14.pixels
from nih_chestxray14.pixels import check_png, encode_gray_png, resize_png, resized_size
from nih_chestxray14.sample import encode_png, synthetic_xray


@pytest.fixture(scope="module")
def png() -> bytes:
    return encode_png(synthetic_xray(96, seed=2)[0])


def test_whole_png_passes_the_check(png):
    check_png(png, "x.png")


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9, 0.999])
def test_truncated_png_is_caught_and_named(png, keep):
    with pytest.raises(CorruptImageError, match=r"images/00000001_000\.png is truncated.*allow_missing_images"):
        check_png(png[: int(len(png) * keep)], "images/00000001_000.png")


def test_flipped_byte_fails_the_crc_and_a_non_png_fails_the_signature(png):
    damaged = bytearray(png)
    damaged[len(png) // 2] ^= 0x01
    with pytest.raises(CorruptImageError, match=r"a\.png is corrupt: the CRC of its 'IDAT' chunk"):
        check_png(bytes(damaged), "a.png")
    with pytest.raises(CorruptImageError, match=r"b\.png is not a PNG file"):
        check_png(b"GIF89a" + png[6:], "b.png")


@settings(max_examples=30, deadline=None)
@given(arrays(np.uint8, st.tuples(st.integers(1, 40), st.integers(1, 40))), st.sampled_from([0, 1, 6, 9]))
def test_grayscale_writer_is_lossless_and_valid(pixels, compress_level):
    data = encode_gray_png(pixels, compress_level)
    check_png(data, "written.png")
    with Image.open(io.BytesIO(data)) as image:
        assert image.mode == "L"
        assert np.array_equal(np.asarray(image), pixels)


def test_writer_refuses_what_is_not_an_8_bit_plane():
    with pytest.raises(ValueError, match="2-D uint8"):
        encode_gray_png(np.zeros((4, 4, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="compress_level"):
        encode_gray_png(np.zeros((4, 4), dtype=np.uint8), 10)


def test_resized_pixels_are_stored_uncompressed_for_fast_decoding(png):
    # Training decodes every resized image on every epoch; stored deflate blocks skip inflating. Lossless either way.
    resized = resize_png(png, 32, "x.png")
    with Image.open(io.BytesIO(resized)) as image:
        pixels = np.asarray(image)
    assert pixels.shape == (32, 32)
    assert len(resized) >= 32 * (32 + 1)  # a filter byte and 32 pixels per row, not compressed
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(resize_png(png, 32, "x.png", compress_level=6)))), pixels)
    assert len(resize_png(png, 32, "x.png", compress_level=6)) < len(resized)


@pytest.mark.parametrize(
    "size, shorter, expected",
    [((1024, 1024), 224, (224, 224)), ((600, 300), 256, (512, 256)), ((300, 601), 256, (256, 513)),
     ((100, 100), 224, (100, 100))],
)
def test_resized_size_scales_the_shorter_side_and_never_upscales(size, shorter, expected):
    assert resized_size(*size, shorter) == expected


def test_resize_averages_areas_and_converts_colour_to_gray():
    rgba = np.zeros((64, 64, 4), dtype=np.uint8)
    rgba[..., :3] = np.arange(64, dtype=np.uint8)[None, :, None] * 3
    rgba[..., 3] = 255
    buffer = io.BytesIO()
    Image.fromarray(rgba, mode="RGBA").save(buffer, format="PNG")
    small = Image.open(io.BytesIO(resize_png(buffer.getvalue(), 16, "rgba.png")))
    assert small.mode == "L" and small.size == (16, 16)
    expected = np.arange(64).reshape(16, 4).mean(axis=1) * 3  # each output column averages four input columns
    assert np.abs(np.asarray(small, dtype=float)[0] - expected).max() <= 1


def test_resize_of_a_truncated_png_is_named(png):
    with pytest.raises(CorruptImageError, match=r"cut\.png cannot be decoded"):
        resize_png(png[: len(png) // 2], 32, "cut.png")


# ---------------------------------------------------------------------------------------------------------------
# PNGs written here by hand, independently of the code under test


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def handmade_png(width, height, bit_depth, colour_type, rows: bytes, extra: bytes = b"", interlace=0,
                 idat: bytes = None) -> bytes:
    """A PNG from raw scanlines (each with its filter byte); ``idat`` replaces the compressed data."""
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, interlace)
    data = zlib.compress(rows) if idat is None else idat
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + extra + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def scanlines(samples: np.ndarray, bit_depth: int) -> bytes:
    """Rows of (H, W*channels) integer samples packed big-endian at ``bit_depth``, filter type 0."""
    rows = []
    for row in samples:
        if bit_depth == 16:
            packed = row.astype(">u2").tobytes()
        elif bit_depth == 8:
            packed = row.astype(np.uint8).tobytes()
        else:
            per_byte = 8 // bit_depth
            padded = np.zeros(-(-len(row) // per_byte) * per_byte, dtype=np.uint8)
            padded[: len(row)] = row
            groups = padded.reshape(-1, per_byte)
            shifts = bit_depth * np.arange(per_byte - 1, -1, -1)
            packed = (groups << shifts).sum(axis=1).astype(np.uint8).tobytes()
        rows.append(b"\0" + packed)
    return b"".join(rows)


def luma(rgb: np.ndarray) -> np.ndarray:
    """ITU-R 601-2 luma as Pillow computes it for convert("L")."""
    r, g, b = (rgb[..., i].astype(np.int64) for i in range(3))
    return (r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16


W, H = 6, 4
RNG = np.random.default_rng(7)


def grey_case(bit_depth):
    samples = RNG.integers(0, 2**bit_depth, size=(H, W))
    expected = {1: samples * 255, 2: samples * 85, 4: samples * 17, 8: samples,
                16: np.rint(samples * 255 / 65535)}[bit_depth]
    return handmade_png(W, H, bit_depth, 0, scanlines(samples, bit_depth)), expected


def colour_case(bit_depth, alpha):
    channels = 4 if alpha else 3
    samples = RNG.integers(0, 2**bit_depth, size=(H, W, channels))
    high = samples >> 8 if bit_depth == 16 else samples  # Pillow keeps the high byte of 16-bit colour
    png = handmade_png(W, H, bit_depth, 6 if alpha else 2, scanlines(samples.reshape(H, -1), bit_depth))
    return png, luma(high)


def grey_alpha_case(bit_depth):
    samples = RNG.integers(0, 2**bit_depth, size=(H, W, 2))
    grey = samples[..., 0] >> 8 if bit_depth == 16 else samples[..., 0]
    return handmade_png(W, H, bit_depth, 4, scanlines(samples.reshape(H, -1), bit_depth)), grey


def palette_case(bit_depth, transparency):
    palette = RNG.integers(0, 256, size=(2**bit_depth, 3))
    indices = RNG.integers(0, 2**bit_depth, size=(H, W))
    extra = chunk(b"PLTE", palette.astype(np.uint8).tobytes())
    if transparency:
        extra += chunk(b"tRNS", bytes([0, 128]))
    return handmade_png(W, H, bit_depth, 3, scanlines(indices, bit_depth), extra), luma(palette[indices])


MODE_CASES = {
    "1 (1-bit grey)": lambda: grey_case(1),
    "L (2-bit grey)": lambda: grey_case(2),
    "L (4-bit grey)": lambda: grey_case(4),
    "L (8-bit grey)": lambda: grey_case(8),
    "I;16 (16-bit grey)": lambda: grey_case(16),
    "RGB (8-bit)": lambda: colour_case(8, alpha=False),
    "RGB (16-bit)": lambda: colour_case(16, alpha=False),
    "RGBA (8-bit)": lambda: colour_case(8, alpha=True),
    "RGBA (16-bit)": lambda: colour_case(16, alpha=True),
    "LA (8-bit)": lambda: grey_alpha_case(8),
    "RGBA (16-bit grey + alpha)": lambda: grey_alpha_case(16),
    "P (1-bit palette)": lambda: palette_case(1, transparency=False),
    "P (8-bit palette)": lambda: palette_case(8, transparency=False),
    "P (palette + tRNS)": lambda: palette_case(4, transparency=True),
}


@pytest.mark.parametrize("case", sorted(MODE_CASES))
def test_every_png_mode_pillow_returns_becomes_8_bit_grey_as_documented(case):
    png, expected = MODE_CASES[case]()
    check_png(png, "mode.png")
    with Image.open(io.BytesIO(png)) as image:
        assert image.mode == case.split()[0]  # the mode this case stands for
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. Pillow's warning about palette transparency
        stored = Image.open(io.BytesIO(resize_png(png, 64, "mode.png")))
    assert stored.mode == "L" and stored.size == (W, H)
    assert np.abs(np.asarray(stored, dtype=np.int64) - expected).max() <= 1


def test_a_16_bit_image_is_scaled_by_its_bit_depth_not_clipped():
    samples = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.int64)
    png = handmade_png(64, 64, 16, 0, scanlines(samples, 16))
    resized = np.asarray(Image.open(io.BytesIO(resize_png(png, 32, "deep.png"))), dtype=np.float64)
    assert resized.shape == (32, 32)
    assert (resized == 255).mean() < 0.01  # was 99.6% when 16-bit values were clipped to 255
    expected = (samples * 255 / 65535).reshape(32, 2, 32, 2).mean(axis=(1, 3))
    assert np.abs(resized - expected).max() <= 1.0


# ---------------------------------------------------------------------------------------------------------------
# PNGs that cannot be decoded, refused without decoding


@pytest.fixture(scope="module")
def grey_png():
    samples = RNG.integers(0, 256, size=(32, 40))
    return handmade_png(40, 32, 8, 0, scanlines(samples, 8)), scanlines(samples, 8)


def test_a_handmade_png_passes_and_pillow_decodes_it(grey_png):
    png, _ = grey_png
    check_png(png, "ok.png")
    Image.open(io.BytesIO(png)).load()


@pytest.mark.parametrize(
    "damage, message, pillow_decodes",
    [
        (lambda rows: np.random.default_rng(0).bytes(len(zlib.compress(rows))), r"its image data does not inflate",
         False),
        (lambda rows: zlib.compress(rows[: len(rows) // 2]),
         r"its image data inflates to 656 bytes where its 40 x 32 header needs 1,312", True),
        (lambda rows: zlib.compress(rows + rows[:41]), r"its image data inflates to .* where its 40 x 32 header needs",
         True),
        (lambda rows: zlib.compress(rows)[:-9], r"its image data inflates to .* \(cut short\)", False),
        (lambda rows: zlib.compress(b"\5" + rows[1:]), r"a row of its image data has an unknown filter type", False),
    ],
    ids=["random bytes", "too few rows", "too many rows", "stream cut", "bad filter byte"],
)
@pytest.mark.parametrize("inflater", ["isal", "zlib"])
def test_a_crc_valid_png_whose_image_data_does_not_decode_is_refused(grey_png, damage, message, pillow_decodes,
                                                                      inflater, monkeypatch):
    if inflater == "zlib":  # the standard library's inflater, used where isal has no wheel, must refuse the same
        monkeypatch.setattr(nih_chestxray14.pixels, "inflate_library", zlib)
    else:
        isal_zlib = pytest.importorskip("isal.isal_zlib", reason="isal is not installed on this platform")
        assert nih_chestxray14.pixels.inflate_library is isal_zlib
    png, rows = grey_png
    damaged = handmade_png(40, 32, 8, 0, rows, idat=damage(rows))
    with pytest.raises(CorruptImageError, match=r"bad\.png is corrupt: " + message):
        check_png(damaged, "bad.png")
    if pillow_decodes:  # Pillow pads or drops rows without a word: the check is stricter than a decode
        Image.open(io.BytesIO(damaged)).load()
    else:
        with pytest.raises((OSError, SyntaxError, ValueError)):
            Image.open(io.BytesIO(damaged)).load()


@pytest.mark.parametrize("size", [(100_000, 100_000), (8193, 16), (0, 16)])
def test_a_decompression_bomb_or_impossible_size_is_refused_from_its_header(size, grey_png):
    _, rows = grey_png
    bomb = handmade_png(*size, 8, 0, rows)
    with pytest.raises(CorruptImageError, match=rf"bomb\.png declares {size[0]} x {size[1]} pixels.*at most 8192"):
        check_png(bomb, "bomb.png")
    with pytest.raises(CorruptImageError, match=r"bomb\.png declares"):
        resize_png(bomb, 32, "bomb.png")


def test_an_invalid_header_and_a_palette_without_plte_are_refused(grey_png):
    _, rows = grey_png
    with pytest.raises(CorruptImageError, match=r"IHDR declares bit depth 3, colour type 0"):
        check_png(handmade_png(40, 32, 3, 0, rows), "odd.png")
    with pytest.raises(CorruptImageError, match=r"a palette image without a PLTE chunk"):
        check_png(handmade_png(40, 32, 8, 3, rows), "p.png")
    with pytest.raises(CorruptImageError, match=r"zero\.png is not a PNG file"):
        check_png(b"", "zero.png")


def test_an_interlaced_png_passes_the_check():
    samples = RNG.integers(0, 256, size=(13, 11))
    passes = []
    for x0, y0, dx, dy in ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)):
        sub = samples[y0::dy, x0::dx]
        if sub.size:
            passes.append(scanlines(sub, 8))
    png = handmade_png(11, 13, 8, 0, b"".join(passes), interlace=1)
    check_png(png, "adam7.png")
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png))), samples)


@settings(max_examples=25, deadline=None)
@given(
    arrays(np.uint8, st.tuples(st.integers(1, 24), st.integers(1, 24), st.just(4))),
    st.sampled_from(["1", "L", "LA", "P", "RGB", "RGBA", "I;16"]),
)
def test_every_png_pillow_writes_passes_the_check(pixels, mode):
    if mode == "I;16":
        image = Image.fromarray(pixels[..., 0].astype(np.uint16) * 257)
    elif mode == "P":
        image = Image.fromarray(pixels[..., :3], mode="RGB").quantize(colors=16)
    else:
        image = Image.fromarray(pixels, mode="RGBA").convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    check_png(buffer.getvalue(), "pillow.png")
