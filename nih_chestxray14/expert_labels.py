"""Google's radiologist-adjudicated labels for 4,374 ChestX-ray14 images → typed rows, matched to ``image_id``.

Majkowska et al., "Chest Radiograph Interpretation with Deep Learning Models: Assessment with Radiologist-adjudicated
Reference Standards and Population-adjusted Evaluation", Radiology 2020, had three radiologists label four findings
(:data:`~.expert_findings.EXPERT_FINDINGS`) on images of NIH's test list and of its train_val list, adjudicating
disagreements. Google publishes the labels beside its copy of NIH's data (Cloud Healthcare API's "NIH Chest X-ray
dataset" page, behind a form), in the folder ``four_findings_expert_labels``:

- ``test_labels.csv`` (1,962 images) and ``validation_labels.csv`` (2,412 images, as Google's page counts them):
  NIH's metadata columns augmented with ``Fracture``, ``Pneumothorax``, ``Airspace opacity`` and ``Nodule or mass``,
  whose cells are ``YES`` or ``NO``; per Google's page a missing value means the image was not adjudicated.
- ``individual_readers.csv``: one row per reader, with ``HEDGE`` answers. Not read here; it is refused by name.

torchxrayvision ships one file instead, ``google2019_nih-chest-xray-labels.csv.gz`` (in ``torchxrayvision/data/``):
the entry CSV's 11 columns (``Image Index`` … ``y]``), the four findings and ``Set Id`` (``test`` or ``val``). In
torchxrayvision 1.5.7 it holds 4,376 images: 1,962 ``test``, all in NIH's ``test_list.txt``, and 2,414 ``val``, all
in ``train_val_list.txt``.

**Which split to score on.** Google's validation images come from NIH's train_val list, so the builder's official
split puts most of them in *train*: with the default ``validation_fraction=0.1``, 2,158 of torchxrayvision's 2,414
``val`` images are in train and 256 in validation; all 1,962 test images are in test. Score a model trained here on
Google's *test* images. CheXNet's random lists (arnoweng/CheXNet) scatter Google's test images: 1,395 in its train,
159 in its validation, 408 in its test. (Counts from torchxrayvision 1.5.7's file, NIH's lists and arnoweng/CheXNet's
``ChestX-ray14/labels/*_list.txt``.) :meth:`ExpertLabels.coverage` counts this for any built dataset.

**Files read.** :func:`read_expert_labels` finds them in ``data_dir`` (Google's first, in its folder or flattened as
``four_findings_expert_labels_test_labels.csv`` …; torchxrayvision's file otherwise), or takes paths. A column is
found by its header name wherever it is; other columns are ignored. The Google set of each row comes from a ``Set Id``
column, else from the file name (``test_labels`` / ``validation_labels``), else from the ``google_split`` argument.
Every error names the file and line.

**Use.** The evaluation joins on ``image_id``::

    expert = read_expert_labels("/data/nih")             # checked against NIH's lists in /data/nih
    match = expert.align(ds["test"]["image_id"])         # Google's test images in this split
    scores = to_expert_findings(probabilities[match.indices])   # (M, 3), MAPPED_FINDINGS order
    match.mapped_labels                                  # (M, 3) expert labels in the same order
    to_expert_findings(nih_labels[match.indices])        # NIH's own labels, mapped the same way
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from .errors import ExpertLabelError, MissingMetadataError
from .expert_findings import EXPERT_FINDINGS, MAPPED_FINDINGS
from .metadata import IMAGE_NAME, ReleaseMetadata, read_release_metadata
from .text_files import read_csv_rows

logger = logging.getLogger(__name__)

GOOGLE_TEST = "test"
GOOGLE_VALIDATION = "validation"
GOOGLE_SPLITS: Tuple[str, ...] = (GOOGLE_TEST, GOOGLE_VALIDATION)
"""Google's two sets, as this module names them (torchxrayvision's ``Set Id`` says ``val``)."""

GOOGLE_FOLDER = "four_findings_expert_labels"
GOOGLE_FILES: Mapping[str, Tuple[str, ...]] = {
    GOOGLE_TEST: (f"{GOOGLE_FOLDER}/test_labels.csv", f"{GOOGLE_FOLDER}_test_labels.csv"),
    GOOGLE_VALIDATION: (f"{GOOGLE_FOLDER}/validation_labels.csv", f"{GOOGLE_FOLDER}_validation_labels.csv"),
}
"""Where Google's two files are looked for in ``data_dir``: in Google's folder, or flattened into one name."""

TORCHXRAYVISION_FILES: Tuple[str, ...] = (
    "google2019_nih-chest-xray-labels.csv.gz",
    "google2019_nih-chest-xray-labels.csv",
)
"""torchxrayvision's copy of both sets, looked for in ``data_dir`` when Google's files are not there."""

_IMAGE_COLUMN = "image index"
_SET_COLUMN = "set id"
_PATIENT_COLUMN = "patient id"
_READER_COLUMN = "reader id"
_SET_NAMES = {"test": GOOGLE_TEST, "val": GOOGLE_VALIDATION, "valid": GOOGLE_VALIDATION,
              "validation": GOOGLE_VALIDATION}
_FILE_SETS = (("validation_labels", GOOGLE_VALIDATION), ("test_labels", GOOGLE_TEST))
_VALUES = {"YES": 1, "NO": 0}


@dataclass(frozen=True)
class ExpertLabel:
    """One image's adjudicated labels.

    Attributes:
        image_id: ``"00000013_008.png"``.
        google_split: ``"test"`` or ``"validation"``: Google's set, not this dataset's split.
        labels: 0/1 for each of :data:`~.expert_findings.EXPERT_FINDINGS` (Fracture, Pneumothorax, Airspace opacity,
            Nodule or mass), in that order.
        source: ``"<file>, line <n>"``, for messages.
    """

    image_id: str
    google_split: str
    labels: Tuple[int, int, int, int]
    source: str


@dataclass(frozen=True)
class ExpertMatch:
    """The expert-labelled images among a list of image ids (:meth:`ExpertLabels.align`).

    Attributes:
        indices: shape ``(M,)`` int64: positions in the image ids passed, in their order.
        image_ids: the ``M`` image ids at those positions.
        labels: shape ``(M, 4)`` int8 expert labels, columns in :data:`~.expert_findings.EXPERT_FINDINGS` order.
        google_split: the Google set matched (``"test"``, ``"validation"``, or ``None`` for both).
        missing: expert-labelled images of that set that are not among the image ids (sorted): another split holds
            them, or the build skipped them (``allow_missing_images``).
    """

    indices: np.ndarray
    image_ids: List[str]
    labels: np.ndarray
    google_split: Optional[str]
    missing: List[str]

    @property
    def mapped_labels(self) -> np.ndarray:
        """Shape ``(M, 3)``: the expert labels of :data:`~.expert_findings.MAPPED_FINDINGS` (Fracture left out), the
        columns :func:`~.expert_findings.to_expert_findings` gives a model's scores."""
        return self.labels[:, [EXPERT_FINDINGS.index(name) for name in MAPPED_FINDINGS]]


@dataclass
class ExpertLabels:
    """Expert labels read from one or more files.

    Attributes:
        labels: image name → :class:`ExpertLabel`, sorted by name.
        files: the files read.
        unlabelled: rows skipped because all four label cells were empty (Google: "not adjudicated").
    """

    labels: Dict[str, ExpertLabel]
    files: Tuple[str, ...]
    unlabelled: int = 0
    _by_split: Dict[str, List[str]] = field(init=False, repr=False)

    def __post_init__(self):
        self._by_split = {split: sorted(name for name, label in self.labels.items() if label.google_split == split)
                          for split in GOOGLE_SPLITS}

    def __len__(self) -> int:
        return len(self.labels)

    def images(self, google_split: Optional[str] = None) -> List[str]:
        """Sorted names of one Google set, or of both with ``None``."""
        if google_split is None:
            return sorted(self.labels)
        return list(self._by_split[_check_google_split(google_split)])

    def counts(self) -> Dict[str, int]:
        """Images per Google set: ``{"test": ..., "validation": ...}``."""
        return {split: len(names) for split, names in self._by_split.items()}

    def describe(self) -> str:
        """e.g. ``"Google's expert labels (Majkowska et al., Radiology 2020) from test_labels.csv,
        validation_labels.csv: 1,962 test and 2,412 validation images"``."""
        counts = self.counts()
        files = ", ".join(os.path.basename(path) for path in self.files)
        return (f"Google's expert labels (Majkowska et al., Radiology 2020) from {files}: "
                f"{counts[GOOGLE_TEST]:,} test and {counts[GOOGLE_VALIDATION]:,} validation images")

    def align(self, image_ids: Sequence[str], google_split: Optional[str] = GOOGLE_TEST) -> ExpertMatch:
        """The images among ``image_ids`` (e.g. ``ds["test"]["image_id"]``) that have expert labels.

        Args:
            image_ids: the dataset's ``image_id`` column, in row order.
            google_split: keep only Google's ``"test"`` (default) or ``"validation"`` set, or ``None`` for both.

        Returns:
            An :class:`ExpertMatch`; index the dataset's scores and labels with its ``indices``.
        """
        wanted = set(self.images(google_split))
        positions = [(index, name) for index, name in enumerate(image_ids) if name in wanted]
        found = {name for _, name in positions}
        labels = np.array([self.labels[name].labels for _, name in positions], dtype=np.int8).reshape(
            len(positions), len(EXPERT_FINDINGS))
        return ExpertMatch(
            indices=np.array([index for index, _ in positions], dtype=np.int64),
            image_ids=[name for _, name in positions],
            labels=labels,
            google_split=google_split,
            missing=sorted(wanted - found),
        )

    def coverage(self, image_ids_by_split: Mapping[str, Sequence[str]]) -> Dict[str, Dict[str, int]]:
        """Where Google's sets fall in a dataset's splits.

        Args:
            image_ids_by_split: split → image ids, e.g. ``{split: ds[split]["image_id"] for split in ds}``.

        Returns:
            split → ``{"test": n, "validation": n}``: expert-labelled images of each Google set in that split. For
            the builder's official split: ``{"train": {"test": 0, "validation": ...}, ..., "test": {"test": ...}}``.
        """
        return {
            split: {google: sum(1 for name in names if name in wanted)
                    for google, wanted in ((g, set(self._by_split[g])) for g in GOOGLE_SPLITS)}
            for split, names in image_ids_by_split.items()
        }


def _check_google_split(google_split: str) -> str:
    if google_split not in GOOGLE_SPLITS:
        raise ValueError(f"google_split must be one of {', '.join(GOOGLE_SPLITS)} or None, got {google_split!r}")
    return google_split


def _columns(path: str, header: Sequence[str]) -> Dict[str, int]:
    columns: Dict[str, int] = {}
    for index, cell in enumerate(header):
        columns.setdefault(cell.strip().lower(), index)
    if _READER_COLUMN in columns:
        raise ExpertLabelError(
            f"{path}, line 1: this is a file of individual readers' answers (it has a 'Reader ID' column); read "
            "Google's adjudicated test_labels.csv and validation_labels.csv instead"
        )
    required = [_IMAGE_COLUMN] + [name.lower() for name in EXPERT_FINDINGS]
    missing = [name for name in required if name not in columns]
    if missing:
        raise ExpertLabelError(
            f"{path}, line 1: the header lacks {', '.join(repr(name) for name in missing)} (found: "
            f"{','.join(header)!r}); expected Google's columns 'Image Index' and "
            f"{', '.join(repr(name) for name in EXPERT_FINDINGS)}"
        )
    return columns


def _set_from_file_name(path: str) -> Optional[str]:
    name = os.path.basename(path).lower()
    for marker, google_split in _FILE_SETS:
        if marker in name:
            return google_split
    return None


def read_expert_label_file(path, google_split: Optional[str] = None) -> Tuple[Dict[str, ExpertLabel], int]:
    """Read one expert-label CSV (``.csv`` or ``.csv.gz``; any of the formats in the module docstring).

    Args:
        path: the file.
        google_split: ``"test"`` or ``"validation"`` for every row; by default each row's ``Set Id``, or the set
            the file name says.

    Returns:
        ``(labels, unlabelled)``: image name → :class:`ExpertLabel`, and the number of rows skipped because all
        four label cells were empty.

    Raises:
        MissingMetadataError: if ``path`` does not exist.
        ExpertLabelError: for an unreadable file, a header without the image and four finding columns, a file of
            individual readers, a row that is not an image of NIH's form, a label other than YES/NO (or only some
            empty), an unknown ``Set Id``, a ``Patient ID`` that differs from the file name's, an image listed twice,
            or no way to tell the Google set; the message names the file and line.
    """
    path = os.fspath(path)
    if google_split is not None:
        _check_google_split(google_split)
    rows = read_csv_rows(path, ExpertLabelError)
    if not rows:
        raise ExpertLabelError(f"{path} is empty")
    columns = _columns(path, rows[0])
    file_split = google_split or _set_from_file_name(path)
    finding_columns = [columns[name.lower()] for name in EXPERT_FINDINGS]
    labels: Dict[str, ExpertLabel] = {}
    unlabelled = 0
    for line, cells in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in cells):
            continue
        where = f"{path}, line {line}"
        cells = list(cells) + [""] * (max(columns.values()) + 1 - len(cells))
        name = cells[columns[_IMAGE_COLUMN]].strip()
        if not IMAGE_NAME.match(name):
            raise ExpertLabelError(f"{where}: {name!r} is not an image name of NIH's form NNNNNNNN_NNN.png")
        values = [cells[index].strip().upper() for index in finding_columns]
        if not any(values):
            unlabelled += 1  # Google: a missing value means the image was not in the adjudicated set
            continue
        bad = [(finding, value) for finding, value in zip(EXPERT_FINDINGS, values) if value not in _VALUES]
        if bad:
            finding, value = bad[0]
            hint = (" (HEDGE is an individual reader's answer; the adjudicated files hold YES or NO only)"
                    if value == "HEDGE" else "")
            raise ExpertLabelError(f"{where} ({name}): {finding} is {value or 'empty'!r}, expected YES or NO{hint}")
        split = file_split
        if google_split is None and _SET_COLUMN in columns:
            cell = cells[columns[_SET_COLUMN]].strip()
            split = _SET_NAMES.get(cell.lower())
            if split is None:
                raise ExpertLabelError(f"{where} ({name}): Set Id is {cell!r}, expected test or val")
        if split is None:
            raise ExpertLabelError(
                f"{path}: cannot tell whether it holds Google's test or validation set: it has no 'Set Id' column "
                "and its name contains neither test_labels nor validation_labels; pass google_split"
            )
        if _PATIENT_COLUMN in columns:
            patient = cells[columns[_PATIENT_COLUMN]].strip()
            if patient and (not patient.isdigit() or int(patient) != int(name[:8])):
                raise ExpertLabelError(
                    f"{where}: Patient ID {patient!r} differs from patient {name[:8]} in the file name {name}"
                )
        if name in labels:
            raise ExpertLabelError(f"{where}: {name} appears twice (first at {labels[name].source})")
        labels[name] = ExpertLabel(name, split, tuple(_VALUES[value] for value in values), where)
    return labels, unlabelled


def find_expert_label_files(data_dir) -> List[str]:
    """The expert-label files in ``data_dir``: Google's (test, then validation) if any is there, else
    torchxrayvision's copy; empty if none.

    Raises:
        ExpertLabelError: if one of Google's sets is there twice (in its folder and flattened), or torchxrayvision's
            file both gzipped and not: which copy to read would be a guess.
    """
    data_dir = os.fspath(data_dir)

    def present(names):
        found = [os.path.join(data_dir, name) for name in names if os.path.isfile(os.path.join(data_dir, name))]
        if len(found) > 1:
            raise ExpertLabelError(f"{data_dir} holds two copies of one expert-label file ({', '.join(found)}); "
                                   "keep one")
        return found

    google = [path for split in GOOGLE_SPLITS for path in present(GOOGLE_FILES[split])]
    torchxrayvision = present(TORCHXRAYVISION_FILES)
    if google and torchxrayvision:
        logger.info("reading Google's %s; ignoring torchxrayvision's copy %s", ", ".join(google), torchxrayvision[0])
    return google or torchxrayvision


def check_expert_labels(expert: ExpertLabels, release: ReleaseMetadata) -> None:
    """Check that every expert-labelled image is in the release's entry CSV, and each Google set inside NIH's split
    list it comes from (test → ``test_list.txt``, validation → ``train_val_list.txt``).

    Raises:
        ExpertLabelError: naming the first offending image's file and line, with the number of such images.
    """
    expected = {GOOGLE_TEST: (set(release.test), release.test_list),
                GOOGLE_VALIDATION: (set(release.train_val), release.train_val_list)}
    unknown = [label for label in expert.labels.values() if label.image_id not in release.entries]
    if unknown:
        raise ExpertLabelError(
            f"{unknown[0].source}: {unknown[0].image_id} is not in {release.entry_csv} ({len(unknown):,} "
            "expert-labelled images are not); these labels belong to another release"
        )
    for google_split, (names, list_path) in expected.items():
        outside = [label for label in expert.labels.values()
                   if label.google_split == google_split and label.image_id not in names]
        if outside:
            raise ExpertLabelError(
                f"{outside[0].source}: {outside[0].image_id} is in Google's {google_split} set but not in "
                f"{list_path} ({len(outside):,} of its images are not); Google's {google_split} set lies inside "
                f"NIH's {os.path.basename(list_path)}: check that these are Google's files, unchanged"
            )


def read_expert_labels(data_dir=None, *, paths: Optional[Sequence] = None,
                       release: Optional[ReleaseMetadata] = None) -> ExpertLabels:
    """Read expert labels and check them against NIH's metadata.

    Args:
        data_dir: the folder with NIH's metadata; the labels are looked for there (:func:`find_expert_label_files`)
            unless ``paths`` are given, and checked against its entry CSV and split lists
            (:func:`check_expert_labels`).
        paths: expert-label files to read instead of looking in ``data_dir``.
        release: NIH's metadata, already read, to check against instead of ``data_dir``'s. Without ``data_dir`` and
            ``release`` nothing is checked.

    Returns:
        :class:`ExpertLabels` from every file.

    Raises:
        MissingMetadataError: if neither is given, no expert-label file is found, or ``data_dir`` lacks NIH's
            metadata.
        ExpertLabelError: for a bad file (:func:`read_expert_label_file`), an image in two files, or labels that do
            not fit NIH's lists (:func:`check_expert_labels`).
    """
    if paths is None:
        if data_dir is None:
            raise MissingMetadataError("read_expert_labels needs data_dir or paths")
        paths = find_expert_label_files(data_dir)
        if not paths:
            names = [name for split in GOOGLE_SPLITS for name in GOOGLE_FILES[split][:1]] + [TORCHXRAYVISION_FILES[0]]
            raise MissingMetadataError(
                f"{data_dir} has no expert-label file: put Google's {' and '.join(names[:2])} (from the Cloud "
                f"Healthcare API's NIH Chest X-ray page) or torchxrayvision's {names[2]} there, or pass paths"
            )
    labels: Dict[str, ExpertLabel] = {}
    unlabelled = 0
    for path in paths:
        read, skipped = read_expert_label_file(path)
        unlabelled += skipped
        for name, label in read.items():
            if name in labels:
                raise ExpertLabelError(f"{label.source}: {name} is labelled twice (also at {labels[name].source})")
            labels[name] = label
    if unlabelled:
        logger.info("skipped %d rows without labels (images Google did not adjudicate)", unlabelled)
    expert = ExpertLabels({name: labels[name] for name in sorted(labels)}, tuple(os.fspath(p) for p in paths),
                          unlabelled)
    if release is None and data_dir is not None:
        release = read_release_metadata(os.fspath(data_dir))
    if release is not None:
        check_expert_labels(expert, release)
    return expert
