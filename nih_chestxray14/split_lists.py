"""The user's own split lists: CheXNet's random patient-wise lists, or any other train/validation/test lists.

Papers that did not use NIH's official split published their own lists, and results can only be compared on the
same images. The builder parameter ``split_lists={"train": path, "validation": path, "test": path}`` builds the
dataset on them instead of NIH's ``train_val_list.txt`` / ``test_list.txt``.

**Format.** One image per line. A line holds the image name, optionally followed by more fields separated by spaces,
tabs or a comma, which are ignored: NIH's lists (``00000001_000.png``) and the CheXNet reimplementations' lists
(``00000001_000.png 0 1 0 0 0 0 0 0 0 0 0 0 0 0``, the name and 14 labels) both read. The name may carry a folder
(``images/00000001_000.png``); only the file name is kept. Blank lines are skipped, and so is a line that starts with
``Image Index`` before the first image (a CSV header). Labels always come from the entry CSV: when a line carries 14
labels that differ from the entry CSV's, the builder logs how many lines differ (CheXNet's lists, as published in
arnoweng/CheXNet, differ from ``Data_Entry_2017_v2020.csv`` on 181 of their 112,120 lines).

**Checks, before anything is built.** Every listed name must be an image of the entry CSV (the error names the list
file and line), no list may name an image twice, and the lists must be disjoint and patient-wise: no image and no
patient in two lists. By default a shared image or patient is refused with the counts per pair of lists;
``allow_split_overlap=True`` builds anyway (an image listed twice is then in both splits) and logs the counts as a
warning. Images of the entry CSV that no list names are left out, and their number is logged and recorded.

**Validation.** Without a ``validation`` list, validation is carved out of the ``train`` list by patient with the
same salted SHA-256 rule as the official split (:mod:`.splits`, ``validation_fraction``). With one,
``validation_fraction`` is not used and must stay at its default.

The lists are part of the cache key by their content (SHA-256), not only their path, so an edited list is built again.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from .errors import MetadataError, MissingMetadataError, SplitError
from .labels import NUM_LABELS
from .metadata import IMAGE_NAME
from .text_files import read_lines
from .splits import SPLITS, TEST, TRAIN, VALIDATION, SplitAssignment, validation_threshold, validation_bucket

logger = logging.getLogger(__name__)

REQUIRED_LISTS: Tuple[str, ...] = (TRAIN, TEST)
"""Splits that ``split_lists`` must name; ``validation`` is optional."""

_FIELD_SEPARATOR = re.compile(r"[\s,]+")
_HEADER = "image index"


@dataclass(frozen=True)
class ListedImage:
    """One line of a split list.

    Attributes:
        name: the image name, ``"00000001_000.png"``.
        line: its line number in the file (1-based).
        labels: the 14 labels that followed the name, when the line carries exactly 14 fields of 0 or 1 after it;
            else ``None``.
    """

    name: str
    line: int
    labels: Optional[Tuple[int, ...]] = None


@dataclass(frozen=True)
class SplitList:
    """One split list as read.

    Attributes:
        split: the split it defines (``"train"``, ``"validation"`` or ``"test"``).
        path: the file's resolved path.
        sha256: hex SHA-256 of the file's bytes.
        images: its lines, in file order.
    """

    split: str
    path: str
    sha256: str
    images: Tuple[ListedImage, ...]

    @property
    def file_name(self) -> str:
        return os.path.basename(self.path)

    def names(self) -> List[str]:
        return [image.name for image in self.images]

    def patients(self) -> set:
        """Patient ids, from the names' first 8 digits (the entry CSV's ``Patient ID``, which the builder checks)."""
        return {int(image.name[:8]) for image in self.images}


def normalize_split_lists(split_lists) -> Dict[str, str]:
    """Check the ``split_lists`` parameter and return split → resolved path, in :data:`~.splits.SPLITS` order.

    Raises:
        ValueError: if it is not a mapping, names a split other than train/validation/test, lacks train or test, or
            gives two splits the same file.
        MissingMetadataError: if a path is not a file.
    """
    if not isinstance(split_lists, Mapping):
        raise ValueError(
            f"split_lists must map split names to list files, e.g. {{'train': 'train_list.txt', 'validation': "
            f"'val_list.txt', 'test': 'test_list.txt'}}; got {split_lists!r}"
        )
    unknown = sorted(str(split) for split in split_lists if split not in SPLITS)
    if unknown:
        raise ValueError(f"split_lists names unknown splits {unknown}; use {', '.join(SPLITS)}")
    missing = [split for split in REQUIRED_LISTS if split not in split_lists]
    if missing:
        raise ValueError(
            f"split_lists lacks {' and '.join(missing)}: give at least a train and a test list (validation is "
            "carved out of train by patient when it has no list)"
        )
    resolved: Dict[str, str] = {}
    for split in SPLITS:
        if split not in split_lists:
            continue
        value = split_lists[split]
        if not isinstance(value, (str, os.PathLike)):
            raise ValueError(f"split_lists[{split!r}] must be a path to a list file, got {value!r}")
        path = os.path.realpath(os.path.expanduser(os.fspath(value)))
        if not os.path.isfile(path):
            raise MissingMetadataError(f"split_lists[{split!r}]: {value} is not a file")
        resolved[split] = path
    paths = list(resolved.values())
    if len(set(paths)) < len(paths):
        raise ValueError(f"split_lists gives two splits the same file: {resolved}")
    return resolved


def _labels_after(fields: Sequence[str]) -> Optional[Tuple[int, ...]]:
    if len(fields) == NUM_LABELS and all(field in ("0", "1") for field in fields):
        return tuple(int(field) for field in fields)
    return None


def read_list_file(split: str, path: str) -> SplitList:
    """Read one list file (format in the module docstring).

    Raises:
        MissingMetadataError: if ``path`` does not exist.
        MetadataError: for an unreadable file, a line whose first field is not an image name of NIH's form, a name
            listed twice, or a file with no image at all; the message names the file and line.
    """
    lines = read_lines(path)
    with open(path, "rb") as handle:  # read_lines has found and read it
        digest = hashlib.sha256(handle.read()).hexdigest()
    images: List[ListedImage] = []
    first_line: Dict[str, int] = {}
    for line, text in enumerate(lines, start=1):
        fields = [field for field in _FIELD_SEPARATOR.split(text.strip()) if field]
        if not fields:
            continue
        if not images and text.strip().strip('"').lower().startswith(_HEADER):
            continue  # a CSV header
        name = fields[0].strip('"').replace("\\", "/").rsplit("/", 1)[-1]
        if not IMAGE_NAME.match(name):
            raise MetadataError(
                f"{path}, line {line}: {text.strip()[:80]!r} does not start with an image name of NIH's form "
                "NNNNNNNN_NNN.png; a split list holds one image name per line, optionally followed by other fields "
                "(as CheXNet's lists)"
            )
        if name in first_line:
            raise MetadataError(f"{path}, line {line}: {name} is listed twice (first on line {first_line[name]})")
        first_line[name] = line
        images.append(ListedImage(name, line, _labels_after(fields[1:])))
    if not images:
        raise MetadataError(f"{path} lists no image; a split list holds one image name per line")
    return SplitList(split, path, digest, tuple(images))


def read_split_lists(split_lists) -> Dict[str, SplitList]:
    """Check the ``split_lists`` parameter (:func:`normalize_split_lists`) and read every list.

    Raises:
        ValueError, MissingMetadataError, MetadataError: see :func:`normalize_split_lists` and
            :func:`read_list_file`.
    """
    return {split: read_list_file(split, path) for split, path in normalize_split_lists(split_lists).items()}


def split_lists_fingerprint(split_lists) -> Tuple[Tuple[str, str, str], ...]:
    """``((split, resolved path, sha256 of the file), ...)``: what keys the cache for a ``split_lists`` parameter."""
    fingerprint = []
    for split, path in normalize_split_lists(split_lists).items():
        with open(path, "rb") as handle:
            fingerprint.append((split, path, hashlib.sha256(handle.read()).hexdigest()))
    return tuple(fingerprint)


@dataclass(frozen=True)
class Overlap:
    """What two lists share: image and patient counts, with the first of each (sorted) for the message."""

    first: str
    second: str
    images: int
    patients: int
    example_image: Optional[str]
    example_patient: Optional[int]

    def describe(self) -> str:
        parts = []
        if self.images:
            parts.append(f"{self.images:,} images (e.g. {self.example_image})")
        if self.patients:
            parts.append(f"{self.patients:,} patients (e.g. patient {self.example_patient})")
        return f"{self.first} and {self.second} share {' and '.join(parts)}"


def list_overlaps(lists: Mapping[str, SplitList]) -> List[Overlap]:
    """The images and patients shared by each pair of lists (pairs sharing nothing are left out)."""
    overlaps = []
    ordered = list(lists.values())
    for index, first in enumerate(ordered):
        for second in ordered[index + 1:]:
            images = sorted(set(first.names()) & set(second.names()))
            patients = sorted(first.patients() & second.patients())
            if images or patients:
                overlaps.append(Overlap(first.file_name, second.file_name, len(images), len(patients),
                                        images[0] if images else None, patients[0] if patients else None))
    return overlaps


def check_listed_images(lists: Mapping[str, SplitList], entry_names) -> None:
    """Raise :class:`SplitError` naming the list file and line of the first listed image without an entry CSV row,
    with the number of such images in each list."""
    known = set(entry_names)
    problems = []
    for split_list in lists.values():
        unknown = [image for image in split_list.images if image.name not in known]
        if unknown:
            problems.append((split_list, unknown))
    if problems:
        split_list, unknown = problems[0]
        counts = ", ".join(f"{len(images):,} in {listed.file_name}" for listed, images in problems)
        raise SplitError(
            f"{split_list.path}, line {unknown[0].line}: {unknown[0].name} is not in the entry CSV (listed images "
            f"without a row: {counts}); use lists made for this release, or the entry CSV they were made from"
        )


def assign_listed_splits(
    patient_of_image: Mapping[str, int],
    lists: Mapping[str, SplitList],
    validation_fraction: float = 0.1,
    *,
    allow_overlap: bool = False,
) -> SplitAssignment:
    """Place the listed images in splits: each list's images in its split, and, without a validation list, the
    train list's patients whose bucket falls under ``validation_fraction`` in validation (:mod:`.splits`).

    Args:
        patient_of_image: image name → patient id, for every row of the entry CSV.
        lists: split → its list (:func:`read_split_lists`), with at least train and test.
        validation_fraction: used only without a validation list.
        allow_overlap: build even when lists share images or patients (logging the counts) instead of refusing.

    Raises:
        SplitError: for a listed image that is not in the entry CSV (naming file and line), or, unless
            ``allow_overlap``, lists that share an image or a patient (with the counts for each pair).
        ValueError: for a validation list together with a ``validation_fraction`` other than the default 0.1.
    """
    check_listed_images(lists, patient_of_image)
    if VALIDATION in lists and float(validation_fraction) != 0.1:
        raise ValueError(
            f"validation_fraction={validation_fraction} has no effect with a validation list in split_lists: "
            "leave it at its default, or leave out the validation list to carve validation out of train by patient"
        )
    overlaps = list_overlaps(lists)
    if overlaps:
        message = "; ".join(overlap.describe() for overlap in overlaps)
        if not allow_overlap:
            raise SplitError(
                f"the split lists are not disjoint and patient-wise: {message}. Fix the lists, or pass "
                "allow_split_overlap=True to build on them anyway (results on such a split leak patients)"
            )
        logger.warning("building on split lists that are not disjoint and patient-wise (allow_split_overlap): %s",
                       message)
    images_by_split: Dict[str, List[str]] = {split: [] for split in SPLITS}
    for split, split_list in lists.items():
        images_by_split[split].extend(split_list.names())
    if VALIDATION not in lists:
        threshold = validation_threshold(validation_fraction)
        train = images_by_split[TRAIN]
        images_by_split[VALIDATION] = [name for name in train if validation_bucket(patient_of_image[name]) < threshold]
        carved = set(images_by_split[VALIDATION])
        images_by_split[TRAIN] = [name for name in train if name not in carved]
    unlisted = len(set(patient_of_image) - {name for names in images_by_split.values() for name in names})
    if unlisted:
        logger.info("%d images of the entry CSV are in none of the split lists and are left out", unlisted)
    return SplitAssignment({split: sorted(names) for split, names in images_by_split.items()}, unlisted=unlisted)


def count_label_mismatches(lists: Mapping[str, SplitList], labels_of_image: Mapping[str, Sequence[int]]) -> int:
    """How many list lines carry 14 labels that differ from ``labels_of_image`` (the entry CSV's multi-hot rows)."""
    return sum(
        1
        for split_list in lists.values()
        for image in split_list.images
        if image.labels is not None and image.name in labels_of_image
        and tuple(labels_of_image[image.name]) != image.labels
    )
