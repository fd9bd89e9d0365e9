"""The user's own split lists: every line format, the checks (disjoint, patient-wise, known images) and the split
they give, on lists the tests write, and on NIH's real lists read as custom lists."""

from __future__ import annotations

import gzip
import logging

import pytest

from nih_chestxray14.errors import MetadataError, MissingMetadataError, SplitError
from nih_chestxray14.split_lists import (
    assign_listed_splits,
    count_label_mismatches,
    list_overlaps,
    read_list_file,
    read_split_lists,
    split_lists_fingerprint,
)
from nih_chestxray14.splits import assign_splits, is_validation_patient, patients_by_split
from release_fixtures import needs_real_metadata, raw_metadata

# 30 patients with 3 images each: patients 1-20 train, 21-24 validation, 25-30 test.
PATIENT_OF_IMAGE = {f"{p:08d}_{f:03d}.png": p for p in range(1, 31) for f in range(3)}
TRAIN = [name for name, p in PATIENT_OF_IMAGE.items() if p <= 20]
VALIDATION = [name for name, p in PATIENT_OF_IMAGE.items() if 21 <= p <= 24]
TEST = [name for name, p in PATIENT_OF_IMAGE.items() if p >= 25]


def write(path, lines, newline="\n"):
    path.write_text(newline.join(lines) + newline, encoding="utf-8")
    return path


def write_lists(folder, train=TRAIN, validation=VALIDATION, test=TEST):
    lists = {"train": write(folder / "train_list.txt", train), "test": write(folder / "test_list.txt", test)}
    if validation is not None:
        lists["validation"] = write(folder / "val_list.txt", validation)
    return {split: str(path) for split, path in lists.items()}


# ---------------------------------------------------------------------------------------------------------------
# Line formats


def test_one_name_per_line_as_nih_writes_it(tmp_path):
    listed = read_list_file("test", str(write(tmp_path / "test_list.txt", TEST)))
    assert listed.names() == TEST
    assert [image.line for image in listed.images] == list(range(1, len(TEST) + 1))
    assert all(image.labels is None for image in listed.images)


def test_name_followed_by_14_labels_as_chexnet_writes_it(tmp_path):
    lines = ["00000001_000.png 0 1 0 0 0 0 0 0 0 0 0 0 0 0", "00000001_001.png 0 0 0 0 0 0 0 0 0 0 0 0 0 1"]
    path = tmp_path / "val_list.txt"
    path.write_text("\n".join(lines), encoding="utf-8")  # CheXNet's val and test lists end without a newline
    listed = read_list_file("validation", str(path))
    assert listed.names() == ["00000001_000.png", "00000001_001.png"]
    assert listed.images[0].labels == (0, 1) + (0,) * 12
    assert listed.images[1].labels == (0,) * 13 + (1,)


@pytest.mark.parametrize("lines, newline", [
    (["Image Index,Finding Labels", "00000001_000.png,Hernia", "00000002_000.png,No Finding"], "\r\n"),
    (["images/00000001_000.png", "", "  images_001/images/00000002_000.png\t1  "], "\n"),
    (["00000001_000.png\tsomething else", "00000002_000.png, 3"], "\n"),
])
def test_csv_header_folders_blank_lines_tabs_and_crlf_are_read(tmp_path, lines, newline):
    listed = read_list_file("train", str(write(tmp_path / "list.txt", lines, newline)))
    assert listed.names() == ["00000001_000.png", "00000002_000.png"]
    assert all(image.labels is None for image in listed.images)


def test_gzipped_list_is_read(tmp_path):
    path = tmp_path / "test_list.txt.gz"
    with gzip.open(path, "wt") as handle:
        handle.write("\n".join(TEST) + "\n")
    assert read_list_file("test", str(path)).names() == TEST


@pytest.mark.parametrize("lines, message", [
    (["00000001_000.png", "Image Index"], r"list\.txt, line 2: 'Image Index' does not start with an image name"),
    (["00000001_000.png", "00000001_00.png 0"], r"list\.txt, line 2: '00000001_00\.png 0' does not start with an "
                                                r"image name"),
    (["00000001_000.png", "00000002_000.png", "00000001_000.png"], r"list\.txt, line 3: 00000001_000\.png is listed "
                                                                   r"twice \(first on line 1\)"),
    (["", "  "], r"list\.txt lists no image"),
])
def test_bad_lines_are_named_by_file_and_line(tmp_path, lines, message):
    with pytest.raises(MetadataError, match=message):
        read_list_file("train", str(write(tmp_path / "list.txt", lines)))


@pytest.mark.parametrize("split_lists, error, message", [
    ("train_list.txt", ValueError, "must map split names to list files"),
    ({"train": "A", "val": "B", "test": "C"}, ValueError, r"unknown splits \['val'\]"),
    ({"train": "A", "validation": "B"}, ValueError, "lacks test"),
    ({"train": 3, "test": "C"}, ValueError, r"split_lists\['train'\] must be a path"),
    ({"train": "nowhere.txt", "test": "test_list.txt"}, MissingMetadataError, r"split_lists\['train'\]: nowhere\.txt"),
    ({"train": "test_list.txt", "test": "test_list.txt"}, ValueError, "the same file"),
])
def test_the_parameter_is_checked_and_names_what_is_wrong(tmp_path, monkeypatch, split_lists, error, message):
    monkeypatch.chdir(tmp_path)
    write_lists(tmp_path)
    with pytest.raises(error, match=message):
        read_split_lists(split_lists)


def test_fingerprint_follows_the_content_not_only_the_path(tmp_path):
    lists = write_lists(tmp_path)
    before = split_lists_fingerprint(lists)
    assert [split for split, _, _ in before] == ["train", "validation", "test"]
    write(tmp_path / "test_list.txt", TEST[:-1])
    after = split_lists_fingerprint(lists)
    assert before[:2] == after[:2] and before[2][2] != after[2][2]


# ---------------------------------------------------------------------------------------------------------------
# Checks and assignment


def test_disjoint_patient_wise_lists_become_the_splits(tmp_path):
    lists = read_split_lists(write_lists(tmp_path))
    assignment = assign_listed_splits(PATIENT_OF_IMAGE, lists)
    assert assignment.images("train") == sorted(TRAIN)
    assert assignment.images("validation") == sorted(VALIDATION)
    assert assignment.images("test") == sorted(TEST)
    assert assignment.unlisted == 0


def test_without_a_validation_list_validation_is_carved_out_of_train_by_patient(tmp_path):
    lists = read_split_lists(write_lists(tmp_path, validation=None))
    assignment = assign_listed_splits(PATIENT_OF_IMAGE, lists, 0.3)
    expected = sorted(name for name in TRAIN if is_validation_patient(PATIENT_OF_IMAGE[name], 0.3))
    assert expected and assignment.images("validation") == expected
    assert assignment.images("train") == sorted(set(TRAIN) - set(expected))
    assert assignment.images("test") == sorted(TEST)
    assert assignment.unlisted == len(VALIDATION)  # in the entry CSV, in no list


def test_validation_fraction_is_refused_beside_a_validation_list(tmp_path):
    lists = read_split_lists(write_lists(tmp_path))
    with pytest.raises(ValueError, match="validation_fraction=0.2 has no effect with a validation list"):
        assign_listed_splits(PATIENT_OF_IMAGE, lists, 0.2)


def test_a_listed_image_missing_from_the_entry_csv_is_named_by_list_file_and_line(tmp_path):
    lists = read_split_lists(write_lists(tmp_path, test=TEST + ["00000099_000.png", "00000099_001.png"]))
    with pytest.raises(SplitError, match=r"test_list\.txt, line 19: 00000099_000\.png is not in the entry CSV "
                                         r"\(listed images without a row: 2 in test_list\.txt\)"):
        assign_listed_splits(PATIENT_OF_IMAGE, lists)


def test_shared_images_and_patients_are_refused_with_counts_per_pair(tmp_path):
    # One image of patient 25 also in train; patient 21's first image in test (a shared patient, not image).
    lists = read_split_lists(write_lists(
        tmp_path, train=TRAIN + ["00000025_000.png"], validation=VALIDATION[1:], test=TEST + VALIDATION[:1]
    ))
    overlaps = {(o.first, o.second): (o.images, o.patients) for o in list_overlaps(lists)}
    assert overlaps == {("train_list.txt", "test_list.txt"): (1, 1), ("val_list.txt", "test_list.txt"): (0, 1)}
    with pytest.raises(SplitError) as raised:
        assign_listed_splits(PATIENT_OF_IMAGE, lists)
    message = str(raised.value)
    assert "not disjoint and patient-wise" in message and "allow_split_overlap=True" in message
    assert "train_list.txt and test_list.txt share 1 images (e.g. 00000025_000.png) and 1 patients (e.g. patient 25)" \
        in message
    assert "val_list.txt and test_list.txt share 1 patients (e.g. patient 21)" in message


def test_allow_overlap_builds_on_the_lists_as_given_and_warns_with_the_counts(tmp_path, caplog):
    lists = read_split_lists(write_lists(tmp_path, train=TRAIN + ["00000025_000.png"]))
    with caplog.at_level(logging.WARNING, logger="nih_chestxray14.split_lists"):
        assignment = assign_listed_splits(PATIENT_OF_IMAGE, lists, allow_overlap=True)
    assert "00000025_000.png" in assignment.images("train") and "00000025_000.png" in assignment.images("test")
    assert "train_list.txt and test_list.txt share 1 images" in caplog.text


def test_lines_whose_labels_differ_from_the_entry_csv_are_counted(tmp_path):
    zeros = " 0" * 14
    lines = [TEST[0] + zeros, TEST[1] + " 1" + " 0" * 13, TEST[2] + zeros, TEST[3]]
    lists = {"test": read_list_file("test", str(write(tmp_path / "test.txt", lines)))}
    entry_labels = {name: [0] * 14 for name in TEST}
    entry_labels[TEST[2]] = [0] * 13 + [1]
    assert count_label_mismatches(lists, entry_labels) == 2  # lines 2 and 3; line 4 carries no labels


# ---------------------------------------------------------------------------------------------------------------
# NIH's real lists, read as if they were a user's


@needs_real_metadata
def test_nih_lists_as_custom_lists_give_the_official_split(tmp_path):
    from nih_chestxray14.metadata import read_release_metadata
    from release_fixtures import real_metadata_dir

    release = read_release_metadata(str(real_metadata_dir()))
    patient_of_image = {name: row.patient_id for name, row in release.entries.items()}
    lists = read_split_lists({"train": release.train_val_list, "test": release.test_list})
    custom = assign_listed_splits(patient_of_image, lists, 0.1)
    official = assign_splits(patient_of_image, release.train_val, release.test, 0.1)
    assert custom.images_by_split == official.images_by_split
    assert custom.counts() == {"train": 77_955, "validation": 8_569, "test": 25_596}
    assert {split: len(ids) for split, ids in patients_by_split(custom, patient_of_image).items()} == {
        "train": 25_256, "validation": 2_752, "test": 2_797}


@needs_real_metadata
def test_a_real_patient_moved_to_the_other_list_is_refused_with_counts(tmp_path):
    entries, train_val, test = raw_metadata()
    moved = [name for name in train_val if name.startswith("00000001_")]  # patient 1's 3 images
    kept = [name for name in train_val if not name.startswith("00000001_")]
    lists = read_split_lists(write_lists(tmp_path, train=kept + moved[:1], validation=None, test=test + moved[1:]))
    patient_of_image = {name: patient for name, (patient, _) in entries.items()}
    with pytest.raises(SplitError, match=r"train_list\.txt and test_list\.txt share 1 patients \(e\.g\. patient 1\)"):
        assign_listed_splits(patient_of_image, lists)
