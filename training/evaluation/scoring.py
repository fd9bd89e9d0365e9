"""A model's probabilities on a dataset split, with the split's labels and metadata, as a :class:`ScoredSplit`.

A checkpoint names its outputs in ``config.id2label``. This module maps them to the 14 findings *by name*, in any
order (``Infiltrate`` and ``Pleural Thickening``, the spellings of some NIH files, count as ``Infiltration`` and
``Pleural_Thickening``; nothing is matched by substring). Outputs that are not findings (a "No Finding" class, other
datasets' labels) are ignored; a checkpoint that lacks a finding is refused, naming what is missing.

Scoring runs through the Trainer's ``predict`` (batching, devices, mixed precision, several processes), fed images
only: the labels are read from the dataset's Arrow columns, so a model whose head has other outputs than our 14 is
never asked for a loss against them. Probabilities are the sigmoid of each output, in float64.
"""

from __future__ import annotations

import logging
from typing import Dict, List, Mapping, Optional, Sequence

import datasets
import numpy as np

from nih_chestxray14.labels import LABELS, UnknownFindingError, canonical_finding
from training.data import decode_xrays
from training.evaluation.predictions import METADATA_COLUMNS, ScoredSplit
from training.metrics import logits_of, sigmoid

logger = logging.getLogger(__name__)

__all__ = ["finding_columns", "predict_split", "scored_split_from_logits", "split_metadata"]


def finding_columns(id2label: Mapping, label_names: Sequence[str] = LABELS) -> List[int]:
    """The model output (column) of each finding of ``label_names``, matched by name.

    Args:
        id2label: a model config's ``id2label`` (output index → name; JSON configs give string indices).
        label_names: the findings to find, in the order wanted.

    Returns:
        ``columns`` with ``logits[:, columns]`` in ``label_names`` order.

    Raises:
        ValueError: if a finding has no output (naming the missing findings and the model's labels), or two outputs
            name the same finding.
    """
    by_finding: Dict[str, int] = {}
    for index, name in sorted(((int(index), str(name)) for index, name in id2label.items())):
        try:
            finding = canonical_finding(name)
        except UnknownFindingError:
            continue  # not one of the findings: "No Finding", LABEL_0, another dataset's label
        if finding in by_finding:
            raise ValueError(f"the model's id2label names {finding} twice (outputs {by_finding[finding]} and {index})")
        by_finding[finding] = index
    missing = [name for name in label_names if name not in by_finding]
    if missing:
        shown = ", ".join(str(name) for _, name in sorted((int(i), n) for i, n in id2label.items())[:20])
        more = "" if len(id2label) <= 20 else f", ... ({len(id2label)} in all)"
        raise ValueError(
            f"the model has no output for {', '.join(missing)}: its id2label names {shown}{more}. Score a checkpoint "
            "trained on the 14 ChestX-ray14 findings (any order, named as in nih_chestxray14.LABELS)"
        )
    ignored = len(id2label) - len(label_names)
    if ignored:
        logger.info("the model has %d output(s) besides the %d findings; they are not scored", ignored,
                    len(label_names))
    return [by_finding[name] for name in label_names]


def split_metadata(dataset_split) -> Dict[str, np.ndarray]:
    """``image_id`` and the :data:`METADATA_COLUMNS` the split has, read from Arrow without decoding an image."""
    wanted = [name for name in ("image_id", *METADATA_COLUMNS) if name in dataset_split.column_names]
    table = dataset_split.select_columns(wanted).with_format("numpy")
    return {name: np.asarray(table[name]) for name in wanted}


def scored_split_from_logits(
    split: str,
    dataset_split,
    logits: np.ndarray,
    columns: Optional[Sequence[int]] = None,
    label_names: Sequence[str] = LABELS,
    description: Optional[str] = None,
    label_ids: Optional[np.ndarray] = None,
) -> ScoredSplit:
    """Build a :class:`ScoredSplit` from a model's ``(N, outputs)`` logits on ``dataset_split``, in dataset order.

    Args:
        split: its name. dataset_split: the ``datasets.Dataset`` that was scored (``image_id``, ``labels``, metadata).
        logits: the Trainer's predictions. columns: from :func:`finding_columns` (default: outputs in
            ``label_names`` order). label_names: the findings. description: how the split was made, for reports.
        label_ids: the labels the Trainer saw, when it had them: checked against the dataset's, row by row.

    Raises:
        ValueError: if the dataset has no ``image_id`` or ``labels`` column, the number of rows differs, or
            ``label_ids`` disagree with the dataset's labels (the predictions would be out of order).
    """
    for needed in ("image_id", "labels"):
        if needed not in dataset_split.column_names:
            raise ValueError(f"the {split} split has no {needed!r} column, which the evaluation needs")
    logits = np.asarray(logits_of(logits))
    columns = list(range(len(label_names))) if columns is None else list(columns)
    references = np.asarray(dataset_split.select_columns(["labels"]).with_format("numpy")["labels"])
    if logits.shape[0] != references.shape[0]:
        raise ValueError(f"{split}: {logits.shape[0]} predictions for {references.shape[0]} images")
    if label_ids is not None and not np.array_equal(np.rint(np.asarray(label_ids)), references):
        raise ValueError(f"{split}: the labels returned with the predictions differ from the dataset's, so the "
                         "predictions are not in dataset order; nothing was written")
    metadata = split_metadata(dataset_split)
    image_ids = metadata.pop("image_id")
    return ScoredSplit(
        split=split,
        image_ids=image_ids,
        label_names=tuple(label_names),
        references=references,
        probabilities=sigmoid(logits[:, columns]),
        metadata=metadata,
        description=description,
    )


def predict_split(trainer, split: str, dataset_split, columns: Sequence[int], label_names: Sequence[str] = LABELS,
                  description: Optional[str] = None) -> ScoredSplit:
    """Score ``dataset_split`` with ``trainer.predict``, on its images alone, and return the :class:`ScoredSplit`.

    ``trainer`` is a :class:`~training.trainer.ChestXray14Trainer` (it turns decoded ``uint8`` batches into the
    model's inputs); it needs no ``compute_metrics`` and no loss, since no labels reach the model.
    """
    images = dataset_split.select_columns(["image"])
    if isinstance(images.features["image"], datasets.Image):  # undecoded PNG bytes: decode_xrays' fast path
        images = images.cast_column("image", datasets.Image(decode=False))
    prediction = trainer.predict(images.with_transform(decode_xrays), metric_key_prefix=split)
    return scored_split_from_logits(split, dataset_split, prediction.predictions, columns, label_names, description)
