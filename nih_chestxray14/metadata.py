"""NIH's metadata files → typed rows: the entry CSV (every header variant in the wild), the split lists, the box CSV.

This is the only module that knows the quirks of NIH's CSVs:

- the entry CSV is ``Data_Entry_2017_v2020.csv`` (NIH's current file) or ``Data_Entry_2017.csv`` (the older file that
  Kaggle ships); a ``.csv.gz`` copy of either is read as well;
- its header says ``Patient Gender`` or ``Patient Sex``;
- ``OriginalImage[Width,Height]`` and ``OriginalImagePixelSpacing[x,y]`` are two columns each;
- some copies end every line with a comma, which gives an empty 12th column (pandas calls it ``Unnamed: 11``);
- ``BBox_List_2017.csv`` has the header ``Image Index,Finding Label,Bbox [x,y,w,h],,,`` and spells Infiltration
  ``Infiltrate``;
- ``Follow-up #`` is not always the suffix of the file name: they differ in 24,106 of the 112,120 rows of
  ``Data_Entry_2017_v2020.csv`` (``00000003_001.png`` has ``Follow-up #`` 0, ``00000003_002.png`` has 1, …). Both
  are NIH's: ``follow_up`` keeps the column's value, and the file name stays the image's identity.

Rows are checked against rules that NIH's own files always satisfy, and a release that breaks one is refused rather
than built wrong: ``Patient ID`` equals the 8-digit patient number that starts ``Image Index`` (the patient-wise split
rests on it); integers fit the dataset's ``int32`` columns; image sizes and pixel spacings are positive and finite;
boxes have finite coordinates, ``x, y >= 0`` and positive ``w, h``; every name in the split lists has a row.

Every parse error raises :class:`~nih_chestxray14.errors.MetadataError` (or
:class:`~nih_chestxray14.labels.UnknownFindingError` for a finding name) naming the file and line.
"""

from __future__ import annotations

import logging
import math
import os
import re
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from .errors import MetadataError, MissingMetadataError
from .labels import UnknownFindingError, canonical_finding, parse_findings
from .text_files import read_csv_rows, read_lines

logger = logging.getLogger(__name__)

ENTRY_CSV_NAMES: Tuple[str, ...] = (
    "Data_Entry_2017_v2020.csv",
    "Data_Entry_2017_v2020.csv.gz",
    "Data_Entry_2017.csv",
    "Data_Entry_2017.csv.gz",
)
"""Entry CSV names, in order of preference (NIH's 2020 revision first)."""
TRAIN_VAL_LIST = "train_val_list.txt"
TEST_LIST = "test_list.txt"
BBOX_CSV_NAMES: Tuple[str, ...] = ("BBox_List_2017.csv", "BBox_List_2017.csv.gz")

NIH_RELEASE_PAGE = "https://nihcc.app.box.com/v/ChestXray-NIHCC"

IMAGE_NAME = re.compile(r"^\d{8}_\d{3}\.png$")
"""NIH's image names: 8-digit patient id, underscore, 3-digit follow-up, ``.png``."""

# Entry CSV header cell (stripped, lower-cased) → field. "OriginalImage[Width,Height]" is two cells once split.
_ENTRY_COLUMNS = {
    "image index": "image_id",
    "finding labels": "findings",
    "follow-up #": "follow_up",
    "patient id": "patient_id",
    "patient age": "age",
    "patient gender": "sex",
    "patient sex": "sex",
    "view position": "view_position",
    "originalimage[width": "original_width",
    "height]": "original_height",
    "originalimagepixelspacing[x": "pixel_spacing_x",
    "y]": "pixel_spacing_y",
}
_REQUIRED = (
    "image_id", "findings", "follow_up", "patient_id", "age", "sex", "view_position",
    "original_width", "original_height", "pixel_spacing_x", "pixel_spacing_y",
)
_AGE = re.compile(r"^(\d{1,3})[Yy]?$")  # some redistributions write ages as "058Y"
_INT32_MAX = 2**31 - 1


@dataclass(frozen=True)
class EntryRow:
    """One row of the entry CSV.

    Attributes:
        image_id: ``"00000001_000.png"``.
        findings: canonical finding names in :data:`~nih_chestxray14.labels.LABELS` order; ``()`` for No Finding.
        follow_up, patient_id, age: integers as in the CSV (ages above 95 occur only in the older 2017 file).
        sex: ``"M"`` or ``"F"``. view_position: ``"PA"`` or ``"AP"``.
        original_width, original_height: the detector image's size in pixels, before NIH resized it to 1024 × 1024.
        pixel_spacing_x, pixel_spacing_y: the detector's pixel spacing in mm.
    """

    image_id: str
    findings: Tuple[str, ...]
    follow_up: int
    patient_id: int
    age: int
    sex: str
    view_position: str
    original_width: int
    original_height: int
    pixel_spacing_x: float
    pixel_spacing_y: float


BOX_FRAME = 1024
"""Side of the frame that ``BBox_List_2017.csv``'s coordinates are in: NIH's 1024 x 1024 PNGs, whatever the config."""


@dataclass(frozen=True)
class BoundingBox:
    """One expert box of ``BBox_List_2017.csv``: canonical finding name and x, y, w, h in pixels of the 1024 image."""

    finding: str
    x: float
    y: float
    w: float
    h: float


@dataclass
class ReleaseMetadata:
    """All metadata of one release.

    Attributes:
        entries: image name → :class:`EntryRow`, in the CSV's order.
        train_val, test: names from ``train_val_list.txt`` and ``test_list.txt``.
        boxes: image name → its boxes (only images that have any).
        entry_csv, train_val_list, test_list, bbox_csv: the paths read (``bbox_csv`` is ``None`` when absent).
    """

    entries: Dict[str, EntryRow]
    train_val: List[str]
    test: List[str]
    boxes: Dict[str, List[BoundingBox]] = field(default_factory=dict)
    entry_csv: str = ""
    train_val_list: str = ""
    test_list: str = ""
    bbox_csv: Optional[str] = None


def _entry_columns(path: str, header: Sequence[str]) -> Dict[str, int]:
    columns: Dict[str, int] = {}
    for index, cell in enumerate(header):
        name = _ENTRY_COLUMNS.get(cell.strip().lower())
        if name is not None and name not in columns:
            columns[name] = index
    missing = [name for name in _REQUIRED if name not in columns]
    if missing:
        raise MetadataError(
            f"{path}, line 1: the header lacks {', '.join(missing)} (found: {','.join(header)!r}); expected NIH's "
            "header 'Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
            "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]'"
        )
    return columns


def _parse_entry(path: str, line: int, cells: Sequence[str], columns: Mapping[str, int]) -> EntryRow:
    where = f"{path}, line {line}"
    if len(cells) <= max(columns.values()):
        raise MetadataError(f"{where}: expected at least {max(columns.values()) + 1} columns, found {len(cells)}")

    def cell(name: str) -> str:
        return cells[columns[name]].strip()

    def integer(name: str, lowest: int) -> int:
        try:
            value = int(cell(name))
        except ValueError:
            raise MetadataError(f"{where}: {name} must be an integer, got {cell(name)!r}") from None
        if not lowest <= value <= _INT32_MAX:
            raise MetadataError(f"{where}: {name} {value} is out of range (rule: {lowest} <= {name} <= {_INT32_MAX})")
        return value

    def positive_number(name: str) -> float:
        try:
            value = float(cell(name))
        except ValueError:
            raise MetadataError(f"{where}: {name} must be a number, got {cell(name)!r}") from None
        if not (math.isfinite(value) and value > 0):
            raise MetadataError(f"{where}: {name} is {cell(name)!r} (rule: a pixel spacing is positive and finite)")
        return value

    image_id = cell("image_id")
    if not IMAGE_NAME.match(image_id):
        raise MetadataError(f"{where}: image name {image_id!r} is not of NIH's form NNNNNNNN_NNN.png")
    try:
        findings = tuple(parse_findings(cell("findings")))
    except UnknownFindingError as error:
        raise UnknownFindingError(f"{where} ({image_id}): {error}") from None
    age_match = _AGE.match(cell("age"))
    if age_match is None:
        raise MetadataError(f"{where}: age must be a whole number of years, got {cell('age')!r}")
    sex = cell("sex").upper()
    if sex not in ("M", "F"):
        raise MetadataError(f"{where}: sex must be M or F, got {cell('sex')!r}")
    view = cell("view_position").upper()
    if view not in ("PA", "AP"):
        raise MetadataError(f"{where}: view position must be PA or AP, got {cell('view_position')!r}")
    patient_id = integer("patient_id", 0)
    if patient_id != int(image_id[:8]):
        raise MetadataError(
            f"{where}: Patient ID {patient_id} differs from patient {image_id[:8]} in the file name {image_id} (rule: "
            "Patient ID equals the first 8 digits of Image Index, which keep each patient in one split); "
            "use NIH's entry CSV unchanged"
        )
    return EntryRow(
        image_id=image_id,
        findings=findings,
        follow_up=integer("follow_up", 0),
        patient_id=patient_id,
        age=int(age_match.group(1)),
        sex=sex,
        view_position=view,
        original_width=integer("original_width", 1),
        original_height=integer("original_height", 1),
        pixel_spacing_x=positive_number("pixel_spacing_x"),
        pixel_spacing_y=positive_number("pixel_spacing_y"),
    )


def read_entries(path: str) -> Dict[str, EntryRow]:
    """Read the entry CSV (any header variant; ``.csv`` or ``.csv.gz``) into image name → :class:`EntryRow`.

    Raises:
        MissingMetadataError: if ``path`` does not exist.
        MetadataError: for an unreadable file, a header without NIH's columns, a malformed or impossible value (the
            rules are in the module docstring) or a repeated image.
        UnknownFindingError: for a finding name that is not one of the 14 (message names file, line and image).
    """
    path = os.fspath(path)
    rows = read_csv_rows(path, MetadataError, "download it again from NIH")
    if not rows:
        raise MetadataError(f"{path} is empty; download it again from NIH")
    columns = _entry_columns(path, rows[0])
    entries: Dict[str, EntryRow] = {}
    for line, cells in enumerate(rows[1:], start=2):
        if not any(value.strip() for value in cells):
            continue
        entry = _parse_entry(path, line, cells, columns)
        if entry.image_id in entries:
            raise MetadataError(f"{path}, line {line}: image {entry.image_id} appears twice")
        entries[entry.image_id] = entry
    if not entries:
        raise MetadataError(f"{path} has a header but no rows; download it again from NIH")
    return entries


def read_split_list(path: str) -> List[str]:
    """Read ``train_val_list.txt`` or ``test_list.txt``: one image name per line (blank lines ignored).

    Raises:
        MissingMetadataError: if ``path`` does not exist.
        MetadataError: for a line that is not an image name of NIH's form, or a name listed twice.
    """
    path = os.fspath(path)
    lines = read_lines(path)
    names: List[str] = []
    seen = set()
    for line, text in enumerate(lines, start=1):
        name = text.strip()
        if not name:
            continue
        if not IMAGE_NAME.match(name):
            raise MetadataError(f"{path}, line {line}: {name!r} is not an image name of NIH's form NNNNNNNN_NNN.png")
        if name in seen:
            raise MetadataError(f"{path}, line {line}: {name} is listed twice")
        seen.add(name)
        names.append(name)
    return names


def read_boxes(path: str) -> Dict[str, List[BoundingBox]]:
    """Read ``BBox_List_2017.csv`` into image name → boxes, with finding names made canonical (Infiltrate → Infiltration).

    Raises:
        MissingMetadataError: if ``path`` does not exist.
        MetadataError: for a header that is not NIH's, a row without a name, a finding and four numbers, or an
            impossible box (non-finite, negative ``x``/``y``, ``w`` or ``h`` not positive).
        UnknownFindingError: for a finding name that is not one of the 14.
    """
    path = os.fspath(path)
    rows = read_csv_rows(path, MetadataError, "download it again from NIH")
    if not rows or [cell.strip().lower() for cell in rows[0][:2]] != ["image index", "finding label"]:
        raise MetadataError(
            f"{path}, line 1: expected the header 'Image Index,Finding Label,Bbox [x,y,w,h],,,'"
        )
    boxes: Dict[str, List[BoundingBox]] = {}
    for line, cells in enumerate(rows[1:], start=2):
        values = [value.strip() for value in cells]
        if not any(values):
            continue
        if len(values) < 6 or any(values[6:]):
            raise MetadataError(f"{path}, line {line}: expected image, finding, x, y, w, h; got {cells!r}")
        name, finding = values[0], values[1]
        if not IMAGE_NAME.match(name):
            raise MetadataError(f"{path}, line {line}: {name!r} is not an image name of NIH's form NNNNNNNN_NNN.png")
        try:
            finding = canonical_finding(finding)
        except UnknownFindingError as error:
            raise UnknownFindingError(f"{path}, line {line} ({name}): {error}") from None
        try:
            x, y, w, h = (float(value) for value in values[2:6])
        except ValueError:
            raise MetadataError(f"{path}, line {line}: x, y, w, h must be numbers, got {values[2:6]!r}") from None
        if not (all(map(math.isfinite, (x, y, w, h))) and x >= 0 and y >= 0 and w > 0 and h > 0):
            raise MetadataError(
                f"{path}, line {line} ({name}): box {values[2:6]!r} is impossible (rule: finite numbers, x >= 0, "
                "y >= 0, w > 0, h > 0); use NIH's box CSV unchanged"
            )
        boxes.setdefault(name, []).append(BoundingBox(finding, x, y, w, h))
    return boxes


def _first_existing(directory: str, names: Sequence[str]) -> Optional[str]:
    for name in names:
        candidate = os.path.join(directory, name)
        if os.path.isfile(candidate):
            return candidate
    return None


def read_release_metadata(data_dir: Optional[str]) -> ReleaseMetadata:
    """Find and read every metadata file in ``data_dir``.

    Raises:
        MissingMetadataError: if ``data_dir`` is ``None`` or lacks the entry CSV or a split list.
        MetadataError: if a name in a split list has no row in the entry CSV (a truncated CSV); and see
            :func:`read_entries`, :func:`read_split_list`, :func:`read_boxes`.
        UnknownFindingError: see :func:`read_entries`.
    """
    fetch = (
        f"download Data_Entry_2017_v2020.csv, {TRAIN_VAL_LIST} and {TEST_LIST} (and BBox_List_2017.csv) from "
        f"{NIH_RELEASE_PAGE} into one folder and pass it as data_dir; the image archives are downloaded for you "
        "when that folder has none"
    )
    if data_dir is None:
        raise MissingMetadataError(f"no data_dir given: NIH ChestX-ray14 needs its metadata files; {fetch}")
    data_dir = os.fspath(data_dir)
    if not os.path.isdir(data_dir):
        raise MissingMetadataError(f"data_dir {data_dir} is not a directory; {fetch}")
    entry_csv = _first_existing(data_dir, ENTRY_CSV_NAMES)
    if entry_csv is None:
        raise MissingMetadataError(f"{data_dir} has no {' or '.join(ENTRY_CSV_NAMES[::2])}; {fetch}")
    lists = {}
    for list_name in (TRAIN_VAL_LIST, TEST_LIST):
        found = _first_existing(data_dir, (list_name, list_name + ".gz"))
        if found is None:
            raise MissingMetadataError(f"{os.path.join(data_dir, list_name)} not found; {fetch}")
        lists[list_name] = found
    bbox_csv = _first_existing(data_dir, BBOX_CSV_NAMES)
    entries = read_entries(entry_csv)
    boxes = read_boxes(bbox_csv) if bbox_csv else {}
    train_val = read_split_list(lists[TRAIN_VAL_LIST])
    test = read_split_list(lists[TEST_LIST])
    for list_path, names in ((lists[TRAIN_VAL_LIST], train_val), (lists[TEST_LIST], test)):
        without_row = [name for name in names if name not in entries]
        if without_row:
            raise MetadataError(
                f"{entry_csv} has no row for {len(without_row)} of the {len(names)} images in {list_path} (first: "
                f"{', '.join(without_row[:3])}); every listed image needs one row: the CSV looks truncated or comes "
                "from another release, so download it again from NIH"
            )
    unknown = sorted(set(boxes) - set(entries))
    if unknown:
        logger.warning("%s: ignoring boxes of %d images absent from %s (e.g. %s)", bbox_csv, len(unknown),
                       os.path.basename(entry_csv), unknown[0])
        for name in unknown:
            del boxes[name]
    return ReleaseMetadata(
        entries=entries,
        train_val=train_val,
        test=test,
        boxes=boxes,
        entry_csv=entry_csv,
        train_val_list=lists[TRAIN_VAL_LIST],
        test_list=lists[TEST_LIST],
        bbox_csv=bbox_csv,
    )
