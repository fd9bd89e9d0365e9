"""Operating points: one threshold per finding, chosen on validation, saved as ``thresholds.json``, applied on test.

A finding is called positive when its sigmoid probability is at least its threshold (``probability >= threshold``),
the rule of ``thresholds.json`` that inference code and the Space read. Three rules choose a threshold from the
validation split's probabilities and labels, each over every distinct probability of the finding (its ROC curve):

- ``"youden"`` (the default): the largest Youden's J = sensitivity + specificity - 1 (Youden, 1950), the point of
  the ROC curve farthest above the diagonal;
- ``"max_f1"``: the largest F1 = 2 TP / (2 TP + FP + FN), which weighs positives' recall against precision;
- ``"sensitivity"``: the highest threshold whose sensitivity reaches ``target_sensitivity`` (e.g. 0.9), which is the
  one with the best specificity among those that do.

Ties go to the highest threshold (the fewest positive calls). A finding with no positive or no negative image in
validation has no ROC curve: it gets :data:`FALLBACK_THRESHOLD` and the file names it under ``"fallbacks"``.

Thresholds chosen on validation are optimistic on validation itself; the test split's sensitivity, specificity and
predictive values, with the thresholds applied unchanged, are the figures to quote. Predictive values depend on
prevalence, which differs between NIH's validation and test images.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np

from nih_chestxray14.files import atomic_write_json
from training.evaluation.proportions import proportions

__all__ = [
    "FALLBACK_THRESHOLD",
    "RULES",
    "THRESHOLDS_FILE",
    "OperatingPoints",
    "choose_thresholds",
    "confusion_counts",
    "images_with_any",
    "no_finding_counts",
    "operating_point_report",
    "outcome_cells",
    "positive_calls",
    "read_thresholds",
    "write_thresholds",
]

RULES = ("youden", "max_f1", "sensitivity")
"""The accepted threshold rules: see the module docstring."""

RULE_DESCRIPTIONS = {
    "youden": "Youden's J (the largest sensitivity + specificity - 1)",
    "max_f1": "the largest F1 score",
    "sensitivity": "the highest threshold reaching a sensitivity of {target:g}",
}
"""How the card and reports name each rule."""

THRESHOLDS_FILE = "thresholds.json"
FALLBACK_THRESHOLD = 0.5
"""The threshold of a finding that validation cannot place (no positive or no negative image)."""


@dataclass
class OperatingPoints:
    """Per-finding thresholds on the sigmoid probability and how they were chosen (the content of ``thresholds.json``).

    Attributes:
        rule: one of :data:`RULES`.
        target_sensitivity: the target of the ``"sensitivity"`` rule, else None.
        chosen_on: the split the thresholds were chosen on (``"validation"``).
        num_images: the number of images of that split.
        thresholds: finding name → threshold in [0, 1], one per finding, in the model's label order.
        fallbacks: finding name → why it got :data:`FALLBACK_THRESHOLD` instead of a chosen threshold.
    """

    rule: str
    target_sensitivity: Optional[float]
    chosen_on: str
    num_images: int
    thresholds: Dict[str, float]
    fallbacks: Dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        """E.g. "Youden's J (the largest sensitivity + specificity - 1) on the validation split (8,569 images)"."""
        rule = RULE_DESCRIPTIONS[self.rule].format(target=self.target_sensitivity or 0.0)
        return f"{rule} on the {self.chosen_on} split ({self.num_images:,} images)"

    def to_json(self) -> Dict[str, Any]:
        """The ``thresholds.json`` object (the agreed keys, plus ``fallbacks`` when a finding has one)."""
        content: Dict[str, Any] = {
            "rule": self.rule,
            "target_sensitivity": self.target_sensitivity,
            "chosen_on": self.chosen_on,
            "num_images": self.num_images,
            "thresholds": {name: float(value) for name, value in self.thresholds.items()},
        }
        if self.fallbacks:
            content["fallbacks"] = dict(self.fallbacks)
        return content


def _check_rule(rule: str, target_sensitivity: Optional[float]) -> None:
    if rule not in RULES:
        raise ValueError(f"unknown threshold rule {rule!r}: use one of {', '.join(RULES)}")
    if rule == "sensitivity":
        if target_sensitivity is None or not 0.0 < float(target_sensitivity) <= 1.0:
            raise ValueError(f"the 'sensitivity' rule needs a target sensitivity in (0, 1], got {target_sensitivity!r}")
    elif target_sensitivity is not None:
        raise ValueError(f"a target sensitivity only applies to the 'sensitivity' rule, not to {rule!r}")


def _roc_points(labels: np.ndarray, scores: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Candidate thresholds of one finding, highest first, with the true and false positives of each.

    Candidate ``i`` is the ``i``-th distinct score from the top; calling ``score >= candidate`` positive gives
    ``true_positives[i]`` and ``false_positives[i]``.
    """
    order = np.argsort(-scores, kind="stable")
    sorted_scores, sorted_labels = scores[order], labels[order]
    last_of_run = np.r_[np.flatnonzero(sorted_scores[1:] != sorted_scores[:-1]), sorted_scores.size - 1]
    true_positives = np.cumsum(sorted_labels, dtype=np.int64)[last_of_run]
    return sorted_scores[last_of_run], true_positives, (last_of_run + 1) - true_positives


def _choose_one(labels: np.ndarray, scores: np.ndarray, rule: str, target: Optional[float]) -> float:
    candidates, true_positives, false_positives = _roc_points(labels, scores)
    positives, negatives = int(labels.sum()), labels.size - int(labels.sum())
    sensitivity = true_positives / positives
    if rule == "youden":
        objective = sensitivity - false_positives / negatives
    elif rule == "max_f1":
        objective = 2.0 * true_positives / (true_positives + false_positives + positives)
    else:
        # the first (highest) candidate that reaches the target; the lowest candidate always reaches 1.0
        reached = sensitivity >= float(target) - 1e-12
        return float(candidates[int(np.argmax(reached))])
    return float(candidates[int(np.argmax(objective))])  # argmax takes the first, i.e. the highest, of ties


def choose_thresholds(
    references,
    probabilities,
    label_names: Sequence[str],
    *,
    rule: str = "youden",
    target_sensitivity: Optional[float] = None,
    chosen_on: str = "validation",
) -> OperatingPoints:
    """Choose one threshold per finding by ``rule`` (see the module docstring).

    Args:
        references: ``(N, C)`` 0/1 labels of the split the thresholds are chosen on.
        probabilities: ``(N, C)`` sigmoid probabilities, in [0, 1].
        label_names: the C finding names.
        rule: ``"youden"``, ``"max_f1"`` or ``"sensitivity"``.
        target_sensitivity: for ``"sensitivity"``, the sensitivity to reach, in (0, 1].
        chosen_on: the split's name, recorded in the result.

    Returns:
        :class:`OperatingPoints`; each threshold is one of the finding's own probabilities (or
        :data:`FALLBACK_THRESHOLD`).

    Raises:
        ValueError: for an unknown rule, a target that is missing, out of range or given with another rule, or arrays
            whose shapes do not match ``label_names``.
    """
    _check_rule(rule, target_sensitivity)
    labels = np.asarray(references).astype(bool)
    scores = np.asarray(probabilities, dtype=np.float64)
    if labels.shape != scores.shape or labels.ndim != 2 or labels.shape[1] != len(label_names):
        raise ValueError(
            f"references {labels.shape} and probabilities {scores.shape} must both be (N, {len(label_names)})"
        )
    thresholds: Dict[str, float] = {}
    fallbacks: Dict[str, str] = {}
    for column, name in enumerate(label_names):
        positives = int(labels[:, column].sum())
        if positives == 0 or positives == labels.shape[0]:
            missing = "positive" if positives == 0 else "negative"
            thresholds[name] = FALLBACK_THRESHOLD
            fallbacks[name] = f"no {missing} image in {chosen_on}; {FALLBACK_THRESHOLD} used"
            continue
        thresholds[name] = _choose_one(labels[:, column], scores[:, column], rule, target_sensitivity)
    return OperatingPoints(
        rule=rule,
        target_sensitivity=None if target_sensitivity is None else float(target_sensitivity),
        chosen_on=chosen_on,
        num_images=int(labels.shape[0]),
        thresholds=thresholds,
        fallbacks=fallbacks,
    )


def positive_calls(probabilities, thresholds: Sequence[float]) -> np.ndarray:
    """``(N, C)`` bool: ``probability >= threshold``, the finding called positive."""
    return np.asarray(probabilities) >= np.asarray(thresholds, dtype=np.float64)[None, :]


def outcome_cells(references, calls) -> np.ndarray:
    """``(N, C)`` intp: ``4 * column + outcome`` of each entry, outcome 0 = TN, 1 = FN, 2 = FP, 3 = TP; the input of
    :func:`confusion_counts`, computed once for the whole split and all its subgroups."""
    labels = np.asarray(references).astype(bool)
    cells = np.asarray(calls, dtype=bool).astype(np.intp)
    cells *= 2
    cells += labels
    cells += np.arange(labels.shape[1], dtype=np.intp) * 4
    return cells


def confusion_counts(cells: np.ndarray, codes: Optional[np.ndarray] = None, num_groups: int = 1
                     ) -> Tuple[np.ndarray, ...]:
    """True/false positives and negatives of each finding, for the whole split or for each group of a partition.

    Args:
        cells: ``(N, C)`` from :func:`outcome_cells`.
        codes: optional ``(N,)`` integers: each image's group in ``[0, num_groups)``, or -1 for none (e.g. the age
            band of each image). num_groups: the number of groups.

    Returns:
        ``(tp, fp, tn, fn)``, int64 arrays of shape ``(C,)``, or ``(num_groups, C)`` with ``codes``.
    """
    num_classes = cells.shape[1]
    if codes is None:
        counts = np.bincount(cells.ravel(), minlength=num_classes * 4).reshape(1, num_classes, 4)
    else:
        # images in no group are counted in an extra group, dropped afterwards (cheaper than selecting rows)
        group = np.where(np.asarray(codes) < 0, num_groups, codes).astype(np.intp) * (num_classes * 4)
        counts = np.bincount((cells + group[:, None]).ravel(), minlength=(num_groups + 1) * num_classes * 4)
        counts = counts.reshape(num_groups + 1, num_classes, 4)[:num_groups]
    counts = counts.astype(np.int64)
    tp, fp, tn, fn = counts[..., 3], counts[..., 2], counts[..., 0], counts[..., 1]
    return (tp[0], fp[0], tn[0], fn[0]) if codes is None else (tp, fp, tn, fn)


def images_with_any(flags) -> np.ndarray:
    """``(N,)`` bool: the rows of an ``(N, C)`` 0/1 (or bool) array with at least one 1, e.g. the images with a
    finding, or those the model calls positive for some finding."""
    flags = np.asarray(flags)
    as_bytes = flags.view(np.int8) if flags.dtype == bool else flags.astype(np.int8, copy=False)
    # an int8 matrix-vector product counts each row's ones faster than any(axis=1) reduces the short axis
    return (as_bytes @ np.ones(flags.shape[1], dtype=np.int8)) > 0 if flags.shape[1] < 128 else flags.any(axis=1)


def no_finding_counts(has_finding: np.ndarray, called_normal: np.ndarray, codes: np.ndarray, num_groups: int
                      ) -> Tuple[np.ndarray, np.ndarray]:
    """Per group of a partition: images with at least one finding that the model calls normal (no call at all), and
    images with at least one finding. Their ratio is the "No Finding" false-positive rate (underdiagnosis).

    Args:
        has_finding: ``(N,)`` bool, images with at least one finding (:func:`images_with_any` of the references).
        called_normal: ``(N,)`` bool, images with a finding and no positive call.
        codes: ``(N,)`` group of each image, -1 for none. num_groups: the number of groups.

    Returns:
        ``(called_normal, with_findings)``, int64 arrays of shape ``(num_groups,)``.
    """
    group = np.where(np.asarray(codes) < 0, num_groups, codes).astype(np.intp)
    with_findings = np.bincount(group[has_finding], minlength=num_groups + 1)[:num_groups]
    missed = np.bincount(group[called_normal], minlength=num_groups + 1)[:num_groups]
    return missed.astype(np.int64), with_findings.astype(np.int64)


def operating_point_report(
    references, probabilities, operating_points: OperatingPoints, confidence_level: float = 0.95,
    counts: Optional[Tuple[np.ndarray, ...]] = None,
) -> Dict[str, Dict[str, Any]]:
    """Sensitivity, specificity, PPV and NPV (Wilson intervals) of each finding at its threshold.

    Args:
        references, probabilities: ``(N, C)``, columns in the order of ``operating_points.thresholds``.
        operating_points: the thresholds. confidence_level: of the intervals.
        counts: ``(tp, fp, tn, fn)`` already counted by :func:`confusion_counts`, to skip counting again.

    Returns:
        finding → ``{"rule", "threshold", "sensitivity", "specificity", "ppv", "npv", "true_positives",
        "false_positives", "true_negatives", "false_negatives"}``; each rate is ``{"value", "ci_low", "ci_high",
        "successes", "trials"}``, NaN where its denominator is 0 (e.g. the PPV of a finding called nowhere).
    """
    names = list(operating_points.thresholds)
    thresholds = [operating_points.thresholds[name] for name in names]
    if counts is None:
        counts = confusion_counts(outcome_cells(references, positive_calls(probabilities, thresholds)))
    tp, fp, tn, fn = counts
    rates = {
        "sensitivity": proportions(tp, tp + fn, confidence_level),
        "specificity": proportions(tn, tn + fp, confidence_level),
        "ppv": proportions(tp, tp + fp, confidence_level),
        "npv": proportions(tn, tn + fn, confidence_level),
    }
    report = {}
    for column, name in enumerate(names):
        report[name] = {
            "rule": operating_points.rule,
            "threshold": float(thresholds[column]),
            **{rate: values[column] for rate, values in rates.items()},
            "true_positives": int(tp[column]),
            "false_positives": int(fp[column]),
            "true_negatives": int(tn[column]),
            "false_negatives": int(fn[column]),
        }
    return report


def write_thresholds(folder, operating_points: OperatingPoints) -> Path:
    """Write ``folder/thresholds.json`` atomically; return its path."""
    path = Path(folder) / THRESHOLDS_FILE
    atomic_write_json(path, operating_points.to_json())
    return path


def read_thresholds(path, label_names: Sequence[str]) -> OperatingPoints:
    """Read a ``thresholds.json`` for a model with ``label_names``.

    Raises:
        ValueError: naming the file, if it is not JSON, lacks the agreed keys, misses a finding, or holds a threshold
            that is not a number in [0, 1].
    """
    path = Path(path)
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: not a readable thresholds file ({error})") from None
    thresholds = content.get("thresholds") if isinstance(content, dict) else None
    if not isinstance(thresholds, dict):
        raise ValueError(f"{path} has no 'thresholds' mapping of finding name to threshold")
    missing = [name for name in label_names if name not in thresholds]
    if missing:
        raise ValueError(f"{path} has no threshold for {', '.join(missing)}")
    checked = {}
    for name in label_names:
        value = thresholds[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
            raise ValueError(f"{path}: the threshold of {name!r} is {value!r}, not a probability in [0, 1]")
        checked[name] = float(value)
    rule = content.get("rule", "youden")
    target = content.get("target_sensitivity")
    try:
        _check_rule(rule, target)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None
    num_images = content.get("num_images")
    return OperatingPoints(
        rule=rule,
        target_sensitivity=None if target is None else float(target),
        chosen_on=str(content.get("chosen_on", "unknown")),
        num_images=int(num_images) if isinstance(num_images, int) else 0,
        thresholds=checked,
        fallbacks=dict(content.get("fallbacks") or {}),
    )

