"""The builder's pixel work: the PNG integrity check of ``default`` and the one-time resize of ``resized-*``."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from nih_chestxray14.errors import CorruptImageError
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
