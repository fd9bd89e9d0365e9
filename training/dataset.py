"""Get the recipe its ``DatasetDict`` (train / validation / test): from the project's builder or an exported copy.

The recipe never parses NIH's CSVs: with ``--dataset_name nih_chestxray14`` it asks the builder, otherwise it loads
the exported Parquet dataset (a Hub id or a local folder) with ``datasets.load_dataset``. The builder needs the
``datasets`` versions the package supports (``setup.cfg``); the IPU environment has an older one (datasets 3, which
transformers 4.29 allows), where the recipe reads the Parquet export instead and says so.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import datasets
import pyarrow.compute as pc
from packaging.requirements import Requirement

import nih_chestxray14
from nih_chestxray14.datasets_compat import SUPPORTED as BUILDER_DATASETS_VERSIONS
from nih_chestxray14.hub import is_hub_id
from nih_chestxray14.labels import LABELS, NUM_LABELS
from nih_chestxray14.metadata import TEST_LIST
from training.arguments import BUILDER_DATASET, DataTrainingArguments

logger = logging.getLogger(__name__)

REQUIRED_SPLITS = ("train", "validation", "test")
SAMPLE_RELEASE_MARKER = TEST_LIST
"""A folder holding this file already holds a release; ``--make_sample_release`` leaves it alone."""


def write_sample_release(data_args: DataTrainingArguments) -> Optional[Path]:
    """With ``--make_sample_release``, write a synthetic release into ``--data_dir`` unless one is already there.

    Returns the folder, or ``None`` when no sample release was asked for. Run it on the main process first
    (``TrainingArguments.main_process_first``) so that several processes don't write the same files.
    """
    if not data_args.make_sample_release:
        return None
    check_builder_supported()
    from nih_chestxray14.sample import make_release

    root = Path(data_args.data_dir)
    if (root / SAMPLE_RELEASE_MARKER).is_file():
        logger.info("using the release already in %s", root)
        return root
    logger.info(
        "writing a synthetic release (%d patients x %d images, %d px) to %s",
        data_args.sample_num_patients, data_args.sample_images_per_patient, data_args.sample_image_size, root,
    )
    return make_release(
        root,
        num_patients=data_args.sample_num_patients,
        images_per_patient=data_args.sample_images_per_patient,
        image_size=data_args.sample_image_size,
        layout="images",
        signal=True,
        signal_strength=data_args.sample_signal_strength,
        bbox_fraction=data_args.sample_bbox_fraction,
        prevalence=None if data_args.sample_prevalence is None else {name: data_args.sample_prevalence for name in LABELS},
        seed=data_args.sample_seed,
        expert_labels="google",  # synthetic ones in Google's format, so that the evaluation scores against them too
    )


def load_chestxray14(data_args: DataTrainingArguments, cache_dir: Optional[str] = None) -> datasets.DatasetDict:
    """Load the train, validation and test splits.

    Raises:
        ValueError: if the dataset can't be found or loaded (the message names ``--dataset_name``/``--data_dir``), or
            if it lacks a split, the ``image`` column or 14-long ``labels``.
    """
    if data_args.dataset_name == BUILDER_DATASET:
        dataset = _load_from_builder(data_args, cache_dir)
    else:
        dataset = _load_exported(data_args, cache_dir)
    check_dataset(dataset, data_args.dataset_name)
    return dataset


def check_builder_supported() -> None:
    """Raise ``ValueError`` unless this environment's ``datasets`` is one the builder supports.

    The IPU environment's datasets 3 is not: the builder (and the synthetic release writer) are written and tested
    against the versions of ``setup.cfg``. There the data comes as the Parquet export, made in the main environment.
    """
    if Requirement(BUILDER_DATASETS_VERSIONS).specifier.contains(datasets.__version__, prereleases=True):
        return
    raise ValueError(
        f"--dataset_name {BUILDER_DATASET} builds the dataset with this package's builder, which needs "
        f"{BUILDER_DATASETS_VERSIONS}; this environment has datasets {datasets.__version__} (as the IPU environment "
        "does). Export the dataset where the builder runs (python -m nih_chestxray14 export --data-dir <release> "
        "--config resized-224 <folder>) and pass --dataset_name <folder> --dataset_config_name resized-224"
    )


def _load_from_builder(data_args: DataTrainingArguments, cache_dir: Optional[str]) -> datasets.DatasetDict:
    check_builder_supported()
    if not Path(data_args.data_dir).is_dir():
        raise ValueError(f"--data_dir {data_args.data_dir} is not a folder: give the folder of the NIH release")
    configs = [config.name for config in nih_chestxray14.NIHChestXray14.BUILDER_CONFIGS]
    if data_args.dataset_config_name not in (None, *configs):
        raise ValueError(f"--dataset_config_name {data_args.dataset_config_name!r} is not one of the builder's "
                         f"configs: {', '.join(configs)}")
    config_kwargs = {"allow_missing_images": data_args.allow_missing_images}
    if data_args.split_lists:
        config_kwargs.update(split_lists=data_args.split_list_files(),
                             allow_split_overlap=data_args.allow_split_overlap)
    if data_args.validation_fraction is not None:
        config_kwargs["validation_fraction"] = data_args.validation_fraction
    return nih_chestxray14.load(
        data_args.dataset_config_name or "default",
        data_dir=data_args.data_dir,
        num_proc=data_args.preprocessing_num_workers,
        cache_dir=cache_dir,
        **config_kwargs,
    )


def _load_exported(data_args: DataTrainingArguments, cache_dir: Optional[str]) -> datasets.DatasetDict:
    name = data_args.dataset_name
    if not is_hub_id(name) and not Path(name).expanduser().exists():
        raise ValueError(
            f"--dataset_name {name!r}: no such folder. Give the folder of the exported dataset, a Hub id, or "
            f"{BUILDER_DATASET!r} with --data_dir"
        )
    location = name if is_hub_id(name) else str(Path(name).expanduser())
    try:
        dataset = datasets.load_dataset(
            location, data_args.dataset_config_name, cache_dir=cache_dir, num_proc=data_args.preprocessing_num_workers
        )
    except (FileNotFoundError, ConnectionError, datasets.exceptions.DatasetNotFoundError) as error:
        raise ValueError(
            f"--dataset_name {name!r} is neither {BUILDER_DATASET!r}, a local folder of the exported dataset, nor a "
            f"dataset reachable on the Hub ({type(error).__name__}: {error})"
        ) from None
    if not isinstance(dataset, datasets.DatasetDict):
        raise ValueError(f"--dataset_name {name!r} loaded as one {type(dataset).__name__}, expected train/validation/test splits")
    return dataset


def check_dataset(dataset: datasets.DatasetDict, name: str) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``dataset`` has the splits and columns the recipe reads."""
    missing = [split for split in REQUIRED_SPLITS if split not in dataset]
    if missing:
        raise ValueError(f"dataset {name!r} has no {', '.join(missing)} split (it has {', '.join(dataset)})")
    features = dataset["train"].features
    if "image" not in features or "labels" not in features:
        raise ValueError(f"dataset {name!r} needs 'image' and 'labels' columns, it has {', '.join(features)}")
    length = getattr(features["labels"], "length", None)
    if length not in (None, -1, NUM_LABELS):
        raise ValueError(f"dataset {name!r}: 'labels' must be multi-hot vectors of length {NUM_LABELS}, got {length}")
    if length in (None, -1):  # a list of any length, as datasets 3 reads the export's fixed-length one: check each row
        for split in REQUIRED_SPLITS:
            _check_label_lengths(dataset[split], f"dataset {name!r} split {split!r}")


def _check_label_lengths(split: datasets.Dataset, where: str) -> None:
    """Raise ``ValueError`` naming the first row whose ``labels`` is not 14 long; reads only the Arrow offsets."""
    lengths = pc.list_value_length(split.data.column("labels"))
    if pc.all(pc.equal(lengths, NUM_LABELS)).as_py() is not False and lengths.null_count == 0:
        return
    bad = pc.index(pc.fill_null(pc.equal(lengths, NUM_LABELS), False), False).as_py()
    found = lengths[bad].as_py()
    raise ValueError(f"{where}: row {bad} has {'no' if found is None else found} labels, expected {NUM_LABELS} "
                     "(a multi-hot vector per image)")


def split_used(dataset: datasets.DatasetDict, data_args: DataTrainingArguments) -> str:
    """The split the dataset was built on, in words, for the evaluation reports and the card.

    The builder records it in the dataset (``nih_chestxray14.split_description``): NIH's official split with its
    validation rule, or the user's ``--split_lists`` by file name and SHA-256, with each split's size. An exported
    copy does not record it; its card does.
    """
    try:
        return nih_chestxray14.split_description(dataset)
    except ValueError:
        return (f"the splits of the exported dataset {data_args.dataset_name!r}, as made when it was exported (its "
                "dataset card describes them)")
