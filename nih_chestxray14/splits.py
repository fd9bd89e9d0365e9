"""The official split and the patient-wise validation rule (the user's own lists: :mod:`.split_lists`).

NIH publishes two lists: ``test_list.txt`` (25,596 images) and ``train_val_list.txt`` (86,524 images), and they are
patient-wise. This module carves ``validation`` out of ``train_val`` by *patient*, never by image, with a rule that
gives the same answer on every machine, every Python version and every run:

    a patient is in validation  iff  validation_bucket(patient_id) < round(validation_fraction * 1000)

    validation_bucket(patient_id) = int.from_bytes(sha256(b"nih-chestxray14/validation/" + str(patient_id)), "big")
                                    % 1000   (first 8 bytes of the digest)

``hashlib.sha256`` is used rather than Python's ``hash()``, which is salted per process. With the default fraction of
0.1, the rule picks 2,752 of NIH's 28,008 train_val patients (9.8%), who hold 8,569 of its 86,524 images; train keeps
25,256 patients and 77,955 images.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Dict, Iterable, List, Mapping, Sequence, Tuple

from .errors import SplitError

TRAIN = "train"
VALIDATION = "validation"
TEST = "test"
SPLITS: Tuple[str, ...] = (TRAIN, VALIDATION, TEST)

_BUCKETS = 1000
_SALT = b"nih-chestxray14/validation/"


def validation_bucket(patient_id: int) -> int:
    """Return the patient's bucket in ``[0, 1000)``: the first 8 bytes of SHA-256 of the salted id, modulo 1000."""
    digest = hashlib.sha256(_SALT + str(int(patient_id)).encode("ascii")).digest()
    return int.from_bytes(digest[:8], "big") % _BUCKETS


def check_validation_fraction(validation_fraction: float) -> float:
    """Return ``validation_fraction`` as a float; raise ``ValueError`` unless it lies in ``[0, 1)``."""
    try:
        fraction = float(validation_fraction)
    except (TypeError, ValueError):
        raise ValueError(f"validation_fraction must be a number in [0, 1), got {validation_fraction!r}") from None
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"validation_fraction must be in [0, 1), got {validation_fraction!r}")
    return fraction


def is_validation_patient(patient_id: int, validation_fraction: float = 0.1) -> bool:
    """Whether a train_val patient belongs to ``validation`` under the rule in this module's docstring."""
    return validation_bucket(patient_id) < validation_threshold(validation_fraction)


@dataclass(frozen=True)
class SplitAssignment:
    """Which images go to each split.

    Attributes:
        images_by_split: ``"train"``, ``"validation"``, ``"test"`` → sorted image names (``"00000001_000.png"``). An
            image is in one split, except under custom lists built with ``allow_split_overlap=True``.
        unlisted: images of the entry CSV that no split holds (always 0 for the official split).
    """

    images_by_split: Dict[str, List[str]]
    unlisted: int = 0

    def images(self, split: str) -> List[str]:
        """The sorted image names of one split."""
        return list(self.images_by_split.get(split, ()))

    def counts(self) -> Dict[str, int]:
        """Number of images per split, in ``SPLITS`` order."""
        return {split: len(self.images_by_split.get(split, ())) for split in SPLITS}


def validation_threshold(validation_fraction: float) -> int:
    """The bucket below which a patient is in validation: ``round(validation_fraction * 1000)``; raises
    ``ValueError`` unless the fraction lies in ``[0, 1)``."""
    return round(check_validation_fraction(validation_fraction) * _BUCKETS)


def assign_splits(
    patient_of_image: Mapping[str, int],
    train_val: Iterable[str],
    test: Iterable[str],
    validation_fraction: float = 0.1,
    *,
    train_val_source: str = "train_val_list.txt",
    test_source: str = "test_list.txt",
) -> SplitAssignment:
    """Place every image of the entry CSV in ``train``, ``validation`` or ``test``.

    Args:
        patient_of_image: image name → patient id, for every row of the entry CSV.
        train_val: names listed in ``train_val_list.txt``.
        test: names listed in ``test_list.txt``.
        validation_fraction: share of train_val *patients* that go to validation (rule in the module docstring).
        train_val_source, test_source: file names used in error messages.

    Raises:
        SplitError: if an image of the CSV is in neither list or in both, or if a patient ends up in two splits
            (NIH's lists are patient-wise, so this means the lists do not belong to this CSV).
    """
    threshold = validation_threshold(validation_fraction)
    train_val_set = set(train_val)
    test_set = set(test)
    split_of_image: Dict[str, str] = {}
    split_of_patient: Dict[int, str] = {}
    for image, patient in patient_of_image.items():
        in_train_val, in_test = image in train_val_set, image in test_set
        if in_train_val and in_test:
            raise SplitError(
                f"{image} is listed in both {train_val_source} and {test_source}; "
                "each image must be in exactly one of them (use NIH's lists unchanged)"
            )
        if not in_train_val and not in_test:
            raise SplitError(
                f"{image} is in the entry CSV but in neither {train_val_source} nor {test_source}; "
                "use the split lists that belong to this CSV"
            )
        if in_test:
            split = TEST
        else:
            split = VALIDATION if validation_bucket(patient) < threshold else TRAIN
        previous = split_of_patient.setdefault(patient, split)
        if previous != split:
            raise SplitError(
                f"patient {patient} would be in both {previous!r} and {split!r} (image {image}): "
                f"{train_val_source} and {test_source} must keep each patient's images together"
            )
        split_of_image[image] = split
    images_by_split: Dict[str, List[str]] = {split: [] for split in SPLITS}
    for image in sorted(split_of_image):
        images_by_split[split_of_image[image]].append(image)
    return SplitAssignment(images_by_split)


def patients_by_split(assignment: SplitAssignment, patient_of_image: Mapping[str, int]) -> Dict[str, set]:
    """The set of patient ids in each split."""
    patients: Dict[str, set] = {split: set() for split in SPLITS}
    for split, images in assignment.images_by_split.items():
        patients[split].update(patient_of_image[image] for image in images)
    return patients


def check_patient_disjoint(patients: Mapping[str, Sequence[int]]) -> None:
    """Raise :class:`SplitError` if any patient id appears under two split names."""
    seen: Dict[int, str] = {}
    for split, ids in patients.items():
        for patient in ids:
            other = seen.setdefault(patient, split)
            if other != split:
                raise SplitError(f"patient {patient} is in both {other!r} and {split!r}")
