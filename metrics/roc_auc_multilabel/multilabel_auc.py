"""Multi-label ROC AUC in plain NumPy: exact per-class and averaged AUC, confidence intervals and positive counts.

This file and ``intervals.py`` beside it need nothing but NumPy and the standard library, so a training loop, an
evaluation script or a benchmark can use them without ``evaluate``. The ``evaluate`` module ``roc_auc_multilabel.py``
is a thin wrapper around :func:`multilabel_roc_auc`; ``comparison.py`` compares two models on the same cases.

Shapes: ``references`` and ``prediction_scores`` are ``(N, C)``, N cases (images) by C classes (findings).

How the numbers are computed:

* **AUC.** For one class with ``m`` positive and ``n`` negative cases, AUC is the Mann-Whitney statistic: the share of
  (positive, negative) pairs in which the positive is scored higher, ties counting one half. Each positive's count of
  lower-scored negatives comes from a binary search in the sorted negatives, so the statistic is an exact integer
  (times one half) and the AUC is that integer divided by ``m * n``, rounded once: O(N log N) per class. Integer
  scores are ranked as integers, never through float64, so scores beyond 2**53 keep their order.
* **Averages.** ``"macro"`` and ``"weighted"`` are computed as scikit-learn computes them, with ``np.average`` (for
  ``"weighted"``, with each class's number of positives as its weight), whose summation order does not depend on the
  CPU. ``"micro"`` pools all ``N * C`` (case, class) entries into one binary problem, as scikit-learn does.
* **Variance.** DeLong et al. (1988): each case's *placement value* (for a positive, the share of negatives scored
  below it; for a negative, the share of positives scored above it; ties count half) comes from a binary search in the
  other group's sorted scores, O(N log N) per class as in the midrank algorithm of Sun & Xu (2014), instead of the
  O(m n) pairwise comparisons.
* **Across classes.** Every class is scored on the same cases, so their AUCs are correlated. Each case gets one
  influence value per class (its centred placement value, scaled so that the sum of squares over cases is DeLong's
  variance); the covariance of two classes' AUCs is the sum over cases of the product of their influence values.
  When two classes share their references this is exactly DeLong's covariance of two correlated AUCs; otherwise it
  is its delta-method generalisation. For the micro average, entries of one case are not independent: its variance is
  the cluster-robust DeLong variance, the entry-level influence values summed per case before squaring.
* **Intervals.** See ``intervals.py``: by default (``interval="auto"``) DeLong's logit interval, a score interval for
  classes with few misranked cases (small classes, AUC near 0 or 1, where DeLong's interval under-covers or
  collapses), and MOVER for the macro and weighted averages. ``interval="delong"`` gives DeLong's logit interval
  everywhere, with the average's variance ``w' S w`` from the covariance ``S`` (plus, for ``"weighted"``, the
  variability of the prevalence weights by the delta method).
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np

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


def _order_preserving_keys(scores: np.ndarray) -> Optional[np.ndarray]:
    """uint32 keys that order and tie exactly as ``scores`` do, or None when 32 bits can't hold every score exactly
    (float64 beyond float32's precision, 64-bit integers)."""
    if scores.dtype.kind == "f":
        if scores.dtype == np.float32:
            narrow = scores
        else:
            with np.errstate(over="ignore", invalid="ignore"):
                narrow = scores.astype(np.float32)
            if not np.array_equal(narrow, scores):
                return None
        signed = (narrow + np.float32(0.0)).view(np.int32)  # + 0.0 turns -0.0 into 0.0: one key per value
        # negative floats: flip the magnitude bits, so that int32 order is float order; then shift to unsigned
        signed ^= (signed >> 31) & np.int32(0x7FFFFFFF)
        return signed.view(np.uint32) ^ np.uint32(0x80000000)
    if scores.dtype.itemsize <= 4:  # integers of up to 32 bits (uint8 from bool)
        return (scores.astype(np.int64) - np.iinfo(scores.dtype).min).astype(np.uint32)
    return None


def _sort_rows(is_positive: np.ndarray, scores: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sort each row of ``(R, L)`` scores: ``(flat_order, sorted_keys, sorted_positive)``, all flat ``(R * L,)``.

    ``flat_order`` lists each row's entries (as indices into the flattened array) from lowest to highest score, row
    after row; ``sorted_keys`` holds values that are equal exactly where the sorted scores are equal, and
    ``sorted_positive`` the labels (int8 0/1) in that order.

    Where 32-bit keys hold the scores exactly, each key is packed with its flat index and label into one uint64, which
    a plain (SIMD) sort orders several times faster than an argsort; other scores are argsorted.
    """
    num_rows, length = scores.shape
    keys = _order_preserving_keys(scores)
    if keys is None or scores.size >= 2**31:
        order = np.argsort(scores, axis=1)
        flat_order = (order + (np.arange(num_rows) * length)[:, None]).ravel()
        return flat_order, scores.ravel()[flat_order], is_positive.ravel()[flat_order].astype(np.int8)
    packed = keys.astype(np.uint64)
    packed <<= np.uint64(32)
    packed |= np.arange(0, 2 * scores.size, 2, dtype=np.uint64).reshape(scores.shape)
    packed |= is_positive
    packed.sort(axis=1)
    packed = packed.ravel()
    low_word = (packed & np.uint64(0xFFFFFFFF)).astype(np.intp)
    return low_word >> 1, packed >> np.uint64(32), (low_word & 1).astype(np.int8)


class _DelongRows(NamedTuple):
    auc: np.ndarray  # float64 (R,), NaN for a row with a single class
    influence: np.ndarray  # float64 (R, L), in case order; zeros in an undefined row
    variance: np.ndarray  # float64 (R,): the sum of squared influences of each row


def _delong_rows(is_positive: np.ndarray, scores: np.ndarray, *, unbiased: bool = True) -> _DelongRows:
    """AUC and per-case DeLong influence of every row of ``(R, L)`` problems (R classes of L cases each).

    A case's placement value is, for a positive, the share of its row's negatives scored below it, and for a negative,
    the share of its row's positives scored above it; ties count one half. Its influence is its placement minus the
    AUC, divided by ``sqrt(m (m - 1))`` for a positive and ``sqrt(n (n - 1))`` for a negative (``unbiased``, so that
    the sum of squares over a row is DeLong's unbiased variance ``S10 / m + S01 / n``), or by ``m`` and ``n``
    (``unbiased=False``: first-order influences, for the cluster-robust variance of the micro average).

    One sort per row, then O(L) work on the tie groups of the sorted rows, all rows at once (as the midrank algorithm
    of Sun & Xu, 2014): every case of a tie group with the same label has the same placement, so values are computed
    per (group, label) and gathered once. The AUC is exact: twice the Mann-Whitney U is an integer count.
    """
    num_rows, length = scores.shape
    flat_order, sorted_keys, sorted_positive = _sort_rows(is_positive, scores)
    total = sorted_keys.size
    # tie groups: runs of equal scores within a row
    starts_group = np.empty(total, dtype=bool)
    starts_group[0] = True
    np.not_equal(sorted_keys[1:], sorted_keys[:-1], out=starts_group[1:])
    starts_group[::length] = True
    counter = np.int32 if total < 2**31 else np.int64
    group_of_entry = np.cumsum(starts_group, dtype=counter)
    group_of_entry -= 1
    group_start = np.flatnonzero(starts_group)
    positives_before = np.zeros(total + 1, dtype=counter)
    np.cumsum(sorted_positive, out=positives_before[1:])
    group_end = np.append(group_start[1:], total)
    row_of_group = group_start // length
    positives_below = (positives_before[group_start] - positives_before[row_of_group * length]).astype(np.int64)
    positives_tied = (positives_before[group_end] - positives_before[group_start]).astype(np.int64)
    negatives_below = (group_start - row_of_group * length) - positives_below
    negatives_tied = (group_end - group_start) - positives_tied
    positives = is_positive.sum(axis=1).astype(np.int64)
    negatives = length - positives
    m, n = positives[row_of_group], negatives[row_of_group]
    # integers per group: 2 * #negatives below + #negatives tied (for its positives), and
    # 2 * #positives above + #positives tied (for its negatives)
    twice_below = 2 * negatives_below + negatives_tied
    twice_above = 2 * (m - positives_below - positives_tied) + positives_tied
    row_starts = np.searchsorted(row_of_group, np.arange(num_rows))
    two_u = np.add.reduceat(positives_tied * twice_below, row_starts)
    auc = np.array([_auc_from_counts(int(u), int(p), int(q)) for u, p, q in zip(two_u, positives, negatives)])
    defined = ~np.isnan(auc)
    if unbiased:
        positive_scale = 1.0 / np.sqrt(np.maximum(positives * (positives - 1), 1))
        negative_scale = 1.0 / np.sqrt(np.maximum(negatives * (negatives - 1), 1))
    else:
        positive_scale, negative_scale = 1.0 / np.maximum(positives, 1), 1.0 / np.maximum(negatives, 1)
    centre = np.where(defined, auc, 0.0)[row_of_group]
    weight = np.where(defined, 1.0, 0.0)[row_of_group]
    by_group_and_label = np.empty((group_start.size, 2), dtype=np.float64)
    by_group_and_label[:, 0] = (twice_above / (2.0 * np.maximum(m, 1)) - centre) * (negative_scale[row_of_group] * weight)
    by_group_and_label[:, 1] = (twice_below / (2.0 * np.maximum(n, 1)) - centre) * (positive_scale[row_of_group] * weight)
    squares = negatives_tied * by_group_and_label[:, 0] ** 2 + positives_tied * by_group_and_label[:, 1] ** 2
    variance = np.add.reduceat(squares, row_starts)
    group_of_entry *= 2
    group_of_entry += sorted_positive
    influence = np.empty((num_rows, length), dtype=np.float64)
    influence.ravel()[flat_order] = by_group_and_label.ravel()[group_of_entry]
    return _DelongRows(auc, influence, variance)


class ClassStatistics(NamedTuple):
    """Per-class AUC, counts and DeLong influence of validated ``(N, C)`` inputs (see :func:`class_statistics`)."""

    auc: np.ndarray
    """float64 ``(C,)``; NaN for a class whose references are all 0 or all 1."""
    positives: np.ndarray
    """int64 ``(C,)``."""
    negatives: np.ndarray
    """int64 ``(C,)``."""
    influence: np.ndarray
    """float64 ``(N, C)``: each case's influence on each class's AUC; zeros in an undefined class's column.
    ``influence.T @ influence`` is DeLong's covariance matrix; its diagonal is DeLong's variance of each class."""
    variance: np.ndarray
    """float64 ``(C,)``: DeLong's variance of each class's AUC (0 for an undefined class)."""


def class_statistics(labels: np.ndarray, scores: np.ndarray) -> ClassStatistics:
    """AUC, counts and DeLong influence of every class, for arrays already checked by :func:`validate_inputs`.

    The influence of a positive case is ``(placement - AUC) / sqrt(m (m - 1))``, of a negative one
    ``(placement - AUC) / sqrt(n (n - 1))``, so that the sum of squares over cases is DeLong's unbiased variance
    ``S10 / m + S01 / n``.
    """
    positives = labels.sum(axis=0).astype(np.int64)
    rows = _delong_rows(np.ascontiguousarray(labels.T), np.ascontiguousarray(scores.T))
    return ClassStatistics(rows.auc, positives, labels.shape[0] - positives, rows.influence.T, rows.variance)


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


def _micro_statistics(labels: np.ndarray, scores: np.ndarray) -> Tuple[float, int, int, float]:
    """Micro AUC, pooled positive and negative counts, and its cluster-robust DeLong variance.

    The entry-level influences ``(placement - AUC) / m`` (positives) and ``/ n`` (negatives) are summed over each
    case's C entries, so that the correlation between a case's entries is kept.
    """
    flat_labels = labels.ravel()
    m = int(flat_labels.sum())
    rows = _delong_rows(flat_labels[None, :], scores.reshape(1, -1), unbiased=False)
    auc = float(rows.auc[0])
    if math.isnan(auc):
        return auc, m, flat_labels.size - m, math.nan
    entry_influence = rows.influence[0]
    per_case = entry_influence.reshape(labels.shape).sum(axis=1)
    num_cases = labels.shape[0]
    return auc, m, flat_labels.size - m, float(per_case @ per_case) * num_cases / max(num_cases - 1, 1)


# --------------------------------------------------------------------------------------------------- averaging


def _warn_undefined(labels: np.ndarray, auc: np.ndarray, names: Optional[List[str]], stacklevel: int) -> None:
    """One :data:`UndefinedAUCWarning` per undefined class; ``stacklevel`` counts from the caller of this function."""
    num_cases = labels.shape[0]
    for column in np.flatnonzero(np.isnan(auc)):
        name = names[column] if names is not None else f"column {column}"
        only = int(labels[0, column])
        warnings.warn(
            f"ROC AUC of class {name!r} (column {column}) is undefined: all {num_cases} references are {only}, with "
            f"no {'negative' if only else 'positive'} case. It is reported as NaN and left out of the macro and "
            "weighted averages",
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
    value: float, weights: np.ndarray, statistics: ClassStatistics, bounds, labels: np.ndarray, average: str,
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
        statistics, auc = None, _per_class_auc(labels, scores)
    _warn_undefined(labels, auc, names, stacklevel=3)
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
            value, m, n, micro_variance = _micro_statistics(labels, scores)
        else:
            value = _auc_from_counts(*_two_u_statistic(labels.ravel(), scores.ravel()))
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
    if confidence_level is None:
        raise ValueError("confidence_level must be a number in (0, 1), such as 0.95; got None")
    names = check_options(labels.shape[1], "macro", label_names, confidence_level, interval)
    names = names if names is not None else [str(column) for column in range(labels.shape[1])]
    statistics = class_statistics(labels, scores)
    _warn_undefined(labels, statistics.auc, names, stacklevel=2)
    z = z_value(confidence_level)
    low, high, uses_score = class_intervals(
        statistics.auc, statistics.positives, statistics.negatives, statistics.variance, z, interval
    )
    value, weights = _average(statistics.auc, statistics.positives, "macro")
    macro_low, macro_high = _average_interval(value, weights, statistics, (low, high), labels, "macro", z, interval)
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
        "num_cases": int(labels.shape[0]),
        "confidence_level": float(confidence_level),
        "interval": interval,
        "macro": {
            "value": value,
            "ci_low": macro_low,
            "ci_high": macro_high,
            "classes": int((weights > 0).sum()),
        },
        "per_class": per_class,
    }
