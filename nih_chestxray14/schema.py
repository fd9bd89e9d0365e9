"""The features of every config, defined once, and how one metadata row becomes one example.

See the package docstring for the field-by-field description. Examples carry the ``float32`` columns already rounded
to ``float32``, so that streaming (which yields them as they are) and the prepared dataset (which stores them as
``float32``) give the same values.
"""

from __future__ import annotations

from typing import Any, Dict, Sequence

import datasets
import numpy as np

from .labels import LABELS, multi_hot
from .metadata import BoundingBox, EntryRow


def list_of(feature: Any, length: int = -1) -> Any:
    """A list feature: ``datasets.List`` (datasets 4 and later), or the same Arrow type in datasets 3's spelling.

    datasets 3 is what the IPU environment has (optimum-graphcore 0.7.1 pins transformers 4.29, which needs
    ``huggingface_hub<1``); there the package must import, for its labels and errors, although its builder is only
    supported on the datasets versions of ``setup.cfg``.
    """
    if hasattr(datasets, "List"):
        return datasets.List(feature, length=length)
    return [feature] if length == -1 else datasets.Sequence(feature, length=length)


FEATURES = datasets.Features(
    {
        "image": datasets.Image(),
        "image_id": datasets.Value("string"),
        "patient_id": datasets.Value("int32"),
        "follow_up": datasets.Value("int32"),
        "age": datasets.Value("int32"),
        "sex": datasets.Value("string"),
        "view_position": datasets.Value("string"),
        "original_width": datasets.Value("int32"),
        "original_height": datasets.Value("int32"),
        "pixel_spacing_x": datasets.Value("float32"),
        "pixel_spacing_y": datasets.Value("float32"),
        "labels": list_of(datasets.Value("int8"), length=len(LABELS)),
        "findings": list_of(datasets.ClassLabel(names=list(LABELS))),
        "bboxes": list_of(
            {
                "finding": datasets.ClassLabel(names=list(LABELS)),
                "x": datasets.Value("float32"),
                "y": datasets.Value("float32"),
                "w": datasets.Value("float32"),
                "h": datasets.Value("float32"),
            }
        ),
    }
)
"""The schema of all configs (only the image's pixels differ between them)."""


def _float32(value: float) -> float:
    """``value`` as the ``float32`` column stores it (``0.171`` → ``0.17100000381469727``)."""
    return float(np.float32(value))


def make_example(entry: EntryRow, png: bytes, boxes: Sequence[BoundingBox] = ()) -> Dict[str, Any]:
    """One example in :data:`FEATURES` order: ``png`` is stored as is, under the image's name."""
    return {
        "image": {"bytes": png, "path": entry.image_id},
        "image_id": entry.image_id,
        "patient_id": entry.patient_id,
        "follow_up": entry.follow_up,
        "age": entry.age,
        "sex": entry.sex,
        "view_position": entry.view_position,
        "original_width": entry.original_width,
        "original_height": entry.original_height,
        "pixel_spacing_x": _float32(entry.pixel_spacing_x),
        "pixel_spacing_y": _float32(entry.pixel_spacing_y),
        "labels": multi_hot(entry.findings),
        "findings": list(entry.findings),
        "bboxes": [
            {"finding": box.finding, "x": _float32(box.x), "y": _float32(box.y), "w": _float32(box.w),
             "h": _float32(box.h)}
            for box in boxes
        ],
    }
