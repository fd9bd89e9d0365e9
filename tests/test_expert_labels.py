"""Google's expert labels: every file format (Google's two CSVs, torchxrayvision's copy) written by the tests, the
errors, the checks against NIH's lists, matching to a built dataset, and NIH's real lists."""

from __future__ import annotations

import csv
import gzip
import os
import random

import numpy as np
import pytest

from nih_chestxray14.errors import ExpertLabelError, MissingMetadataError
from nih_chestxray14.expert_findings import to_expert_findings
from nih_chestxray14.expert_labels import (
    find_expert_label_files,
    read_expert_label_file,
    read_expert_labels,
)
from nih_chestxray14.sample import make_release
from release_fixtures import build, needs_real_metadata, raw_entries, raw_list, real_metadata_dir

NIH_COLUMNS = ["Image Index", "Finding Labels", "Follow-up #", "Patient ID", "Patient Age", "Patient Gender",
               "View Position", "OriginalImage[Width", "Height]", "OriginalImagePixelSpacing[x", "y]"]
FOUR = ["Fracture", "Pneumothorax", "Airspace opacity", "Nodule or mass"]


def nih_cells(name):
    return [name, "No Finding", "0", name[:8].lstrip("0"), "50", "M", "PA", "2500", "2048", "0.168", "0.168"]


def write_google(path, rows, header=NIH_COLUMNS + FOUR, newline="\n"):
    """Google's format: NIH's columns then the four findings. ``rows``: (name, [4 cells])."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator=newline)
        writer.writerow(header)
        writer.writerows(nih_cells(name)[: len(header) - 4] + cells for name, cells in rows)
    return path


def write_torchxrayvision(path, rows):
    """torchxrayvision's copy: NIH's columns, the four findings, Set Id; gzipped. ``rows``: (name, [4], set id)."""
    with gzip.open(path, "wt", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(NIH_COLUMNS + FOUR + ["Set Id"])
        writer.writerows(nih_cells(name) + cells + [set_id] for name, cells, set_id in rows)
    return path


# ---------------------------------------------------------------------------------------------------------------
# Formats


def test_googles_two_files_in_its_folder(tmp_path):
    write_google(tmp_path / "four_findings_expert_labels" / "test_labels.csv",
                 [("00000001_000.png", ["NO", "YES", "NO", "NO"]), ("00000002_000.png", ["YES", "NO", "YES", "YES"])])
    write_google(tmp_path / "four_findings_expert_labels" / "validation_labels.csv",
                 [("00000003_000.png", ["NO", "NO", "YES", "NO"])], newline="\r\n")
    expert = read_expert_labels(paths=find_expert_label_files(tmp_path))
    assert [os.path.basename(p) for p in expert.files] == ["test_labels.csv", "validation_labels.csv"]
    assert expert.counts() == {"test": 2, "validation": 1}
    assert expert.labels["00000001_000.png"].labels == (0, 1, 0, 0)
    assert expert.labels["00000002_000.png"].labels == (1, 0, 1, 1)
    assert expert.labels["00000003_000.png"].google_split == "validation"
    assert expert.labels["00000003_000.png"].source.endswith("validation_labels.csv, line 2")
    assert expert.describe() == ("Google's expert labels (Majkowska et al., Radiology 2020) from test_labels.csv, "
                                 "validation_labels.csv: 2 test and 1 validation images")


def test_googles_files_flattened_into_one_name_and_with_other_columns(tmp_path):
    header = ["Patient ID", "Image Index", "Nodule or mass", "Airspace opacity", "Pneumothorax", "Fracture", "Notes"]
    with open(tmp_path / "four_findings_expert_labels_test_labels.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerow(["1", "00000001_000.png", "YES", "no", " NO ", "NO", "anything"])
    (path,) = find_expert_label_files(tmp_path)
    labels, unlabelled = read_expert_label_file(path)
    assert labels["00000001_000.png"].labels == (0, 0, 0, 1) and unlabelled == 0  # columns found by name


def test_torchxrayvision_copy_with_set_id(tmp_path):
    write_torchxrayvision(tmp_path / "google2019_nih-chest-xray-labels.csv.gz", [
        ("00000013_008.png", ["NO", "NO", "YES", "NO"], "test"),
        ("00000032_002.png", ["NO", "YES", "NO", "NO"], "val"),
    ])
    expert = read_expert_labels(paths=find_expert_label_files(tmp_path))
    assert expert.counts() == {"test": 1, "validation": 1}
    assert expert.labels["00000032_002.png"].google_split == "validation"
    assert expert.labels["00000013_008.png"].labels == (0, 0, 1, 0)


def test_rows_without_labels_are_skipped_as_not_adjudicated(tmp_path):
    path = write_google(tmp_path / "validation_labels.csv", [
        ("00000001_000.png", ["NO", "NO", "NO", "NO"]), ("00000002_000.png", ["", "", "", ""]),
    ])
    labels, unlabelled = read_expert_label_file(path)
    assert list(labels) == ["00000001_000.png"] and unlabelled == 1


def test_the_set_can_be_given_for_a_renamed_file(tmp_path):
    path = write_google(tmp_path / "labels.csv", [("00000001_000.png", ["NO", "NO", "NO", "NO"])])
    with pytest.raises(ExpertLabelError, match=r"labels\.csv: cannot tell whether it holds Google's test or "
                                                r"validation set"):
        read_expert_label_file(path)
    labels, _ = read_expert_label_file(path, google_split="test")
    assert labels["00000001_000.png"].google_split == "test"


def test_googles_files_win_over_torchxrayvisions_copy(tmp_path):
    write_google(tmp_path / "four_findings_expert_labels" / "test_labels.csv", [("00000001_000.png", ["NO"] * 4)])
    write_torchxrayvision(tmp_path / "google2019_nih-chest-xray-labels.csv.gz", [("00000002_000.png", ["NO"] * 4,
                                                                                  "test")])
    assert find_expert_label_files(tmp_path) == [str(tmp_path / "four_findings_expert_labels" / "test_labels.csv")]


# ---------------------------------------------------------------------------------------------------------------
# Errors


@pytest.mark.parametrize("rows, header, message", [
    ([("00000001_000.png", ["NO", "HEDGE", "NO", "NO"])], None,
     r"test_labels\.csv, line 2 \(00000001_000\.png\): Pneumothorax is 'HEDGE', expected YES or NO \(HEDGE is an "
     r"individual reader's answer"),
    ([("00000001_000.png", ["NO", "NO", "", "NO"])], None, r"line 2 \(00000001_000\.png\): Airspace opacity is 'empty'"),
    ([("00000001_000.png", ["NO"] * 4), ("00000001_000.png", ["YES"] * 4)], None,
     r"test_labels\.csv, line 3: 00000001_000\.png appears twice \(first at .*test_labels\.csv, line 2\)"),
    ([("0000001_000.png", ["NO"] * 4)], None, r"line 2: '0000001_000\.png' is not an image name"),
    ([], ["Image Index", "Fracture", "Pneumothorax", "Nodule or mass"],
     r"test_labels\.csv, line 1: the header lacks 'airspace opacity'"),
    ([], ["Image Index", "Reader ID", "Fracture", "Pneumothorax", "Airspace opacity", "Nodule or mass"],
     r"line 1: this is a file of individual readers' answers"),
])
def test_bad_google_files_are_named_by_file_and_line(tmp_path, rows, header, message):
    path = write_google(tmp_path / "test_labels.csv", rows, header=header or NIH_COLUMNS + FOUR)
    with pytest.raises(ExpertLabelError, match=message):
        read_expert_label_file(path)


def test_a_patient_id_that_differs_from_the_file_name_is_refused(tmp_path):
    path = tmp_path / "test_labels.csv"
    path.write_text("Image Index,Patient ID,Fracture,Pneumothorax,Airspace opacity,Nodule or mass\n"
                    "00000001_000.png,2,NO,NO,NO,NO\n")
    with pytest.raises(ExpertLabelError, match=r"line 2: Patient ID '2' differs from patient 00000001"):
        read_expert_label_file(path)


def test_an_unknown_set_id_is_refused(tmp_path):
    path = write_torchxrayvision(tmp_path / "google2019_nih-chest-xray-labels.csv.gz",
                                 [("00000001_000.png", ["NO"] * 4, "train")])
    with pytest.raises(ExpertLabelError, match=r"\.csv\.gz, line 2 \(00000001_000\.png\): Set Id is 'train'"):
        read_expert_label_file(path)


def test_an_image_in_two_files_and_two_copies_of_one_file_are_refused(tmp_path):
    write_google(tmp_path / "four_findings_expert_labels" / "test_labels.csv", [("00000001_000.png", ["NO"] * 4)])
    write_google(tmp_path / "four_findings_expert_labels" / "validation_labels.csv", [("00000001_000.png", ["NO"] * 4)])
    with pytest.raises(ExpertLabelError, match=r"validation_labels\.csv, line 2: 00000001_000\.png is labelled "
                                                r"twice \(also at .*test_labels\.csv, line 2\)"):
        read_expert_labels(paths=find_expert_label_files(tmp_path))
    write_google(tmp_path / "four_findings_expert_labels_test_labels.csv", [("00000001_000.png", ["NO"] * 4)])
    with pytest.raises(ExpertLabelError, match="two copies of one expert-label file"):
        find_expert_label_files(tmp_path)


def test_no_file_and_no_folder_get_advice(tmp_path):
    with pytest.raises(MissingMetadataError, match="has no expert-label file: put Google's "
                                                   "four_findings_expert_labels/test_labels.csv"):
        read_expert_labels(tmp_path)
    with pytest.raises(MissingMetadataError, match=r"nowhere\.csv not found"):
        read_expert_labels(paths=[tmp_path / "nowhere.csv"])


# ---------------------------------------------------------------------------------------------------------------
# Against NIH's lists, and matched to a built dataset


@pytest.fixture(scope="module")
def expert_release(tmp_path_factory):
    return make_release(tmp_path_factory.mktemp("expert"), num_patients=20, image_size=32, layout="images",
                        expert_labels="google", expert_label_fraction=0.5)


def independent_expert_labels(release):
    """Image → (Google set, 4 labels) read from the synthetic files with csv alone."""
    found = {}
    for google_split in ("test", "validation"):
        with open(release / "four_findings_expert_labels" / f"{google_split}_labels.csv", newline="") as handle:
            for row in csv.DictReader(handle):
                found[row["Image Index"]] = (google_split, [int(row[name] == "YES") for name in FOUR])
    return found


def test_synthetic_labels_follow_the_planted_findings_and_nihs_lists(expert_release):
    entries = raw_entries(expert_release)
    test_list = set(raw_list(expert_release, "test_list.txt"))
    found = independent_expert_labels(expert_release)
    assert {s for s, _ in found.values()} == {"test", "validation"}
    for name, (google_split, labels) in found.items():
        assert (name in test_list) == (google_split == "test")
        planted = set(entries[name]["findings"])
        assert labels[1:] == [int("Pneumothorax" in planted),
                              int(bool(planted & {"Atelectasis", "Consolidation", "Edema", "Infiltration",
                                                  "Pneumonia"})),
                              int(bool(planted & {"Nodule", "Mass"}))]
    assert sum(1 for n in test_list if n in found) == round(0.5 * len(test_list))


def test_labels_are_checked_against_the_entry_csv_and_nihs_lists(expert_release, tmp_path):
    expert = read_expert_labels(expert_release)  # passes: made from this release's lists
    assert len(expert) == len(independent_expert_labels(expert_release))

    train_val = raw_list(expert_release, "train_val_list.txt")
    write_google(tmp_path / "four_findings_expert_labels" / "test_labels.csv",
                 [(raw_list(expert_release, "test_list.txt")[0], ["NO"] * 4), (train_val[0], ["NO"] * 4)])
    for name in ("Data_Entry_2017_v2020.csv", "train_val_list.txt", "test_list.txt"):
        os.symlink(expert_release / name, tmp_path / name)
    with pytest.raises(ExpertLabelError, match=rf"test_labels\.csv, line 3: {train_val[0]} is in Google's test set "
                                                r"but not in .*test_list\.txt \(1 of its images are not\)"):
        read_expert_labels(tmp_path)
    write_google(tmp_path / "four_findings_expert_labels" / "test_labels.csv", [("00099999_000.png", ["NO"] * 4)])
    with pytest.raises(ExpertLabelError, match=r"line 2: 00099999_000\.png is not in .*Data_Entry_2017_v2020\.csv"):
        read_expert_labels(tmp_path)


def test_align_gives_the_test_splits_expert_images_labels_and_nih_labels(expert_release, tmp_path):
    ds = build(expert_release, tmp_path / "cache")
    expert = read_expert_labels(expert_release)
    found = independent_expert_labels(expert_release)
    ids = ds["test"]["image_id"]
    match = expert.align(ids)
    assert match.image_ids == [n for n in ids if n in found] and len(match.image_ids) > 0
    assert [ids[i] for i in match.indices] == match.image_ids and match.missing == []
    assert match.labels.tolist() == [found[n][1] for n in match.image_ids]
    assert match.mapped_labels.tolist() == [found[n][1][1:] for n in match.image_ids]
    # NIH's own labels mapped by the same rule: the synthetic experts agree with them by construction
    nih = np.asarray(ds["test"]["labels"])[match.indices]
    np.testing.assert_array_equal(to_expert_findings(nih), match.mapped_labels)

    validation = expert.align(ds["train"]["image_id"], google_split="validation")
    assert validation.image_ids == [n for n in ds["train"]["image_id"] if found.get(n, ("",))[0] == "validation"]
    both = expert.align(ds["validation"]["image_id"], google_split=None)
    assert set(both.missing) == set(found) - set(ds["validation"]["image_id"])


def test_coverage_counts_googles_sets_in_each_split(expert_release, tmp_path):
    ds = build(expert_release, tmp_path / "cache")
    found = independent_expert_labels(expert_release)
    coverage = read_expert_labels(expert_release).coverage({split: d["image_id"] for split, d in ds.items()})
    for split, dataset in ds.items():
        expected = {s: sum(1 for n in dataset["image_id"] if found.get(n, ("",))[0] == s) for s in ("test", "validation")}
        assert coverage[split] == expected
    assert coverage["train"]["test"] == coverage["validation"]["test"] == 0


def test_torchxrayvision_format_sample_reads_the_same_labels(expert_release, tmp_path):
    other = make_release(tmp_path / "tx", num_patients=20, image_size=32, layout="images",
                         expert_labels="torchxrayvision", expert_label_fraction=0.5)
    google = read_expert_labels(expert_release)
    torchxrayvision = read_expert_labels(other)
    assert {n: (l.google_split, l.labels) for n, l in torchxrayvision.labels.items()} == {
        n: (l.google_split, l.labels) for n, l in google.labels.items()}


@needs_real_metadata
def test_synthetic_google_files_are_checked_against_nihs_real_lists(tmp_path):
    from nih_chestxray14.metadata import read_release_metadata

    release = read_release_metadata(str(real_metadata_dir()))
    rng = random.Random(0)
    test = rng.sample(sorted(release.test), 50)
    validation = rng.sample(sorted(release.train_val), 50)
    folder = tmp_path / "four_findings_expert_labels"
    write_google(folder / "test_labels.csv", [(n, [rng.choice(["YES", "NO"]) for _ in FOUR]) for n in test])
    write_google(folder / "validation_labels.csv", [(n, ["NO"] * 4) for n in validation])
    expert = read_expert_labels(paths=find_expert_label_files(tmp_path), release=release)
    assert expert.counts() == {"test": 50, "validation": 50}
    assert expert.align(sorted(release.test)).image_ids == sorted(test)

    write_google(folder / "validation_labels.csv", [(n, ["NO"] * 4) for n in validation[:10] + test[:1]])
    with pytest.raises(ExpertLabelError, match=rf"validation_labels\.csv, line 12: {test[0]} is in Google's "
                                                r"validation set but not in .*train_val_list\.txt"):
        read_expert_labels(paths=[folder / "validation_labels.csv"], release=release)
