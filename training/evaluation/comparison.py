"""Compare two models scored on the same images: two prediction files joined on ``image_id``, paired DeLong test.

Two models' AUCs on the same images are correlated, so comparing their two intervals is wrong; the metric's
``compare_roc_auc`` gives each finding's and the macro mean's difference, its paired DeLong standard error, a two-sided
p-value and the interval of the difference. This module only reads and pairs the files: it joins them on
``image_id`` (images in one file only are left out and counted), checks that both give each shared image the same
labels, and hands the aligned arrays to the metric.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Dict, List

import numpy as np

from metrics.roc_auc_multilabel import UndefinedAUCWarning, compare_roc_auc
from training.evaluation.predictions import read_predictions

__all__ = ["compare_prediction_files", "comparison_table"]


def compare_prediction_files(path_a, path_b, confidence_level: float = 0.95) -> Dict[str, Any]:
    """Paired comparison of model A (``path_a``) against model B (``path_b``) on the images both scored.

    Args:
        path_a, path_b: ``predictions_<split>.parquet`` files of two models.
        confidence_level: of the intervals of the differences.

    Returns:
        ``{"file_a", "file_b", "split_a", "split_b", "num_images", "only_in_a", "only_in_b", "confidence_level",
        "macro": {...}, "per_finding": {finding: {...}}}``, the entries as ``compare_roc_auc``'s (``auc_a``,
        ``auc_b``, ``difference`` = A - B, ``se``, ``z``, ``p_value``, ``ci_low``, ``ci_high``, and per finding
        ``positives``, ``negatives``), plain floats (NaN where undefined).

    Raises:
        ValueError: naming the file, if either cannot be read; if the files score different findings, share no
            image, or label a shared image differently (naming the image and the finding).
    """
    a = read_predictions(path_a)
    b = read_predictions(path_b)
    if set(a.label_names) != set(b.label_names):
        only_a = sorted(set(a.label_names) - set(b.label_names))
        only_b = sorted(set(b.label_names) - set(a.label_names))
        raise ValueError(f"{path_a} and {path_b} score different findings (only in the first: {only_a or 'none'}; "
                         f"only in the second: {only_b or 'none'})")
    b = read_predictions(path_b, a.label_names)  # same column order as A
    shared, index_a, index_b = np.intersect1d(a.image_ids, b.image_ids, assume_unique=True, return_indices=True)
    if shared.size == 0:
        raise ValueError(f"{path_a} and {path_b} share no image_id: were they scored on the same split?")
    references = a.references[index_a]
    disagree = references != b.references[index_b]
    if disagree.any():
        row, column = np.argwhere(disagree)[0]
        raise ValueError(
            f"{path_a} and {path_b} label image {shared[row]} differently for {a.label_names[column]} "
            f"({references[row, column]} against {b.references[index_b][row, column]}): they were not scored against "
            "the same labels"
        )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="ROC AUC", category=UndefinedAUCWarning)
        compared = compare_roc_auc(references, a.probabilities[index_a], b.probabilities[index_b],
                                   label_names=list(a.label_names), confidence_level=confidence_level)
    return {
        "file_a": str(path_a),
        "file_b": str(path_b),
        "split_a": a.split,
        "split_b": b.split,
        "num_images": int(shared.size),
        "only_in_a": int(a.num_images - shared.size),
        "only_in_b": int(b.num_images - shared.size),
        "confidence_level": float(confidence_level),
        "macro": compared["macro"],
        "per_finding": compared["per_class"],
    }


def _number(value: float, digits: int = 4) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def _p_value(value: float) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    return "<0.0001" if value < 1e-4 else f"{value:.4f}"


def comparison_table(comparison: Dict[str, Any]) -> str:
    """The comparison as a Markdown table for a terminal or a card: one row per finding, then the macro mean."""
    level = f"{comparison['confidence_level']:.0%}"
    lines: List[str] = [
        f"A: {comparison['file_a']}",
        f"B: {comparison['file_b']}",
        f"{comparison['num_images']:,} images scored by both (only in A: {comparison['only_in_a']:,}; only in B: "
        f"{comparison['only_in_b']:,}). Paired DeLong test; {level} intervals of A - B.",
        "",
        f"| finding | positives | AUC A | AUC B | A - B ({level} CI) | p |",
        "| --- | ---: | ---: | ---: | --- | ---: |",
    ]
    rows = [(name, entry, f"{entry['positives']:,}") for name, entry in comparison["per_finding"].items()]
    rows.append(("**macro mean**", comparison["macro"], f"{comparison['macro']['classes']} findings"))
    for name, entry, positives in rows:
        difference = _number(entry["difference"])
        if not math.isnan(entry["ci_low"]):
            difference += f" ({entry['ci_low']:+.4f} to {entry['ci_high']:+.4f})"
        lines.append(f"| {name} | {positives} | {_number(entry['auc_a'])} | {_number(entry['auc_b'])} | {difference} "
                     f"| {_p_value(entry['p_value'])} |")
    return "\n".join(lines)
