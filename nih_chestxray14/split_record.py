"""The split a dataset was built on, in words: written into its ``DatasetInfo.description``, read back from it.

A report or a card must name the split its numbers come from. The builder ends its ``DatasetInfo.description`` with
one line that starts with :data:`SPLIT_LINE_PREFIX` and holds :func:`describe_split`'s sentence: NIH's official
split with the validation rule and fraction, or the user's lists by file name and SHA-256 (:mod:`.split_lists`),
with each split's image and patient counts once the dataset is built. :func:`split_description` reads it back from
a loaded ``Dataset``, ``DatasetDict``, their streaming variants or a ``DatasetInfo``::

    ds = load_dataset("nih_chestxray14", data_dir=...)
    split_description(ds)  # "NIH's official patient-wise split: test = NIH's test_list.txt; ..."

A streaming dataset's counts are those of the lists: it finds a missing image only once it reads that far.
"""

from __future__ import annotations

import os
from typing import Mapping, Optional, Tuple, Union

from .split_lists import SplitList
from .splits import SPLITS, TEST, TRAIN, VALIDATION

SPLIT_LINE_PREFIX = "Split: "
"""The description line that records the split starts with this."""

_DIGEST_CHARS = 12


def _list_name(value: Union[str, os.PathLike, SplitList]) -> str:
    if isinstance(value, SplitList):
        return f"{value.file_name} (sha256 {value.sha256[:_DIGEST_CHARS]})"
    return os.path.basename(os.fspath(value))


def _fraction(validation_fraction: float) -> str:
    return f"validation_fraction={float(validation_fraction):g}"


def describe_split(
    split_lists: Optional[Mapping[str, Union[str, os.PathLike, SplitList]]] = None,
    validation_fraction: float = 0.1,
    counts: Optional[Mapping[str, Tuple[int, int]]] = None,
    *,
    unlisted: int = 0,
    shared: str = "",
) -> str:
    """One paragraph naming the split, for a report, a card or ``DatasetInfo.description``.

    Args:
        split_lists: ``None`` for NIH's official split; else the builder's ``split_lists`` (split → path), or the
            lists as read (split → :class:`~.split_lists.SplitList`, which adds each file's SHA-256).
        validation_fraction: the builder's parameter; it decides validation unless ``split_lists`` has a validation
            list.
        counts: split → ``(images, patients)`` as built; splits not in it are left out of the sizes.
        unlisted: images of the entry CSV that no custom list holds.
        shared: what the lists share, when they were built with ``allow_split_overlap=True`` (empty otherwise).

    Returns:
        e.g. ``"NIH's official patient-wise split: test = NIH's test_list.txt; train + validation = NIH's
        train_val_list.txt, validation = the train_val patients picked by the salted SHA-256 rule of
        nih_chestxray14.splits (validation_fraction=0.1). Sizes: train 77,955 images of 25,256 patients; ..."``
    """
    carved = "picked by the salted SHA-256 rule of nih_chestxray14.splits"
    if not split_lists:
        text = "NIH's official patient-wise split: test = NIH's test_list.txt; train + validation = NIH's " \
               "train_val_list.txt"
        if float(validation_fraction) > 0:
            text += f", validation = the train_val patients {carved} ({_fraction(validation_fraction)})."
        else:
            text += ", with no validation split (validation_fraction=0)."
    else:
        parts = [f"{split} = {_list_name(split_lists[split])}" for split in SPLITS if split in split_lists]
        if VALIDATION not in split_lists:
            train = _list_name(split_lists[TRAIN]).split(" (")[0]
            parts.insert(1, f"validation = the patients of {train} {carved} ({_fraction(validation_fraction)})"
                         if float(validation_fraction) > 0 else "no validation split (validation_fraction=0)")
        checked = (f"NOT disjoint and patient-wise, built with allow_split_overlap=True: {shared}" if shared
                   else "checked disjoint and patient-wise")
        text = f"Custom split lists ({checked}): {'; '.join(parts)}."
        if unlisted:
            text += f" {unlisted:,} images of the entry CSV are in no list and left out."
    if counts:
        sizes = [f"{split} {counts[split][0]:,} images of {counts[split][1]:,} patients"
                 for split in (TRAIN, VALIDATION, TEST) if split in counts]
        text += f" Sizes: {'; '.join(sizes)}."
    return text


def split_line(description: str) -> str:
    """The :data:`SPLIT_LINE_PREFIX` line for a ``description`` made by :func:`describe_split`."""
    return SPLIT_LINE_PREFIX + " ".join(description.split())


def split_description(dataset) -> str:
    """The split a dataset built by this package's builder was built on, as :func:`describe_split` wrote it.

    Args:
        dataset: a ``datasets.Dataset``, ``DatasetDict``, ``IterableDataset``, ``IterableDatasetDict`` or
            ``DatasetInfo``.

    Raises:
        ValueError: if its description has no split line (the data was not built by this package's builder, or
            was loaded from an export, whose card describes the split instead).
    """
    info = getattr(dataset, "info", dataset)
    if isinstance(dataset, Mapping):  # DatasetDict: every split carries the same info
        info = next(iter(dataset.values())).info if dataset else None
    description = getattr(info, "description", None) or ""
    for line in reversed(description.splitlines()):
        if line.startswith(SPLIT_LINE_PREFIX):
            return line[len(SPLIT_LINE_PREFIX):]
    raise ValueError(
        "this dataset's description does not record its split: it was not built by nih_chestxray14's builder "
        "(for an exported copy, its card describes the split)"
    )
