"""Paired comparison of two models' ROC AUCs on the same cases: DeLong's test, per class and for the macro mean.

Two models scored on the same images make correlated AUCs: an image that is hard for one is usually hard for the
other. Comparing their two confidence intervals ignores that correlation and is wrong (too conservative when the
models agree, and it has no stated error rate). DeLong et al. (1988) give the variance of the difference of two
correlated AUCs from the placement values of both models on the same cases::

    Var(A - B) = Var(A) + Var(B) - 2 Cov(A, B)

Here each case's DeLong influence on each model's AUC (``delong.class_statistics``) is computed for both
models, and the variance of the difference is the sum over cases of the squared difference of the two influences.
For one class this is exactly DeLong's estimate; for the macro mean (over the classes defined in the references), the
per-case influences are averaged over classes first, so the correlations between classes are kept as well.

The test statistic is ``z = (A - B) / se``, the p-value two-sided from the standard normal, and the interval of the
difference ``(A - B) ± z_(1 - alpha/2) * se`` (clipped to [-1, 1]), so that the interval excludes 0 exactly when
``p < alpha``. As with any DeLong statistic, this is a large-sample approximation: with very few positives in a class
its p-value is approximate.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Dict, Optional, Sequence

import numpy as np

from .intervals import z_value
from .delong import class_statistics
from .multilabel_auc import UndefinedAUCWarning, check_options, validate_inputs


def _difference_entry(auc_a: float, auc_b: float, variance: float, z: float) -> Dict[str, float]:
    difference = auc_a - auc_b
    se = math.nan if math.isnan(difference) or math.isnan(variance) else math.sqrt(max(variance, 0.0))
    if math.isnan(difference) or not se > 0.0:
        statistic = p_value = low = high = math.nan
    else:
        statistic = difference / se
        p_value = math.erfc(abs(statistic) / math.sqrt(2.0))
        low, high = max(difference - z * se, -1.0), min(difference + z * se, 1.0)
    return {
        "auc_a": auc_a,
        "auc_b": auc_b,
        "difference": difference,
        "se": se,
        "z": statistic,
        "p_value": p_value,
        "ci_low": low,
        "ci_high": high,
    }


def compare_roc_auc(
    references,
    scores_a,
    scores_b,
    *,
    label_names: Optional[Sequence[str]] = None,
    confidence_level: float = 0.95,
) -> Dict[str, Any]:
    """Paired DeLong comparison of model A against model B on the same cases, per class and for the macro mean.

    Args:
        references: ``(N, C)`` array-like of 0/1, the same for both models.
        scores_a: ``(N, C)`` finite scores of model A, row i for the same case as ``references[i]``.
        scores_b: ``(N, C)`` finite scores of model B, in the same row and column order.
        label_names: C names; default ``"0"``, ``"1"``, ... (column numbers).
        confidence_level: the level of the interval of each difference, in (0, 1).

    Returns:
        ``{"num_cases": N, "confidence_level": 0.95,
        "macro": {"auc_a", "auc_b", "difference", "se", "z", "p_value", "ci_low", "ci_high", "classes"},
        "per_class": {name: {"auc_a", "auc_b", "difference", "se", "z", "p_value", "ci_low", "ci_high",
        "positives", "negatives"}, ...}}`` with plain Python floats and ints; ``difference`` is ``auc_a - auc_b`` and
        ``se`` its paired DeLong standard error. A class whose references are all 0 or all 1 is NaN throughout and
        left out of the macro mean. Where ``se`` is 0 (both models rank every case of the class identically, or both
        separate it perfectly), the test is undefined: ``z``, ``p_value`` and the interval are NaN, with an
        :data:`UndefinedAUCWarning`.

    Raises:
        ValueError: for inputs rejected by ``validate_inputs`` (either model's scores, or references), label names
            that are not C unique strings, or a ``confidence_level`` outside (0, 1).
    """
    labels, scores_a = validate_inputs(references, scores_a, scores_argument="scores_a")
    _, scores_b = validate_inputs(references, scores_b, scores_argument="scores_b")
    if confidence_level is None:
        raise ValueError("confidence_level must be a number in (0, 1), such as 0.95; got None")
    names = check_options(labels.shape[1], "macro", label_names, confidence_level)
    names = names if names is not None else [str(column) for column in range(labels.shape[1])]
    model_a, model_b = class_statistics(labels, scores_a), class_statistics(labels, scores_b)
    z = z_value(confidence_level)
    influence_difference = model_a.influence - model_b.influence
    variance = (influence_difference**2).sum(axis=0)

    per_class = {}
    for column, name in enumerate(names):
        entry = _difference_entry(float(model_a.auc[column]), float(model_b.auc[column]), float(variance[column]), z)
        entry.update(positives=int(model_a.positives[column]), negatives=int(model_a.negatives[column]))
        per_class[name] = entry
        if not math.isnan(entry["difference"]) and math.isnan(entry["p_value"]):
            warnings.warn(
                f"ROC AUC difference of class {name!r} (column {column}) has paired DeLong variance 0: both models rank "
                f"its {entry['positives']} positive and {entry['negatives']} negative cases identically, or both "
                "separate them perfectly. Its test is undefined (NaN); compare the two AUCs' own intervals instead",
                UndefinedAUCWarning,
                stacklevel=2,
            )
        elif math.isnan(entry["difference"]):
            warnings.warn(
                f"ROC AUC of class {name!r} (column {column}) is undefined: all its references are "
                f"{int(labels[0, column])}. Its difference is reported as NaN and left out of the macro mean",
                UndefinedAUCWarning,
                stacklevel=2,
            )

    defined = ~np.isnan(model_a.auc)
    if defined.any():
        macro_influence = influence_difference[:, defined].mean(axis=1)
        macro = _difference_entry(
            float(np.average(model_a.auc[defined])),
            float(np.average(model_b.auc[defined])),
            float(macro_influence @ macro_influence),
            z,
        )
    else:
        macro = _difference_entry(math.nan, math.nan, math.nan, z)
    macro["classes"] = int(defined.sum())
    return {
        "num_cases": int(labels.shape[0]),
        "confidence_level": float(confidence_level),
        "macro": macro,
        "per_class": per_class,
    }
