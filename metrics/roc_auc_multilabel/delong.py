"""The Mann-Whitney AUC of each class and DeLong's influence of each case on it, from one sort per class.

For one class with ``m`` positive and ``n`` negative cases:

* the **AUC** is the Mann-Whitney statistic, the share of (positive, negative) pairs in which the positive is scored
  higher, ties counting one half: an exact integer count (twice U) divided once by ``2 m n``;
* a case's **placement value** is, for a positive, the share of negatives scored below it, and for a negative, the
  share of positives scored above it, ties counting one half (DeLong et al., 1988); the mean placement of either group
  is the AUC;
* a case's **influence** is its placement minus the AUC, divided by ``sqrt(m (m - 1))`` for a positive and
  ``sqrt(n (n - 1))`` for a negative, so that the sum of squares over the cases is DeLong's unbiased variance
  ``S10 / m + S01 / n``, and the sum of products of two classes' influences their covariance.

Placement values come from the midranks of the sorted scores, as in the algorithm of Sun & Xu (2014): O(N log N) per
class instead of the O(m n) pairwise comparisons. Every case of one tie group with one label has the same placement,
so values are computed per (tie group, label) and gathered once. Scores that 32 bits hold exactly (float32 model
outputs, small integers) are sorted as one packed uint64 per case (score key, case, label), which a plain sort orders
several times faster than an argsort; other scores (float64, 64-bit integers) are argsorted, so integer scores are
always ranked exactly.

All arrays here are validated ones (``multilabel_auc.validate_inputs``): ``labels`` bool ``(N, C)``, ``scores``
``(N, C)``.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Optional, Tuple

import numpy as np


def exact_auc(two_u: int, positives: int, negatives: int) -> float:
    """``two_u / (2 m n)`` correctly rounded (Python's int division), or NaN when either group is empty."""
    return two_u / (2 * positives * negatives) if positives and negatives else math.nan


def _two_u_statistic(is_positive: np.ndarray, scores: np.ndarray) -> Tuple[int, int, int]:
    """Twice the Mann-Whitney U of one class (an exact integer), and its positive and negative counts.

    ``2U = sum over positives of (2 * #negatives scored below + #negatives scored equal)``. Both groups are sorted and
    the smaller one is searched in the larger one (sorted queries are cache-friendly): O(N log N).
    """
    positives = np.sort(scores[is_positive])
    negatives = np.sort(scores[~is_positive])
    m, n = positives.size, negatives.size
    if m == 0 or n == 0:
        return 0, m, n
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


def per_class_auc(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """float64 ``(C,)``: the exact AUC of each column, NaN where a column has a single class. No variance: faster."""
    labels_t, scores_t = np.ascontiguousarray(labels.T), np.ascontiguousarray(scores.T)
    return np.array([exact_auc(*_two_u_statistic(y, s)) for y, s in zip(labels_t, scores_t)], dtype=np.float64)


def pooled_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """The exact AUC of all ``N * C`` entries pooled into one binary problem (the micro average)."""
    return exact_auc(*_two_u_statistic(labels.ravel(), scores.ravel()))


# ------------------------------------------------------------------------------------------------------- sorting


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


class SortedRows(NamedTuple):
    """R problems of L cases each, every row sorted by score (see :func:`sort_rows`). Flat arrays of R * L entries,
    row after row."""

    num_rows: int
    """R, the number of problems (classes)."""
    length: int
    """L, the number of cases per row."""
    case: np.ndarray
    """intp: the case (0 to L - 1) of each sorted entry."""
    keys: np.ndarray
    """Values that are equal exactly where the sorted scores are equal (packed keys, or the scores themselves)."""
    positive: np.ndarray
    """int8 0/1: the label of each sorted entry."""


def sort_rows(is_positive: np.ndarray, scores: np.ndarray) -> SortedRows:
    """Sort each row of ``(R, L)`` problems by score: one packed uint64 sort when 32-bit keys hold the scores exactly,
    an argsort otherwise."""
    num_rows, length = scores.shape
    keys = _order_preserving_keys(scores)
    if keys is None or length >= 2**31:
        order = np.argsort(scores, axis=1)
        return SortedRows(
            num_rows,
            length,
            order.ravel(),
            np.take_along_axis(scores, order, axis=1).ravel(),
            np.take_along_axis(is_positive, order, axis=1).ravel().astype(np.int8),
        )
    packed = keys.astype(np.uint64)
    packed <<= np.uint64(32)
    packed |= np.arange(0, 2 * length, 2, dtype=np.uint64)
    packed |= is_positive
    packed.sort(axis=1)
    packed = packed.ravel()
    low_word = (packed & np.uint64(0xFFFFFFFF)).astype(np.intp)
    return SortedRows(num_rows, length, low_word >> 1, packed >> np.uint64(32), (low_word & 1).astype(np.int8))


def select_cases(rows: SortedRows, keep: np.ndarray) -> SortedRows:
    """The sorted rows restricted to the cases where the bool ``(L,)`` mask ``keep`` is True, renumbered 0 to K - 1.

    A subsequence of a sorted row is sorted, so a subgroup needs no second sort.
    """
    selected = np.flatnonzero(keep[rows.case])  # indices and take: several times faster than boolean indexing
    new_case = np.cumsum(keep, dtype=np.intp) - 1
    return SortedRows(
        rows.num_rows,
        int(keep.sum()),
        new_case.take(rows.case.take(selected)),
        rows.keys.take(selected),
        rows.positive.take(selected),
    )


# ------------------------------------------------------------------------------------------------ DeLong's influence


class DelongRows(NamedTuple):
    """AUC and DeLong influence of R problems (see :func:`delong_rows`)."""

    auc: np.ndarray
    """float64 ``(R,)``; NaN for a row without positives or without negatives."""
    positives: np.ndarray
    """int64 ``(R,)``."""
    negatives: np.ndarray
    """int64 ``(R,)``."""
    influence: np.ndarray
    """float64 ``(R, L)`` in case order; zeros in an undefined row."""
    variance: np.ndarray
    """float64 ``(R,)``: the sum of squared influences of each row (0 in an undefined row)."""


def delong_rows(rows: SortedRows, *, unbiased: bool = True) -> DelongRows:
    """AUC and per-case DeLong influence of every sorted row.

    With ``unbiased`` (the default) a case's influence is ``(placement - AUC) / sqrt(k (k - 1))``, k the size of its
    group, so that a row's sum of squares is DeLong's unbiased variance; with ``unbiased=False`` it is
    ``(placement - AUC) / k``, the first-order influence, for the cluster-robust variance of the micro average.
    """
    num_rows, length = rows.num_rows, rows.length
    total = rows.keys.size
    if total == 0:
        empty = np.zeros(num_rows, dtype=np.int64)
        return DelongRows(np.full(num_rows, np.nan), empty, empty, np.zeros((num_rows, 0)), np.zeros(num_rows))
    # tie groups: runs of equal scores within a row
    starts_group = np.empty(total, dtype=bool)
    starts_group[0] = True
    np.not_equal(rows.keys[1:], rows.keys[:-1], out=starts_group[1:])
    starts_group[::length] = True
    counter = np.int32 if total < 2**31 else np.int64
    group_of_entry = np.cumsum(starts_group, dtype=counter)
    group_of_entry -= 1
    group_start = np.flatnonzero(starts_group)
    positives_before = np.zeros(total + 1, dtype=counter)
    np.cumsum(rows.positive, out=positives_before[1:])
    group_end = np.append(group_start[1:], total)
    row_of_group = group_start // length
    positives_below = (positives_before[group_start] - positives_before[row_of_group * length]).astype(np.int64)
    positives_tied = (positives_before[group_end] - positives_before[group_start]).astype(np.int64)
    negatives_below = (group_start - row_of_group * length) - positives_below
    negatives_tied = (group_end - group_start) - positives_tied
    row_starts = np.arange(num_rows) * length
    positives = np.diff(np.append(positives_before[row_starts], positives_before[total])).astype(np.int64)
    negatives = length - positives
    m, n = positives[row_of_group], negatives[row_of_group]
    # integers per group: 2 * #negatives below + #negatives tied (for its positives), and
    # 2 * #positives above + #positives tied (for its negatives)
    twice_below = 2 * negatives_below + negatives_tied
    twice_above = 2 * (m - positives_below - positives_tied) + positives_tied
    first_group_of_row = np.searchsorted(row_of_group, np.arange(num_rows))
    two_u = np.add.reduceat(positives_tied * twice_below, first_group_of_row)
    auc = np.array([exact_auc(int(u), int(p), int(q)) for u, p, q in zip(two_u, positives, negatives)])
    defined = ~np.isnan(auc)
    if unbiased:
        positive_scale = 1.0 / np.sqrt(np.maximum(positives * (positives - 1), 1))
        negative_scale = 1.0 / np.sqrt(np.maximum(negatives * (negatives - 1), 1))
    else:
        positive_scale, negative_scale = 1.0 / np.maximum(positives, 1), 1.0 / np.maximum(negatives, 1)
    centre = np.where(defined, auc, 0.0)[row_of_group]
    kept = np.where(defined, 1.0, 0.0)[row_of_group]
    by_group_and_label = np.empty((group_start.size, 2), dtype=np.float64)
    by_group_and_label[:, 0] = (twice_above / (2.0 * np.maximum(m, 1)) - centre) * negative_scale[row_of_group] * kept
    by_group_and_label[:, 1] = (twice_below / (2.0 * np.maximum(n, 1)) - centre) * positive_scale[row_of_group] * kept
    squares = negatives_tied * by_group_and_label[:, 0] ** 2 + positives_tied * by_group_and_label[:, 1] ** 2
    variance = np.add.reduceat(squares, first_group_of_row)
    group_of_entry *= 2
    group_of_entry += rows.positive
    destination = rows.case.reshape(num_rows, length) + (np.arange(num_rows) * length)[:, None]
    influence = np.empty((num_rows, length), dtype=np.float64)
    influence.ravel()[destination.ravel()] = by_group_and_label.ravel()[group_of_entry]
    return DelongRows(auc, positives, negatives, influence, variance)


class ClassStatistics(NamedTuple):
    """Per-class AUC, counts and DeLong influence of ``(N, C)`` inputs (see :func:`class_statistics`)."""

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


def _as_class_statistics(rows: DelongRows) -> ClassStatistics:
    return ClassStatistics(rows.auc, rows.positives, rows.negatives, rows.influence.T, rows.variance)


def sort_classes(labels: np.ndarray, scores: np.ndarray) -> SortedRows:
    """Each class (column) of ``(N, C)`` inputs sorted by score, for :func:`class_statistics` and its subgroups."""
    return sort_rows(np.ascontiguousarray(labels.T), np.ascontiguousarray(scores.T))


def class_statistics(labels: np.ndarray, scores: np.ndarray, *, subgroup: Optional[np.ndarray] = None,
                     sorted_classes: Optional[SortedRows] = None) -> ClassStatistics:
    """AUC, counts, DeLong influence and variance of every class of ``(N, C)`` inputs.

    Args:
        labels, scores: validated ``(N, C)`` arrays.
        subgroup: optional bool ``(N,)``: the statistics of those cases only (their influence rows in their order).
        sorted_classes: :func:`sort_classes` of the same inputs, to reuse one sort for many subgroups.
    """
    rows = sorted_classes if sorted_classes is not None else sort_classes(labels, scores)
    if subgroup is not None:
        rows = select_cases(rows, subgroup)
    return _as_class_statistics(delong_rows(rows))


def micro_statistics(labels: np.ndarray, scores: np.ndarray) -> Tuple[float, int, int, float]:
    """Micro AUC, pooled positive and negative counts, and its cluster-robust DeLong variance.

    The entry-level first-order influences are summed over each case's C entries, so that the correlation between a
    case's entries is kept, and the sum of squares is scaled by ``N / (N - 1)``.
    """
    rows = delong_rows(sort_rows(labels.reshape(1, -1), scores.reshape(1, -1)), unbiased=False)
    auc, m, n = float(rows.auc[0]), int(rows.positives[0]), int(rows.negatives[0])
    if math.isnan(auc):
        return auc, m, n, math.nan
    per_case = rows.influence[0].reshape(labels.shape).sum(axis=1)
    num_cases = labels.shape[0]
    return auc, m, n, float(per_case @ per_case) * num_cases / max(num_cases - 1, 1)
