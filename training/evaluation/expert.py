"""The model against radiologists' labels: Google's expert-adjudicated findings, beside NIH's own labels.

Majkowska et al. (Radiology 2020) had radiologists adjudicate four findings on 1,962 images of NIH's test list and
2,412 of its train_val list. ``nih_chestxray14.expert_labels`` reads their labels (Google's two CSVs or
torchxrayvision's copy) and ``nih_chestxray14.expert_findings`` maps the 14 findings onto three of the four: a model's
score for "Nodule or mass" is the maximum of its Nodule and Mass probabilities, "Airspace opacity" the maximum over
Atelectasis, Consolidation, Edema, Infiltration and Pneumonia, Pneumothorax itself. Fracture has no counterpart and is
not scored.

On the expert-labelled images of a split, the same mapped scores are scored twice, side by side: against the
radiologists' labels and against NIH's own text-mined labels mapped the same way. The difference between the two AUCs
is how much the noisy labels move the figure; it is not a paired test of two models (the references differ).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

from metrics.roc_auc_multilabel import UndefinedAUCWarning, roc_auc_summary
from nih_chestxray14.expert_findings import MAPPED_FINDINGS, NIH_TO_EXPERT, UNMAPPED_FINDINGS, to_expert_findings
from nih_chestxray14.expert_labels import ExpertLabels, find_expert_label_files, read_expert_labels
from nih_chestxray14.labels import LABELS
from training.evaluation.predictions import ScoredSplit
from training.evaluation.subgroups import auc_report

logger = logging.getLogger(__name__)

__all__ = ["expert_report", "load_expert_labels"]


def load_expert_labels(paths: Optional[Sequence[str]], data_dir: Optional[str]) -> Optional[ExpertLabels]:
    """Google's expert labels for the evaluation, or None when there are none.

    Args:
        paths: expert-label files given by the user (``--expert_labels``), or None to look in ``data_dir``.
        data_dir: the NIH release's folder (the builder's ``--data_dir``), or None (an exported dataset). Labels are
            checked against its entry CSV and split lists when it has them.

    Raises:
        nih_chestxray14.errors.NIHChestXray14Error: for a bad expert-label file (naming it and the line), or labels
            that do not fit the release's lists.
    """
    if paths:
        release_dir = data_dir if data_dir is not None and Path(data_dir).is_dir() else None
        if release_dir is not None:
            from nih_chestxray14.metadata import read_release_metadata

            return read_expert_labels(paths=list(paths), release=read_release_metadata(str(release_dir)))
        return read_expert_labels(paths=list(paths))
    if data_dir is None or not Path(data_dir).is_dir() or not find_expert_label_files(data_dir):
        return None
    expert = read_expert_labels(data_dir)
    logger.info("scoring against %s", expert.describe())
    return expert


def expert_report(scored: ScoredSplit, expert: ExpertLabels, confidence_level: float = 0.95
                  ) -> Optional[Dict[str, Any]]:
    """AUCs of the mapped findings against the expert labels and against NIH's labels, on the split's expert images.

    Args:
        scored: a split scored on the 14 findings in ``nih_chestxray14.LABELS`` order.
        expert: the expert labels.
        confidence_level: of the AUC intervals.

    Returns:
        None when no image of the split is expert-labelled; else ``{"source", "num_images", "google_sets",
        "mapping", "unmapped", "against_expert": {"macro", "per_finding"}, "against_nih": {...},
        "label_agreement": {finding: {"both", "expert_only", "nih_only", "neither"}}}``; the AUC entries as in the
        report's ``roc_auc`` (with positive counts; NaN where a finding has no positive image).

    Raises:
        ValueError: if the split was not scored on the 14 findings in their order.
    """
    if tuple(scored.label_names) != tuple(LABELS):
        raise ValueError("expert labels are scored through the 14-finding mapping: the split must hold the 14 findings "
                         "in nih_chestxray14.LABELS order")
    match = expert.align(list(scored.image_ids), google_split=None)
    if match.indices.size == 0:
        return None
    scores = to_expert_findings(scored.probabilities[match.indices])
    nih_labels = to_expert_findings(scored.references[match.indices])
    expert_labels = match.mapped_labels
    names = list(MAPPED_FINDINGS)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="ROC AUC", category=UndefinedAUCWarning)
        against_expert = roc_auc_summary(expert_labels, scores, label_names=names, confidence_level=confidence_level)
        against_nih = roc_auc_summary(nih_labels, scores, label_names=names, confidence_level=confidence_level)
    sets = [expert.labels[name].google_split for name in match.image_ids]
    agreement = {}
    for column, name in enumerate(names):
        by_expert, by_nih = expert_labels[:, column] == 1, nih_labels[:, column] == 1
        agreement[name] = {"both": int((by_expert & by_nih).sum()), "expert_only": int((by_expert & ~by_nih).sum()),
                           "nih_only": int((~by_expert & by_nih).sum()), "neither": int((~by_expert & ~by_nih).sum())}
    return {
        "source": expert.describe(),
        "num_images": int(match.indices.size),
        "google_sets": {google: sets.count(google) for google in ("test", "validation")},
        "mapping": {name: list(NIH_TO_EXPERT[name]) for name in names},
        "mapping_rule": "each expert finding is scored by the maximum of its NIH findings' probabilities, and NIH's "
                        "labels are mapped the same way (nih_chestxray14.expert_findings)",
        "unmapped": {name: "no counterpart among NIH's 14 findings: not scored" for name in UNMAPPED_FINDINGS},
        "against_expert": auc_report(against_expert),
        "against_nih": auc_report(against_nih),
        "label_agreement": agreement,
    }

