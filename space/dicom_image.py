"""A DICOM radiograph as an 8-bit grayscale image like NIH's PNGs, and the few tags about it that identify no one.

:func:`read_dicom` follows the DICOM grayscale pipeline (PS3.4 N.2.1.1) through ``pydicom.pixels``:

1. the stored values (``BitsStored`` 1 to 16, signed or unsigned, any transfer syntax pydicom can decode);
2. the modality LUT or the rescale slope and intercept (``apply_modality_lut``);
3. the VOI LUT sequence, else the first window centre and width (``apply_voi_lut``, which prefers the LUT as the
   standard does); without either, the image's own minimum and maximum stand in for the window;
4. the VOI output range mapped linearly onto 0-255 and rounded: 8 bits, as NIH's images;
5. MONOCHROME1 (where the smallest value is white) inverted, so that air is dark as in NIH's images; a presentation
   LUT shape of ``INVERSE`` inverts once more.

Of the tags, only :data:`SHOWN_TAGS` (view position, sex, age, modality, body part) are read, plus the pixel layout.
Names, IDs, dates, UIDs, institutions and every other tag are never copied out of the file, and the parsed file is
dropped before :func:`read_dicom` returns. An age of 90 years or more is shown as "90 years or older", since such
ages are rare enough to identify someone (HIPAA's Safe Harbor rule treats them so).
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
from PIL import Image

from radiograph import Radiograph, UnreadableImageError

SHOWN_TAGS: Dict[str, str] = {
    "ViewPosition": "View position",
    "PatientSex": "Sex",
    "PatientAge": "Age",
    "Modality": "Modality",
    "BodyPartExamined": "Body part",
}
"""DICOM keyword → name on the page: the only tags whose values leave the file."""

PIXEL_TAGS = ("Pixels", "Display")
"""The two rows :func:`read_dicom` adds about the pixels: their layout and the window that was applied."""

_SEX = {"M": "male", "F": "female", "O": "other"}
_AGE_UNITS = {"D": "days", "W": "weeks", "M": "months", "Y": "years"}
_OLDEST_SHOWN_AGE = 89


def read_dicom(path: Path, name: str) -> Radiograph:
    """Read one single-frame DICOM radiograph.

    Args:
        path: the DICOM file.
        name: the name to use in messages.

    Returns:
        A :class:`~radiograph.Radiograph` with ``kind="DICOM"``, the 8-bit image (air dark), the tags of
        :data:`SHOWN_TAGS` that the file has plus :data:`PIXEL_TAGS`, and notes on the window and inversion.

    Raises:
        UnreadableImageError: if the file is not DICOM, holds no pixel data, holds several frames, or its pixels can't
            be decoded (for example a compression no installed decoder handles).
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        dataset = pydicom.dcmread(path)
    except InvalidDicomError:
        raise UnreadableImageError(
            f"'{name}' is not a DICOM file: it has no DICOM header (the 'DICM' marker after the 128-byte preamble). "
            "Upload a chest X-ray as DICOM, PNG or JPEG."
        ) from None
    except Exception as error:  # noqa: BLE001 - truncated files fail deep inside pydicom in many ways
        raise UnreadableImageError(f"'{name}' is a damaged DICOM file ({_first_line(error)}).") from None
    tags = _shown_tags(dataset)
    pixels, pixel_tags, notes = _eight_bit_pixels(dataset, name)
    del dataset  # nothing else of the file is kept
    return Radiograph(image=Image.fromarray(pixels, mode="L"), kind="DICOM", tags={**tags, **pixel_tags},
                      notes=tuple(notes))


def _eight_bit_pixels(dataset, name: str) -> Tuple[np.ndarray, Dict[str, str], List[str]]:
    """The (H, W) uint8 image, the pixel rows of the tag table, and notes: steps 1-5 of the module docstring."""
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    if not any(keyword in dataset for keyword in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise UnreadableImageError(
            f"'{name}' holds no image (it has no Pixel Data element; it may be a report or a DICOMDIR). Upload the "
            "X-ray image itself."
        )
    frames = int(dataset.get("NumberOfFrames") or 1)
    if frames > 1:
        raise UnreadableImageError(
            f"'{name}' holds {frames} frames (a series or a cine loop). Upload a single chest radiograph."
        )
    photometric = str(dataset.get("PhotometricInterpretation", "")).strip().upper()
    try:
        stored = dataset.pixel_array
    except Exception as error:  # noqa: BLE001 - a missing decoder, a missing tag, or bytes that don't add up
        syntax = getattr(getattr(dataset, "file_meta", None), "TransferSyntaxUID", None)
        encoding = f" (encoded as {syntax.name})" if syntax is not None else ""
        raise UnreadableImageError(
            f"'{name}': its pixels cannot be decoded{encoding}: {_first_line(error)}"
        ) from None
    layout = _pixel_layout(dataset, stored, photometric)
    if stored.ndim == 3:  # colour (RGB, or YBR that pydicom converted to RGB): no VOI applies to colour images
        gray = np.asarray(Image.fromarray(np.ascontiguousarray(stored.astype(np.uint8))).convert("L"))
        return gray, {"Pixels": layout, "Display": "colour image, converted to grayscale"}, [
            "A colour DICOM image was converted to grayscale."
        ]

    notes: List[str] = []
    values = apply_modality_lut(stored, dataset)
    kind = _voi_kind(dataset)
    if kind == "lut" and values.dtype.kind == "f" and np.array_equal(values, np.round(values)):
        values = values.astype(np.int64)  # a VOI LUT is indexed by integers (a unit rescale makes them floats)
    output, low, high, display = None, 0.0, 0.0, ""
    if kind is not None:
        try:
            output = apply_voi_lut(values, dataset, index=0)
            low, high = _voi_output_range(dataset, kind)
            display = _describe_voi(dataset, kind)
            notes.append(f"The file's {display} was applied.")
        except (ValueError, NotImplementedError, AttributeError, IndexError) as error:
            notes.append(f"The file's VOI LUT or window could not be applied ({_first_line(error)}); the image's "
                         "full range is shown instead.")
            output = None
    if output is None:
        output = np.asarray(values, dtype=np.float64)
        low, high = (float(output.min()), float(output.max())) if output.size else (0.0, 0.0)
        display = "full range of the pixel values (the file gives no window)" if kind is None else "full range"
    pixels = _scale_to_eight_bits(np.asarray(output, dtype=np.float64), low, high)

    inverted = photometric == "MONOCHROME1"
    if str(dataset.get("PresentationLUTShape", "")).strip().upper() == "INVERSE":
        inverted = not inverted
    if inverted:
        pixels = 255 - pixels
        notes.append("The image was inverted: the file stores it with the smallest value white (MONOCHROME1).")
    return pixels, {"Pixels": layout, "Display": display}, notes


def _voi_kind(dataset) -> Optional[str]:
    """``"lut"``, ``"window"`` or None, chosen as ``pydicom.pixels.apply_voi_lut`` chooses (the LUT first)."""
    sequence = dataset.get("VOILUTSequence")
    if sequence and None not in (sequence[0].get("LUTDescriptor"), sequence[0].get("LUTData")):
        return "lut"
    if dataset.get("WindowCenter") is not None and dataset.get("WindowWidth") is not None:
        return "window"
    return None


def _voi_output_range(dataset, kind: str) -> Tuple[float, float]:
    """The lowest and highest value the VOI stage can output, which become 0 and 255.

    For a window, pydicom defines the output range from ``BitsStored``, the pixel representation, the rescale and
    the modality LUT; asking pydicom to window two values far outside any window gives its two ends and keeps that
    rule in one place. For a VOI LUT, its smallest and largest entries (the descriptor's nominal bit depth is often
    wider than the entries use).
    """
    from pydicom.pixels import apply_voi, apply_windowing

    if kind == "window":
        with np.errstate(over="ignore"):  # the SIGMOID function overflows to its asymptotes, as wanted
            ends = apply_windowing(np.array([-1e300, 1e300]), dataset, index=0)
        return float(ends[0]), float(ends[1])
    descriptor = dataset.VOILUTSequence[0].LUTDescriptor
    entries = int(descriptor[0]) or 2**16
    first = int(descriptor[1])
    lut = apply_voi(np.arange(first, first + entries), dataset, index=0)
    return float(lut.min()), float(lut.max())


def _scale_to_eight_bits(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """``values`` with ``low`` → 0 and ``high`` → 255, rounded half up and clipped; all 0 when ``high <= low``."""
    if not high > low:
        return np.zeros(values.shape, dtype=np.uint8)
    scaled = (values - low) * (255.0 / (high - low))
    return np.clip(np.floor(scaled + 0.5), 0, 255).astype(np.uint8)


def _describe_voi(dataset, kind: str) -> str:
    if kind == "lut":
        explanation = str(dataset.VOILUTSequence[0].get("LUTExplanation", "") or "").strip()
        return f"VOI LUT ({explanation})" if explanation else "VOI LUT"
    centre, width = _first_value(dataset.WindowCenter), _first_value(dataset.WindowWidth)
    function = str(dataset.get("VOILUTFunction", "") or "LINEAR").strip().upper()
    text = f"window (centre {centre:g}, width {width:g}"
    return text + (")" if function == "LINEAR" else f", {function})")


def _first_value(element_value) -> float:
    try:
        return float(element_value[0])
    except TypeError:  # a single value
        return float(element_value)


def _pixel_layout(dataset, stored: np.ndarray, photometric: str) -> str:
    height, width = stored.shape[:2]
    bits = dataset.get("BitsStored")
    parts = [f"{width} × {height}"]
    if bits is not None:
        parts.append(f"{int(bits)} bits stored")
    if photometric:
        parts.append(photometric)
    return ", ".join(parts)


def _shown_tags(dataset) -> Dict[str, str]:
    """Display name → value for the :data:`SHOWN_TAGS` present and non-empty in ``dataset``."""
    shown: Dict[str, str] = {}
    for keyword, label in SHOWN_TAGS.items():
        value = str(dataset.get(keyword, "") or "").strip()
        if not value:
            continue
        if keyword == "PatientSex":
            value = _SEX.get(value.upper(), value)
        elif keyword == "PatientAge":
            value = _age(value)
        shown[label] = value
    return shown


def _age(value: str) -> str:
    """A DICOM age string (``"058Y"``) as words; ``"90 years or older"`` from 90 years on."""
    number, unit = value[:-1], value[-1:].upper()
    if not number.isdigit() or unit not in _AGE_UNITS:
        return value
    count = int(number)
    if unit == "Y" and count > _OLDEST_SHOWN_AGE:
        return f"{_OLDEST_SHOWN_AGE + 1} years or older"
    return f"{count} {_AGE_UNITS[unit]}"


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]
