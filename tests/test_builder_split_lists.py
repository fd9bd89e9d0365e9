"""The builder on the user's own split lists, through ``load_dataset``: the splits, the recorded split description,
the cache, errors, streaming and the command line."""

from __future__ import annotations

import logging
import re

import pytest

import nih_chestxray14
from nih_chestxray14 import NIHChestXray14, split_description
from nih_chestxray14.__main__ import main
from nih_chestxray14.errors import SplitError
from nih_chestxray14.publish import PublishError, export
from nih_chestxray14.splits import is_validation_patient
from release_fixtures import build, images_release, raw_entries, raw_list  # noqa: F401  (fixtures)


def patient_lists(release, tmp_path, *, validation=True, extra=None):
    """Lists by patient, CheXNet-style (name and 14 labels): ~60% train, ~20% validation, the rest test."""
    entries = raw_entries(release)
    patients = sorted({entry["patient"] for entry in entries.values()})
    cut_train, cut_validation = int(0.6 * len(patients)), int(0.8 * len(patients))
    group = {p: "train" if i < cut_train else "validation" if i < cut_validation else "test"
             for i, p in enumerate(patients)}
    if not validation:
        group = {p: "train" if g == "validation" else g for p, g in group.items()}
    names = {split: sorted(n for n, e in entries.items() if group[e["patient"]] == split) for split in set(group.values())}
    for split, added in (extra or {}).items():
        names[split] = names[split] + added
    paths = {}
    for split, split_names in names.items():
        path = tmp_path / f"{split}_list.txt"
        path.write_text("".join(f"{name} {' '.join('0' * 14)}\n" for name in split_names))
        paths[split] = str(path)
    return paths, names


def sizes(ds, entries):
    """split → (images, patients), computed from the dataset's ids and the entry CSV read with csv alone."""
    return {split: (len(d), len({entries[n]["patient"] for n in d["image_id"]})) for split, d in ds.items()}


def test_lists_become_the_splits_with_the_entry_csvs_labels(images_release, tmp_path):
    lists, names = patient_lists(images_release, tmp_path)
    ds = build(images_release, tmp_path / "cache", split_lists=lists)
    entries = raw_entries(images_release)
    assert {split: sorted(d["image_id"]) for split, d in ds.items()} == names
    for example in ds["test"].select_columns(["image_id", "findings"]):
        assert [nih_chestxray14.LABELS[i] for i in example["findings"]] == sorted(
            entries[example["image_id"]]["findings"], key=nih_chestxray14.LABELS.index)


def test_the_split_is_recorded_and_read_back_with_files_digests_and_sizes(images_release, tmp_path):
    lists, _ = patient_lists(images_release, tmp_path)
    ds = build(images_release, tmp_path / "cache", split_lists=lists)
    text = split_description(ds)
    assert text == split_description(ds["validation"]) == split_description(ds["test"].info)
    assert text.startswith("Custom split lists (checked disjoint and patient-wise): train = train_list.txt (sha256 ")
    assert "validation = validation_list.txt" in text and "test = test_list.txt" in text
    for split, (images, patients) in sizes(ds, raw_entries(images_release)).items():
        assert f"{split} {images:,} images of {patients:,} patients" in text


def test_the_official_split_is_recorded_too(images_release, tmp_path):
    ds = build(images_release, tmp_path / "cache")
    text = split_description(ds)
    assert text.startswith("NIH's official patient-wise split: test = NIH's test_list.txt; train + validation")
    assert "(validation_fraction=0.1)" in text
    for split, (images, patients) in sizes(ds, raw_entries(images_release)).items():
        assert f"{split} {images:,} images of {patients:,} patients" in text
    assert "official" in split_description(build(images_release, tmp_path / "other", validation_fraction=0.0))


def test_without_a_validation_list_validation_follows_the_hash_rule_and_says_so(images_release, tmp_path):
    lists, names = patient_lists(images_release, tmp_path, validation=False)
    ds = build(images_release, tmp_path / "cache", split_lists=lists, validation_fraction=0.4)
    entries = raw_entries(images_release)
    expected = sorted(n for n in names["train"] if is_validation_patient(entries[n]["patient"], 0.4))
    assert expected and sorted(ds["validation"]["image_id"]) == expected
    assert "validation = the patients of train_list.txt picked by the salted SHA-256 rule" in split_description(ds)


def test_a_reload_reuses_the_cache_and_an_edited_list_is_built_again(images_release, tmp_path):
    lists, names = patient_lists(images_release, tmp_path)
    kwargs = dict(config_name="default", data_dir=str(images_release), cache_dir=str(tmp_path / "cache"))
    first = NIHChestXray14(split_lists=lists, **kwargs)
    first.download_and_prepare()
    again = NIHChestXray14(split_lists=dict(lists), **kwargs)
    assert again.cache_dir == first.cache_dir
    assert split_description(again.as_dataset()) == split_description(first.as_dataset())
    assert NIHChestXray14(**kwargs).cache_dir != first.cache_dir  # the official split has its own cache

    with open(lists["test"], "a") as handle:  # same path, one more image: moved from validation
        handle.write(names["validation"][0] + "\n")
    with open(lists["validation"], "w") as handle:
        handle.write("".join(name + "\n" for name in names["validation"][1:]))
    edited = NIHChestXray14(split_lists=lists, allow_split_overlap=True, **kwargs)
    assert edited.cache_dir != first.cache_dir


def test_a_listed_image_without_a_row_reaches_load_dataset_as_itself(images_release, tmp_path):
    lists, names = patient_lists(images_release, tmp_path, extra={"test": ["00099999_000.png"]})
    line = len(names["test"])  # the last line
    with pytest.raises(SplitError, match=rf"test_list\.txt, line {line}: 00099999_000\.png is not in the entry CSV"):
        build(images_release, tmp_path / "cache", split_lists=lists)
    assert not list((tmp_path / "cache").glob("**/*.arrow"))


def test_shared_patients_are_refused_unless_allowed_and_the_record_says_so(images_release, tmp_path, caplog):
    _, names = patient_lists(images_release, tmp_path)
    lists, _ = patient_lists(images_release, tmp_path, extra={"test": names["validation"][:1]})
    with pytest.raises(SplitError, match=r"validation_list\.txt and test_list\.txt share 1 images .* and 1 patients"):
        build(images_release, tmp_path / "cache", split_lists=lists)
    with caplog.at_level(logging.WARNING):
        ds = build(images_release, tmp_path / "cache", split_lists=lists, allow_split_overlap=True)
    assert names["validation"][0] in ds["test"]["image_id"] and names["validation"][0] in ds["validation"]["image_id"]
    assert "share 1 images" in caplog.text
    assert split_description(ds).startswith("Custom split lists (NOT disjoint and patient-wise, built with "
                                            "allow_split_overlap=True: validation_list.txt and test_list.txt share")


def test_allow_split_overlap_without_lists_is_refused(images_release, tmp_path):
    with pytest.raises(ValueError, match="allow_split_overlap applies only with split_lists"):
        build(images_release, tmp_path / "cache", allow_split_overlap=True)


def test_label_disagreements_in_the_lists_are_logged_and_the_entry_csv_wins(images_release, tmp_path, caplog):
    lists, names = patient_lists(images_release, tmp_path)  # every line says "no finding"
    entries = raw_entries(images_release)
    differing = sum(1 for split_names in names.values() for n in split_names if entries[n]["findings"])
    with caplog.at_level(logging.WARNING, logger="nih_chestxray14.builder"):
        ds = build(images_release, tmp_path / "cache", split_lists=lists)
    assert f"{differing} lines of the split lists carry labels that differ" in caplog.text
    assert sum(sum(row) for split in ds.values() for row in split["labels"]) > 0


def test_streaming_reads_the_same_splits_and_records_the_lists(images_release, tmp_path):
    lists, names = patient_lists(images_release, tmp_path)
    streamed = build(images_release, tmp_path / "cache", split_lists=lists, streaming=True)
    assert {split: sorted(row["image_id"] for row in d) for split, d in streamed.items()} == names
    assert split_description(streamed).startswith("Custom split lists (checked disjoint and patient-wise): train = "
                                                  "train_list.txt (sha256 ")


def test_prepare_command_takes_split_lists_and_prints_the_split(images_release, tmp_path, capsys):
    lists, _ = patient_lists(images_release, tmp_path)
    argv = ["prepare", "--data-dir", str(images_release), "--cache-dir", str(tmp_path / "cache")]
    for split, path in lists.items():
        argv += ["--split-list", f"{split}={path}"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert re.search(r"^split: Custom split lists .* test = test_list\.txt", out, re.MULTILINE)

    assert main(argv[:5] + ["--split-list", f"tset={lists['test']}"]) == 2
    assert "'tset=" in capsys.readouterr().err
    assert main(argv[:5] + ["--allow-split-overlap"]) == 2
    assert "--allow-split-overlap applies only with --split-list" in capsys.readouterr().err


def test_export_refuses_a_custom_split_whose_card_would_name_the_official_one(images_release, tmp_path):
    lists, _ = patient_lists(images_release, tmp_path)
    with pytest.raises(PublishError, match="would name the wrong split"):
        export(images_release, tmp_path / "out", ["default"], cache_dir=tmp_path / "cache", split_lists=lists)
    assert not (tmp_path / "out").exists()


def test_data_not_built_here_has_no_recorded_split():
    import datasets

    with pytest.raises(ValueError, match="does not record its split"):
        split_description(datasets.Dataset.from_dict({"image_id": ["00000001_000.png"]}))
