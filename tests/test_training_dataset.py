"""The recipe's dataset checks: label rows of the wrong length, and the builder outside its datasets versions."""

import datasets
import numpy as np
import pytest
from PIL import Image

from training import dataset as recipe_dataset


def splits_with_labels(rows_by_split):
    """A DatasetDict whose ``labels`` are lists of any length (as datasets 3 reads the export's fixed-length ones)."""
    features = datasets.Features({"image": datasets.Image(), "labels": datasets.List(datasets.Value("int8"))})
    image = Image.fromarray(np.zeros((4, 4), dtype=np.uint8))
    return datasets.DatasetDict({
        split: datasets.Dataset.from_dict({"image": [image] * len(rows), "labels": rows}, features=features)
        for split, rows in rows_by_split.items()
    })


def test_labels_of_any_length_are_checked_row_by_row():
    good = [[0] * 14, [1] + [0] * 13]
    recipe_dataset.check_dataset(splits_with_labels({"train": good, "validation": good, "test": good}), "export")
    short = [[0] * 14, [0] * 13]
    with pytest.raises(ValueError, match=r"'export' split 'validation': row 1 has 13 labels, expected 14"):
        recipe_dataset.check_dataset(splits_with_labels({"train": good, "validation": short, "test": good}), "export")
    with pytest.raises(ValueError, match=r"split 'test': row 0 has no labels, expected 14"):
        recipe_dataset.check_dataset(splits_with_labels({"train": good, "validation": good, "test": [None, [0] * 14]}),
                                     "export")


def test_the_builder_is_refused_where_datasets_is_not_a_version_it_supports(monkeypatch):
    recipe_dataset.check_builder_supported()  # this environment's datasets
    monkeypatch.setattr(datasets, "__version__", "3.6.0")  # the IPU environment's
    with pytest.raises(ValueError, match=r"needs datasets>=5\.0,<5\.3; this environment has datasets 3\.6\.0.*"
                                         r"python -m nih_chestxray14 export .*--dataset_name <folder>"):
        recipe_dataset.check_builder_supported()
