"""One scored split as a table: ``predictions_<split>.parquet`` with each image's labels, probabilities and metadata.

The file holds one row per image: ``image_id``, the subgroup columns that the dataset has (``patient_id``, ``sex``,
``age``, ``view_position``), then ``label_<Finding>`` (0/1, int8) and ``prob_<Finding>`` (the model's sigmoid
probability, float64) for each finding, in the model's label order. Every number of ``evaluation_<split>.json`` can be
recomputed from it, and ``training/evaluate.py --compare`` pairs two such files by ``image_id``. The split's name and
description are in the Parquet schema's metadata (``nih_chestxray14.split``, ``nih_chestxray14.split_description``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from nih_chestxray14.files import atomic_path

__all__ = ["METADATA_COLUMNS", "ScoredSplit", "predictions_file", "read_predictions", "write_predictions"]

METADATA_COLUMNS = ("patient_id", "sex", "age", "view_position")
"""The dataset columns kept beside each prediction, for subgroups and patient counts."""

_METADATA_TYPES = {"patient_id": pa.int32(), "sex": pa.string(), "age": pa.int32(), "view_position": pa.string()}
_SPLIT_KEY, _DESCRIPTION_KEY = b"nih_chestxray14.split", b"nih_chestxray14.split_description"


def predictions_file(split: str) -> str:
    """``"predictions_test.parquet"`` for ``"test"``."""
    return f"predictions_{split}.parquet"


@dataclass
class ScoredSplit:
    """A model's probabilities on one split, with the references and the images' metadata.

    Attributes:
        split: e.g. ``"test"``.
        image_ids: ``(N,)`` str, unique.
        label_names: the C findings, in column order.
        references: ``(N, C)`` int8, 0/1.
        probabilities: ``(N, C)`` float64 sigmoid probabilities in [0, 1].
        metadata: column name → ``(N,)`` array, for the :data:`METADATA_COLUMNS` the dataset has.
        description: how the split was made, for reports (e.g. NIH's official ``test_list.txt``), or None.

    Raises:
        ValueError: on construction, if the shapes disagree, an image id repeats, a reference is not 0/1, or a
            probability is NaN or outside [0, 1] (naming the row's image and the finding).
    """

    split: str
    image_ids: np.ndarray
    label_names: Tuple[str, ...]
    references: np.ndarray
    probabilities: np.ndarray
    metadata: Dict[str, np.ndarray] = field(default_factory=dict)
    description: Optional[str] = None

    def __post_init__(self) -> None:
        self.label_names = tuple(self.label_names)
        self.image_ids = np.asarray(self.image_ids).astype(str)
        self.references = np.asarray(self.references)
        self.probabilities = np.asarray(self.probabilities, dtype=np.float64)
        shape = (self.image_ids.shape[0], len(self.label_names))
        if self.references.shape != shape or self.probabilities.shape != shape:
            raise ValueError(
                f"{self.split}: references {self.references.shape} and probabilities {self.probabilities.shape} must "
                f"both be (images, findings) = {shape}"
            )
        unique, counts = np.unique(self.image_ids, return_counts=True)
        if (counts > 1).any():
            raise ValueError(f"{self.split}: image {str(unique[counts > 1][0])!r} appears {counts.max()} times")
        binary = (self.references == 0) | (self.references == 1)
        if not binary.all():
            row, column = np.argwhere(~binary)[0]
            raise ValueError(f"{self.split}: the label of {self.label_names[column]} for image "
                             f"{self.image_ids[row]} is {self.references[row, column].item()!r}, not 0 or 1")
        self.references = self.references.astype(np.int8)
        valid = (self.probabilities >= 0.0) & (self.probabilities <= 1.0)  # False for NaN too
        if not valid.all():
            row, column = np.argwhere(~valid)[0]
            raise ValueError(f"{self.split}: the probability of {self.label_names[column]} for image "
                             f"{self.image_ids[row]} is {self.probabilities[row, column].item()!r}, not in [0, 1]")
        for name, values in self.metadata.items():
            if len(values) != shape[0]:
                raise ValueError(f"{self.split}: metadata column {name!r} has {len(values)} rows, not {shape[0]}")

    @property
    def num_images(self) -> int:
        return int(self.image_ids.shape[0])


def write_predictions(path, scored: ScoredSplit) -> Path:
    """Write ``scored`` to a Parquet file at ``path`` atomically (see the module docstring); return the path."""
    columns = {"image_id": pa.array(scored.image_ids, type=pa.string())}
    for name in METADATA_COLUMNS:
        if name in scored.metadata:
            columns[name] = pa.array(np.asarray(scored.metadata[name]).tolist(), type=_METADATA_TYPES[name])
    for column, name in enumerate(scored.label_names):
        columns[f"label_{name}"] = pa.array(scored.references[:, column], type=pa.int8())
    for column, name in enumerate(scored.label_names):
        columns[f"prob_{name}"] = pa.array(scored.probabilities[:, column], type=pa.float64())
    metadata = {_SPLIT_KEY: scored.split.encode()}
    if scored.description:
        metadata[_DESCRIPTION_KEY] = scored.description.encode()
    table = pa.table(columns).replace_schema_metadata(metadata)
    path = Path(path)
    with atomic_path(path) as partial:
        pq.write_table(table, partial)
    return path


def read_predictions(path, label_names: Optional[Sequence[str]] = None) -> ScoredSplit:
    """Read a ``predictions_<split>.parquet`` file.

    Args:
        path: the file.
        label_names: the findings to read, in this order; default: every ``prob_<Finding>`` column, in file order.

    Raises:
        ValueError: naming the file, if it is not a readable Parquet file, has no ``image_id``, lacks the
            ``label_``/``prob_`` column of a finding, or holds a bad value (see :class:`ScoredSplit`).
    """
    path = Path(path)
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowInvalid) as error:
        raise ValueError(f"{path}: not a readable predictions file ({error})") from None
    names = table.column_names
    if "image_id" not in names:
        raise ValueError(f"{path} has no image_id column: is it a predictions_<split>.parquet file?")
    if label_names is None:
        label_names = [name[len("prob_"):] for name in names if name.startswith("prob_")]
        if not label_names:
            raise ValueError(f"{path} has no prob_<Finding> column")
    missing = [f"{kind}_{name}" for name in label_names for kind in ("label", "prob") if f"{kind}_{name}" not in names]
    if missing:
        raise ValueError(f"{path} has no column {', '.join(missing)}")
    schema_metadata = table.schema.metadata or {}
    split = schema_metadata.get(_SPLIT_KEY, path.stem.replace("predictions_", "").encode()).decode()
    description = schema_metadata.get(_DESCRIPTION_KEY)
    references = np.column_stack([_numbers(table, f"label_{name}", path) for name in label_names])
    probabilities = np.column_stack([_numbers(table, f"prob_{name}", path) for name in label_names])
    metadata = {name: table.column(name).to_numpy(zero_copy_only=False) for name in METADATA_COLUMNS if name in names}
    try:
        return ScoredSplit(
            split=split,
            image_ids=table.column("image_id").to_numpy(zero_copy_only=False),
            label_names=tuple(label_names),
            references=references,
            probabilities=probabilities,
            metadata=metadata,
            description=description.decode() if description else None,
        )
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None


def _numbers(table: pa.Table, column: str, path: Path) -> np.ndarray:
    values = table.column(column)
    if values.null_count:
        raise ValueError(f"{path}: column {column} has {values.null_count} empty value(s)")
    if not (pa.types.is_integer(values.type) or pa.types.is_floating(values.type) or pa.types.is_boolean(values.type)):
        raise ValueError(f"{path}: column {column} holds {values.type}, not numbers")
    return values.to_numpy(zero_copy_only=False).astype(np.float64)
