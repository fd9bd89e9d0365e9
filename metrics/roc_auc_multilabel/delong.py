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
class instead of the O(m n) pairwise comparisons. Where ties are many (rounded scores), every case of one tie group
with one label has the same placement, so values are computed per (tie group, label) and gathered once; where they
are few (continuous scores), placements are computed per case and only the tied cases corrected. Each row is sorted as
one packed uint64 per case (score key, case, label), which a plain sort orders several times faster than an argsort:
the whole key when 32 bits hold the scores exactly (float32 model outputs, small integers), its leading bits for
64-bit scores, checked afterwards; an argsort is the fallback, so scores are always ranked exactly.

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
    (float64 beyond float32's precision, 64-bit integers spread over more than 2**32 values)."""
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
    if scores.size and int(scores.max()) - int(scores.min()) < 2**32:  # 64-bit integers within a 32-bit range
        return (scores - scores.min()).astype(np.uint32)
    return None


def _order_preserving_keys64(scores: np.ndarray) -> np.ndarray:
    """uint64 keys that order and tie exactly as 64-bit (or narrower) float or integer ``scores`` do."""
    if scores.dtype.kind == "f":
        signed = (scores.astype(np.float64) + 0.0).view(np.int64)  # + 0.0: -0.0 and 0.0 get one key
        signed ^= (signed >> 63) & np.int64(0x7FFFFFFFFFFFFFFF)
        return signed.view(np.uint64) ^ np.uint64(1 << 63)
    if scores.dtype.kind == "u":
        return scores.astype(np.uint64)
    return scores.astype(np.int64).view(np.uint64) ^ np.uint64(1 << 63)


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
    or when the leading bits of 64-bit scores order them (:func:`_sort_by_leading_bits`), an argsort otherwise."""
    num_rows, length = scores.shape
    keys = _order_preserving_keys(scores)
    if keys is None:
        rows = _sort_by_leading_bits(is_positive, scores)
        if rows is not None:
            return rows
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


def _sort_by_leading_bits(is_positive: np.ndarray, scores: np.ndarray) -> Optional[SortedRows]:
    """Sort 64-bit scores as one packed uint64 per case: the leading bits of the score's key, then the case and its
    label. Scores that share those leading bits but differ beyond them would be ordered by case, not by score: the
    full keys are checked in the sorted order, and None is returned when any row is out of order (an argsort is then
    needed). With 25,596 cases, 48 bits are kept: scores that differ by more than about 1e-11 of their value."""
    num_rows, length = scores.shape
    low_bits = (2 * length - 1).bit_length()
    if low_bits > 32:
        return None
    keys = _order_preserving_keys64(scores)
    packed = keys >> np.uint64(low_bits)
    packed <<= np.uint64(low_bits)
    packed |= np.arange(0, 2 * length, 2, dtype=np.uint64)
    packed |= is_positive
    packed.sort(axis=1)
    low_word = (packed & np.uint64((1 << low_bits) - 1)).astype(np.intp)
    case = low_word >> 1
    sorted_keys = np.take_along_axis(keys, case, axis=1)
    if np.any(sorted_keys[:, 1:] < sorted_keys[:, :-1]):
        return None
    return SortedRows(num_rows, length, case.ravel(), sorted_keys.ravel(), (low_word & 1).astype(np.int8).ravel())


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


class _Counts(NamedTuple):
    """Per unit (an entry, or a tie group of entries): its row, and, with ``[s, e)`` the bounds of its tie group in
    its row and ``P(i)`` the number of positives among the row's first ``i`` entries, ``P(s) + P(e)`` and
    ``s + e``. A positive's placement is ``(s + e - P(s) - P(e)) / 2n`` (twice the negatives below it plus those tied
    with it, over ``2n``); a negative's is ``(2m - P(s) - P(e)) / 2m``."""

    row: np.ndarray
    count_sum: np.ndarray
    rank_sum: np.ndarray


def _counts_per_group(tied: np.ndarray, positives_before: np.ndarray) -> Tuple[_Counts, np.ndarray, np.ndarray]:
    """For many ties (rounded scores, small integers): the counts of each tie group of ``(R, L)`` sorted entries,
    the group of each entry (flat, row-major) and the number of positives in each group."""
    num_rows, length = tied.shape[0], tied.shape[1] + 1
    starts = np.ones((num_rows, length), dtype=bool)
    np.logical_not(tied, out=starts[:, 1:])
    starts = starts.ravel()
    group_of_entry = np.cumsum(starts, dtype=np.intp)
    group_of_entry -= 1
    group_start = np.flatnonzero(starts)
    group_end = np.append(group_start[1:], starts.size)  # a row's last group ends where the next row starts
    row = group_start // length
    before = positives_before.ravel()  # L + 1 columns per row
    at_start, at_end = before[group_start + row], before[group_end + row]
    counts = _Counts(row, at_start + at_end, group_start + group_end - 2 * row * length)
    return counts, group_of_entry, at_end - at_start


def _counts_per_entry(keys: np.ndarray, tied: np.ndarray, positives_before: np.ndarray) -> _Counts:
    """For few ties (continuous scores): the counts of every entry of ``(R, L)`` sorted entries, from the no-tie
    values ``s = i``, ``e = i + 1``, corrected on the entries in a tie only."""
    num_rows, length = keys.shape
    count_sum = positives_before[:, :-1] + positives_before[:, 1:]
    rank_sum = np.empty((num_rows, length), dtype=count_sum.dtype)
    rank_sum[:] = np.arange(1, 2 * length, 2, dtype=count_sum.dtype)
    counts = _Counts(np.arange(num_rows)[:, None], count_sum, rank_sum)
    tied_before = np.zeros((num_rows, length), dtype=bool)
    tied_before[:, 1:] = tied
    tied_after = np.zeros((num_rows, length), dtype=bool)
    tied_after[:, :-1] = tied
    entries = np.flatnonzero(tied_before | tied_after)  # flat (row-major) indices, ascending
    if entries.size == 0:
        return counts
    row = entries // length
    # a group never spans two rows, and flat indices grow, so one running maximum (minimum) finds every bound
    start = np.where(tied_before.ravel()[entries], 0, entries)
    np.maximum.accumulate(start, out=start)
    end = np.where(tied_after.ravel()[entries], entries.size + num_rows * length, entries + 1)[::-1]
    end = np.minimum.accumulate(end)[::-1]
    before = positives_before.ravel()
    count_sum.ravel()[entries] = before[start + row] + before[end + row]
    rank_sum.ravel()[entries] = start + end - 2 * row * length
    return counts


def delong_rows(rows: SortedRows, *, unbiased: bool = True) -> DelongRows:
    """AUC and per-case DeLong influence of every sorted row.

    With ``unbiased`` (the default) a case's influence is ``(placement - AUC) / sqrt(k (k - 1))``, k the size of its
    group, so that a row's sum of squares is DeLong's unbiased variance; with ``unbiased=False`` it is
    ``(placement - AUC) / k``, the first-order influence, for the cluster-robust variance of the micro average.

    Placements are computed per tie group when ties are many (a quarter of the entries or more), and per entry
    otherwise, where the group bookkeeping would cost more than it saves.
    """
    num_rows, length = rows.num_rows, rows.length
    if rows.keys.size == 0:
        empty = np.zeros(num_rows, dtype=np.int64)
        return DelongRows(np.full(num_rows, np.nan), empty, empty, np.zeros((num_rows, 0)), np.zeros(num_rows))
    counter = np.int32 if 2 * length < 2**31 else np.int64
    keys = rows.keys.reshape(num_rows, length)
    positive = rows.positive.reshape(num_rows, length).view(bool)
    positives_before = np.zeros((num_rows, length + 1), dtype=counter)
    np.cumsum(positive, axis=1, dtype=counter, out=positives_before[:, 1:])
    positives = positives_before[:, -1].astype(np.int64)
    negatives = length - positives
    tied = keys[:, 1:] == keys[:, :-1]
    per_group = 4 * np.count_nonzero(tied) >= tied.size
    if per_group:
        counts, group_of_entry, positives_in_group = _counts_per_group(tied, positives_before)
        # 2U: for each group, its positives times (2 * #negatives below + #negatives tied)
        weighted = positives_in_group.astype(np.int64) * (counts.rank_sum - counts.count_sum)
        two_u = np.zeros(num_rows, dtype=np.int64)
        np.add.at(two_u, counts.row, weighted)
    else:
        counts = _counts_per_entry(keys, tied, positives_before)
        two_u = np.where(positive, counts.rank_sum - counts.count_sum, 0).sum(axis=1, dtype=np.int64)
    auc = np.array([exact_auc(int(u), int(p), int(q)) for u, p, q in zip(two_u, positives, negatives)])
    defined = ~np.isnan(auc)
    if unbiased:
        positive_scale = 1.0 / np.sqrt(np.maximum(positives * (positives - 1), 1))
        negative_scale = 1.0 / np.sqrt(np.maximum(negatives * (negatives - 1), 1))
    else:
        positive_scale, negative_scale = 1.0 / np.maximum(positives, 1), 1.0 / np.maximum(negatives, 1)
    centre = np.where(defined, auc, 0.0)
    twice_m, twice_n = 2.0 * np.maximum(positives, 1), 2.0 * np.maximum(negatives, 1)
    row = counts.row

    def positive_influence():
        return ((counts.rank_sum - counts.count_sum) / twice_n[row] - centre[row]) * positive_scale[row]

    def negative_influence():
        return ((twice_m[row] - counts.count_sum) / twice_m[row] - centre[row]) * negative_scale[row]

    if per_group:
        by_group_and_label = np.stack([negative_influence(), positive_influence()], axis=1).ravel()
        group_of_entry *= 2
        group_of_entry += rows.positive
        sorted_influence = by_group_and_label.take(group_of_entry).reshape(num_rows, length)
    else:
        sorted_influence = np.where(positive, positive_influence(), negative_influence())
    sorted_influence[~defined] = 0.0
    destination = rows.case.reshape(num_rows, length) + (np.arange(num_rows) * length)[:, None]
    influence = np.empty((num_rows, length), dtype=np.float64)
    influence.ravel()[destination.ravel()] = sorted_influence.ravel()
    # summed in case order, so that the variance does not depend on how ties were ordered by the sort
    variance = np.einsum("ij,ij->i", influence, influence)
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
