"""Synthetic NIH releases for the builder tests, written once per session into temporary folders.

Test modules import the fixtures they use (``from release_fixtures import archives_release``), or the lead lists this
module in ``tests/conftest.py``'s ``pytest_plugins``. Helpers here read the release's files with the ``csv`` module
only, so that expectations do not come from the code under test.
"""

from __future__ import annotations

import csv
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
