"""Paired comparison of two models on the same cases: DeLong's test against a direct O(N^2) implementation, per class
and for the macro mean, and its undefined and bad-input cases."""

from __future__ import annotations

import json
import math
import warnings
from statistics import NormalDist

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from metrics.roc_auc_multilabel import UndefinedAUCWarning, compare_roc_auc

NAMES = ["Hernia", "Effusion", "Infiltration", "Mass"]


def paired_problem(seed, num_cases=240, prevalences=(0.05, 0.2, 0.45, 0.1)):
    """Two correlated models (a shared per-case difficulty) with tied, rounded scores."""
    rng = np.random.default_rng(seed)
    labels = (rng.random((num_cases, len(prevalences))) < prevalences).astype(int)
    labels[0], labels[1] = 1, 0
    difficulty = rng.normal(size=labels.shape)
    scores_a = np.round(labels * 1.2 + difficulty + 0.6 * rng.normal(size=labels.shape), 1)
    scores_b = np.round(labels * 0.8 + difficulty + 0.6 * rng.normal(size=labels.shape), 1)
    return labels, scores_a, scores_b


def direct_influence(labels, scores):
    """Per-case DeLong influence from placement values computed over all (positive, negative) pairs: O(N^2)."""
    influence = np.zeros(labels.shape)
    auc = np.zeros(labels.shape[1])
    for column in range(labels.shape[1]):
        is_positive = labels[:, column] == 1
        positives, negatives = scores[is_positive, column], scores[~is_positive, column]
        kernel = (positives[:, None] > negatives[None, :]) + 0.5 * (positives[:, None] == negatives[None, :])
        v10, v01 = kernel.mean(axis=1), kernel.mean(axis=0)
        m, n = v10.size, v01.size
        auc[column] = kernel.mean()
        influence[is_positive, column] = (v10 - auc[column]) / math.sqrt(m * (m - 1))
        influence[~is_positive, column] = (v01 - auc[column]) / math.sqrt(n * (n - 1))
    return auc, influence


def direct_test(difference, variance, confidence_level):
    se = math.sqrt(variance)
    z = difference / se
    p_value = 2.0 * (1.0 - NormalDist().cdf(abs(z)))
    half_width = NormalDist().inv_cdf(0.5 + confidence_level / 2) * se
    return se, z, p_value, difference - half_width, difference + half_width


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_per_class_test_equals_delongs_paired_test_written_out(seed):
    labels, scores_a, scores_b = paired_problem(seed)
    result = compare_roc_auc(labels, scores_a, scores_b, label_names=NAMES, confidence_level=0.9)
    for column, name in enumerate(NAMES):
        is_positive = labels[:, column] == 1
        # DeLong et al. (1988): S10 and S01 are the covariance matrices of the two models' placement values
        placements = []
        for scores in (scores_a, scores_b):
            positives, negatives = scores[is_positive, column], scores[~is_positive, column]
            kernel = (positives[:, None] > negatives[None, :]) + 0.5 * (positives[:, None] == negatives[None, :])
            placements.append((kernel.mean(axis=1), kernel.mean(axis=0)))
        s10 = np.cov(placements[0][0], placements[1][0])
        s01 = np.cov(placements[0][1], placements[1][1])
        m, n = is_positive.sum(), (~is_positive).sum()
        covariance = s10 / m + s01 / n
        variance = covariance[0, 0] + covariance[1, 1] - 2 * covariance[0, 1]
        auc_a = roc_auc_score(labels[:, column], scores_a[:, column])
        auc_b = roc_auc_score(labels[:, column], scores_b[:, column])
        se, z, p_value, low, high = direct_test(auc_a - auc_b, variance, 0.9)
        entry = result["per_class"][name]
        assert entry["auc_a"] == pytest.approx(auc_a, abs=1e-12)
        assert entry["auc_b"] == pytest.approx(auc_b, abs=1e-12)
        assert entry["difference"] == pytest.approx(auc_a - auc_b, abs=1e-12)
        assert entry["se"] == pytest.approx(se, rel=1e-9)
        assert entry["z"] == pytest.approx(z, rel=1e-9)
        assert entry["p_value"] == pytest.approx(p_value, rel=1e-7, abs=1e-12)
        assert (entry["ci_low"], entry["ci_high"]) == pytest.approx((low, high), abs=1e-12)
        assert (entry["positives"], entry["negatives"]) == (m, n)


@pytest.mark.parametrize("seed", [3, 4])
def test_macro_test_uses_the_covariance_of_all_classes_and_both_models(seed):
    labels, scores_a, scores_b = paired_problem(seed)
    auc_a, influence_a = direct_influence(labels, scores_a)
    auc_b, influence_b = direct_influence(labels, scores_b)
    per_case = (influence_a - influence_b).mean(axis=1)
    difference = auc_a.mean() - auc_b.mean()
    se, z, p_value, low, high = direct_test(difference, float(per_case @ per_case), 0.95)
    macro = compare_roc_auc(labels, scores_a, scores_b)["macro"]
    assert macro["auc_a"] == pytest.approx(roc_auc_score(labels, scores_a), abs=1e-12)
    assert macro["difference"] == pytest.approx(difference, abs=1e-12)
    assert macro["se"] == pytest.approx(se, rel=1e-9)
    assert macro["p_value"] == pytest.approx(p_value, rel=1e-7, abs=1e-12)
    assert (macro["ci_low"], macro["ci_high"]) == pytest.approx((low, high), abs=1e-12)
    assert macro["classes"] == 4
    # the models are correlated: the paired standard error is well below the one that ignores the pairing
    unpaired = math.sqrt(((influence_a.mean(axis=1)) ** 2).sum() + ((influence_b.mean(axis=1)) ** 2).sum())
    assert macro["se"] < 0.8 * unpaired


def test_interval_excludes_zero_exactly_when_the_test_rejects():
    for seed in range(8):
        labels, scores_a, scores_b = paired_problem(seed, num_cases=150)
        result = compare_roc_auc(labels, scores_a, scores_b, label_names=NAMES)
        for entry in [result["macro"], *result["per_class"].values()]:
            assert (entry["p_value"] < 0.05) == (not entry["ci_low"] <= 0.0 <= entry["ci_high"])


def test_a_model_against_itself_has_an_undefined_test_and_says_so():
    labels, scores_a, _ = paired_problem(seed=5)
    with pytest.warns(UndefinedAUCWarning, match="ROC AUC difference of class .* variance 0") as caught:
        result = compare_roc_auc(labels, scores_a, scores_a.copy(), label_names=NAMES)
    assert [name for name in NAMES if any(f"'{name}'" in str(warning.message) for warning in caught)] == NAMES
    for entry in [result["macro"], *result["per_class"].values()]:
        assert entry["difference"] == 0.0 and entry["se"] == 0.0
        assert all(math.isnan(entry[key]) for key in ("z", "p_value", "ci_low", "ci_high"))


def test_a_class_without_positives_is_nan_and_left_out_of_the_macro():
    labels, scores_a, scores_b = paired_problem(seed=6)
    labels[:, 0] = 0
    with pytest.warns(UndefinedAUCWarning, match="'Hernia'.*undefined"):
        result = compare_roc_auc(labels, scores_a, scores_b, label_names=NAMES)
    assert all(math.isnan(value) for key, value in result["per_class"]["Hernia"].items() if key not in
               ("positives", "negatives"))
    assert result["macro"]["classes"] == 3
    expected = roc_auc_score(labels[:, 1:], scores_a[:, 1:]) - roc_auc_score(labels[:, 1:], scores_b[:, 1:])
    assert result["macro"]["difference"] == pytest.approx(expected, abs=1e-12)


def test_result_is_plain_json():
    labels, scores_a, scores_b = paired_problem(seed=7)
    result = compare_roc_auc(labels, scores_a, scores_b, label_names=NAMES)
    assert json.loads(json.dumps(result, allow_nan=False)) == result
    assert list(result["per_class"]) == NAMES
    assert result["num_cases"] == 240 and result["confidence_level"] == 0.95


def test_integer_scores_are_compared_exactly():
    labels = np.array([[0], [1], [0], [1], [1], [0]])
    big = 2**60
    scores_a = np.array([[big], [big + 1], [big + 2], [big + 3], [big + 4], [big]], dtype=np.int64)
    scores_b = scores_a[::-1].copy()  # as float64 both would be six equal scores, 2**60, and both AUCs 0.5
    result = compare_roc_auc(labels, scores_a, scores_b)
    assert result["macro"]["auc_a"] == pytest.approx(8 / 9, abs=1e-15)
    assert result["macro"]["auc_b"] == pytest.approx(roc_auc_score(labels, scores_b - big), abs=1e-15)  # 7/9


@pytest.mark.parametrize(
    "change, message",
    [
        ({"scores_b": np.zeros((240, 3))}, r"references has shape \(240, 4\) but scores_b has shape \(240, 3\)"),
        ({"scores_a": np.full((240, 4), np.nan)}, r"scores_a must be finite; row 0, column 0"),
        ({"label_names": ["a"]}, r"label_names has 1 names"),
        ({"confidence_level": 1.5}, r"confidence_level"),
        ({"confidence_level": None}, r"confidence_level"),
    ],
)
def test_bad_input_is_a_clear_error(change, message):
    labels, scores_a, scores_b = paired_problem(seed=8)
    arguments = {"references": labels, "scores_a": scores_a, "scores_b": scores_b, **change}
    with pytest.raises(ValueError, match=message):
        compare_roc_auc(**arguments)
