"""The card's evaluation sections, as table rows built from the run's ``evaluation_<split>.json`` reports.

- **Operating points**: per finding, the threshold chosen on validation and, on test, sensitivity, specificity,
  PPV and NPV with Wilson intervals and their counts;
- **Disaggregated results** (Mitchell et al., *Model Cards for Model Reporting*, 2019): per subgroup of sex, age band
  and view position, the images, the macro AUC and the "No Finding" false-positive rate (underdiagnosis,
  Seyyed-Kalantari et al., 2021); then, per finding, the largest true-positive-rate gap between subgroups with the
  subgroups' sizes;
- **Calibration**: ECE (binning stated) and Brier score per finding, before and after the scaling;
- **Against radiologists' labels**: with Google's expert labels, the mapped findings' AUCs against them and against
  NIH's own labels;
- **Prevalence shift**: each finding's prevalence in validation and in test.

Every AUC is shown with its positive count; an AUC whose interval could not be computed is never shown as certain.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Mapping, Optional

__all__ = ["evaluation_context", "format_rate"]

ATTRIBUTE_NAMES = {"sex": "Sex", "age": "Age band", "view_position": "View"}
NOT_AVAILABLE = "n/a"


def _finite(value: Any) -> Optional[float]:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def format_rate(rate: Optional[Mapping[str, Any]], digits: int = 3, counts: bool = True) -> str:
    """``"0.812 (0.790–0.833; 41/52)"`` for a Wilson-interval rate dict; ``"n/a (0/0)"`` when undefined."""
    if not rate:
        return NOT_AVAILABLE
    value, low, high = _finite(rate.get("value")), _finite(rate.get("ci_low")), _finite(rate.get("ci_high"))
    count = f"{rate['successes']:,}/{rate['trials']:,}" if counts and "trials" in rate else ""
    if value is None:
        return f"{NOT_AVAILABLE} ({count})" if count else NOT_AVAILABLE
    interval = f"{low:.{digits}f}–{high:.{digits}f}" if low is not None and high is not None else ""
    inside = "; ".join(part for part in (interval, count) if part)
    return f"{value:.{digits}f} ({inside})" if inside else f"{value:.{digits}f}"


def format_auc_entry(entry: Optional[Mapping[str, Any]]) -> str:
    """``"0.8123 (0.8010–0.8236)"``; ``"n/a"`` when undefined; the value alone, marked as such, when the interval
    collapsed to a point."""
    if not entry:
        return NOT_AVAILABLE
    value, low, high = _finite(entry.get("value")), _finite(entry.get("ci_low")), _finite(entry.get("ci_high"))
    if value is None:
        return NOT_AVAILABLE
    if low is None or high is None:
        return f"{value:.4f}"
    if low == high:
        return f"{value:.4f} (no interval could be computed)"
    return f"{value:.4f} ({low:.4f}–{high:.4f})"


def _operating_point_rows(report: Mapping[str, Any]) -> List[Dict[str, str]]:
    rows = []
    for name, entry in report.get("operating_points", {}).items():
        rows.append({
            "finding": name,
            "threshold": f"{entry['threshold']:.4f}",
            "sensitivity": format_rate(entry["sensitivity"]),
            "specificity": format_rate(entry["specificity"]),
            "ppv": format_rate(entry["ppv"]),
            "npv": format_rate(entry["npv"]),
        })
    return rows


def _subgroup_rows(report: Mapping[str, Any]) -> List[Dict[str, str]]:
    rows = []
    for attribute, groups in report.get("subgroups", {}).items():
        for name, group in groups.items():
            macro = group["roc_auc"]["macro"]
            images = f"{group['num_images']:,}"
            if "num_patients" in group:
                images += f" ({group['num_patients']:,} patients)"
            rows.append({
                "attribute": ATTRIBUTE_NAMES.get(attribute, attribute),
                "subgroup": name,
                "images": images,
                "macro_auc": format_auc_entry(macro),
                "findings": f"{macro['findings']} of {len(group['roc_auc']['per_finding'])}",
                "no_finding_fpr": format_rate(group.get("no_finding_false_positive_rate")),
            })
    return rows


def _side(side: Optional[Mapping[str, Any]], unit: str) -> str:
    """``"F: 0.812 (52 with the finding, 1,204 images)"``."""
    if not side:
        return NOT_AVAILABLE
    return f"{side['subgroup']}: {side['value']:.3f} ({side['count']:,} {unit}, {side['num_images']:,} images)"


def _gap_rows(report: Mapping[str, Any]) -> List[Dict[str, str]]:
    """Per finding, the attribute whose subgroups' true-positive rates differ most."""
    rows = []
    gaps = report.get("largest_gaps", {})
    for finding in report.get("label_names", []):
        best = None
        for attribute, entry in gaps.items():
            gap = entry["per_finding"][finding].get("true_positive_rate")
            if gap and _finite(gap["gap"]) is not None and (best is None or gap["gap"] > best[1]["gap"]):
                best = (attribute, gap)
        if best is None:
            rows.append({"finding": finding, "attribute": NOT_AVAILABLE, "gap": NOT_AVAILABLE,
                         "highest": NOT_AVAILABLE, "lowest": NOT_AVAILABLE})
            continue
        attribute, gap = best
        rows.append({
            "finding": finding,
            "attribute": ATTRIBUTE_NAMES.get(attribute, attribute),
            "gap": f"{gap['gap']:.3f}",
            "highest": _side(gap["highest"], "with the finding"),
            "lowest": _side(gap["lowest"], "with the finding"),
        })
    return rows


def _underdiagnosis_gaps(report: Mapping[str, Any]) -> List[Dict[str, str]]:
    rows = []
    for attribute, entry in report.get("largest_gaps", {}).items():
        gap = entry.get("no_finding_false_positive_rate")
        if not gap or _finite(gap["gap"]) is None:
            continue
        rows.append({
            "attribute": ATTRIBUTE_NAMES.get(attribute, attribute),
            "gap": f"{gap['gap']:.3f}",
            "highest": _side(gap["highest"], "with any finding"),
            "lowest": _side(gap["lowest"], "with any finding"),
        })
    return rows


def _calibration_rows(report: Mapping[str, Any]) -> List[Dict[str, str]]:
    rows = []
    for name, entry in report.get("calibration", {}).items():
        scaled = entry.get("scaled")
        rows.append({
            "finding": name,
            "observed": f"{entry['observed_rate']:.3f}",
            "mean_probability": f"{entry['mean_probability']:.3f}",
            "ece": f"{entry['ece']:.4f}",
            "brier": f"{entry['brier']:.4f}",
            "scaled_ece": f"{scaled['ece']:.4f}" if scaled else "",
            "scaled_brier": f"{scaled['brier']:.4f}" if scaled else "",
        })
    return rows


def _prevalence_rows(report: Mapping[str, Any]) -> List[Dict[str, str]]:
    shift = report.get("prevalence_shift")
    if not shift:
        return []
    rows = []
    for name, entry in shift["per_finding"].items():
        rows.append({
            "finding": name,
            "reference": format_rate(entry["reference"]),
            "split": format_rate(entry["split"]),
            "difference": f"{100 * entry['difference']:+.1f} points",
        })
    return rows


def _expert_rows(report: Mapping[str, Any]) -> List[Dict[str, str]]:
    expert = report.get("expert_labels")
    if not expert:
        return []
    rows = []
    against_expert, against_nih = expert["against_expert"], expert["against_nih"]
    for name, entry in (("**Macro average**", None), *against_expert["per_finding"].items()):
        if entry is None:
            expert_entry, nih_entry = against_expert["macro"], against_nih["macro"]
            expert_positives = nih_positives = f"{expert_entry['findings']} of {len(against_expert['per_finding'])}"
        else:
            expert_entry, nih_entry = entry, against_nih["per_finding"][name]
            expert_positives, nih_positives = f"{entry['positives']:,}", f"{nih_entry['positives']:,}"
        rows.append({"finding": name, "images": f"{expert['num_images']:,}", "expert_positives": expert_positives,
                     "expert_auc": format_auc_entry(expert_entry), "nih_positives": nih_positives,
                     "nih_auc": format_auc_entry(nih_entry)})
    return rows


def evaluation_context(evaluation: Mapping[str, Mapping[str, Any]]) -> Dict[str, Any]:
    """Template variables for the evaluation sections, from split → report (test preferred, else validation).

    Returns ``{"has_evaluation": False}`` when there is no report.
    """
    split = "test" if "test" in evaluation else next(iter(evaluation), None)
    if split is None:
        return {"has_evaluation": False}
    report = evaluation[split]
    rule = report.get("operating_point_rule")
    settings = report.get("calibration_settings", {})
    shift = report.get("prevalence_shift")
    descriptions = {name: entry.get("split_description") for name, entry in evaluation.items()}
    return {
        "has_evaluation": True,
        "evaluated_split": split,
        "evaluated_images": f"{report['num_images']:,}",
        "split_descriptions": [(name, text) for name, text in descriptions.items() if text],
        "operating_point_rule": rule["description"] if rule else None,
        "operating_point_fallbacks": sorted((rule or {}).get("fallbacks", {}).items()),
        "operating_point_rows": _operating_point_rows(report),
        "no_finding_fpr": format_rate(report.get("no_finding_false_positive_rate")),
        "subgroup_rows": _subgroup_rows(report),
        "subgroups_not_available": sorted(report.get("subgroups_not_available", {}).items()),
        "gap_rows": _gap_rows(report) if rule else [],
        "underdiagnosis_gap_rows": _underdiagnosis_gaps(report),
        "ece_binning": settings.get("ece_binning"),
        "scaling": settings.get("scaling"),
        "scaling_fitted_on": settings.get("scaling_fitted_on"),
        "scaling_caveats": sorted({**settings.get("scaling_not_fitted", {}),
                                   **settings.get("scaling_notes", {})}.items()),
        "calibration_rows": _calibration_rows(report),
        "expert_rows": _expert_rows(report),
        "expert_source": (report.get("expert_labels") or {}).get("source"),
        "expert_images": f"{(report.get('expert_labels') or {}).get('num_images', 0):,}",
        "expert_mapping": "; ".join(f"{name} ← {', '.join(findings)}" for name, findings in
                                    (report.get("expert_labels") or {}).get("mapping", {}).items()),
        "prevalence_reference": shift["reference_split"] if shift else None,
        "prevalence_rows": _prevalence_rows(report),
    }
