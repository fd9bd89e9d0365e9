"""The evaluation of one scored split, as the nested dict written to ``evaluation_<split>.json``.

:func:`evaluate_split` puts together, for one split:

- ``prevalence``: each finding's share of images, and "No Finding"'s (Wilson intervals);
- ``roc_auc``: macro and per-finding AUC with intervals and positive counts (the metric's ``roc_auc_summary``);
- ``operating_points``: per finding, at the thresholds chosen on validation (``operating_points.py``): sensitivity,
  specificity, PPV, NPV with Wilson intervals, and the counts; ``operating_point_rule`` says which rule and split
  chose them; ``no_finding_false_positive_rate``: images with a finding that the model calls normal;
- ``calibration``: per finding, ECE, Brier score, mean probability, observed rate, and after scaling when a scaling
  was fitted (``calibration.py``); ``calibration_settings`` states the binning and the scaling;
- ``subgroups``, ``largest_gaps``: the same by sex, age band and view position (``subgroups.py``);
- ``prevalence_shift`` (when a reference split is given): each finding's prevalence here against the reference split;
- ``expert_labels`` (when Google's expert labels cover images of the split): the mapped findings' AUCs against the
  radiologists' labels and against NIH's, side by side (``expert.py``).

Undefined values (an AUC in a subgroup without positives, a PPV where nothing is called positive) are NaN, which
Python's ``json`` writes as ``NaN`` and reads back; they are left out of the means, as the metric does.
"""

from __future__ import annotations

import logging
import warnings
from typing import TYPE_CHECKING, Any, Dict, Optional

import numpy as np

from metrics.roc_auc_multilabel import INTERVAL_DESCRIPTIONS, UndefinedAUCWarning, roc_auc_by_subgroup
from training.evaluation.calibration import ECE_BINNING, CalibrationScaling, calibration_report
from training.evaluation.expert import expert_report
from training.evaluation.operating_points import (
    OperatingPoints,
    confusion_counts,
    images_with_any,
    no_finding_counts,
    operating_point_report,
    outcome_cells,
    positive_calls,
)
from training.evaluation.predictions import ScoredSplit
from training.evaluation.proportions import proportion, proportions
from training.evaluation.subgroups import (
    auc_report,
    largest_gaps,
    subgroup_codes,
    subgroup_keys,
    subgroup_masks,
    subgroup_reports,
)

if TYPE_CHECKING:
    from nih_chestxray14.expert_labels import ExpertLabels

logger = logging.getLogger(__name__)

__all__ = ["NO_FINDING", "evaluate_split", "prevalence", "prevalence_shift"]

NO_FINDING = "No Finding"
_WHOLE_SPLIT = ("all", "all")


def prevalence(scored: ScoredSplit, confidence_level: float = 0.95) -> Dict[str, Dict[str, Any]]:
    """Finding → its share of the split's images (``{"value", "ci_low", "ci_high", "successes", "trials"}``), and
    ``"No Finding"`` → the share of images with none of the findings."""
    positives = scored.references.sum(axis=0)
    shares = dict(zip(scored.label_names, proportions(positives, np.full_like(positives, scored.num_images),
                                                      confidence_level)))
    normal = scored.num_images - int(images_with_any(scored.references).sum())
    shares[NO_FINDING] = proportion(normal, scored.num_images, confidence_level)
    return shares


def evaluate_split(
    scored: ScoredSplit,
    *,
    operating_points: Optional[OperatingPoints] = None,
    scaling: Optional[CalibrationScaling] = None,
    confidence_level: float = 0.95,
    ece_bins: int = 10,
    interval: str = "auto",
    reference: Optional[ScoredSplit] = None,
    expert: Optional["ExpertLabels"] = None,
) -> Dict[str, Any]:
    """Everything ``evaluation_<split>.json`` holds about ``scored`` (see the module docstring).

    Args:
        scored: the split's labels, probabilities and metadata.
        operating_points: thresholds (chosen on validation), or None to report no operating point.
        scaling: a calibration scaling fitted on validation, or None.
        confidence_level: of every interval. ece_bins: bins of the ECE. interval: the AUC interval method.
        reference: another scored split (validation) to show the prevalence shift against, or None.
        expert: Google's expert labels (``nih_chestxray14.expert_labels``), or None.

    Raises:
        ValueError: if the thresholds or the scaling miss one of the split's findings, or from the metric's checks.
    """
    names = list(scored.label_names)
    references, probabilities = scored.references, scored.probabilities
    masks, not_available = subgroup_masks(scored.metadata, scored.num_images)
    thresholds = None
    if operating_points is not None:
        missing = [name for name in names if name not in operating_points.thresholds]
        if missing:
            raise ValueError(f"the operating points have no threshold for {', '.join(missing)}")
        thresholds = [operating_points.thresholds[name] for name in names]

    # One sort per finding serves the whole split and every subgroup.
    keys = [_WHOLE_SPLIT, *subgroup_keys(masks)]
    groups = {"/".join(_WHOLE_SPLIT): np.ones(scored.num_images, dtype=bool)}
    groups.update({"/".join(key): masks[key[0]][key[1]] for key in keys[1:]})
    with warnings.catch_warnings(record=True) as undefined:
        warnings.simplefilter("always", UndefinedAUCWarning)
        summaries = roc_auc_by_subgroup(references, probabilities, groups, label_names=names,
                                        confidence_level=confidence_level, interval=interval)
    if undefined:
        logger.info("%s: %d AUC(s) undefined (no positive or no negative image): reported as NaN", scored.split,
                    len(undefined))
    summaries_by_key = {key: summaries["/".join(key)] for key in keys}
    counts = no_finding = None
    if thresholds is not None:
        calls = positive_calls(probabilities, thresholds)
        cells = outcome_cells(references, calls)
        whole = confusion_counts(cells)
        # each attribute partitions the images: one count per attribute serves all its subgroups
        codes = {attribute: subgroup_codes(named, scored.num_images) for attribute, named in masks.items()}
        by_attribute = [confusion_counts(cells, codes[attribute], len(masks[attribute])) for attribute in masks]
        counts = tuple(np.concatenate([whole[i][None, :], *(counted[i] for counted in by_attribute)])
                       for i in range(4))
        has_finding = images_with_any(references)
        called_normal = has_finding & ~images_with_any(calls)
        missed = [np.array([called_normal.sum()], dtype=np.int64)]
        with_findings = [np.array([has_finding.sum()], dtype=np.int64)]
        for attribute in masks:
            counted = no_finding_counts(has_finding, called_normal, codes[attribute], len(masks[attribute]))
            missed.append(counted[0])
            with_findings.append(counted[1])
        no_finding = (np.concatenate(missed), np.concatenate(with_findings))

    report: Dict[str, Any] = {
        "split": scored.split,
        "split_description": scored.description,
        "num_images": scored.num_images,
    }
    if "patient_id" in scored.metadata:
        report["num_patients"] = int(np.unique(scored.metadata["patient_id"]).size)
    report["confidence_level"] = float(confidence_level)
    report["label_names"] = names
    report["prevalence"] = shares = prevalence(scored, confidence_level)
    report["roc_auc"] = {
        **auc_report(summaries_by_key[_WHOLE_SPLIT]),
        "interval": interval,
        "interval_description": INTERVAL_DESCRIPTIONS[interval],
    }
    if operating_points is not None:
        report["operating_point_rule"] = {
            "rule": operating_points.rule,
            "target_sensitivity": operating_points.target_sensitivity,
            "chosen_on": operating_points.chosen_on,
            "num_images": operating_points.num_images,
            "description": operating_points.describe(),
            "fallbacks": dict(operating_points.fallbacks),
        }
        report["operating_points"] = operating_point_report(
            references, probabilities, operating_points, confidence_level, counts=tuple(count[0] for count in counts))
        report["no_finding_false_positive_rate"] = proportion(int(no_finding[0][0]), int(no_finding[1][0]),
                                                              confidence_level)
    report["calibration_settings"] = {
        "ece_bins": int(ece_bins),
        "ece_binning": ECE_BINNING.format(bins=ece_bins),
        "scaling": None if scaling is None else scaling.method,
        "scaling_fitted_on": None if scaling is None else scaling.fitted_on,
        "scaling_not_fitted": {} if scaling is None else dict(scaling.not_fitted),
        "scaling_notes": {} if scaling is None else dict(scaling.notes),
    }
    report["calibration"] = calibration_report(references, probabilities, names, ece_bins, scaling)
    subgroups = subgroup_reports(
        names, masks, summaries_by_key, confidence_level=confidence_level,
        patient_ids=scored.metadata.get("patient_id"),
        counts=None if counts is None else tuple(count[1:] for count in counts),
        no_finding=None if no_finding is None else tuple(count[1:] for count in no_finding),
    )
    report["subgroups"] = subgroups
    if not_available:
        report["subgroups_not_available"] = not_available
    report["largest_gaps"] = largest_gaps(subgroups, names)
    if reference is not None:
        report["prevalence_shift"] = prevalence_shift(reference, scored, confidence_level, shares)
    if expert is not None:
        against_experts = expert_report(scored, expert, confidence_level)
        if against_experts is not None:
            report["expert_labels"] = against_experts
    return report


def prevalence_shift(reference: ScoredSplit, scored: ScoredSplit, confidence_level: float = 0.95,
                     shares: Optional[Dict[str, Dict[str, Any]]] = None) -> Dict[str, Any]:
    """Each finding's (and "No Finding"'s) prevalence in ``reference`` and in ``scored``, and their difference.

    Returns:
        ``{"reference_split", "split", "per_finding": {finding: {"reference": rate, "split": rate, "difference"}}}``:
        the names of the two splits, then per finding its prevalence in each (Wilson-interval rates) and
        ``split`` minus ``reference``. ``shares``: :func:`prevalence` of ``scored``, when already computed.
    """
    before = prevalence(reference, confidence_level)
    after = shares if shares is not None else prevalence(scored, confidence_level)
    per_finding = {}
    for name in (*scored.label_names, NO_FINDING):
        if name not in before:
            continue
        per_finding[name] = {
            "reference": before[name],
            "split": after[name],
            "difference": after[name]["value"] - before[name]["value"],
        }
    return {"reference_split": reference.split, "split": scored.split, "per_finding": per_finding}
