"""The card's YAML metadata: a ``model-index`` the Hub parses, plus base model, dataset, license and tags."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

from huggingface_hub import EvalResult, ModelCardData

from nih_chestxray14.builder import DATASET_NAME

from .inputs import ModelCardInputs, finite

DATASET_PRETTY_NAME = "NIH ChestX-ray14"
SYNTHETIC_DATASET_PRETTY_NAME = "Synthetic sample in NIH ChestX-ray14's format (not real X-rays)"
TASK_TYPE = "image-classification"
TASK_NAME = "Multi-label image classification"
SPLITS = ("validation", "test")
DECIMALS = 4

TAGS = [
    "medical-imaging",
    "chest-x-ray",
    "radiology",
    "vision",
    "image-classification",
    "multi-label-classification",
    "vit",
    "nih-chestxray14",
    "generated_from_trainer",
]


def dataset_id(inputs: ModelCardInputs) -> str:
    """The dataset identifier for metadata: a Hub id as given, else the builder's name (never a local path)."""
    name = inputs.dataset_name
    looks_local = name.startswith((".", "/", "~")) or "\\" in name or Path(name).expanduser().exists()
    if looks_local or name.count("/") > 1:
        return DATASET_NAME
    return name


def is_hub_id(name: Optional[str]) -> bool:
    """Whether ``name`` looks like a Hub repo id (``owner/name``) rather than a local path or a bare name."""
    return bool(name) and name.count("/") == 1 and not name.startswith((".", "/", "~")) and not Path(name).exists()


def metric_display_name(label: Optional[str]) -> str:
    """``"macro ROC AUC"`` for ``label=None``, else ``"ROC AUC (<label>)"``."""
    return "macro ROC AUC" if label is None else f"ROC AUC ({label})"


def metric_key(label: Optional[str]) -> str:
    """The ``roc_auc_multilabel`` key: ``"roc_auc"`` (macro) or ``"roc_auc_<label>"``."""
    return "roc_auc" if label is None else f"roc_auc_{label}"


def eval_results(inputs: ModelCardInputs) -> List[EvalResult]:
    """One ``EvalResult`` per finite AUC and interval bound, for the validation and test splits.

    AUCs have ``metric_type="roc_auc"``; interval bounds ``"roc_auc_ci_low"``/``"roc_auc_ci_high"`` (the metric's
    own key names) with the confidence level in ``metric_args``. NaN or missing values are left out.
    """
    results = []
    level = round(float(inputs.confidence_level), 4)
    for split, metrics in zip(SPLITS, (inputs.validation_metrics, inputs.test_metrics)):
        common = dict(
            task_type=TASK_TYPE,
            task_name=TASK_NAME,
            dataset_type=dataset_id(inputs),
            dataset_name=SYNTHETIC_DATASET_PRETTY_NAME if inputs.synthetic_data else DATASET_PRETTY_NAME,
            dataset_config=inputs.dataset_config_name,
            dataset_split=split,
        )
        for label in (None, *inputs.label_names):
            key = metric_key(label)
            value = finite(metrics.get(key))
            if value is None:
                continue
            name = metric_display_name(label)
            results.append(
                EvalResult(
                    metric_type="roc_auc",
                    metric_value=round(value, DECIMALS),
                    metric_name=name,
                    metric_args={"average": "macro"} if label is None else None,
                    **common,
                )
            )
            for bound, word in (("low", "lower"), ("high", "upper")):
                limit = finite(metrics.get(f"{key}_ci_{bound}"))
                if limit is None:
                    continue
                results.append(
                    EvalResult(
                        metric_type=f"roc_auc_ci_{bound}",
                        metric_value=round(limit, DECIMALS),
                        metric_name=f"{name}, {level:.0%} CI {word} bound",
                        metric_args={"confidence_level": level},
                        **common,
                    )
                )
    return results


def card_data(inputs: ModelCardInputs) -> ModelCardData:
    """The card's metadata. ``eval_results`` is omitted when no split has a finite AUC."""
    results = eval_results(inputs)
    hub_dataset = dataset_id(inputs)
    return ModelCardData(
        model_name=inputs.model_name,
        base_model=inputs.base_model if is_hub_id(inputs.base_model) else None,
        datasets=None if inputs.synthetic_data else [hub_dataset],
        license=inputs.license,
        library_name="transformers",
        pipeline_tag="image-classification",
        tags=list(TAGS),
        metrics=["roc_auc"],
        eval_results=results or None,
    )
