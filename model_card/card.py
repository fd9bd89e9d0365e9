"""The model card of a ChestX-ray14 classifier: what a run reports, the Hub metadata, the text, and the file.

Read top to bottom, as the card is built:

1. :class:`ModelCardInputs`: everything the card shows about one run, checked on construction;
2. :func:`card_data`: the YAML metadata, a ``model-index`` the Hub parses (macro and per-finding AUC per split),
   plus base model, dataset, license and tags;
3. :func:`render_model_card`: ``template.md`` filled in (results table with positive counts, the evaluation's
   operating points, disaggregated results, calibration and prevalence shift from ``evaluation_sections.py``, split
   rule, hyperparameters, plots, where the model looks, limits, citations), with any Hub token removed;
4. :func:`write_model_card`: ``output_dir/README.md``, written atomically.
"""

from __future__ import annotations

import datetime
import logging
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from metrics.roc_auc_multilabel import INTERVAL_DESCRIPTIONS
from model_card.evaluation_sections import evaluation_context
from nih_chestxray14.builder import DATASET_NAME
from nih_chestxray14.files import atomic_write
from nih_chestxray14.hub import is_hub_id, redact_secrets
from nih_chestxray14.labels import LABELS

logger = logging.getLogger(__name__)

TEMPLATE_PATH = Path(__file__).resolve().parent / "template.md"
NOT_AVAILABLE = "n/a"
DEFAULT_INTERVALS = INTERVAL_DESCRIPTIONS["auto"]
"""The metric's own sentence for its default intervals (``interval="auto"``), so the card says what was computed."""
_SECRET_KEY = re.compile(r"token|password|secret|api_key|credential", re.IGNORECASE)
"""Hyperparameter names whose values the card never shows."""


# ---- what a run reports ----------------------------------------------------------------------------------------------
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
    interval_method: str = DEFAULT_INTERVALS
    """How the intervals were computed, in words, for the card's text (the metric's ``INTERVAL_DESCRIPTIONS``)."""
    synthetic_data: bool = False
    """The run used a synthetic sample release (``nih_chestxray14.sample``), not NIH's images: the card says so at
    the top, names the dataset as a synthetic sample in the model-index, and lists no Hub dataset."""
    localization: Mapping[str, Any] = field(default_factory=dict)
    """What ``training/localize.py`` wrote to ``localization.json`` for the test split (method, per-finding accuracy
    and false positives at each T(IoBB), the random lung-field baseline, ``figure``); ``{}`` for none. The card then
    has a "Where the model looks" section."""
    split_description: Optional[str] = None
    """The split the dataset was built on, as the dataset records it (``nih_chestxray14.split_description``)."""
    custom_split: bool = False
    """The run used the user's own split lists (``--split_lists``), not NIH's official split: the card says so."""
    evaluation: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Split → the run's ``evaluation_<split>.json`` report (``training/evaluation/report.py``): operating points,
    subgroups, calibration and prevalence shift for the card's evaluation sections; ``{}`` without ``--do_predict``.
    Its per-finding positive counts also fill the results table when the metrics lack ``roc_auc_<label>_positives``."""

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
        self.evaluation = {} if self.evaluation is None else self.evaluation
        if not isinstance(self.evaluation, Mapping) or not all(
                isinstance(report, Mapping) and "roc_auc" in report for report in self.evaluation.values()):
            raise ValueError("ModelCardInputs.evaluation must map split names to evaluation reports (with 'roc_auc')")
        self.evaluation = dict(self.evaluation)
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


# ---- metadata --------------------------------------------------------------------------------------------------------
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
    return inputs.dataset_name if is_hub_id(inputs.dataset_name) else DATASET_NAME


def is_hub_repo(name: Optional[str]) -> bool:
    """Whether ``name`` is a Hub repo under an owner (``owner/name``), which the card can link to."""
    return is_hub_id(name) and "/" in name


def metric_display_name(label: Optional[str]) -> str:
    """``"macro ROC AUC"`` for ``label=None``, else ``"ROC AUC (<label>)"``."""
    return "macro ROC AUC" if label is None else f"ROC AUC ({label})"


def metric_key(label: Optional[str]) -> str:
    """The ``roc_auc_multilabel`` key: ``"roc_auc"`` (macro) or ``"roc_auc_<label>"``."""
    return "roc_auc" if label is None else f"roc_auc_{label}"


def eval_results(inputs: ModelCardInputs) -> List[EvalResult]:
    """One ``EvalResult`` per finite AUC, macro and per finding, for the validation and test splits.

    Only the AUCs (``metric_type="roc_auc"``): that is what the Hub shows well. Their intervals, positive counts and
    the rest of the evaluation are in the card's text and the run's JSON files. NaN or missing values are left out.
    """
    results = []
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
    return results


def card_data(inputs: ModelCardInputs) -> ModelCardData:
    """The card's metadata. ``eval_results`` is omitted when no split has a finite AUC."""
    results = eval_results(inputs)
    hub_dataset = dataset_id(inputs)
    return ModelCardData(
        model_name=inputs.model_name,
        base_model=inputs.base_model if is_hub_repo(inputs.base_model) else None,
        datasets=None if inputs.synthetic_data else [hub_dataset],
        license=inputs.license,
        library_name="transformers",
        pipeline_tag="image-classification",
        tags=list(TAGS),
        metrics=["roc_auc"],
        eval_results=results or None,
    )


# ---- text and file ---------------------------------------------------------------------------------------------------
def render_model_card(inputs: ModelCardInputs) -> ModelCard:
    """Render the card for ``inputs`` without writing it.

    Raises:
        ImportError: if Jinja2, which ``ModelCard.from_template`` needs, is not installed.
    """
    context = _template_context(inputs)
    card = ModelCard.from_template(card_data(inputs), template_path=str(TEMPLATE_PATH), **context)
    content = redact_secrets(card.content)
    if content != card.content:
        logger.warning("Removed a Hugging Face token from the model card.")
    return ModelCard(content if content.endswith("\n") else content + "\n")


def write_model_card(output_dir: str | os.PathLike, inputs: ModelCardInputs) -> ModelCard:
    """Render the card and write ``output_dir/README.md`` (atomically: a failure leaves any old card intact).

    Returns:
        The card, as ``huggingface_hub.ModelCard.load(output_dir / "README.md")`` would read it back.
    """
    card = render_model_card(inputs)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    for path in inputs.plots.values():
        if not (output_dir / path).is_file():
            logger.warning("The model card embeds %s, which is not in %s yet.", path, output_dir)
    atomic_write(output_dir / "README.md", card.content)
    logger.info("Wrote the model card to %s", output_dir / "README.md")
    return card


def format_auc(value: Optional[float], low: Optional[float] = None, high: Optional[float] = None) -> str:
    """``"0.8123 (0.8010–0.8236)"``, ``"0.8123"`` without an interval, ``"n/a"`` for a missing or NaN AUC.

    An interval that collapsed to a point (``1.0000 (1.0000–1.0000)`` from DeLong's variance on a perfect ranking) is
    never shown as if it were certain: the cell says that no interval could be computed.
    """
    value = finite(value)
    if value is None:
        return NOT_AVAILABLE
    low, high = finite(low), finite(high)
    if low is None or high is None:
        return f"{value:.4f}"
    if low == high:
        return f"{value:.4f} (no interval could be computed)"
    return f"{value:.4f} ({low:.4f}–{high:.4f})"


def positives_cell(inputs: ModelCardInputs, split: str, label: Optional[str]) -> str:
    """The number of positive images behind an AUC (``"1,234"``), or, for the macro row, how many findings the mean
    covers (``"13 of 14 findings"``); ``""`` when unknown."""
    metrics = inputs.validation_metrics if split == "validation" else inputs.test_metrics
    report = inputs.evaluation.get(split)
    if label is None:
        if report is not None:
            return f"{report['roc_auc']['macro']['findings']} of {len(inputs.label_names)} findings"
        defined = sum(finite(metrics.get(metric_key(name))) is not None for name in inputs.label_names)
        return f"{defined} of {len(inputs.label_names)} findings" if metrics.get("roc_auc") is not None else ""
    count = metrics.get(f"{metric_key(label)}_positives")
    if count is None and report is not None:
        count = report["roc_auc"]["per_finding"].get(label, {}).get("positives")
    return "" if count is None or finite(count) is None else f"{int(count):,}"


def format_duration(seconds: Optional[float]) -> str:
    """``"1:02:03 (h:mm:ss)"`` for 3723 s; ``"not recorded"`` for ``None``."""
    seconds = finite(seconds)
    if seconds is None:
        return "not recorded"
    return f"{datetime.timedelta(seconds=round(seconds))} (h:mm:ss)"


def _template_context(inputs: ModelCardInputs) -> Dict[str, Any]:
    base_model_link = (
        f"[{inputs.base_model}](https://huggingface.co/{inputs.base_model})" if is_hub_repo(inputs.base_model) else
        ("a local checkpoint" if inputs.base_model else None)
    )
    throughput = finite(inputs.train_samples_per_second)
    calibration_plot = next(
        (path for path in inputs.plots.values() if Path(path).name.startswith("reliability_")), None)
    return dict(
        **evaluation_context(inputs.evaluation),
        calibration_plot=Path(calibration_plot).as_posix() if calibration_plot else None,
        model_name=inputs.model_name,
        synthetic_data=inputs.synthetic_data,
        split_description=inputs.split_description,
        custom_split=inputs.custom_split,
        num_labels=len(inputs.label_names),
        label_list=", ".join(inputs.label_names),
        base_model_link=base_model_link,
        dataset_description=_dataset_description(inputs),
        validation_rule=_validation_rule(inputs.validation_fraction),
        confidence_percent=f"{float(inputs.confidence_level):.0%}",
        interval_method=inputs.interval_method,
        results_rows=_results_rows(inputs),
        has_test=any(finite(value) is not None for value in inputs.test_metrics.values()),
        validation_loss=_format_loss(inputs.validation_metrics.get("loss")),
        test_loss=_format_loss(inputs.test_metrics.get("loss")),
        hardware=_cell(inputs.hardware),
        train_runtime=format_duration(inputs.train_runtime_s),
        throughput=f"{throughput:,.1f} training images/s" if throughput is not None else "not recorded",
        hyperparameters=_hyperparameter_rows(inputs.hyperparameters),
        plots=[(_cell(caption).replace("[", "(").replace("]", ")"), Path(path).as_posix())
               for caption, path in inputs.plots.items() if path != calibration_plot],
        num_train_samples=_count(inputs.num_train_samples),
        num_validation_samples=_count(inputs.num_validation_samples),
        num_test_samples=_count(inputs.num_test_samples),
        localization=_localization(inputs.localization),
    )


def _dataset_description(inputs: ModelCardInputs) -> str:
    if inputs.synthetic_data:
        return "a synthetic sample release in NIH ChestX-ray14's format (`nih_chestxray14.sample`)"
    name = DATASET_PRETTY_NAME
    if is_hub_repo(inputs.dataset_name):
        name = f"{name} ([{inputs.dataset_name}](https://huggingface.co/datasets/{inputs.dataset_name}))"
    if inputs.dataset_config_name:
        name = f"{name}, config `{inputs.dataset_config_name}`"
    return name


def _validation_rule(fraction: Optional[float]) -> str:
    if fraction is None:
        share = "a share"
    else:
        share = f"{float(fraction):.0%}"
    return (
        f"{share} of the train_val *patients* (not images), chosen by the `nih_chestxray14` builder's deterministic "
        "rule: a patient is in validation when a SHA-256 hash of its id falls below the fraction, so every run on "
        "every machine gets the same split. All of a patient's images go with the patient, the rest of train_val "
        "is the training split, and no patient is in two splits."
    )


def _results_rows(inputs: ModelCardInputs) -> List[Dict[str, str]]:
    rows = []
    for label in (None, *inputs.label_names):
        key = metric_key(label)
        cells = {}
        for split, metrics in (("validation", inputs.validation_metrics), ("test", inputs.test_metrics)):
            cells[split] = format_auc(metrics.get(key), metrics.get(f"{key}_ci_low"), metrics.get(f"{key}_ci_high"))
            cells[f"{split}_positives"] = positives_cell(inputs, split, label)
        name = "**Macro average**" if label is None else _cell(label)
        rows.append({"label": name, **cells})
    return rows


def _localization(summary: Mapping[str, Any]) -> Optional[Dict[str, Any]]:
    """The "Where the model looks" section's numbers as text: accuracy at each T(IoBB), false positives and the
    random baseline at the first; ``None`` without a summary."""
    if not summary or not summary.get("findings"):
        return None
    thresholds = [f"{float(value):g}" for value in summary["iobb_thresholds"]]
    baseline = summary.get("random_lung_field_baseline", {}).get("findings", {})

    def score(scores: Mapping[str, Any], threshold: str, key: str = "accuracy") -> str:
        value = finite(scores.get("by_threshold", {}).get(threshold, {}).get(key))
        return NOT_AVAILABLE if value is None else f"{value:.2f}"

    rows = [{
        "finding": _cell(finding),
        "boxes": f"{int(scores['num_boxes']):,}",
        "accuracy": [score(scores, threshold) for threshold in thresholds],
        "false_positives": score(scores, thresholds[0], "average_false_positives"),
        "baseline": score(baseline.get(finding, {}), thresholds[0]),
    } for finding, scores in summary["findings"].items()]
    return {"method": _cell(summary.get("method", "")), "num_images": f"{int(summary['num_images']):,}",
            "num_boxes": f"{int(summary['num_boxes']):,}", "thresholds": thresholds, "rows": rows,
            "figure": summary.get("figure")}


def _hyperparameter_rows(hyperparameters) -> List[Tuple[str, str]]:
    rows = []
    for name, value in hyperparameters.items():
        if _SECRET_KEY.search(str(name)):
            continue
        if isinstance(value, float):
            value = f"{value:g}"
        elif isinstance(value, (list, tuple)):
            value = ", ".join(str(item) for item in value)
        rows.append((_cell(name), _cell(value)))
    return rows


def _format_loss(value: Optional[float]) -> Optional[str]:
    value = finite(value)
    return None if value is None else f"{value:.4f}"


def _count(value: Optional[int]) -> Optional[str]:
    return None if value is None else f"{int(value):,}"


def _cell(value: Any) -> str:
    """Text safe inside a Markdown table cell: one line, pipes escaped."""
    return " ".join(str(value).split()).replace("|", "\\|")


__all__ = [
    "ModelCardInputs",
    "card_data",
    "eval_results",
    "format_auc",
    "positives_cell",
    "format_duration",
    "render_model_card",
    "write_model_card",
]
