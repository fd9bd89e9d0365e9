"""The Space's reading of uploads: DICOM's modality LUT, VOI LUT and window, MONOCHROME1, bit depths, tags; PNG, JPEG."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("pydicom", reason="the Space's DICOM reader needs pydicom (pip install -e '.[space]')")

from dicom_files import IDENTIFYING, NOT_IDENTIFYING, exact_window, write_dicom  # noqa: E402
from radiograph import RELEASE_SIDE, UnreadableImageError, read_radiograph, to_grayscale  # noqa: E402


def grey_levels(height: int = 24, width: int = 32) -> np.ndarray:
    """An (H, W) uint8 image that holds every grey level from 0 to 255 at least once."""
    return (np.arange(height * width).reshape(height, width) * 7 % 256).astype(np.uint8)


def pixels_of(radiograph) -> np.ndarray:
    assert radiograph.image.mode == "L"
    return np.asarray(radiograph.image)


# ---- windowing ------------------------------------------------------------------------------------------------------
def test_a_linear_window_maps_its_range_onto_0_255_and_clips_what_lies_outside(tmp_path):
    expected = grey_levels()
    stored = 1000 + 8 * expected.astype(np.int32)  # 12-bit values inside the window
    stored[0, :4] = 3  # far below the window: black
    stored[1, :4] = 4090  # far above it: white
    expected = expected.copy()
    expected[0, :4], expected[1, :4] = 0, 255
    path = write_dicom(tmp_path / "window.dcm", stored, bits_stored=12, window=exact_window(1000, 8))
    radiograph = read_radiograph(path)
    np.testing.assert_array_equal(pixels_of(radiograph), expected)
    assert radiograph.tags["Display"] == "window (centre 2020.5, width 2041)"
    assert radiograph.kind == "DICOM"


def test_without_a_window_the_full_range_is_used_so_nothing_is_clipped(tmp_path):
    stored = np.linspace(100, 3100, 24 * 32).reshape(24, 32).round().astype(np.uint16)
    radiograph = read_radiograph(write_dicom(tmp_path / "raw.dcm", stored, bits_stored=12))
    pixels = pixels_of(radiograph)
    assert pixels.min() == 0 and pixels.max() == 255
    expected = np.floor((stored - 100.0) * 255.0 / 3000.0 + 0.5).astype(np.uint8)
    np.testing.assert_array_equal(pixels, expected)
    assert "full range" in radiograph.tags["Display"]


def test_a_window_is_applied_after_the_rescale_slope_and_intercept(tmp_path):
    expected = grey_levels()
    # Signed 16-bit stored values, rescaled by 2x - 1024 into the window's units, as CT-like files store them.
    values = -300 + 4 * expected.astype(np.int32)
    stored = ((values + 1024) // 2).astype(np.int16)
    path = write_dicom(tmp_path / "rescaled.dcm", stored, bits_stored=16, signed=True, rescale=(2, -1024),
                       window=(-300 + 510 / 2 + 0.5, 255 * 2 + 1), voi_function="LINEAR")
    radiograph = read_radiograph(path)
    # The window spans values -300 .. 210 in steps of 2 per grey level: stored steps of 1 land on every second level.
    window_low = -300
    x = stored.astype(np.float64) * 2 - 1024
    reference = np.clip(np.floor((x - window_low) / 510 * 255 + 0.5), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(pixels_of(radiograph), reference)


def test_a_voi_lut_sequence_is_applied_and_preferred_to_the_window(tmp_path):
    stored = (np.arange(24 * 32).reshape(24, 32) % 1024).astype(np.uint16)
    curve = np.round(4095 * (np.arange(1024) / 1023) ** 0.5).astype(int)  # a gamma curve into 12 bits
    path = write_dicom(tmp_path / "lut.dcm", stored, bits_stored=10, voi_lut=curve.tolist(), window=(5, 10))
    radiograph = read_radiograph(path)
    expected = np.floor(curve[stored] * 255.0 / 4095 + 0.5).astype(np.uint8)
    np.testing.assert_array_equal(pixels_of(radiograph), expected)
    assert radiograph.tags["Display"] == "VOI LUT (test curve)"


def test_a_sigmoid_window_keeps_its_centre_mid_grey(tmp_path):
    stored = np.full((8, 8), 2048, dtype=np.uint16)
    stored[0, 0], stored[0, 1] = 0, 4095
    path = write_dicom(tmp_path / "sigmoid.dcm", stored, bits_stored=12, window=(2048, 400), voi_function="SIGMOID")
    pixels = pixels_of(read_radiograph(path))
    assert pixels[4, 4] in (127, 128) and pixels[0, 0] == 0 and pixels[0, 1] == 255


# ---- MONOCHROME1 and bit depths -------------------------------------------------------------------------------------
def test_monochrome1_is_inverted_so_that_air_is_dark(tmp_path):
    expected = grey_levels()
    stored = (255 - expected.astype(np.uint16)) * 257  # 16 bits, smallest value white
    radiograph = read_radiograph(write_dicom(tmp_path / "mono1.dcm", stored, bits_stored=16,
                                             photometric="MONOCHROME1"))
    np.testing.assert_array_equal(pixels_of(radiograph), expected)
    assert any("MONOCHROME1" in note for note in radiograph.notes)


def test_monochrome1_with_a_window_is_windowed_then_inverted(tmp_path):
    expected = grey_levels()
    stored = 10 + 16 * (255 - expected.astype(np.int32))  # 10 .. 4090: 12 bits
    path = write_dicom(tmp_path / "mono1-window.dcm", stored, bits_stored=12, photometric="MONOCHROME1",
                       window=exact_window(10, 16))
    np.testing.assert_array_equal(pixels_of(read_radiograph(path)), expected)


@pytest.mark.parametrize("bits_stored", [12, 16])
def test_stored_values_above_255_keep_their_contrast(tmp_path, bits_stored):
    top = 2**bits_stored - 1
    stored = np.zeros((16, 16), dtype=np.uint16)
    stored[:, 8:] = top  # half black, half the largest stored value
    stored[0, 0] = top // 2
    pixels = pixels_of(read_radiograph(write_dicom(tmp_path / f"{bits_stored}.dcm", stored, bits_stored=bits_stored)))
    assert pixels[1, 0] == 0 and pixels[1, 15] == 255
    assert pixels[0, 0] == 127  # the middle of the range lands mid-grey, not clipped at 255


def test_8_bit_stored_values_pass_through_unchanged(tmp_path):
    expected = grey_levels()
    np.testing.assert_array_equal(
        pixels_of(read_radiograph(write_dicom(tmp_path / "8.dcm", expected, bits_stored=8))), expected
    )


# ---- tags ---------------------------------------------------------------------------------------------------------
def test_a_few_tags_are_shown_in_words(tmp_path):
    radiograph = read_radiograph(write_dicom(tmp_path / "tags.dcm", grey_levels(), bits_stored=8))
    assert radiograph.tags == {
        "View position": "PA", "Sex": "female", "Age": "58 years", "Modality": "DX", "Body part": "CHEST",
        "Pixels": "32 × 24, 8 bits stored, MONOCHROME2", "Display": radiograph.tags["Display"],
    }


def test_missing_optional_tags_are_left_out_of_the_table(tmp_path):
    radiograph = read_radiograph(write_dicom(tmp_path / "bare.dcm", grey_levels(), bits_stored=8, tags={}))
    assert set(radiograph.tags) == {"Pixels", "Display"}
    np.testing.assert_array_equal(pixels_of(radiograph), grey_levels())


def test_identifying_tags_never_leave_the_file(tmp_path):
    tags = {**IDENTIFYING, **NOT_IDENTIFYING, "PatientAge": "093Y"}
    radiograph = read_radiograph(write_dicom(tmp_path / "patient.dcm", grey_levels(), bits_stored=8, tags=tags))
    assert set(radiograph.tags) == {"View position", "Sex", "Age", "Modality", "Body part", "Pixels", "Display"}
    assert radiograph.tags["Age"] == "90 years or older"  # rare ages identify people too
    everything = repr(radiograph) + repr(radiograph.image.info)
    for keyword, value in IDENTIFYING.items():
        for part in str(value).split("^"):
            assert part not in everything, f"{keyword} ({part}) left the file"
    assert not hasattr(radiograph, "dataset")


# ---- bad files ------------------------------------------------------------------------------------------------------
def test_a_text_file_named_dcm_gets_a_message_naming_it(tmp_path):
    path = tmp_path / "report.dcm"
    path.write_text("Findings: no acute cardiopulmonary process.\n")
    with pytest.raises(UnreadableImageError, match=r"'report.dcm' is not a DICOM file"):
        read_radiograph(path)


def test_a_dicom_file_without_pixel_data_gets_a_message(tmp_path):
    path = write_dicom(tmp_path / "sr.dcm", grey_levels(), bits_stored=8, pixel_data=False)
    with pytest.raises(UnreadableImageError, match=r"'sr.dcm' holds no image"):
        read_radiograph(path)


def test_a_truncated_dicom_file_gets_a_message(tmp_path):
    path = write_dicom(tmp_path / "cut.dcm", np.zeros((64, 64), np.uint16), bits_stored=12)
    path.write_bytes(path.read_bytes()[:-3000])
    with pytest.raises(UnreadableImageError, match=r"'cut.dcm'"):
        read_radiograph(path)


def test_a_multi_frame_file_is_refused(tmp_path):
    path = write_dicom(tmp_path / "cine.dcm", np.zeros((3, 8, 8), np.uint8), bits_stored=8, frames=3)
    with pytest.raises(UnreadableImageError, match=r"holds 3 frames"):
        read_radiograph(path)


@pytest.mark.parametrize("syntax", ["JPEG2000Lossless", "RLELossless"])
def test_compressed_dicom_pixels_are_decoded(tmp_path, syntax):
    import pydicom
    import pydicom.uid

    stored = (np.arange(48 * 64).reshape(48, 64) * 5 % 4096).astype(np.uint16)
    plain = write_dicom(tmp_path / "plain.dcm", stored, bits_stored=12)
    dataset = pydicom.dcmread(plain)
    dataset.compress(getattr(pydicom.uid, syntax))
    dataset.save_as(tmp_path / "compressed.dcm")
    np.testing.assert_array_equal(pixels_of(read_radiograph(tmp_path / "compressed.dcm")),
                                  pixels_of(read_radiograph(plain)))


def test_pixels_no_decoder_can_read_get_a_message_naming_the_encoding(tmp_path):
    import pydicom
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGLSLossless

    path = write_dicom(tmp_path / "jpegls.dcm", np.zeros((8, 8), np.uint16), bits_stored=12)
    dataset = pydicom.dcmread(path)
    dataset.file_meta.TransferSyntaxUID = JPEGLSLossless
    dataset.PixelData = encapsulate([b"\xff\xd8 not really JPEG-LS"])
    dataset["PixelData"].VR = "OB"
    dataset.save_as(path)
    with pytest.raises(UnreadableImageError, match=r"'jpegls.dcm': its pixels cannot be decoded \(encoded as JPEG-LS"):
        read_radiograph(path)


def test_a_dicom_file_without_extension_is_recognised_by_its_marker(tmp_path):
    path = write_dicom(tmp_path / "IM0001", grey_levels(), bits_stored=8)
    assert read_radiograph(path).kind == "DICOM"


# ---- PNG and JPEG -----------------------------------------------------------------------------------------------------
def test_png_and_jpeg_are_read_as_8_bit_grayscale(tmp_path):
    Image.fromarray(grey_levels()).save(tmp_path / "x.png")
    Image.fromarray(grey_levels()).convert("RGB").save(tmp_path / "x.jpg", quality=95)
    png, jpeg = read_radiograph(tmp_path / "x.png"), read_radiograph(tmp_path / "x.jpg")
    np.testing.assert_array_equal(pixels_of(png), grey_levels())
    assert (png.kind, jpeg.kind, png.tags) == ("PNG", "JPEG", {})
    assert np.abs(pixels_of(jpeg).astype(int) - grey_levels()).mean() < 3


def test_grayscale_conversion_is_the_recipes(tmp_path):
    """The Space's copy of the rule must not drift from training/data.py's, which made the training images."""
    from training.data import to_grayscale as recipe_to_grayscale

    rng = np.random.default_rng(0)
    images = [
        Image.fromarray(rng.integers(0, 4096, (16, 16), dtype=np.uint16).astype(np.int32), mode="I"),
        Image.fromarray(rng.integers(0, 65536, (16, 16), dtype=np.uint16).astype(np.int32), mode="I"),
        Image.fromarray(rng.integers(0, 256, (16, 16, 4), dtype=np.uint8), mode="RGBA"),
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8), mode="RGB"),
        Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8), mode="L"),
    ]
    for image in images:
        np.testing.assert_array_equal(np.asarray(to_grayscale(image)), np.asarray(recipe_to_grayscale(image)))


def test_a_16_bit_png_is_scaled_by_its_bit_depth_not_clipped(tmp_path):
    values = np.zeros((8, 8), dtype=np.uint16)
    values[:, 4:] = 4095  # 12 bits in a 16-bit PNG
    buffer = io.BytesIO()
    Image.fromarray(values).save(buffer, format="PNG")
    (tmp_path / "deep.png").write_bytes(buffer.getvalue())
    pixels = pixels_of(read_radiograph(tmp_path / "deep.png"))
    assert pixels[0, 0] == 0 and pixels[0, 7] == 255


def test_a_large_image_is_shrunk_to_the_release_size_by_area_averaging(tmp_path):
    Image.new("L", (2048, 1536), 77).save(tmp_path / "big.png")
    radiograph = read_radiograph(tmp_path / "big.png")
    assert radiograph.image.size == (1365, RELEASE_SIDE)
    assert np.asarray(radiograph.image).min() == np.asarray(radiograph.image).max() == 77
    assert any("Shrunk from 2048 × 1536" in note for note in radiograph.notes)


@pytest.mark.parametrize("name, content, message", [
    ("notes.png", b"not an image at all", r"'notes.png' is neither an image \(PNG, JPEG\) nor a DICOM file"),
    ("empty.jpg", b"", r"'empty.jpg' is empty"),
    ("cut.png", None, r"'cut.png' is a damaged image file"),
])
def test_files_that_are_not_images_get_a_message_naming_them(tmp_path, name, content, message):
    if content is None:
        buffer = io.BytesIO()
        Image.fromarray(grey_levels(64, 64)).save(buffer, format="PNG")
        content = buffer.getvalue()[:-40]
    (tmp_path / name).write_bytes(content)
    with pytest.raises(UnreadableImageError, match=message):
        read_radiograph(tmp_path / name)
