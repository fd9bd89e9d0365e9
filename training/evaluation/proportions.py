"""Proportions with Wilson score intervals: sensitivities, specificities, predictive values, prevalences, rates.

Wilson's interval (Wilson, 1927) inverts the score test of a binomial proportion: all ``p`` with
``(k/n - p)^2 <= z^2 p (1 - p) / n``. Unlike the Wald interval ``k/n ± z sqrt(k/n (1 - k/n) / n)`` it never
collapses to a point at 0 or n successes and holds its level for small ``n`` (Brown, Cai & DasGupta, 2001, who
recommend it), which is the common case in subgroups: a sensitivity of 3/3 in one age band is not a certainty.

Everything works on arrays, so one call gives the intervals of 14 findings (or 14 findings × 9 subgroups).
"""

from __future__ import annotations

from typing import Dict, List

import numpy as np

from metrics.roc_auc_multilabel.intervals import z_value

__all__ = ["proportion", "proportions", "wilson_interval"]


def wilson_interval(successes, trials, confidence_level: float = 0.95):
    """Wilson score interval of ``successes / trials``, element-wise.

    Args:
        successes: integer array-like, 0 <= successes <= trials.
        trials: integer array-like of the same shape (or broadcastable).
        confidence_level: in (0, 1).

    Returns:
        ``(value, low, high)``, float64 arrays of the broadcast shape; NaN where ``trials`` is 0.

    Raises:
        ValueError: if a count is negative or ``successes`` exceeds ``trials``.
    """
    k = np.asarray(successes, dtype=np.float64)
    n = np.asarray(trials, dtype=np.float64)
    if (k < 0).any() or (n < 0).any() or (k > n).any():
        raise ValueError("wilson_interval needs 0 <= successes <= trials")
    z = z_value(confidence_level)
    with np.errstate(invalid="ignore", divide="ignore"):
        value = k / n
        denominator = 1.0 + z * z / n
        centre = (value + z * z / (2.0 * n)) / denominator
        half_width = z * np.sqrt(value * (1.0 - value) / n + z * z / (4.0 * n * n)) / denominator
    low = np.clip(centre - half_width, 0.0, 1.0)
    high = np.clip(centre + half_width, 0.0, 1.0)
    # at 0 (or n) successes the bound on that side is exactly 0 (or 1), not a rounding error away from it
    low = np.where(k == 0, 0.0, low)
    high = np.where(k == n, 1.0, high)
    empty = n == 0
    return (np.where(empty, np.nan, value), np.where(empty, np.nan, low), np.where(empty, np.nan, high))


def proportion(successes: int, trials: int, confidence_level: float = 0.95) -> Dict[str, float]:
    """``{"value", "ci_low", "ci_high", "successes", "trials"}`` of one proportion, as plain Python numbers
    (NaN value and bounds when ``trials`` is 0)."""
    value, low, high = wilson_interval(successes, trials, confidence_level)
    return {
        "value": float(value),
        "ci_low": float(low),
        "ci_high": float(high),
        "successes": int(successes),
        "trials": int(trials),
    }


def proportions(successes, trials, confidence_level: float = 0.95) -> List[Dict[str, float]]:
    """:func:`proportion` of each entry of two 1-D arrays: a list of dicts, in order."""
    value, low, high = wilson_interval(successes, trials, confidence_level)
    successes = np.asarray(successes)
    trials = np.broadcast_to(np.asarray(trials), successes.shape)
    return [
        {"value": float(v), "ci_low": float(lo), "ci_high": float(hi), "successes": int(k), "trials": int(n)}
        for v, lo, hi, k, n in zip(value.ravel(), low.ravel(), high.ravel(), successes.ravel(), trials.ravel())
    ]

