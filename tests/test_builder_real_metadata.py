"""The builder on NIH's real metadata, with tiny generated PNGs standing in for the pixels (skipped without it)."""

from __future__ import annotations

import gzip
import io
import os
import tarfile
from collections import Counter

import datasets
import numpy as np

import nih_chestxray14  # noqa: F401  (registers the builder)
from nih_chestxray14.labels import LABELS
from nih_chestxray14.sample import encode_png
from nih_chestxray14.splits import is_validation_patient
from release_fixtures import needs_real_metadata, raw_metadata, real_metadata_dir


@needs_real_metadata
def test_builder_on_real_metadata_with_tiny_stand_in_images(tmp_path):
    """The builder on NIH's files, with 8 × 8 PNGs standing in for the images of ~600 patients (a partial download)."""
    entries, train_val, test = raw_metadata()
    data_dir = tmp_path / "nih"
    data_dir.mkdir()
    for name in ("Data_Entry_2017_v2020.csv.gz", "BBox_List_2017.csv.gz", "train_val_list.txt", "test_list.txt"):
        os.symlink(real_metadata_dir() / name, data_dir / name)
    chosen = sorted(name for name, (patient, _) in entries.items() if patient % 50 == 0)
    png = encode_png(np.full((8, 8), 100, dtype=np.uint8))
    with tarfile.open(data_dir / "images_001.tar.gz", "w:gz", compresslevel=1) as archive:
        for name in chosen:
            info = tarfile.TarInfo(f"images/{name}")
            info.size = len(png)
            archive.addfile(info, io.BytesIO(png))

    ds = datasets.load_dataset("nih_chestxray14", data_dir=str(data_dir), cache_dir=str(tmp_path / "cache"),
                               allow_missing_images=True)
    test_set = set(test)
    for split, dataset in ds.items():
        names = [name for name in chosen if (name in test_set) == (split == "test")]
        expected = [
            name for name in names if split == "test" or (split == "validation") == is_validation_patient(entries[name][0])
        ]
        assert sorted(dataset["image_id"]) == expected
        independent = Counter(finding for name in dataset["image_id"] for finding in entries[name][1])
        labels = np.asarray(list(dataset["labels"])).sum(axis=0)
        assert dict(zip(LABELS, labels.tolist())) == {label: independent[label] for label in LABELS}
    boxes = sum(len(b) for split in ds.values() for b in split["bboxes"])
    with gzip.open(real_metadata_dir() / "BBox_List_2017.csv.gz", "rt") as handle:
        expected_boxes = sum(1 for line in handle if line.split(",")[0] in set(chosen))
    assert boxes == expected_boxes
