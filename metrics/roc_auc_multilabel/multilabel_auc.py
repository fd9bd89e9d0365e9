"""Multi-label ROC AUC in plain NumPy: exact per-class and averaged AUC, with DeLong confidence intervals.

This file needs nothing but NumPy and the standard library, so a training loop or a benchmark can use it without
``evaluate``. The ``evaluate`` module ``roc_auc_multilabel.py`` beside it is a thin wrapper around
:func:`multilabel_roc_auc`.

Shapes: ``references`` and ``prediction_scores`` are ``(N, C)``, N cases (images) by C classes (findings).

How the numbers are computed:

* **AUC.** For one class with ``m`` positive and ``n`` negative cases, AUC is the Mann-Whitney statistic: the share of
  (positive, negative) pairs in which the positive is scored higher, ties counting one half. Each positive's count of
  lower-scored negatives comes from a binary search in the sorted negatives, so the statistic is an exact integer
  (times one half) and the AUC is that integer divided by ``m * n``, rounded once: O(N log N) per class.
* **Variance.** DeLong et al. (1988), computed with the fast algorithm of Sun & Xu (2014): each case's *placement
  value* (for a positive, the share of negatives scored below it; for a negative, the share of positives scored above
  it; ties count half) is the difference of its midrank among all cases and its midrank among its own group, which a
  sort gives in O(N log N) instead of the O(m n) pairwise comparisons.
* **Across classes.** Every class is scored on the same cases, so their AUCs are correlated. Each case gets one
  influence value per class (its centred placement value, scaled so that the sum of squares over cases is DeLong's
  variance); the covariance of two classes' AUCs is the sum over cases of the product of their influence values.
  When two classes share their references this is exactly DeLong's covariance of two correlated AUCs; otherwise it
  is its delta-method generalisation. The macro and weighted averages are linear in the per-class AUCs, so their
  variance is ``w' S w`` with ``S`` that covariance (for "weighted", the sampling variability of the weights, the
  class prevalences, is added by the delta method).
* **Micro average.** All ``N * C`` (case, class) entries are pooled into one binary problem, as scikit-learn does.
  Entries of one case are not independent, so its variance is the cluster-robust DeLong variance: the entry-level
  influence values are summed per case before squaring.
* **Interval.** Wald on the logit scale: ``logit(AUC) ± z * se / (AUC * (1 - AUC))`` mapped back, with ``z`` the
  normal quantile of the confidence level. It stays inside (0, 1) and, with few positives and a high AUC, covers
  better than ``AUC ± z * se``. An AUC of exactly 0 or 1 (perfect ranking) has DeLong variance 0 and the
  degenerate interval [AUC, AUC].
"""

from __future__ import annotations

import math
import warnings
from statistics import NormalDist
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

AVERAGES = ("macro", "micro", "weighted", None)
"""The accepted values of ``average``; ``None`` returns one AUC per class."""

MetricValue = Union[float, List[float]]


class UndefinedAUCWarning(UserWarning):
    """A class whose references are all 0 or all 1: its ROC AUC is undefined, reported as NaN and left out of the
    macro and weighted averages."""


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
            f"{argument} must be a rectangular (N, C) array with C entries in every row ({error})"
        ) from None
    if array.dtype == object:
        raise ValueError(f"{argument} must be a rectangular (N, C) array of numbers, with C entries in every row")
    if array.ndim != 2:
        raise ValueError(
            f"{argument} must be 2-dimensional, (N cases, C classes); got shape {array.shape}. "
            "For a single class, pass a column: array.reshape(-1, 1)"
        )
    if array.dtype.kind not in "biuf":
        raise ValueError(f"{argument} must hold real numbers; got dtype {array.dtype}")
    return array


def validate_inputs(references, prediction_scores) -> Tuple[np.ndarray, np.ndarray]:
    """Check and convert the two input arrays.

    Args:
        references: ``(N, C)`` array-like of 0/1 (bool, int or float).
        prediction_scores: ``(N, C)`` array-like of finite real scores (probabilities, logits, any monotone score).

    Returns:
        ``(labels, scores)``: ``labels`` a bool ``(N, C)`` array; ``scores`` a float32 or float64 ``(N, C)`` array
        (float32 input stays float32; other input becomes float64, so no two distinct scores are merged).

    Raises:
        ValueError: if either array is missing, ragged or not 2-D, if the shapes differ, if there are no rows, if a
            reference is not 0 or 1, or if a score is NaN or infinite. The message names the argument, and the row and
            column of the first bad entry.
    """
    refs = _as_matrix(references, "references")
    scores = _as_matrix(prediction_scores, "prediction_scores")
    if refs.shape != scores.shape:
        raise ValueError(
            f"references has shape {refs.shape} but prediction_scores has shape {scores.shape}: both must be "
            "(N cases, C classes)"
        )
    if refs.shape[0] == 0 or refs.shape[1] == 0:
        raise ValueError(f"references and prediction_scores are empty (shape {refs.shape}): pass at least one row")
    if refs.dtype == bool:
        labels = refs
    else:
        is_zero = refs == 0
        is_binary = is_zero | (refs == 1)
        if not is_binary.all():
            row, column = _first_bad_entry(~is_binary)
            raise ValueError(
                f"references must be 0 or 1; row {row}, column {column} holds {refs[row, column]!r}. "
                "Pass multi-hot labels, not class indices or probabilities"
            )
        labels = ~is_zero
    if scores.dtype == np.float16:
        scores = scores.astype(np.float32)
    elif scores.dtype not in (np.float32, np.float64):
        scores = scores.astype(np.float64)
    finite = np.isfinite(scores)
    if not finite.all():
        row, column = _first_bad_entry(~finite)
        raise ValueError(
            f"prediction_scores must be finite; row {row}, column {column} holds {scores[row, column]!r}"
        )
    return labels, scores


def check_options(num_classes: Optional[int], average, label_names, confidence_level) -> Optional[List[str]]:
    """Check the options of :func:`multilabel_roc_auc` and return ``label_names`` as a list (or None).

    ``num_classes`` may be None when the data is not known yet; the length of ``label_names`` is then not checked.

    Raises:
        ValueError: for an unknown ``average``, a ``confidence_level`` outside (0, 1), or ``label_names`` that are not
            ``num_classes`` unique strings.
    """
    if not (average is None or (isinstance(average, str) and average in AVERAGES)):
        raise ValueError(f"unknown average {average!r}: use one of {', '.join(repr(a) for a in AVERAGES)}")
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


# ------------------------------------------------------------------------------------------------------- the AUC


def _two_u_statistic(is_positive: np.ndarray, scores: np.ndarray) -> Tuple[int, int, int]:
    """Twice the Mann-Whitney U of one class (an exact integer), and its positive and negative counts.

    ``2U = sum over positives of (2 * #negatives scored below + #negatives scored equal)``. Both groups are sorted and
    the smaller one is searched in the larger one: O(N log N).
    """
    positives = np.sort(scores[is_positive])
    negatives = np.sort(scores[~is_positive])
    m, n = positives.size, negatives.size
    if m == 0 or n == 0:
        return 0, m, n
    # Binary search of the smaller sorted group in the larger one (sorted queries are cache-friendly).
    if m <= n:
        below = np.searchsorted(negatives, positives, side="left")
        below_or_equal = np.searchsorted(negatives, positives, side="right")
        two_u = int(below.sum(dtype=np.int64)) + int(below_or_equal.sum(dtype=np.int64))
    else:
        below = np.searchsorted(positives, negatives, side="left")
        below_or_equal = np.searchsorted(positives, negatives, side="right")
        # each negative contributes 2 * #positives above it + #positives equal to it = 2m - below - below_or_equal
        two_u = 2 * m * n - int(below.sum(dtype=np.int64)) - int(below_or_equal.sum(dtype=np.int64))
    return two_u, m, n


def _auc_from_counts(two_u: int, m: int, n: int) -> float:
    # Python's int / int is correctly rounded, so the AUC is the exact fraction rounded once.
    return two_u / (2 * m * n) if m and n else math.nan


def _per_class_auc(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """AUC per column of validated ``(N, C)`` arrays; NaN where a column has a single class."""
    labels_t = np.ascontiguousarray(labels.T)
    scores_t = np.ascontiguousarray(scores.T)
    return np.array([_auc_from_counts(*_two_u_statistic(y, s)) for y, s in zip(labels_t, scores_t)], dtype=np.float64)


def _micro_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    return _auc_from_counts(*_two_u_statistic(labels.ravel(), scores.ravel()))


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
    return _per_class_auc(labels, scores)


# ----------------------------------------------------------------------------------------------------- DeLong


def _placement_values(is_positive: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Placement value of every case, row by row, in the input order (Sun & Xu 2014).

    Args:
        is_positive: bool ``(R, L)``: R problems (classes) of L cases each.
        scores: ``(R, L)`` scores.

    Returns:
        float64 ``(R, L)``. A positive's placement is the share of its row's negatives scored below it, a negative's
        the share of its row's positives scored above it, ties counting one half: ``(midrank among all - midrank
        among its own group) / size of the other group`` (one minus that for a negative). The mean over a row's
        positives, and the mean over its negatives, both equal the row's AUC. A row without positives or without
        negatives gets meaningless values.

    One sort per row, then O(L) work on the tie groups of the sorted rows, all rows at once.
    """
    num_rows, length = scores.shape
    order = np.argsort(scores, axis=1)
    sorted_scores = np.take_along_axis(scores, order, axis=1).ravel()
    sorted_positive = np.take_along_axis(is_positive, order, axis=1).ravel()
    total = sorted_scores.size
    # tie groups: runs of equal scores within a row
    starts_group = np.empty(total, dtype=bool)
    starts_group[0] = True
    np.not_equal(sorted_scores[1:], sorted_scores[:-1], out=starts_group[1:])
    starts_group[::length] = True
    group_of_entry = np.cumsum(starts_group) - 1
    group_start = np.flatnonzero(starts_group)
    group_size = np.diff(np.append(group_start, total))
    positives_before = np.zeros(total + 1, dtype=np.int64)
    np.cumsum(sorted_positive, out=positives_before[1:])
    row_start = (group_start // length) * length
    positives_below = positives_before[group_start] - positives_before[row_start]
    positives_tied = positives_before[group_start + group_size] - positives_before[group_start]
    negatives_below = (group_start - row_start) - positives_below
    negatives_tied = group_size - positives_tied
    num_positive = is_positive.sum(axis=1)
    m = np.maximum(num_positive, 1)[group_start // length]
    n = np.maximum(length - num_positive, 1)[group_start // length]
    placement_if_positive = (negatives_below + 0.5 * negatives_tied) / n
    placement_if_negative = (m - positives_below - 0.5 * positives_tied) / m
    sorted_placements = np.where(
        sorted_positive, placement_if_positive[group_of_entry], placement_if_negative[group_of_entry]
    )
    placements = np.empty((num_rows, length), dtype=np.float64)
    np.put_along_axis(placements, order, sorted_placements.reshape(num_rows, length), axis=1)
    return placements


def _delong_influence(is_positive: np.ndarray, scores: np.ndarray, auc: np.ndarray) -> np.ndarray:
    """Per-case influence on each row's AUC, shape ``(R, L)``: its sum of squares over a row is DeLong's variance
    ``S10 / m + S01 / n`` (with the unbiased ``m - 1`` and ``n - 1`` denominators). Rows whose AUC is NaN get 0."""
    m = is_positive.sum(axis=1, keepdims=True)
    n = is_positive.shape[1] - m
    centred = _placement_values(is_positive, scores) - auc[:, None]
    scale = np.where(
        is_positive,
        1.0 / np.sqrt(np.maximum(m * (m - 1), 1)),
        1.0 / np.sqrt(np.maximum(n * (n - 1), 1)),
    )
    influence = centred * scale
    influence[np.isnan(auc)] = 0.0
    return influence


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
    labels, scores = validate_inputs(references, prediction_scores)
    return _influence_matrix(labels, scores)


def _influence_matrix(labels: np.ndarray, scores: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    auc = _per_class_auc(labels, scores)
    influence_t = _delong_influence(np.ascontiguousarray(labels.T), np.ascontiguousarray(scores.T), auc)
    return auc, influence_t.T


def delong_covariance(references, prediction_scores) -> Tuple[np.ndarray, np.ndarray]:
    """Per-class AUC and the ``(C, C)`` DeLong covariance matrix of those AUCs.

    Raises:
        ValueError: as :func:`validate_inputs`.
    """
    auc, influence = delong_influence(references, prediction_scores)
    return auc, influence.T @ influence


def _micro_influence(labels: np.ndarray, scores: np.ndarray, auc: float) -> np.ndarray:
    """Per-case influence on the micro AUC, shape ``(N,)``: entry-level DeLong influences summed over each case's
    C entries, so that the correlation between a case's entries is kept (a cluster-robust variance)."""
    flat_labels = labels.ravel()
    total_positive = int(flat_labels.sum())
    total_negative = flat_labels.size - total_positive
    centred = _placement_values(flat_labels[None, :], scores.reshape(1, -1))[0] - auc
    entry_influence = centred / np.where(flat_labels, total_positive, total_negative)
    per_case = entry_influence.reshape(labels.shape).sum(axis=1)
    num_cases = labels.shape[0]
    return per_case * math.sqrt(num_cases / max(num_cases - 1, 1))


# --------------------------------------------------------------------------------------------------- averaging


def _average_weights(labels: np.ndarray, auc: np.ndarray, average: str) -> np.ndarray:
    defined = ~np.isnan(auc)
    weights = np.zeros(auc.shape, dtype=np.float64)
    if not defined.any():
        return weights
    if average == "macro":
        weights[defined] = 1.0 / defined.sum()
    else:  # weighted: by each class's number of positive cases
        positives = labels.sum(axis=0).astype(np.float64)
        weights[defined] = positives[defined] / positives[defined].sum()
    return weights


def _interval(value: float, variance: float, z: float) -> Tuple[float, float]:
    """Wald interval on the logit scale (see the module docstring)."""
    if math.isnan(value):
        return math.nan, math.nan
    if value <= 0.0 or value >= 1.0:
        return value, value
    logit = math.log(value / (1.0 - value))
    half_width = z * math.sqrt(max(variance, 0.0)) / (value * (1.0 - value))
    return _expit(logit - half_width), _expit(logit + half_width)


def _expit(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    exp_x = math.exp(x)
    return exp_x / (1.0 + exp_x)


def _warn_undefined(labels: np.ndarray, auc: np.ndarray, names: Optional[List[str]]) -> None:
    num_cases = labels.shape[0]
    for column in np.flatnonzero(np.isnan(auc)):
        name = names[column] if names is not None else f"column {column}"
        which = "positive" if labels[:, column].any() else "negative"
        warnings.warn(
            f"ROC AUC of class {name!r} (column {column}) is undefined: all {num_cases} references are "
            f"{1 if which == 'positive' else 0}, with no {'negative' if which == 'positive' else 'positive'} case. "
            "It is reported as NaN and left out of the macro and weighted averages",
            UndefinedAUCWarning,
            stacklevel=3,
        )


def multilabel_roc_auc(
    references,
    prediction_scores,
    *,
    average: Optional[str] = "macro",
    label_names: Optional[Sequence[str]] = None,
    confidence_level: Optional[float] = None,
) -> Dict[str, MetricValue]:
    """Multi-label ROC AUC, per class and averaged, with optional DeLong confidence intervals.

    Args:
        references: ``(N, C)`` array-like of 0/1: ``references[i, c]`` is 1 when case i has class c.
        prediction_scores: ``(N, C)`` array-like of finite real scores (sigmoid probabilities, logits, ...). Only the
            order of the scores within a column matters.
        average: ``"macro"`` (mean over classes), ``"weighted"`` (weighted by each class's number of positives),
            ``"micro"`` (all entries pooled into one binary problem) or ``None`` (a list with one AUC per class).
        label_names: C names, one per column. Adds a key ``roc_auc_<name>`` per class.
        confidence_level: e.g. 0.95. Adds ``roc_auc_ci_low`` and ``roc_auc_ci_high`` for the requested average (lists
            when ``average`` is None) and, with ``label_names``, ``roc_auc_<name>_ci_low``/``_ci_high`` per class.

    Returns:
        A dict of plain Python floats (and lists of floats for ``average=None``): ``"roc_auc"`` first, then the
        interval, then the per-class keys. A class whose references are all 0 or all 1 is ``nan`` per class, is left
        out of the macro and weighted averages, and raises an :class:`UndefinedAUCWarning` naming it.

    Raises:
        ValueError: for inputs rejected by :func:`validate_inputs`, an unknown ``average``, ``label_names`` of the
            wrong length, non-string or repeated, or a ``confidence_level`` outside (0, 1).
    """
    labels, scores = validate_inputs(references, prediction_scores)
    names = check_options(labels.shape[1], average, label_names, confidence_level)
    return roc_auc_report(labels, scores, average=average, label_names=names, confidence_level=confidence_level)


def roc_auc_report(
    labels: np.ndarray,
    scores: np.ndarray,
    *,
    average: Optional[str],
    label_names: Optional[List[str]],
    confidence_level: Optional[float],
) -> Dict[str, MetricValue]:
    """:func:`multilabel_roc_auc` for inputs already checked: ``labels`` and ``scores`` as returned by
    :func:`validate_inputs`, the options as accepted by :func:`check_options`. Nothing is checked again."""
    names = label_names
    want_interval = confidence_level is not None

    if want_interval and (average in ("macro", "weighted", None) or names is not None):
        auc, influence = _influence_matrix(labels, scores)
    else:
        auc, influence = _per_class_auc(labels, scores), None
    _warn_undefined(labels, auc, names)

    z = NormalDist().inv_cdf(0.5 + float(confidence_level) / 2.0) if want_interval else math.nan
    per_class_variance = (influence**2).sum(axis=0) if influence is not None else None
    result: Dict[str, MetricValue] = {}

    if average is None:
        result["roc_auc"] = [float(value) for value in auc]
        if want_interval:
            bounds = [_interval(float(a), float(v), z) for a, v in zip(auc, per_class_variance)]
            result["roc_auc_ci_low"] = [low for low, _ in bounds]
            result["roc_auc_ci_high"] = [high for _, high in bounds]
    elif average == "micro":
        value = _micro_auc(labels, scores)
        if math.isnan(value):
            warnings.warn(
                "micro-averaged ROC AUC is undefined: every reference is "
                f"{int(labels.flat[0])}. It is reported as NaN",
                UndefinedAUCWarning,
                stacklevel=2,
            )
        result["roc_auc"] = value
        if want_interval:
            variance = math.nan
            if not math.isnan(value):
                case_influence = _micro_influence(labels, scores, value)
                variance = float(case_influence @ case_influence)
            result["roc_auc_ci_low"], result["roc_auc_ci_high"] = _interval(value, variance, z)
    else:
        weights = _average_weights(labels, auc, average)
        defined = weights > 0
        if not defined.any():
            value = math.nan
        elif average == "macro":
            value = float(np.mean(auc[defined]))
        else:
            value = float(np.dot(weights[defined], auc[defined]))
        result["roc_auc"] = value
        if want_interval:
            case_influence = influence @ weights
            if average == "weighted" and defined.any():
                # the weights are prevalences estimated on the same cases: add their influence (delta method)
                positives = labels[:, defined].sum(axis=0)
                prevalence_influence = (labels[:, defined] - positives / labels.shape[0]) / positives.sum()
                case_influence = case_influence + prevalence_influence @ (auc[defined] - value)
            result["roc_auc_ci_low"], result["roc_auc_ci_high"] = _interval(
                value, float(case_influence @ case_influence), z
            )

    if names is not None:
        for column, name in enumerate(names):
            result[f"roc_auc_{name}"] = float(auc[column])
            if want_interval:
                low, high = _interval(float(auc[column]), float(per_class_variance[column]), z)
                result[f"roc_auc_{name}_ci_low"] = low
                result[f"roc_auc_{name}_ci_high"] = high
    return result
