"""DICOM files for the Space's tests, written with pydicom: stored pixels, LUTs and tags chosen by each test."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np

IDENTIFYING = {
    "PatientName": "Doe^Janeth^Quincey",
    "PatientID": "MRN-7781235",
    "PatientBirthDate": "19470203",
    "StudyDate": "20240517",
    "SeriesDate": "20240517",
    "AcquisitionDate": "20240516",
    "ContentDate": "20240518",
    "StudyTime": "101530",
    "AccessionNumber": "ACC-55-0192",
    "InstitutionName": "Saint Elsewhere General",
    "ReferringPhysicianName": "House^Gregory",
    "OperatorsName": "Tech^Tina",
    "OtherPatientIDs": "OTHER-4411",
    "PatientAddress": "12 Harbour Lane",
    "StudyID": "STUDY-8812",
}
"""Identifying tags with values that appear nowhere else, so a test can look for them in whatever the app shows."""

NOT_IDENTIFYING = {"ViewPosition": "PA", "PatientSex": "F", "PatientAge": "058Y", "Modality": "DX",
                   "BodyPartExamined": "CHEST"}

_DIGITAL_XRAY = "1.2.840.10008.5.1.4.1.1.1.1"


def write_dicom(
    path: Path,
    stored: np.ndarray,
    *,
    bits_stored: int,
    photometric: str = "MONOCHROME2",
    signed: bool = False,
    window: Optional[Sequence[float]] = None,
    voi_function: Optional[str] = None,
    voi_lut: Optional[Sequence[int]] = None,
    voi_lut_first: int = 0,
    voi_lut_bits: int = 16,
    rescale: Optional[Sequence[float]] = None,
    tags: Mapping[str, Any] = NOT_IDENTIFYING,
    pixel_data: bool = True,
    frames: int = 1,
) -> Path:
    """Write ``stored`` ((H, W), or (frames, H, W)) as an uncompressed DICOM file and return ``path``.

    Args:
        bits_stored: BitsStored; BitsAllocated is 8 when it is 8, else 16.
        window: (centre, width), written as WindowCenter and WindowWidth.
        voi_function: VOILUTFunction (LINEAR, LINEAR_EXACT, SIGMOID).
        voi_lut: the entries of a VOI LUT sequence item, mapping stored value ``voi_lut_first + i`` to ``voi_lut[i]``.
        rescale: (slope, intercept).
        tags: other tags by keyword.
        pixel_data: False leaves Pixel Data out.
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence as DicomSequence
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = _DIGITAL_XRAY
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = Dataset()
    dataset.file_meta = meta
    dataset.SOPClassUID, dataset.SOPInstanceUID = _DIGITAL_XRAY, meta.MediaStorageSOPInstanceUID
    for keyword, value in tags.items():
        setattr(dataset, keyword, value)
    height, width = stored.shape[-2:]
    allocated = 8 if bits_stored <= 8 else 16
    dataset.Rows, dataset.Columns = height, width
    dataset.SamplesPerPixel, dataset.PhotometricInterpretation = 1, photometric
    dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit = allocated, bits_stored, bits_stored - 1
    dataset.PixelRepresentation = 1 if signed else 0
    if frames > 1:
        dataset.NumberOfFrames = frames
    if window is not None:
        dataset.WindowCenter, dataset.WindowWidth = window
    if voi_function is not None:
        dataset.VOILUTFunction = voi_function
    if voi_lut is not None:
        item = Dataset()
        item.LUTDescriptor = [len(voi_lut), voi_lut_first, voi_lut_bits]
        item.add_new("LUTData", "US", [int(value) for value in voi_lut])  # LUT Data's VR is US or OW
        item.LUTExplanation = "test curve"
        dataset.VOILUTSequence = DicomSequence([item])
    if rescale is not None:
        dataset.RescaleSlope, dataset.RescaleIntercept = rescale
        dataset.RescaleType = "US"
    if pixel_data:
        dtype = {(8, False): np.uint8, (8, True): np.int8, (16, False): np.uint16, (16, True): np.int16}
        dataset.PixelData = np.ascontiguousarray(stored, dtype=dtype[(allocated, signed)]).tobytes()
    dataset.save_as(path, enforce_file_format=True)
    return Path(path)


def exact_window(low: int, step: int):
    """A LINEAR window (centre, width) under which stored value ``low + step * p`` shows as grey level ``p``.

    DICOM's LINEAR function maps x to ((x - (c - 0.5)) / (w - 1) + 0.5) of the output range; with
    w - 1 = 255 * step and c - 0.5 - (w - 1) / 2 = low, that is p / 255, which 8-bit scaling turns back into p.
    """
    width = 255 * step + 1
    centre = low + (width - 1) / 2 + 0.5
    return centre, width
