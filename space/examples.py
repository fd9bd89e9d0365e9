"""Example X-rays for the page: synthetic ones drawn by ``nih_chestxray14.sample``, never a real patient's.

A published Space has them in ``examples/`` beside ``app.py`` (written there at publish time); a clone of the project
draws them at start-up into a temporary folder. One of them is a DICOM file (12 bits stored, MONOCHROME1, with a
window), so that the DICOM path can be tried without a DICOM file of one's own.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path
from typing import List, Sequence, Tuple

EXAMPLES_FOLDER = "examples"

EXAMPLE_FINDINGS: Tuple[Tuple[str, ...], ...] = (("Cardiomegaly",), ("Effusion", "Nodule"), ())
"""The findings planted in each PNG example (the last one has none)."""

EXAMPLE_SIZE = 512
"""Side of the examples, in pixels."""

DICOM_EXAMPLE_FINDINGS: Tuple[str, ...] = ("Pneumothorax",)


def example_files(app_folder: Path) -> List[Path]:
    """The examples to offer: ``app_folder/examples/*`` when it exists, else fresh ones in a temporary folder
    (removed when the process ends).

    Returns an empty list when neither is possible (no ``examples/`` and ``nih_chestxray14`` not installed).
    """
    folder = Path(app_folder) / EXAMPLES_FOLDER
    if folder.is_dir():
        return sorted(path for path in folder.iterdir() if path.is_file())
    drawn = Path(tempfile.mkdtemp(prefix="chestxray14-examples-"))
    atexit.register(shutil.rmtree, drawn, ignore_errors=True)
    try:
        return write_examples(drawn)
    except ImportError:
        return []


def write_examples(folder: Path, size: int = EXAMPLE_SIZE) -> List[Path]:
    """Draw the examples into ``folder`` (created if needed) and return their paths.

    Raises:
        ImportError: if ``nih_chestxray14`` (which draws them) or pydicom is not installed.
    """
    from nih_chestxray14.sample import encode_png, synthetic_xray

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for seed, findings in enumerate(EXAMPLE_FINDINGS):
        pixels, _ = synthetic_xray(size, seed=seed, findings=findings)
        path = folder / f"synthetic-{_slug(findings)}.png"
        path.write_bytes(encode_png(pixels))
        paths.append(path)
    pixels, _ = synthetic_xray(size, seed=len(EXAMPLE_FINDINGS), findings=DICOM_EXAMPLE_FINDINGS)
    path = folder / f"synthetic-{_slug(DICOM_EXAMPLE_FINDINGS)}-monochrome1.dcm"
    write_monochrome1_dicom(path, pixels)
    paths.append(path)
    return paths


def write_monochrome1_dicom(path: Path, pixels) -> None:
    """Write (H, W) uint8 ``pixels`` as a 12-bit MONOCHROME1 DX image whose window shows them as they are.

    The file has no patient, study or institution tags: only a view position, a sex and an age to show.
    """
    import numpy as np
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    digital_xray = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage - For Presentation
    instance = generate_uid(entropy_srcs=[path.name])
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = digital_xray
    meta.MediaStorageSOPInstanceUID = instance
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = Dataset()
    dataset.file_meta = meta
    dataset.SOPClassUID, dataset.SOPInstanceUID = digital_xray, instance
    dataset.Modality, dataset.ViewPosition, dataset.BodyPartExamined = "DX", "PA", "CHEST"
    dataset.PatientSex, dataset.PatientAge = "F", "045Y"
    height, width = pixels.shape
    dataset.Rows, dataset.Columns = height, width
    dataset.SamplesPerPixel, dataset.PhotometricInterpretation = 1, "MONOCHROME1"
    dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit, dataset.PixelRepresentation = 16, 12, 11, 0
    stored = (4095 - np.round(pixels.astype(np.float64) * (4095 / 255))).astype(np.uint16)
    dataset.WindowCenter, dataset.WindowWidth = 2048, 4096
    dataset.PixelData = stored.tobytes()
    dataset.save_as(path, enforce_file_format=True)


def _slug(findings: Sequence[str]) -> str:
    return "-".join(name.lower().replace("_", "-") for name in findings) or "no-finding"
