"""An uploaded chest X-ray (PNG, JPEG or DICOM) as the 8-bit grayscale image the model was trained on.

NIH's release, which the recipe trains on, stores each X-ray as an 8-bit grayscale PNG of 1024 × 1024 pixels with
air dark and bone bright. :func:`read_radiograph` turns an upload into the same kind of image:

- the file type comes from its content (a DICOM file is recognised by its ``DICM`` marker or a ``.dcm`` name, an image
  by what Pillow finds in it), so a DICOM file without an extension works and a text file named ``.png`` is refused;
- PNG, JPEG and the other formats Pillow reads are turned to grayscale the way the recipe's ``to_grayscale`` does
  (``training/data.py``): 16-bit images are scaled by their bit depth rather than clipped, transparency is laid over
  black, JPEG's EXIF orientation is applied;
- DICOM goes through :func:`dicom_image.read_dicom` (modality LUT, VOI LUT or window, MONOCHROME1 inversion);
- an image whose shorter side is above 1024 pixels is shrunk to 1024 by area averaging, as the release's images are.

Anything else raises :class:`UnreadableImageError`, whose message names the file and is meant for the page.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Dict, Optional, Tuple, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

RELEASE_SIDE = 1024
"""The side of NIH's images, in pixels: larger uploads are shrunk to it."""

DICOM_SUFFIXES = (".dcm", ".dicom", ".dic")
_DICOM_MARKER_OFFSET = 128  # a DICOM file opens with a 128-byte preamble, then b"DICM"


class UnreadableImageError(ValueError):
    """The upload is not an image or DICOM file that can be read; the message names it and says what to do."""


@dataclass(frozen=True)
class Radiograph:
    """One X-ray, ready for the model.

    Attributes:
        image: 8-bit grayscale (mode ``"L"``), air dark, shorter side at most :data:`RELEASE_SIDE`.
        kind: ``"DICOM"`` or the image format Pillow found (``"PNG"``, ``"JPEG"``, ...).
        tags: display name → value for the table on the page; only the non-identifying DICOM tags of
            :data:`dicom_image.SHOWN_TAGS` and a description of the pixels. Empty for PNG and JPEG.
        notes: what was done to the pixels on the way, one sentence each (window applied, image inverted, shrunk).
    """

    image: Image.Image
    kind: str
    tags: Dict[str, str] = field(default_factory=dict)
    notes: Tuple[str, ...] = ()


def read_radiograph(path: Union[str, Path], name: Optional[str] = None) -> Radiograph:
    """Read an uploaded file as a :class:`Radiograph`.

    Args:
        path: the file.
        name: the name to use in messages (the name the user uploaded); defaults to ``path``'s name.

    Raises:
        UnreadableImageError: if the file is neither an image Pillow can decode nor a DICOM file with readable
            pixels; the message names the file and says what to upload instead.
    """
    path = Path(path)
    name = name or path.name
    try:
        with open(path, "rb") as file:
            head = file.read(_DICOM_MARKER_OFFSET + 4)
    except OSError as error:
        raise UnreadableImageError(f"'{name}' could not be opened ({error.strerror or error}).") from None
    if not head:
        raise UnreadableImageError(f"'{name}' is empty. Upload a chest X-ray as PNG, JPEG or DICOM (.dcm).")
    if head[_DICOM_MARKER_OFFSET:] == b"DICM" or path.suffix.lower() in DICOM_SUFFIXES or (
        name.lower().endswith(DICOM_SUFFIXES)
    ):
        from dicom_image import read_dicom  # pydicom is only imported for DICOM uploads

        radiograph = read_dicom(path, name)
    else:
        radiograph = _read_picture(path, name)
    return shrink_to_release_size(radiograph)


def to_grayscale(image: Image.Image) -> Image.Image:
    """``image`` as 8-bit grayscale, by the recipe's rule (``training.data.to_grayscale``; a test keeps them equal).

    16-bit and 32-bit integer images are divided by the largest value of the smallest bit depth among 8, 10, 12, 14
    and 16 that holds their maximum, so a 12-bit image stored in 16 bits keeps its contrast; images with transparency
    are laid over black; colour images are converted with Pillow's ITU-R 601-2 luma.
    """
    if image.mode == "L":
        return image
    if image.mode.startswith("I"):
        values = np.asarray(image, dtype=np.float64)
        top = float(values.max()) if values.size else 0.0
        bits = next((b for b in (8, 10, 12, 14, 16) if top < 2**b), 32)
        scaled = np.clip(values / (2**bits - 1) * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(scaled, mode="L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (0, 0, 0, 255))
        image = Image.alpha_composite(background, image)
    return image.convert("L")


def shrink_to_release_size(radiograph: Radiograph) -> Radiograph:
    """``radiograph`` with its shorter side shrunk to :data:`RELEASE_SIDE` by area averaging, if it is larger."""
    width, height = radiograph.image.size
    shorter = min(width, height)
    if shorter <= RELEASE_SIDE:
        return radiograph
    scale = RELEASE_SIDE / shorter
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    image = radiograph.image.resize(size, Image.Resampling.BOX)
    note = f"Shrunk from {width} × {height} to {size[0]} × {size[1]} pixels by area averaging, as NIH's images are."
    return replace(radiograph, image=image, notes=radiograph.notes + (note,))


def _read_picture(path: Path, name: str) -> Radiograph:
    """A PNG, JPEG or other Pillow-readable image; the first frame of an animated one."""
    try:
        with Image.open(path) as picture:
            kind = picture.format or "image"
            picture.load()
            image = ImageOps.exif_transpose(picture) or picture
            image = to_grayscale(image)
    except UnidentifiedImageError:
        raise UnreadableImageError(
            f"'{name}' is neither an image (PNG, JPEG) nor a DICOM file. Upload a chest X-ray as PNG, JPEG or "
            "DICOM (.dcm)."
        ) from None
    except Image.DecompressionBombError:
        raise UnreadableImageError(
            f"'{name}' is too large to decode safely (more than {Image.MAX_IMAGE_PIXELS:,} pixels). Upload a smaller "
            "export of the X-ray."
        ) from None
    except (OSError, SyntaxError, ValueError) as error:  # truncated or corrupt files
        raise UnreadableImageError(f"'{name}' is a damaged image file ({_first_line(error)}); upload it again.") from None
    notes = () if kind in ("PNG", "JPEG") else (f"Read as {kind}.",)
    return Radiograph(image=image, kind=kind, notes=notes)


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]
