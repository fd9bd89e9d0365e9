"""Multi-label ROC AUC in plain NumPy: exact per-class and averaged AUC, confidence intervals and positive counts.

This file and the ones it imports (``delong.py``, ``intervals.py``) need nothing but NumPy and the standard library,
so a training loop, an evaluation script or a benchmark can use them without ``evaluate``. The ``evaluate`` module
``roc_auc_multilabel.py`` is a thin wrapper around :func:`multilabel_roc_auc`; ``comparison.py`` compares two models
on the same cases.

Shapes: ``references`` and ``prediction_scores`` are ``(N, C)``, N cases (images) by C classes (findings).

How the numbers are computed:

* **AUC and variance** (``delong.py``): the Mann-Whitney statistic, exact, and DeLong's variance from each case's
  placement value, O(N log N) per class. Integer scores are ranked as integers, never through float64, so scores
  beyond 2**53 keep their order.
* **Averages.** ``"macro"`` and ``"weighted"`` are computed as scikit-learn computes them, with ``np.average`` (for
  ``"weighted"``, with each class's number of positives as its weight), whose summation order does not depend on the
  CPU. ``"micro"`` pools all ``N * C`` (case, class) entries into one binary problem, as scikit-learn does.
* **Across classes.** Every class is scored on the same cases, so their AUCs are correlated. Each case gets one
  influence value per class (its centred placement value, scaled so that the sum of squares over cases is DeLong's
  variance); the covariance of two classes' AUCs is the sum over cases of the product of their influence values.
  When two classes share their references this is exactly DeLong's covariance of two correlated AUCs; otherwise it
  is its delta-method generalisation. For the micro average, entries of one case are not independent: its variance is
  the cluster-robust DeLong variance, the entry-level influence values summed per case before squaring.
* **Intervals** (``intervals.py``): by default (``interval="auto"``) DeLong's logit interval, a score interval for
  classes with few misranked cases (small classes, AUC near 0 or 1, where DeLong's interval under-covers or
  collapses), and MOVER for the macro and weighted averages. ``interval="delong"`` gives DeLong's logit interval
  everywhere, with the average's variance ``w' S w`` from the covariance ``S`` (plus, for ``"weighted"``, the
  variability of the prevalence weights by the delta method).
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from .delong import ClassStatistics, class_statistics, micro_statistics, per_class_auc, pooled_auc, sort_classes
from .intervals import (
    INTERVAL_METHODS,
    class_intervals,
    correlation_from_covariance,
    logit_interval,
    mover_interval,
    z_value,
)

AVERAGES = ("macro", "micro", "weighted", None)
"""The accepted values of ``average``; ``None`` returns one AUC per class."""

UndefinedAUCWarning = RuntimeWarning
"""The category of the warning that names a class whose AUC is undefined (its references are all 0 or all 1).

It is Python's ``RuntimeWarning``, the category NumPy uses for statistics that are undefined on the data (the mean of
an empty slice), so that this module and the evaluate module, which ``evaluate`` imports as a copy from its module
cache, warn with one class: a filter set through either catches both. Every message of this module starts with
"ROC AUC", so ``warnings.filterwarnings("ignore", message="ROC AUC", category=UndefinedAUCWarning)`` silences exactly
these warnings."""

MetricValue = Union[float, int, List[float], List[int]]


# ----------------------------------------------------------------------------------------------------- validation


def _first_bad_entry(bad: np.ndarray) -> Tuple[int, int]:
    row, column = np.argwhere(bad)[0]
    return int(row), int(column)


def _as_matrix(values, argument: str) -> np.ndarray:
    if values is None:
        raise ValueError(f"{argument} is missing: pass an (N, C) array")
    try:
        array = np.asarray(values)
    except (ValueError, TypeError) as error:
        raise ValueError(
            f"{argument} must be a rectangular (N, C) array with C entries in every row, and in every batch added "
            f"({error})"
        ) from None
    if array.dtype == object:
        raise ValueError(
            f"{argument} must be a rectangular (N, C) array of numbers that fit in 64 bits, with C entries in every row"
        )
    if array.ndim != 2:
        raise ValueError(
            f"{argument} must be 2-dimensional, (N cases, C classes); got shape {array.shape}. "
            "For a single class, pass a column: array.reshape(-1, 1)"
        )
    if array.dtype.kind not in "biuf":
        raise ValueError(f"{argument} must hold real numbers; got dtype {array.dtype}")
    return array


def validate_inputs(references, prediction_scores, *, scores_argument: str = "prediction_scores"):
    """Check and convert the two input arrays.

    Args:
        references: ``(N, C)`` array-like of 0/1 (bool, int or float).
        prediction_scores: ``(N, C)`` array-like of finite real scores (probabilities, logits, any monotone score).
        scores_argument: the name of the scores in error messages.

    Returns:
        ``(labels, scores)``: ``labels`` a bool ``(N, C)`` array; ``scores`` an ``(N, C)`` array that orders exactly
        as the input: float32 stays float32 (float16 becomes float32), other floats become float64, and integers stay
        integers (bool becomes uint8), so no two distinct scores are merged.

    Raises:
        ValueError: if either array is missing, ragged or not 2-D, if the shapes differ, if there are no rows, if a
            reference is not 0 or 1, or if a score is NaN or infinite. The message names the argument, and the row and
            column of the first bad entry.
    """
    refs = _as_matrix(references, "references")
    scores = _as_matrix(prediction_scores, scores_argument)
    if refs.shape != scores.shape:
        raise ValueError(
            f"references has shape {refs.shape} but {scores_argument} has shape {scores.shape}: both must be "
            "(N cases, C classes)"
        )
    if refs.shape[0] == 0 or refs.shape[1] == 0:
        raise ValueError(f"references and {scores_argument} are empty (shape {refs.shape}): pass at least one row")
    if refs.dtype == bool:
        labels = refs
    else:
        is_zero = refs == 0
        is_binary = is_zero | (refs == 1)
        if not is_binary.all():
            row, column = _first_bad_entry(~is_binary)
            raise ValueError(
                f"references must be 0 or 1; row {row}, column {column} holds {refs[row, column].item()!r}. "
                "Pass multi-hot labels, not class indices or probabilities"
            )
        labels = ~is_zero
    if scores.dtype.kind == "b":
        return labels, scores.astype(np.uint8)
    if scores.dtype.kind in "iu":
        return labels, scores  # integers are ranked exactly, as integers
    if scores.dtype == np.float16:
        scores = scores.astype(np.float32)
    elif scores.dtype not in (np.float32, np.float64):
        scores = scores.astype(np.float64)
    finite = np.isfinite(scores)
    if not finite.all():
        row, column = _first_bad_entry(~finite)
        raise ValueError(
            f"{scores_argument} must be finite; row {row}, column {column} holds {scores[row, column].item()!r}"
        )
    return labels, scores


def check_options(
    num_classes: Optional[int], average, label_names, confidence_level, interval: str = "auto"
) -> Optional[List[str]]:
    """Check the options of :func:`multilabel_roc_auc` and return ``label_names`` as a list (or None).

    ``num_classes`` may be None when the data is not known yet; the length of ``label_names`` is then not checked.

    Raises:
        ValueError: for an unknown ``average`` or ``interval``, a ``confidence_level`` outside (0, 1), or
            ``label_names`` that are not ``num_classes`` unique strings.
    """
    if not (average is None or (isinstance(average, str) and average in AVERAGES)):
        raise ValueError(f"unknown average {average!r}: use one of {', '.join(repr(a) for a in AVERAGES)}")
    if not (isinstance(interval, str) and interval in INTERVAL_METHODS):
        raise ValueError(f"unknown interval {interval!r}: use one of {', '.join(map(repr, INTERVAL_METHODS))}")
    if confidence_level is not None:
        if isinstance(confidence_level, bool) or not isinstance(confidence_level, (int, float, np.floating)):
            raise ValueError(f"confidence_level must be a number in (0, 1), such as 0.95; got {confidence_level!r}")
        if not 0.0 < float(confidence_level) < 1.0:
            raise ValueError(
                f"confidence_level must lie strictly between 0 and 1, such as 0.95; got {confidence_level!r}"
            )
    if label_names is None:
        return None
    if isinstance(label_names, str):
        raise ValueError("label_names must be a sequence of C names, not one string")
    names = list(label_names)
    if num_classes is not None and len(names) != num_classes:
        raise ValueError(
            f"label_names has {len(names)} names but the inputs have {num_classes} classes (columns): give one name "
            "per column, in column order"
        )
    if not all(isinstance(name, str) for name in names):
        raise ValueError("label_names must be strings")
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"label_names must be unique; repeated: {', '.join(duplicates)}")
    return names


# ------------------------------------------------------------------------------------------------- per-class AUC


def roc_auc_per_class(references, prediction_scores) -> np.ndarray:
    """Exact ROC AUC of each column.

    Args:
        references: ``(N, C)`` 0/1 array-like.
        prediction_scores: ``(N, C)`` finite scores; only their order within a column matters.

    Returns:
        float64 array of shape ``(C,)``; NaN for a column whose references are all 0 or all 1 (no warning here).

    Raises:
        ValueError: as :func:`validate_inputs`.
    """
    labels, scores = validate_inputs(references, prediction_scores)
    return per_class_auc(labels, scores)


def delong_influence(references, prediction_scores) -> Tuple[np.ndarray, np.ndarray]:
    """Per-class AUC and per-case DeLong influence values.

    Args:
        references: ``(N, C)`` 0/1 array-like.
        prediction_scores: ``(N, C)`` finite scores.

    Returns:
        ``(auc, influence)``: ``auc`` of shape ``(C,)`` (NaN for an undefined class), ``influence`` of shape
        ``(N, C)`` (zeros in an undefined class's column). ``influence.T @ influence`` is the DeLong covariance matrix
        of the per-class AUCs; its diagonal is DeLong's variance of each class.

    Raises:
        ValueError: as :func:`validate_inputs`.
    """
    statistics = class_statistics(*validate_inputs(references, prediction_scores))
    return statistics.auc, statistics.influence


def delong_covariance(references, prediction_scores) -> Tuple[np.ndarray, np.ndarray]:
    """Per-class AUC and the ``(C, C)`` DeLong covariance matrix of those AUCs.

    Raises:
        ValueError: as :func:`validate_inputs`.
    """
    auc, influence = delong_influence(references, prediction_scores)
    return auc, influence.T @ influence


# --------------------------------------------------------------------------------------------------- averaging


def _warn_undefined(
    positives: np.ndarray, num_cases: int, names: Optional[List[str]], stacklevel: int, subgroup: Optional[str] = None
) -> None:
    """One :data:`UndefinedAUCWarning` per class with no positive or no negative case among ``num_cases``;
    ``stacklevel`` counts from the caller of this function."""
    where = f" in subgroup {subgroup!r}" if subgroup is not None else ""
    for column in np.flatnonzero((positives == 0) | (positives == num_cases)):
        name = names[column] if names is not None else f"column {column}"
        if num_cases == 0:
            reason = "the subgroup has no case"
        else:
            only = int(positives[column] == num_cases)
            reason = f"all {num_cases} references are {only}, with no {'negative' if only else 'positive'} case"
        warnings.warn(
            f"ROC AUC of class {name!r} (column {column}){where} is undefined: {reason}. It is reported as NaN and "
            "left out of the macro and weighted averages",
            UndefinedAUCWarning,
            stacklevel=stacklevel + 1,
        )


def _average(auc: np.ndarray, positives: np.ndarray, average: str) -> Tuple[float, np.ndarray]:
    """The macro or weighted average of the defined classes, as scikit-learn computes it, and the weights used."""
    defined = ~np.isnan(auc)
    weights = np.zeros(auc.shape, dtype=np.float64)
    if not defined.any():
        return math.nan, weights
    if average == "macro":
        weights[defined] = 1.0 / defined.sum()
        return float(np.average(auc[defined])), weights
    weights[defined] = positives[defined] / positives[defined].sum()
    return float(np.average(auc[defined], weights=positives[defined])), weights


def _average_interval(
    value: float, weights: np.ndarray, statistics: ClassStatistics, bounds, labels: Optional[np.ndarray], average: str,
    z: float, interval: str,
) -> Tuple[float, float]:
    """Interval of a macro or weighted average: MOVER over the per-class intervals, or, for ``interval="delong"``,
    the logit interval of ``w' S w`` (plus the prevalence weights' own variability for "weighted")."""
    defined = weights > 0
    if not defined.any():
        return math.nan, math.nan
    influence = statistics.influence[:, defined]
    if interval != "delong":
        correlation = correlation_from_covariance(influence.T @ influence)
        low, high = bounds
        return mover_interval(
            value, weights[defined], statistics.auc[defined], low[defined], high[defined], correlation
        )
    case_influence = influence @ weights[defined]
    if average == "weighted":
        # the weights are prevalences estimated on the same cases: add their influence (delta method)
        positives = labels[:, defined].sum(axis=0)
        prevalence_influence = (labels[:, defined] - positives / labels.shape[0]) / positives.sum()
        case_influence = case_influence + prevalence_influence @ (statistics.auc[defined] - value)
    low, high = logit_interval(np.array([value]), np.array([case_influence @ case_influence]), z)
    return float(low[0]), float(high[0])


def _report(
    labels: np.ndarray,
    scores: np.ndarray,
    *,
    average: Optional[str],
    label_names: Optional[List[str]],
    confidence_level: Optional[float],
    interval: str,
) -> Dict[str, MetricValue]:
    """:func:`multilabel_roc_auc` for inputs already checked by :func:`validate_inputs` and :func:`check_options`."""
    names = label_names
    want_interval = confidence_level is not None
    if want_interval:
        statistics = class_statistics(labels, scores)
        auc = statistics.auc
    else:
        statistics, auc = None, per_class_auc(labels, scores)
    _warn_undefined(labels.sum(axis=0), labels.shape[0], names, stacklevel=3)
    result: Dict[str, MetricValue] = {}

    if want_interval:
        z = z_value(confidence_level)
        low, high, _ = class_intervals(
            auc, statistics.positives, statistics.negatives, statistics.variance, z, interval
        )

    if average is None:
        result["roc_auc"] = [float(value) for value in auc]
        if want_interval:
            result["roc_auc_ci_low"] = [float(value) for value in low]
            result["roc_auc_ci_high"] = [float(value) for value in high]
            result["roc_auc_positives"] = [int(count) for count in statistics.positives]
    elif average == "micro":
        if want_interval:
            value, m, n, micro_variance = micro_statistics(labels, scores)
        else:
            value = pooled_auc(labels, scores)
        if math.isnan(value):
            warnings.warn(
                f"ROC AUC (micro average) is undefined: every reference is {int(labels.flat[0])}. It is reported as NaN",
                UndefinedAUCWarning,
                stacklevel=3,
            )
        result["roc_auc"] = value
        if want_interval:
            micro_low, micro_high, _ = class_intervals(
                np.array([value]), np.array([m]), np.array([n]), np.array([micro_variance]), z, interval
            )
            result["roc_auc_ci_low"], result["roc_auc_ci_high"] = float(micro_low[0]), float(micro_high[0])
    else:
        positives = labels.sum(axis=0).astype(np.int64)
        value, weights = _average(auc, positives, average)
        result["roc_auc"] = value
        if want_interval:
            result["roc_auc_ci_low"], result["roc_auc_ci_high"] = _average_interval(
                value, weights, statistics, (low, high), labels, average, z, interval
            )

    if names is not None:
        for column, name in enumerate(names):
            result[f"roc_auc_{name}"] = float(auc[column])
            if want_interval:
                result[f"roc_auc_{name}_ci_low"] = float(low[column])
                result[f"roc_auc_{name}_ci_high"] = float(high[column])
                result[f"roc_auc_{name}_positives"] = int(statistics.positives[column])
    return result


def multilabel_roc_auc(
    references,
    prediction_scores,
    *,
    average: Optional[str] = "macro",
    label_names: Optional[Sequence[str]] = None,
    confidence_level: Optional[float] = None,
    interval: str = "auto",
) -> Dict[str, MetricValue]:
    """Multi-label ROC AUC, per class and averaged, with optional confidence intervals and positive counts.

    Args:
        references: ``(N, C)`` array-like of 0/1: ``references[i, c]`` is 1 when case i has class c.
        prediction_scores: ``(N, C)`` array-like of finite real scores (sigmoid probabilities, logits, integers, ...).
            Only the order of the scores within a column matters.
        average: ``"macro"`` (mean over classes), ``"weighted"`` (weighted by each class's number of positives),
            ``"micro"`` (all entries pooled into one binary problem) or ``None`` (a list with one AUC per class).
        label_names: C names, one per column. Adds a key ``roc_auc_<name>`` per class.
        confidence_level: e.g. 0.95. Adds ``roc_auc_ci_low`` and ``roc_auc_ci_high`` for the requested average (lists
            when ``average`` is None, with ``roc_auc_positives``, the list of positive counts) and, with
            ``label_names``, ``roc_auc_<name>_ci_low``/``_ci_high`` and ``roc_auc_<name>_positives`` per class.
        interval: ``"auto"`` (default), ``"delong"`` or ``"score"``: how intervals are computed (``intervals.py``).

    Returns:
        A dict of plain Python floats (ints for the positive counts; lists for ``average=None``): ``"roc_auc"`` first,
        then the interval, then the per-class keys. A class whose references are all 0 or all 1 is ``nan`` per class,
        is left out of the macro and weighted averages, and raises an :data:`UndefinedAUCWarning` naming it.

    Raises:
        ValueError: for inputs rejected by :func:`validate_inputs`, an unknown ``average`` or ``interval``,
            ``label_names`` of the wrong length, non-string or repeated, or a ``confidence_level`` outside (0, 1).
    """
    labels, scores = validate_inputs(references, prediction_scores)
    names = check_options(labels.shape[1], average, label_names, confidence_level, interval)
    return _report(
        labels, scores, average=average, label_names=names, confidence_level=confidence_level, interval=interval
    )


def _check_summary_options(num_classes: int, label_names, confidence_level, interval) -> List[str]:
    if confidence_level is None:
        raise ValueError("confidence_level must be a number in (0, 1), such as 0.95; got None")
    names = check_options(num_classes, "macro", label_names, confidence_level, interval)
    return names if names is not None else [str(column) for column in range(num_classes)]


def _summary(statistics: ClassStatistics, names: List[str], confidence_level: float, interval: str) -> Dict[str, Any]:
    """The nested report of :func:`roc_auc_summary` from one set of class statistics."""
    z = z_value(confidence_level)
    low, high, uses_score = class_intervals(
        statistics.auc, statistics.positives, statistics.negatives, statistics.variance, z, interval
    )
    value, weights = _average(statistics.auc, statistics.positives, "macro")
    macro_low, macro_high = _average_interval(value, weights, statistics, (low, high), None, "macro", z, interval)
    per_class = {}
    for column, name in enumerate(names):
        defined = not math.isnan(statistics.auc[column])
        per_class[name] = {
            "value": float(statistics.auc[column]),
            "ci_low": float(low[column]),
            "ci_high": float(high[column]),
            "positives": int(statistics.positives[column]),
            "negatives": int(statistics.negatives[column]),
            "interval": ("score" if uses_score[column] else "delong") if defined else None,
        }
    return {
        "num_cases": int(statistics.positives[0] + statistics.negatives[0]),
        "confidence_level": float(confidence_level),
        "interval": interval,
        "macro": {"value": value, "ci_low": macro_low, "ci_high": macro_high, "classes": int((weights > 0).sum())},
        "per_class": per_class,
    }


def roc_auc_summary(
    references,
    prediction_scores,
    *,
    label_names: Optional[Sequence[str]] = None,
    confidence_level: float = 0.95,
    interval: str = "auto",
) -> Dict[str, Any]:
    """Per-class and macro ROC AUC with intervals and counts, as a nested dict ready for a JSON report.

    Args:
        references: ``(N, C)`` array-like of 0/1.
        prediction_scores: ``(N, C)`` array-like of finite real scores.
        label_names: C names; default ``"0"``, ``"1"``, ... (column numbers).
        confidence_level: the level of every interval, in (0, 1).
        interval: ``"auto"`` (default), ``"delong"`` or ``"score"`` (see ``intervals.py``).

    Returns:
        ``{"num_cases": N, "confidence_level": 0.95, "interval": "auto",
        "macro": {"value", "ci_low", "ci_high", "classes"},
        "per_class": {name: {"value", "ci_low", "ci_high", "positives", "negatives", "interval"}, ...}}``, in column
        order, with plain Python floats and ints. ``"classes"`` is the number of classes in the macro mean;
        ``"interval"`` per class is ``"delong"`` or ``"score"``, the method its interval came from (``None`` for an
        undefined class, whose value and bounds are NaN and which is left out of the macro mean with an
        :data:`UndefinedAUCWarning`). ``macro`` is NaN when no class is defined.

    Raises:
        ValueError: as :func:`multilabel_roc_auc`, and for a ``confidence_level`` of None.
    """
    labels, scores = validate_inputs(references, prediction_scores)
    names = _check_summary_options(labels.shape[1], label_names, confidence_level, interval)
    statistics = class_statistics(labels, scores)
    _warn_undefined(statistics.positives, labels.shape[0], names, stacklevel=2)
    return _summary(statistics, names, confidence_level, interval)


def roc_auc_by_subgroup(
    references,
    prediction_scores,
    subgroups: Mapping[str, Any],
    *,
    label_names: Optional[Sequence[str]] = None,
    confidence_level: float = 0.95,
    interval: str = "auto",
) -> Dict[str, Dict[str, Any]]:
    """:func:`roc_auc_summary` of each subgroup of the cases (sex, age band, view position, ...), from one sort.

    Each class is sorted once; a subgroup's cases are a subsequence of that order, so a subgroup costs O(N) instead
    of a sort of its own. The result is the same as ``roc_auc_summary(references[mask], prediction_scores[mask])``
    for each mask.

    Args:
        references: ``(N, C)`` array-like of 0/1.
        prediction_scores: ``(N, C)`` array-like of finite real scores.
        subgroups: subgroup name → bool array-like ``(N,)``, True for the cases in the subgroup. Subgroups may overlap
            and need not cover every case.
        label_names, confidence_level, interval: as :func:`roc_auc_summary`.

    Returns:
        subgroup name → the :func:`roc_auc_summary` dict of that subgroup, in the order of ``subgroups``. A class
        without positives (or without negatives) in a subgroup is NaN there, left out of that subgroup's macro mean,
        and named in an :data:`UndefinedAUCWarning` that names the subgroup. An empty subgroup has ``num_cases`` 0
        and NaN everywhere.

    Raises:
        ValueError: as :func:`roc_auc_summary`, and for a mask that is not N booleans (naming the subgroup).
    """
    labels, scores = validate_inputs(references, prediction_scores)
    names = _check_summary_options(labels.shape[1], label_names, confidence_level, interval)
    masks = {}
    for subgroup, mask in subgroups.items():
        mask = np.asarray(mask)
        if mask.dtype != bool or mask.shape != (labels.shape[0],):
            raise ValueError(
                f"subgroup {subgroup!r} must be a bool mask of shape ({labels.shape[0]},), one entry per case; got "
                f"dtype {mask.dtype} and shape {mask.shape}"
            )
        masks[subgroup] = mask
    sorted_classes = sort_classes(labels, scores)
    summaries = {}
    for subgroup, mask in masks.items():
        statistics = class_statistics(labels, scores, subgroup=mask, sorted_classes=sorted_classes)
        _warn_undefined(statistics.positives, int(mask.sum()), names, stacklevel=2, subgroup=subgroup)
        summaries[subgroup] = _summary(statistics, names, confidence_level, interval)
    return summaries
