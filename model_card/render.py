"""Render the model card from ``template.md`` and write it to ``output_dir/README.md``."""

from __future__ import annotations

import datetime
import logging
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from huggingface_hub import ModelCard

from .inputs import ModelCardInputs, finite
from .metadata import DATASET_PRETTY_NAME, card_data, is_hub_id, metric_key

logger = logging.getLogger(__name__)

TEMPLATE_PATH = Path(__file__).resolve().parent / "template.md"
NOT_AVAILABLE = "n/a"
_SECRET_KEY = re.compile(r"token|password|secret|api_key|credential", re.IGNORECASE)
# Hugging Face user access tokens: "hf_" followed by a long run of letters and digits.
_HF_TOKEN = re.compile(r"\bhf_[A-Za-z0-9]{20,}\b")


def render_model_card(inputs: ModelCardInputs) -> ModelCard:
    """Render the card for ``inputs`` without writing it.

    Raises:
        ImportError: if Jinja2, which ``ModelCard.from_template`` needs, is not installed.
    """
    context = _template_context(inputs)
    card = ModelCard.from_template(card_data(inputs), template_path=str(TEMPLATE_PATH), **context)
    content = _without_secrets(card.content)
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
    with tempfile.NamedTemporaryFile("w", dir=output_dir, prefix=".README.", suffix=".md", delete=False,
                                     encoding="utf-8", newline="") as partial:
        try:
            partial.write(card.content)
        except BaseException:
            partial.close()
            os.unlink(partial.name)
            raise
    os.replace(partial.name, output_dir / "README.md")
    logger.info("Wrote the model card to %s", output_dir / "README.md")
    return card


def format_auc(value: Optional[float], low: Optional[float] = None, high: Optional[float] = None) -> str:
    """``"0.8123 (0.8010–0.8236)"``, ``"0.8123"`` without an interval, ``"n/a"`` for a missing or NaN AUC."""
    value = finite(value)
    if value is None:
        return NOT_AVAILABLE
    low, high = finite(low), finite(high)
    interval = f" ({low:.4f}–{high:.4f})" if low is not None and high is not None else ""
    return f"{value:.4f}{interval}"


def format_duration(seconds: Optional[float]) -> str:
    """``"1:02:03 (h:mm:ss)"`` for 3723 s; ``"not recorded"`` for ``None``."""
    seconds = finite(seconds)
    if seconds is None:
        return "not recorded"
    return f"{datetime.timedelta(seconds=round(seconds))} (h:mm:ss)"


def _template_context(inputs: ModelCardInputs) -> Dict[str, Any]:
    base_model_link = (
        f"[{inputs.base_model}](https://huggingface.co/{inputs.base_model})" if is_hub_id(inputs.base_model) else
        ("a local checkpoint" if inputs.base_model else None)
    )
    throughput = finite(inputs.train_samples_per_second)
    return dict(
        model_name=inputs.model_name,
        synthetic_data=inputs.synthetic_data,
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
               for caption, path in inputs.plots.items()],
        num_train_samples=_count(inputs.num_train_samples),
        num_validation_samples=_count(inputs.num_validation_samples),
        num_test_samples=_count(inputs.num_test_samples),
        localization=_localization(inputs.localization),
    )


def _dataset_description(inputs: ModelCardInputs) -> str:
    if inputs.synthetic_data:
        return "a synthetic sample release in NIH ChestX-ray14's format (`nih_chestxray14.sample`)"
    name = DATASET_PRETTY_NAME
    if is_hub_id(inputs.dataset_name):
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
        name = "**Macro average**" if label is None else _cell(label)
        rows.append({"label": name, **cells})
    return rows


def _localization(summary: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """The "Where the model looks" section's numbers as text: accuracy at each T(IoBB), false positives and the
    random baseline at the first; ``None`` without a summary."""
    if not summary or not summary.get("findings"):
        return None
    thresholds = [f"{float(value):g}" for value in summary["iobb_thresholds"]]
    baseline = summary.get("random_lung_field_baseline", {}).get("findings", {})

    def score(scores: Dict[str, Any], threshold: str, key: str = "accuracy") -> str:
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


def _without_secrets(content: str) -> str:
    secrets = {token for token in (os.environ.get("HF_TOKEN"), os.environ.get("HUGGING_FACE_HUB_TOKEN"), _stored_token())
               if token and len(token) >= 8}
    for secret in secrets:
        if secret in content:
            logger.warning("Removed a Hugging Face token from the model card.")
            content = content.replace(secret, "<redacted>")
    if _HF_TOKEN.search(content):
        logger.warning("Removed a string that looks like a Hugging Face token from the model card.")
        content = _HF_TOKEN.sub("<redacted>", content)
    return content


def _stored_token() -> Optional[str]:
    try:
        from huggingface_hub import get_token

        return get_token()
    except Exception:  # a broken token file must not stop the card; the pattern check still runs
        return None


__all__ = ["render_model_card", "write_model_card", "format_auc", "format_duration"]
