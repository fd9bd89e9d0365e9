"""Synthetic NIH releases for the builder tests, written once per session into temporary folders.

Test modules import the fixtures they use (``from release_fixtures import archives_release``). Helpers here read the release's files with the ``csv`` module
only, so that expectations do not come from the code under test.
"""

from __future__ import annotations

import csv
import gzip
import os
import shutil
from pathlib import Path
from typing import Dict, List

import datasets
import pytest

from nih_chestxray14.sample import make_release

SMALL = {"num_patients": 20, "images_per_patient": 3, "image_size": 48}
"""60 images of 48 × 48: every finding in each split, builds in well under a second."""


@pytest.fixture(scope="session")
def archives_release(tmp_path_factory) -> Path:
    """NIH's layout: images_001.tar.gz … images_003.tar.gz beside the metadata."""
    return make_release(tmp_path_factory.mktemp("archives"), layout="archives", **SMALL)


@pytest.fixture(scope="session")
def images_release(tmp_path_factory) -> Path:
    """The same release extracted to images/*.png."""
    return make_release(tmp_path_factory.mktemp("images"), layout="images", **SMALL)


@pytest.fixture(scope="session")
def kaggle_release(tmp_path_factory) -> Path:
    """The same release in Kaggle's images_0NN/images/*.png folders, with Kaggle's Data_Entry_2017.csv."""
    return make_release(tmp_path_factory.mktemp("kaggle"), layout="kaggle", csv_variant="2017", **SMALL)


def copy_release(release: Path, destination: Path) -> Path:
    """A private copy of a session release, for tests that damage it."""
    return Path(shutil.copytree(release, destination / release.name))


def build(data_dir, cache_dir, name: str = "default", **kwargs) -> datasets.DatasetDict:
    """``load_dataset("nih_chestxray14", name, ...)`` with a per-test cache."""
    return datasets.load_dataset(
        "nih_chestxray14", name, data_dir=str(data_dir), cache_dir=str(cache_dir), **kwargs
    )


def entry_csv(release: Path) -> Path:
    """The release's entry CSV, whichever name it has."""
    (path,) = [path for path in release.iterdir() if path.name.startswith("Data_Entry_2017")]
    return path


def raw_entries(release: Path) -> Dict[str, Dict[str, object]]:
    """Image name → {"patient": int, "findings": [names]} read with the csv module alone."""
    with open(entry_csv(release), newline="") as handle:
        rows = list(csv.reader(handle))
    entries = {}
    for row in rows[1:]:
        findings = [] if row[1] == "No Finding" else row[1].split("|")
        entries[row[0]] = {"patient": int(row[3]), "findings": findings}
    return entries


def raw_list(release: Path, name: str) -> List[str]:
    """The names in train_val_list.txt or test_list.txt."""
    return (release / name).read_text().split()


# ---------------------------------------------------------------------------------------------------------------
# NIH's real metadata (no images), beside the repository or where NIH_CHESTXRAY14_METADATA points


def real_metadata_dir() -> Path:
    default = Path(__file__).resolve().parents[2] / "shared" / "data" / "nih-chestxray14"
    return Path(os.environ.get("NIH_CHESTXRAY14_METADATA", default))


needs_real_metadata = pytest.mark.skipif(
    not (real_metadata_dir() / "Data_Entry_2017_v2020.csv.gz").is_file(),
    reason=f"NIH's real metadata is not at {real_metadata_dir()} (set NIH_CHESTXRAY14_METADATA to its folder)",
)


def raw_metadata():
    """Image → (patient, findings), and the two lists, read with nothing but csv and str.split."""
    folder = real_metadata_dir()
    with gzip.open(folder / "Data_Entry_2017_v2020.csv.gz", "rt", newline="") as handle:
        rows = list(csv.reader(handle))[1:]
    entries = {row[0]: (int(row[3]), [] if row[1] == "No Finding" else row[1].split("|")) for row in rows}
    train_val = (folder / "train_val_list.txt").read_text().split()
    test = (folder / "test_list.txt").read_text().split()
    return entries, train_val, test
