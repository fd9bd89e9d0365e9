"""The loader's PNG fast path: the same pixels as Pillow for every PNG it accepts, and Pillow for every other one."""

import io
import struct
import zlib

import datasets
import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from nih_chestxray14.pixels import encode_gray_png
from training.data import PNG_SIGNATURE, collate_xrays, decode_gray8_png, decode_xrays, xray_view


def pixels(height=37, width=53, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(height, width), dtype=np.uint8)


def pillow(data):
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        return image


def pillow_grey(data):
    return np.asarray(decode_xrays({"image": [pillow(data)]})["pixel_values"][0])


def chunk(kind, body):
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def stored_png(array, *, level=0, extra_chunks=(), idat_parts=1, filter_byte=0):
    """An 8-bit grey PNG with unfiltered rows (``filter_byte`` 0), built chunk by chunk."""
    height, width = array.shape
    rows = np.zeros((height, width + 1), dtype=np.uint8)
    rows[:, 1:] = array
    rows[:, 0] = filter_byte
    stream = zlib.compress(rows.tobytes(), level)
    step = -(-len(stream) // idat_parts)
    idats = b"".join(chunk(b"IDAT", stream[i:i + step]) for i in range(0, len(stream), step))
    header = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
    return PNG_SIGNATURE + header + b"".join(extra_chunks) + idats + chunk(b"IEND", b"")


ACCEPTED = {
    "the resized configs' own encoding": lambda a: encode_gray_png(a),
    "zlib-compressed unfiltered rows": lambda a: stored_png(a, level=6),
    "several IDAT chunks": lambda a: stored_png(a, idat_parts=4),
    "ancillary gAMA and tEXt chunks": lambda a: stored_png(a, extra_chunks=(
        chunk(b"gAMA", struct.pack(">I", 45455)), chunk(b"tEXt", b"Comment\x00synthetic"))),
    "a grey tRNS chunk": lambda a: stored_png(a, extra_chunks=(chunk(b"tRNS", struct.pack(">H", 7)),)),
    "a single pixel": lambda a: encode_gray_png(a[:1, :1]),
}


@pytest.mark.parametrize("form", sorted(ACCEPTED))
def test_accepted_forms_decode_to_pillows_pixels(form):
    array = pixels()
    data = ACCEPTED[form](array)
    fast = decode_gray8_png(data)
    assert fast is not None, form
    assert fast.dtype == np.uint8 and np.array_equal(fast, pillow_grey(data))
    assert np.array_equal(fast, array[: fast.shape[0], : fast.shape[1]])


def pillow_png(array, mode, **save):
    buffer = io.BytesIO()
    Image.fromarray(array).convert(mode).save(buffer, format="PNG", **save)
    return buffer.getvalue()


FALLBACK = {
    "Pillow's adaptive row filters (NIH's default PNGs are written so)": lambda a: pillow_png(a, "L", compress_level=6),
    "16-bit grey": lambda a: pillow_png((a.astype(np.uint16) * 257), "I;16"),
    "grey + alpha": lambda a: pillow_png(a, "LA"),
    "RGB": lambda a: pillow_png(a, "RGB"),
    "RGBA": lambda a: pillow_png(a, "RGBA"),
    "palette": lambda a: pillow_png(a, "P"),
    "1-bit": lambda a: pillow_png(a, "1"),
    "a filter byte on every row (Sub)": lambda a: stored_png(a, filter_byte=1),
}


@pytest.mark.parametrize("form", sorted(FALLBACK))
def test_every_other_png_goes_to_pillow_and_decodes_as_before(form):
    array = pixels()
    data = FALLBACK[form](array)
    assert decode_gray8_png(data) is None
    through_loader = decode_xrays({"image": [{"bytes": data, "path": None}]})["pixel_values"][0]
    assert np.array_equal(through_loader, pillow_grey(data))


def test_an_interlaced_png_is_left_to_pillow():
    array = pixels()
    plain = chunk(b"IHDR", struct.pack(">IIBBBBB", array.shape[1], array.shape[0], 8, 0, 0, 0, 0))
    interlaced = chunk(b"IHDR", struct.pack(">IIBBBBB", array.shape[1], array.shape[0], 8, 0, 0, 0, 1))
    assert decode_gray8_png(stored_png(array).replace(plain, interlaced)) is None


@pytest.mark.parametrize("damage", ["truncated", "bad zlib checksum", "wrong size", "not a PNG", "empty"])
def test_damaged_bytes_are_refused_and_pillow_reports_them(damage):
    data = encode_gray_png(pixels())
    damaged = {
        "truncated": data[: len(data) // 2],
        "bad zlib checksum": data.replace(data[-20:-16], bytes(4)),  # the Adler-32 at the end of the IDAT stream
        "wrong size": data.replace(struct.pack(">II", 53, 37), struct.pack(">II", 54, 37), 1),
        "not a PNG": b"GIF89a" + data[6:],
        "empty": b"",
    }[damage]
    assert decode_gray8_png(damaged) is None
    if damaged:
        with pytest.raises(Exception):
            decode_xrays({"image": [{"bytes": damaged, "path": None}]})


def test_a_path_without_bytes_is_read_from_disk(tmp_path):
    array = pixels()
    path = tmp_path / "image.png"
    path.write_bytes(encode_gray_png(array))
    assert np.array_equal(decode_xrays({"image": [{"bytes": None, "path": str(path)}]})["pixel_values"][0], array)


def test_the_recipe_view_of_a_dataset_takes_the_fast_path_and_matches_decoded_images(tmp_path):
    arrays = [pixels(40, 40, seed) for seed in range(3)] + [pixels(40, 40, 9)]
    images = [Image.fromarray(a) for a in arrays]
    images[-1].save(tmp_path / "filtered.png", compress_level=9)  # one stored the other way, for the fallback
    features = datasets.Features({"image": datasets.Image(), "labels": datasets.Sequence(datasets.Value("int8"))})
    dataset = datasets.Dataset.from_dict({
        "image": [{"bytes": encode_gray_png(a), "path": None} for a in arrays[:3]] + [str(tmp_path / "filtered.png")],
        "labels": [[0] * 14] * 4}, features=features)
    view = xray_view(dataset)
    assert dataset.features["image"].decode  # the original dataset is unchanged
    batch = collate_xrays([view[index] for index in range(4)])
    assert np.array_equal(batch["pixel_values"][:, 0].numpy(), np.stack(arrays))
    decoded = dataset.with_transform(decode_xrays)
    assert all(np.array_equal(decoded[i]["pixel_values"], view[i]["pixel_values"]) for i in range(4))


def test_pngs_with_a_text_chunk_written_by_pillow_still_match():
    info = PngImagePlugin.PngInfo()
    info.add_text("Source", "synthetic")
    array = pixels()
    data = pillow_png(array, "L", compress_level=0, pnginfo=info)
    fast = decode_gray8_png(data)
    assert np.array_equal(decode_xrays({"image": [{"bytes": data, "path": None}]})["pixel_values"][0], array)
    assert fast is None or np.array_equal(fast, array)
