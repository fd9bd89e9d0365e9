"""The builder on NIH's real metadata, with tiny generated PNGs standing in for all 112,120 images (skipped without
the metadata)."""

from __future__ import annotations

import gzip
import os
from collections import Counter

import datasets
import numpy as np
import pytest

import nih_chestxray14  # noqa: F401  (registers the builder)
from nih_chestxray14.labels import LABELS
from nih_chestxray14.sample import encode_png
from release_fixtures import needs_real_metadata, raw_metadata, real_metadata_dir


@pytest.mark.slow
@needs_real_metadata
def test_builder_on_real_metadata_with_tiny_stand_in_images(tmp_path):
    entries, train_val, test = raw_metadata()
    data_dir = tmp_path / "nih"
    data_dir.mkdir()
    for name in ("Data_Entry_2017_v2020.csv.gz", "BBox_List_2017.csv.gz", "train_val_list.txt", "test_list.txt"):
        os.symlink(real_metadata_dir() / name, data_dir / name)
    # One 8 x 8 PNG under every name, extracted as images/*.png (three passes over 112,120 tar members would take
    # longer than writing the files).
    png = encode_png(np.full((8, 8), 100, dtype=np.uint8))
    (data_dir / "images").mkdir()
    for name in entries:
        (data_dir / "images" / name).write_bytes(png)

    ds = datasets.load_dataset("nih_chestxray14", data_dir=str(data_dir), cache_dir=str(tmp_path / "cache"))
    columns = {split: dataset.data.select(["image_id", "labels", "bboxes"]).to_pydict() for split, dataset in ds.items()}
    ids = {split: column["image_id"] for split, column in columns.items()}

    assert len(ids["test"]) == len(test) == 25_596
    assert sorted(ids["test"]) == sorted(test)
    assert len(ids["train"]) + len(ids["validation"]) == len(train_val) == 86_524
    assert sorted(ids["train"] + ids["validation"]) == sorted(train_val)
    patients = {split: {entries[name][0] for name in split_ids} for split, split_ids in ids.items()}
    assert not patients["train"] & patients["validation"]
    assert not (patients["train"] | patients["validation"]) & patients["test"]
    assert 0.09 < len(patients["validation"]) / (len(patients["train"]) + len(patients["validation"])) < 0.11

    for split in ds:
        independent = Counter(finding for name in ids[split] for finding in entries[name][1])
        labels = np.asarray(columns[split]["labels"], dtype=np.int64).sum(axis=0)
        assert dict(zip(LABELS, labels.tolist())) == {label: independent[label] for label in LABELS}, split

    with gzip.open(real_metadata_dir() / "BBox_List_2017.csv.gz", "rt") as handle:
        box_rows = handle.read().splitlines()[1:]
    found = Counter(
        (name, LABELS[box["finding"]])
        for split in ds
        for name, boxes in zip(ids[split], columns[split]["bboxes"])
        for box in boxes
    )
    expected = Counter(
        (row.split(",")[0], row.split(",")[1].replace("Infiltrate", "Infiltration")) for row in box_rows
    )
    assert found == expected and sum(found.values()) == 984
