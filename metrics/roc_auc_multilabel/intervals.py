"""Confidence intervals for ROC AUCs: one per class, and one for an average of correlated per-class AUCs.

Every function works on NumPy arrays of shape ``(C,)``, one entry per class, so a report on 14 findings (or on 14
findings in each of a dozen subgroups) costs a handful of array operations, not a loop over classes.

Per class, with ``m`` positive and ``n`` negative cases and an estimated AUC ``a``:

* **"delong"**: a Wald interval on the logit scale with DeLong's variance ``v`` (DeLong et al., 1988):
  ``logit(a) ± z * sqrt(v) / (a (1 - a))``, mapped back. Asymptotically exact, but when the smaller group has few
  cases on the wrong side of the other group, DeLong's variance is itself estimated from a handful of values and comes
  out too small, and at ``a`` = 0 or 1 it is 0: the interval collapses to a point.
* **"score"**: a score-type interval in the manner of Newcombe (2006, method 3): the set of AUC values ``t`` with
  ``(a - t)^2 <= z^2 * V(t)``, where ``V(t)`` is Hanley & McNeil's (1982) variance of an AUC ``t`` with ``m`` and
  ``n`` cases (from their exponential approximation ``Q1 = t / (2 - t)``, ``Q2 = 2 t^2 / (1 + t)``). The variance is
  taken at the candidate ``t``, not at the estimate, so the interval never collapses, also at ``a`` = 0 or 1 (as a
  Wilson interval for a proportion). Where DeLong's variance at ``a`` exceeds ``V(a)`` (scores spread more than the
  exponential approximation assumes), ``V`` is scaled up by that ratio, so the interval is never narrower than the
  data say.
* **"auto"** (the default): "score" for a class where ``min(m, n) * min(a, 1 - a) < 5``, "delong" elsewhere. That
  product is the smaller group's total share of misranked pairs, counted in cases; it plays the part of ``n p`` in the
  rule of thumb that a normal approximation to a proportion needs ``n p >= 5``. Below it, the logit-DeLong interval
  under-covers (in the project's simulation, 10 positives among 500 negatives with a true AUC of 0.97: 0.82 instead of
  0.95), and the score interval holds its level; above it, both are close to nominal and DeLong's adapts to the data.

Averages of per-class AUCs (macro, weighted) use MOVER, the "method of variance estimates recovery" of Zou & Donner
(2008): the average's lower limit is ``L - sqrt(sum_cd w_c w_d (a_c - l_c)(a_d - l_d) r_cd)``, and its upper limit
likewise with ``u_c - a_c``, where ``(l_c, u_c)`` is class c's interval, ``w_c`` its weight and ``r_cd`` the
correlation of the two AUCs (from DeLong's covariance, as the classes share their cases). It inherits the per-class
intervals' asymmetry near 1, and gives a perfect average a non-degenerate interval.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Tuple

import numpy as np

INTERVAL_METHODS = ("auto", "delong", "score")
"""The accepted values of ``interval``: see the module docstring."""

SMALL_CLASS_LIMIT = 5.0
"""Under ``"auto"``, a class with ``min(m, n) * min(AUC, 1 - AUC)`` below this gets the score interval."""

INTERVAL_DESCRIPTIONS = {
    "auto": (
        "DeLong's variance (DeLong et al., 1988) on the logit scale, and for a finding whose smaller group has fewer "
        "than 5 misranked cases (min(m, n) x min(AUC, 1 - AUC) < 5), a score interval (Newcombe, 2006) with Hanley & "
        "McNeil's (1982) variance; the mean AUC's interval combines the per-finding intervals by MOVER (Zou & "
        "Donner, 2008) with DeLong's correlations"
    ),
    "delong": "DeLong's variance (DeLong et al., 1988) and covariance across findings, on the logit scale",
    "score": (
        "score intervals (Newcombe, 2006) with Hanley & McNeil's (1982) variance, never below DeLong's; the mean "
        "AUC's interval combines them by MOVER (Zou & Donner, 2008) with DeLong's correlations"
    ),
}
"""One sentence per method, for a model card's "Intervals are from ..." line."""

_BISECTION_STEPS = 52  # halves [0, 1] down to 2e-16, float64's resolution near 1


def z_value(confidence_level: float) -> float:
    """The two-sided standard normal quantile: 1.959964 for 0.95."""
    return NormalDist().inv_cdf(0.5 + float(confidence_level) / 2.0)


def logit_interval(auc: np.ndarray, variance: np.ndarray, z: float) -> Tuple[np.ndarray, np.ndarray]:
    """Wald interval on the logit scale, elementwise.

    Returns ``(low, high)``, each the shape of ``auc``: NaN where ``auc`` is NaN, and the point ``[auc, auc]`` where
    ``auc`` is 0 or 1 (DeLong's variance is 0 there; ``"auto"`` uses the score interval instead).
    """
    auc = np.asarray(auc, dtype=np.float64)
    interior = (auc > 0.0) & (auc < 1.0)
    safe = np.where(interior, auc, 0.5)
    half_width = z * np.sqrt(np.maximum(np.asarray(variance, dtype=np.float64), 0.0)) / (safe * (1.0 - safe))
    logit = np.log(safe / (1.0 - safe))
    low = np.where(interior, _expit(logit - half_width), auc)
    high = np.where(interior, _expit(logit + half_width), auc)
    return low, high


def _expit(x: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -x))


def hanley_mcneil_variance(theta, positives, negatives) -> np.ndarray:
    """Hanley & McNeil's (1982) variance of an AUC ``theta`` estimated from ``positives`` and ``negatives`` cases.

    ``[t(1-t) + (m-1)(Q1 - t^2) + (n-1)(Q2 - t^2)] / (m n)`` with ``Q1 = t/(2-t)`` and ``Q2 = 2t^2/(1+t)``, written
    as ``t(1-t)/(m n) * [1 + (m-1)(1-t)/(2-t) + (n-1) t/(1+t)]`` so that it is exactly 0 at ``t`` = 0 and 1.
    """
    t = np.asarray(theta, dtype=np.float64)
    m = np.asarray(positives, dtype=np.float64)
    n = np.asarray(negatives, dtype=np.float64)
    return t * (1.0 - t) / (m * n) * (1.0 + (m - 1.0) * (1.0 - t) / (2.0 - t) + (n - 1.0) * t / (1.0 + t))


def score_interval(auc, positives, negatives, delong_variance, z: float) -> Tuple[np.ndarray, np.ndarray]:
    """Score-type interval (see the module docstring), elementwise over classes.

    Args:
        auc, positives, negatives, delong_variance: arrays of one shape: each class's AUC estimate, its numbers of
            positive and negative cases (both at least 1) and DeLong's variance of the estimate.
        z: the normal quantile of the confidence level.

    Returns:
        ``(low, high)``, with ``low < auc`` unless ``auc`` is 0, and ``high > auc`` unless ``auc`` is 1. NaN where
        ``auc`` is NaN.

    The bounds are the roots of ``(auc - t)^2 - z^2 k V(t)`` on either side of ``auc``, found by bisection (the set
    where it is negative is one interval: ``V`` is concave enough on [0, 1]).
    """
    auc = np.asarray(auc, dtype=np.float64)
    defined = ~np.isnan(auc)
    estimate = np.where(defined, auc, 0.5)
    m = np.where(defined, positives, 1).astype(np.float64)
    n = np.where(defined, negatives, 1).astype(np.float64)
    model_variance = hanley_mcneil_variance(estimate, m, n)
    with np.errstate(divide="ignore", invalid="ignore"):
        inflation = np.where(model_variance > 0, np.asarray(delong_variance) / model_variance, 1.0)
    # Both bounds at once: the first half of each array searches [0, auc], the second [auc, 1].
    scale = np.tile(z * z * np.maximum(inflation, 1.0) / (m * n), 2)
    m_less_one, n_less_one, centre = np.tile(m - 1.0, 2), np.tile(n - 1.0, 2), np.tile(estimate, 2)
    inner = centre.copy()
    outer = np.concatenate([np.zeros_like(estimate), np.ones_like(estimate)])
    for _ in range(_BISECTION_STEPS):
        t = 0.5 * (inner + outer)
        variance = t * (1.0 - t) * (1.0 + m_less_one * (1.0 - t) / (2.0 - t) + n_less_one * t / (1.0 + t))
        is_outside = (centre - t) ** 2 > scale * variance
        np.copyto(outer, t, where=is_outside)
        np.copyto(inner, t, where=~is_outside)
    size = estimate.size
    return np.where(defined, inner[:size], np.nan), np.where(defined, inner[size:], np.nan)


def uses_score_interval(auc, positives, negatives, method: str) -> np.ndarray:
    """Bool array: which classes get the score interval under ``method`` ("auto", "delong" or "score")."""
    auc = np.asarray(auc, dtype=np.float64)
    defined = ~np.isnan(auc)
    if method == "delong":
        return np.zeros(auc.shape, dtype=bool)
    if method == "score":
        return defined
    smaller_group = np.minimum(positives, negatives)
    misranked = smaller_group * np.minimum(np.where(defined, auc, 0.5), 1.0 - np.where(defined, auc, 0.5))
    return defined & (misranked < SMALL_CLASS_LIMIT)


def class_intervals(auc, positives, negatives, delong_variance, z: float, method: str):
    """Each class's interval under ``method``.

    Returns:
        ``(low, high, uses_score)``: arrays of the shape of ``auc``; ``uses_score`` says which classes got the score
        interval (the others got the logit-DeLong one). NaN bounds where ``auc`` is NaN.
    """
    auc = np.asarray(auc, dtype=np.float64)
    low, high = logit_interval(auc, delong_variance, z)
    uses_score = uses_score_interval(auc, positives, negatives, method)
    if uses_score.any():
        picked = np.flatnonzero(uses_score)
        score_low, score_high = score_interval(
            auc[picked],
            np.asarray(positives)[picked],
            np.asarray(negatives)[picked],
            np.asarray(delong_variance)[picked],
            z,
        )
        low, high = low.copy(), high.copy()
        low[picked], high[picked] = score_low, score_high
    return low, high, uses_score


def correlation_from_covariance(covariance: np.ndarray) -> np.ndarray:
    """Correlation matrix of a ``(C, C)`` covariance; a class with variance 0 gets correlation 0 with the others."""
    sd = np.sqrt(np.maximum(np.diag(covariance), 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        correlation = covariance / np.outer(sd, sd)
    correlation[~np.isfinite(correlation)] = 0.0
    np.fill_diagonal(correlation, 1.0)
    return np.clip(correlation, -1.0, 1.0)


def mover_interval(value: float, weights, auc, low, high, correlation) -> Tuple[float, float]:
    """MOVER interval (Zou & Donner, 2008) of ``value = sum_c weights[c] * auc[c]``.

    Args:
        value: the average itself (computed by the caller, as scikit-learn does).
        weights, auc, low, high: ``(K,)`` arrays over the K classes in the average, with non-negative weights.
        correlation: ``(K, K)`` correlation of the per-class AUC estimates.

    Returns:
        ``(low, high)``, inside [0, 1] when every per-class interval is.
    """
    below = np.asarray(weights) * (np.asarray(auc) - np.asarray(low))
    above = np.asarray(weights) * (np.asarray(high) - np.asarray(auc))
    return (
        value - math.sqrt(max(float(below @ correlation @ below), 0.0)),
        value + math.sqrt(max(float(above @ correlation @ above), 0.0)),
    )
