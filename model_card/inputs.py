"""What the training recipe tells the model card: one dataclass, checked on construction."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any, Dict, Mapping, Optional, Sequence

from nih_chestxray14.builder import DATASET_NAME
from nih_chestxray14.labels import LABELS

DELONG_INTERVALS = "DeLong's method (DeLong et al., 1988), computed with the fast algorithm of Sun & Xu (2014)"


@dataclass
class ModelCardInputs:
    """Everything the card shows about one training run.

    Metric dictionaries use the keys of the ``roc_auc_multilabel`` metric without the Trainer's ``eval_``/``test_``
    prefix: ``"roc_auc"`` (macro), ``"roc_auc_<label>"``, ``"roc_auc_ci_low"``/``"roc_auc_ci_high"``,
    ``"roc_auc_<label>_ci_low"``/``"..._ci_high"`` and ``"loss"``. A value may be NaN (a class with no positive
    image in a split): the card then shows "n/a" and leaves it out of the ``model-index``.

    Raises:
        ValueError: on construction, naming the field, if a field cannot be shown (an empty model name, label names
            that are not unique strings, a metric that is not a number, a plot path outside ``output_dir``, a
            validation fraction outside ``[0, 1)``).
    """

    model_name: str
    """``hub_model_id`` when pushing, else the name of ``output_dir``; used in the usage example and model-index."""
    base_model: Optional[str] = None
    """The checkpoint fine-tuned from (a Hub id), or ``None`` for a model trained from scratch."""
    dataset_name: str = DATASET_NAME
    """``"nih_chestxray14"`` (the builder) or the Hub id / local folder of the exported Parquet dataset."""
    dataset_config_name: Optional[str] = None
    """The builder config, e.g. ``"resized-256"``."""
    validation_fraction: Optional[float] = None
    """The share of train_val *patients* put in validation, ``None`` when unknown (a Parquet copy)."""
    label_names: Sequence[str] = LABELS
    validation_metrics: Mapping[str, Any] = field(default_factory=dict)
    test_metrics: Mapping[str, Any] = field(default_factory=dict)
    """``{}`` when the official test split was not scored (no ``--do_predict``)."""
    hyperparameters: Mapping[str, Any] = field(default_factory=dict)
    """Learning rate, batch sizes, epochs, seed, optimizer, precision, augmentation, ... shown as a table. Keys that
    name a secret (``*token*``, ``*password*``, ``*secret*``) are never shown."""
    hardware: str = "not recorded"
    """E.g. ``"1x NVIDIA H100 80GB"``, ``"CPU (2 cores)"``, ``"4 IPUs"``."""
    train_runtime_s: Optional[float] = None
    train_samples_per_second: Optional[float] = None
    plots: Mapping[str, str] = field(default_factory=dict)
    """Caption → PNG file name relative to ``output_dir`` (the card embeds them by that relative path)."""
    num_train_samples: Optional[int] = None
    num_validation_samples: Optional[int] = None
    num_test_samples: Optional[int] = None
    license: str = "apache-2.0"
    """The model's license (the recipe's code and google/vit-base-patch16-224-in21k are Apache-2.0)."""
    confidence_level: float = 0.95
    """The level of the ``_ci_low``/``_ci_high`` intervals in the metric dictionaries."""
    interval_method: str = DELONG_INTERVALS
    """How the intervals were computed, in words, for the card's text."""
    synthetic_data: bool = False
    """The run used a synthetic sample release (``nih_chestxray14.sample``), not NIH's images: the card says so at
    the top, names the dataset as a synthetic sample in the model-index, and lists no Hub dataset."""
    localization: Mapping[str, Any] = field(default_factory=dict)
    """What ``training/localize.py`` wrote to ``localization.json`` for the test split (method, per-finding accuracy
    and false positives at each T(IoBB), the random lung-field baseline, ``figure``); ``{}`` for none. The card then
    has a "Where the model looks" section."""

    def __post_init__(self) -> None:
        if not isinstance(self.model_name, str) or not self.model_name.strip():
            raise ValueError(f"ModelCardInputs.model_name must be a non-empty string, got {self.model_name!r}")
        if not isinstance(self.dataset_name, str) or not self.dataset_name.strip():
            raise ValueError(f"ModelCardInputs.dataset_name must be a non-empty string, got {self.dataset_name!r}")
        self.label_names = tuple(self.label_names)
        if not self.label_names or not all(isinstance(name, str) and name for name in self.label_names):
            raise ValueError(f"ModelCardInputs.label_names must be non-empty strings, got {self.label_names!r}")
        if len(set(self.label_names)) != len(self.label_names):
            raise ValueError(f"ModelCardInputs.label_names has duplicates: {self.label_names!r}")
        if self.validation_fraction is not None and not 0.0 <= float(self.validation_fraction) < 1.0:
            raise ValueError(
                f"ModelCardInputs.validation_fraction must be in [0, 1) or None, got {self.validation_fraction!r}"
            )
        if not 0.0 < float(self.confidence_level) < 1.0:
            raise ValueError(f"ModelCardInputs.confidence_level must be in (0, 1), got {self.confidence_level!r}")
        for name in ("validation_metrics", "test_metrics"):
            setattr(self, name, _numeric_metrics(name, getattr(self, name)))
        figures = dict(self.plots)
        if self.localization.get("figure"):
            figures["localization"] = self.localization["figure"]
        for caption, path in figures.items():
            relative = PurePosixPath(str(path).replace("\\", "/"))
            if relative.is_absolute() or ".." in relative.parts or str(path).startswith("~"):
                raise ValueError(
                    f"ModelCardInputs.plots[{caption!r}] = {path!r}: give the PNG's path relative to output_dir, "
                    "so the card's image links work on the Hub."
                )


def finite(value: Optional[float]) -> Optional[float]:
    """``value`` as a float, or ``None`` when it is missing, NaN or infinite."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _numeric_metrics(field_name: str, metrics: Optional[Mapping[str, Any]]) -> Dict[str, Optional[float]]:
    if metrics is None:
        return {}
    if not isinstance(metrics, Mapping):
        raise ValueError(f"ModelCardInputs.{field_name} must be a dict of metric name to number, got {metrics!r}")
    numeric = {}
    for key, value in metrics.items():
        if value is None:
            numeric[key] = None
            continue
        try:
            numeric[key] = float(value)
        except (TypeError, ValueError):
            raise ValueError(
                f"ModelCardInputs.{field_name}[{key!r}] = {value!r} is not a number; metric values must be floats "
                "(NaN for an undefined AUC)."
            ) from None
    return numeric
