"""Disaggregated results: the model by sex, age band and view position, and where the gaps between subgroups are.

The subgroups follow Seyyed-Kalantari et al. (*Underdiagnosis bias of artificial intelligence algorithms applied to
chest radiographs in under-served patient populations*, Nature Medicine 2021; *CheXclusion*, PSB 2021), who found
systematic underdiagnosis by sex and age on this dataset:

- **sex**: ``M``, ``F`` (NIH's ``Patient Gender``);
- **age**: the bands :data:`AGE_BANDS` (0-17, 18-39, 40-59, 60-79, 80+ years);
- **view position**: ``PA`` (posteroanterior, standing) and ``AP`` (anteroposterior, mostly bedside films of sicker
  patients).

For each subgroup: its AUCs (as the whole split's, computed on the subgroup only), and at the operating points the
true- and false-positive rate of each finding and the **"No Finding" false-positive rate**: the share of images with
at least one finding that the model calls normal (no finding at or above its threshold). That is Seyyed-Kalantari
et al.'s measure of underdiagnosis: a patient with disease sent home as healthy. For each attribute, the largest gap
between its subgroups is reported per finding (true-positive rate and AUC) and for the "No Finding" false-positive
rate, with the sizes of the two subgroups, since a gap between two small subgroups is mostly noise.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from training.evaluation.proportions import proportions

__all__ = [
    "AGE_BANDS", "ATTRIBUTES", "auc_report", "largest_gaps", "subgroup_codes", "subgroup_keys", "subgroup_masks",
    "subgroup_reports",
]

AGE_BANDS: Tuple[Tuple[str, int, Optional[int]], ...] = (
    ("0-17", 0, 17), ("18-39", 18, 39), ("40-59", 40, 59), ("60-79", 60, 79), ("80+", 80, None),
)
"""(name, first age, last age or None) of each age band, in years."""

ATTRIBUTES = {"sex": "sex", "age": "age", "view_position": "view_position"}
"""Report attribute → the dataset column it is read from."""

NO_FINDING_RATE = "no_finding_false_positive_rate"


def subgroup_masks(metadata: Mapping[str, np.ndarray], num_images: int
                   ) -> Tuple[Dict[str, Dict[str, np.ndarray]], Dict[str, str]]:
    """Boolean masks of each subgroup, from the metadata columns the split has.

    Args:
        metadata: column → ``(N,)`` array; ``sex`` ("M"/"F"), ``age`` (years), ``view_position`` ("PA"/"AP").
        num_images: N.

    Returns:
        ``(masks, not_available)``: attribute → subgroup → bool ``(N,)``, in the order above, and attribute → why
        it is missing (the column is absent). Images whose value fits no subgroup (a sex other than M and F, an
        unknown age) are in none of that attribute's subgroups.
    """
    masks: Dict[str, Dict[str, np.ndarray]] = {}
    not_available: Dict[str, str] = {}
    for attribute, column in ATTRIBUTES.items():
        if column not in metadata:
            not_available[attribute] = f"the split has no {column!r} column"
            continue
        values = np.asarray(metadata[column])
        if len(values) != num_images:
            raise ValueError(f"metadata column {column!r} has {len(values)} rows, not {num_images}")
        if attribute == "age":
            ages = values.astype(np.float64)
            masks[attribute] = {
                name: (ages >= first) & (ages <= (math.inf if last is None else last))
                for name, first, last in AGE_BANDS
            }
        elif attribute == "sex":
            masks[attribute] = {name: values == name for name in ("M", "F")}
        else:
            masks[attribute] = {name: values == name for name in ("PA", "AP")}
    return masks, not_available


def subgroup_codes(masks: Mapping[str, np.ndarray], num_images: int) -> np.ndarray:
    """``(N,)`` intp: each image's subgroup (its position in ``masks``) within one attribute, -1 for none.

    The subgroups of an attribute are disjoint (:func:`subgroup_masks` makes them so)."""
    codes = np.full(num_images, -1, dtype=np.intp)
    for index, mask in enumerate(masks.values()):
        codes[mask] = index
    return codes


def subgroup_keys(masks: Mapping[str, Mapping[str, np.ndarray]]) -> List[Tuple[str, str]]:
    """(attribute, subgroup) of every subgroup of ``masks``, in order: the row order of :func:`subgroup_reports`."""
    return [(attribute, name) for attribute, groups in masks.items() for name in groups]


def subgroup_reports(
    label_names: Sequence[str],
    masks: Mapping[str, Mapping[str, np.ndarray]],
    auc_summaries: Mapping[Tuple[str, str], Mapping[str, Any]],
    *,
    counts: Optional[Tuple[np.ndarray, ...]] = None,
    no_finding: Optional[Tuple[np.ndarray, np.ndarray]] = None,
    confidence_level: float = 0.95,
    patient_ids: Optional[np.ndarray] = None,
) -> Dict[str, Dict[str, Dict[str, Any]]]:
    """The report of every subgroup.

    Args:
        label_names: the C findings.
        masks: from :func:`subgroup_masks`; G subgroups in all, in the order of :func:`subgroup_keys`.
        auc_summaries: (attribute, subgroup) → ``roc_auc_summary`` of the subgroup (``roc_auc_by_subgroup``).
        counts: ``(tp, fp, tn, fn)``, each ``(G, C)``, at the operating points, in the order of
            :func:`subgroup_keys` (``confusion_counts`` of each attribute's :func:`subgroup_codes`), or None when no
            operating point is known (then no rates are reported).
        no_finding: ``(called_normal, with_findings)``, each ``(G,)`` (``no_finding_counts``), with ``counts``.
        confidence_level: of every interval. patient_ids: ``(N,)`` to count each subgroup's patients, or None.

    Returns:
        attribute → subgroup → ``{"num_images", "num_patients" (with patient_ids), "roc_auc": {"macro",
        "per_finding"}, "operating_points": {finding: {"true_positive_rate", "false_positive_rate"}},
        "no_finding_false_positive_rate"}`` (the last two with counts); rates are Wilson-interval dicts.
    """
    keys = subgroup_keys(masks)
    rates = None
    if counts is not None:
        tp, fp, tn, fn = counts
        called_normal, with_findings = no_finding
        rates = (proportions(tp.ravel(), (tp + fn).ravel(), confidence_level),
                 proportions(fp.ravel(), (fp + tn).ravel(), confidence_level),
                 proportions(called_normal, with_findings, confidence_level))
    if patient_ids is not None:
        patients, patient_codes = np.unique(np.asarray(patient_ids), return_inverse=True)
    reports: Dict[str, Dict[str, Dict[str, Any]]] = {attribute: {} for attribute in masks}
    num_classes = len(label_names)
    for row, (attribute, name) in enumerate(keys):
        mask = masks[attribute][name]
        entry: Dict[str, Any] = {"num_images": int(np.count_nonzero(mask))}
        if patient_ids is not None:
            entry["num_patients"] = int(np.count_nonzero(np.bincount(patient_codes[mask], minlength=patients.size)))
        entry["roc_auc"] = auc_report(auc_summaries[(attribute, name)])
        if rates is not None:
            entry["operating_points"] = {
                finding: {"true_positive_rate": rates[0][row * num_classes + column],
                          "false_positive_rate": rates[1][row * num_classes + column]}
                for column, finding in enumerate(label_names)
            }
            entry[NO_FINDING_RATE] = rates[2][row]
        reports[attribute][name] = entry
    return reports


def auc_report(summary: Mapping[str, Any]) -> Dict[str, Any]:
    """A ``roc_auc_summary`` as the report's ``roc_auc`` entry: ``{"macro": {"value", "ci_low", "ci_high",
    "findings"}, "per_finding": {finding: {"value", "ci_low", "ci_high", "positives", "negatives", "interval"}}}``."""
    macro = summary["macro"]
    return {
        "macro": {"value": macro["value"], "ci_low": macro["ci_low"], "ci_high": macro["ci_high"],
                  "findings": macro["classes"]},
        "per_finding": {name: dict(entry) for name, entry in summary["per_class"].items()},
    }


def _gap(candidates: List[Tuple[str, float, int, int]]) -> Dict[str, Any]:
    """Largest minus smallest of (subgroup, value, images, count) candidates with a defined value."""
    defined = [candidate for candidate in candidates if not math.isnan(candidate[1])]
    if len(defined) < 2:
        return {"gap": math.nan, "highest": None, "lowest": None,
                "note": f"defined in {len(defined)} subgroup(s); a gap needs two"}
    ranked = sorted(defined, key=lambda candidate: candidate[1])  # stable: equal values keep the subgroups' order
    lowest, highest = ranked[0], ranked[-1]

    def side(candidate):
        subgroup, value, images, count = candidate
        return {"subgroup": subgroup, "value": value, "num_images": images, "count": count}

    return {"gap": highest[1] - lowest[1], "highest": side(highest), "lowest": side(lowest)}


def largest_gaps(reports: Mapping[str, Mapping[str, Mapping[str, Any]]], label_names: Sequence[str]
                 ) -> Dict[str, Dict[str, Any]]:
    """For each attribute, the largest gap between its subgroups, per finding and for underdiagnosis.

    Returns:
        attribute → ``{"no_finding_false_positive_rate": gap, "per_finding": {finding: {"true_positive_rate": gap,
        "roc_auc": gap}}}``; each gap is ``{"gap", "highest", "lowest"}``, the sides ``{"subgroup", "value",
        "num_images", "count"}`` where ``count`` is the denominator of the rate (images with the finding, or with any
        finding) or the finding's positives for an AUC. Subgroups where the value is undefined are left out; with
        fewer than two left, ``gap`` is NaN and ``note`` says why. Rate gaps appear only with operating points.
    """
    gaps: Dict[str, Dict[str, Any]] = {}
    for attribute, groups in reports.items():
        entry: Dict[str, Any] = {}
        has_rates = all("operating_points" in group for group in groups.values())
        if has_rates:
            entry[NO_FINDING_RATE] = _gap([
                (name, group[NO_FINDING_RATE]["value"], group["num_images"], group[NO_FINDING_RATE]["trials"])
                for name, group in groups.items()
            ])
        per_finding = {}
        for finding in label_names:
            finding_gaps = {}
            if has_rates:
                finding_gaps["true_positive_rate"] = _gap([
                    (name, rate["value"], group["num_images"], rate["trials"])
                    for name, group in groups.items()
                    for rate in [group["operating_points"][finding]["true_positive_rate"]]
                ])
            finding_gaps["roc_auc"] = _gap([
                (name, auc["value"], group["num_images"], auc["positives"])
                for name, group in groups.items()
                for auc in [group["roc_auc"]["per_finding"][finding]]
            ])
            per_finding[finding] = finding_gaps
        entry["per_finding"] = per_finding
        gaps[attribute] = entry
    return gaps
