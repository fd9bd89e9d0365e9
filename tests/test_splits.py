"""The official split and the patient-wise validation rule, on synthetic lists and on NIH's real metadata."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest

from nih_chestxray14.errors import SplitError
from nih_chestxray14.labels import LABELS
from nih_chestxray14.splits import (
    assign_splits,
    check_patient_disjoint,
    is_validation_patient,
    patients_by_split,
    validation_bucket,
)
from release_fixtures import needs_real_metadata, raw_metadata, real_metadata_dir


def test_bucket_is_the_documented_salted_sha256_rule():
    for patient in (1, 2, 30805):
        digest = hashlib.sha256(f"nih-chestxray14/validation/{patient}".encode()).digest()
        assert validation_bucket(patient) == int.from_bytes(digest[:8], "big") % 1000


def test_rule_is_the_same_in_a_fresh_interpreter_with_another_hash_seed():
    script = "from nih_chestxray14.splits import validation_bucket; print([validation_bucket(p) for p in range(1, 50)])"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    output = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    assert output.stdout.strip() == str([validation_bucket(p) for p in range(1, 50)])


def test_fraction_picks_about_that_share_of_patients_and_grows_monotonically():
    patients = range(1, 20001)
    tenth = {p for p in patients if is_validation_patient(p, 0.1)}
    fifth = {p for p in patients if is_validation_patient(p, 0.2)}
    assert abs(len(tenth) / 20000 - 0.1) < 0.01
    assert abs(len(fifth) / 20000 - 0.2) < 0.01
    assert tenth < fifth
    assert not any(is_validation_patient(p, 0.0) for p in patients)


@pytest.mark.parametrize("fraction", [-0.1, 1.0, "a tenth"])
def test_invalid_fraction_is_refused(fraction):
    with pytest.raises(ValueError, match="validation_fraction"):
        is_validation_patient(1, fraction)


def test_assignment_keeps_patients_together():
    patient_of_image = {f"{p:08d}_{f:03d}.png": p for p in range(1, 300) for f in range(3)}
    test = [name for name, p in patient_of_image.items() if p % 5 == 0]
    train_val = [name for name in patient_of_image if name not in set(test)]
    assignment = assign_splits(patient_of_image, train_val, test, 0.1)
    patients = patients_by_split(assignment, patient_of_image)
    check_patient_disjoint(patients)
    assert sorted(assignment.images("test")) == sorted(test)
    assert sorted(assignment.images("train") + assignment.images("validation")) == sorted(train_val)
    assert patients["validation"] == {p for p in range(1, 300) if p % 5 and is_validation_patient(p)}


def test_inconsistent_lists_are_named():
    patient_of_image = {"00000001_000.png": 1, "00000001_001.png": 1, "00000002_000.png": 2}
    with pytest.raises(SplitError, match=r"00000002_000\.png is in the entry CSV but in neither train\.txt nor test\.txt"):
        assign_splits(patient_of_image, ["00000001_000.png", "00000001_001.png"], [],
                      train_val_source="train.txt", test_source="test.txt")
    with pytest.raises(SplitError, match=r"00000002_000\.png is listed in both"):
        assign_splits(patient_of_image, list(patient_of_image), ["00000002_000.png"])
    with pytest.raises(SplitError, match=r"patient 1 would be in both"):
        assign_splits(patient_of_image, ["00000001_000.png", "00000002_000.png"], ["00000001_001.png"])
    with pytest.raises(SplitError, match=r"patient 7 is in both 'train' and 'test'"):
        check_patient_disjoint({"train": [7, 8], "test": [7]})


# ---------------------------------------------------------------------------------------------------------------
# NIH's real metadata


@needs_real_metadata
def test_real_metadata_split_sizes_patients_and_label_counts():
    from nih_chestxray14.metadata import read_release_metadata

    release = read_release_metadata(str(real_metadata_dir()))
    entries, train_val, test = raw_metadata()
    patient_of_image = {name: row.patient_id for name, row in release.entries.items()}
    assignment = assign_splits(patient_of_image, release.train_val, release.test, 0.1)
    counts = assignment.counts()

    assert len(release.entries) == len(entries) == 112_120
    assert counts["test"] == len(test) == 25_596
    assert counts["train"] + counts["validation"] == len(train_val) == 86_524
    patients = patients_by_split(assignment, patient_of_image)
    check_patient_disjoint(patients)
    assert len(patients["test"]) == 2_797
    train_val_patients = len(patients["train"]) + len(patients["validation"])
    assert train_val_patients == 28_008
    assert 0.09 < len(patients["validation"]) / train_val_patients < 0.11
    # Documented in the splits module and the package docstring.
    assert (len(patients["validation"]), counts["validation"]) == (2_752, 8_569)

    for split in ("train", "validation", "test"):
        independent = Counter(finding for name in assignment.images(split) for finding in entries[name][1])
        ours = np.zeros(len(LABELS), dtype=int)
        for name in assignment.images(split):
            for finding in release.entries[name].findings:
                ours[LABELS.index(finding)] += 1
        assert dict(zip(LABELS, ours.tolist())) == {label: independent[label] for label in LABELS}
    assert sum(len(boxes) for boxes in release.boxes.values()) == 984
    assert len(release.boxes) == 880
