"""The multi-label ROC AUC metric: exact values against scikit-learn, DeLong variances against a direct O(N^2)
implementation, undefined classes, JSON-safe output, bad input, batching, and the evaluate module's docs.

Intervals (score, MOVER) and their coverage are in test_roc_auc_multilabel_intervals.py; the paired comparison in
test_roc_auc_multilabel_comparison.py; evaluate's own machinery (combine, configs, warnings) in
test_roc_auc_multilabel_evaluate.py."""

from __future__ import annotations

import doctest
import json
import math
import re
import sys
import warnings
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from metrics.roc_auc_multilabel import multilabel_auc as mla

REPO = Path(__file__).resolve().parents[1]
METRIC_DIR = REPO / "metrics" / "roc_auc_multilabel"


@pytest.fixture(scope="module")
def metric():
    evaluate = pytest.importorskip("evaluate")
    return evaluate.load(str(METRIC_DIR))


def tied_problem(seed: int, num_cases: int = 300, prevalences=(0.03, 0.2, 0.5, 0.85)):
    """Integer-valued scores (many ties) loosely correlated with labels; every class has both 0s and 1s."""
    rng = np.random.default_rng(seed)
    labels = (rng.random((num_cases, len(prevalences))) < prevalences).astype(np.int64)
    labels[0, :], labels[1, :] = 1, 0
    scores = rng.integers(0, 5, size=labels.shape) + labels * rng.integers(0, 3, size=labels.shape)
    return labels, scores.astype(np.float64)


# --------------------------------------------------------------------------------------------- exact values


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("average", ["macro", "micro", "weighted", None])
def test_plain_function_equals_sklearn_with_heavy_ties(seed, average):
    labels, scores = tied_problem(seed)
    ours = mla.multilabel_roc_auc(labels, scores, average=average)["roc_auc"]
    expected = roc_auc_score(labels, scores, average=average)
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("average", ["macro", "micro", "weighted", None])
def test_evaluate_module_equals_sklearn_with_heavy_ties(metric, average):
    labels, scores = tied_problem(seed=3, num_cases=500)
    ours = metric.compute(references=labels, prediction_scores=scores, average=average)["roc_auc"]
    np.testing.assert_allclose(ours, roc_auc_score(labels, scores, average=average), rtol=0, atol=1e-12)


def test_float32_scores_and_boolean_references_equal_sklearn():
    labels, scores = tied_problem(seed=4)
    scores32 = (scores / 7.0).astype(np.float32)
    ours = mla.roc_auc_per_class(labels.astype(bool), scores32)
    np.testing.assert_allclose(ours, roc_auc_score(labels, scores32, average=None), rtol=0, atol=1e-12)


def test_evaluate_keeps_float64_scores_that_float32_would_merge(metric):
    # Scores 1e-9 apart are distinct in float64 but equal in float32: storing float32 would turn them into ties.
    labels = np.array([[1], [0], [1], [0]])
    scores = np.array([[0.5 + 1e-9], [0.5], [0.7], [0.1]])
    assert metric.compute(references=labels, prediction_scores=scores)["roc_auc"] == roc_auc_score(labels, scores)
    assert roc_auc_score(labels, scores) == 1.0


def test_per_class_matches_sklearn_on_a_large_problem():
    rng = np.random.default_rng(5)
    labels = (rng.random((20_000, 14)) < np.linspace(0.003, 0.3, 14)).astype(np.int8)
    scores = np.round(labels + rng.normal(size=labels.shape), 2)
    np.testing.assert_allclose(
        mla.roc_auc_per_class(labels, scores), roc_auc_score(labels, scores, average=None), rtol=0, atol=1e-12
    )


def test_weighted_and_macro_averages_are_computed_as_sklearn_computes_them():
    # np.average (pairwise summation, CPU-independent), not a BLAS dot product of normalised weights, which gave
    # 0.8899999999999999 instead of 0.89 on CPUs without AVX-512.
    references = [[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 1], [0, 1, 1], [1, 0, 0], [0, 0, 0], [0, 1, 1]]
    scores = [[0.8, 0.1, 0.3], [0.3, 0.7, 0.2], [0.2, 0.4, 0.2], [0.4, 0.2, 0.9], [0.1, 0.8, 0.4], [0.5, 0.3, 0.4],
              [0.6, 0.2, 0.1], [0.3, 0.5, 0.7]]
    weighted = mla.multilabel_roc_auc(references, scores, average="weighted")["roc_auc"]
    assert weighted == roc_auc_score(references, scores, average="weighted") == 0.89
    for seed in range(5):
        labels, tied_scores = tied_problem(seed)
        per_class = mla.roc_auc_per_class(labels, tied_scores)
        positives = labels.sum(axis=0)
        assert mla.multilabel_roc_auc(labels, tied_scores, average="weighted")["roc_auc"] == np.average(
            per_class, weights=positives
        )
        assert mla.multilabel_roc_auc(labels, tied_scores)["roc_auc"] == np.average(per_class)


@pytest.mark.parametrize("dtype", [np.int64, np.uint64])
def test_integer_scores_beyond_2_to_the_53_keep_their_order(dtype):
    # As float64, 2**53 and 2**53 + 1 are the same number: the AUC would be a tie, 0.5.
    references = [[0], [1]]
    scores = np.array([[2**53], [2**53 + 1]], dtype=dtype)
    assert mla.multilabel_roc_auc(references, scores)["roc_auc"] == 1.0
    assert mla.multilabel_roc_auc(references, scores.tolist())["roc_auc"] == 1.0  # Python ints too
    assert mla.roc_auc_per_class(references, scores).tolist() == [1.0]
    large = np.array([[2**63 + 1], [2**63 + 2], [2**63], [2**63 + 3]], dtype=np.uint64)
    assert mla.multilabel_roc_auc([[0], [1], [0], [1]], large, average=None)["roc_auc"] == [1.0]


@pytest.mark.parametrize(
    "scores",
    [
        0.5 + np.arange(40) * 2.0**-50,  # float64 that differ in their last bits only
        np.arange(40, dtype=np.int64) + 2**60,  # integers that float64 can't tell apart (a 32-bit range)
        np.append(np.arange(39, dtype=np.int64) + 2**60, -(2**40)),  # the same, spread beyond 32 bits
        np.linspace(-1.0, 1.0, 40),  # plain floats, with -0.0 and 0.0 made one value below
    ],
    ids=["last-bits", "int64", "int64-wide", "plain"],
)
def test_intervals_rank_64_bit_scores_as_their_exact_order(scores):
    # Wide scores are sorted by their leading bits first; the result must be that of their exact ranks.
    rng = np.random.default_rng(3)
    scores = rng.permutation(np.repeat(scores, 3))  # with ties of three
    if scores.dtype.kind == "f":
        scores[scores == 0] = rng.choice([-0.0, 0.0], size=int((scores == 0).sum()))
    labels = (rng.random((scores.size, 1)) < 0.4).astype(int)
    labels[0], labels[1] = 0, 1
    ranks = np.unique(scores, return_inverse=True)[1].reshape(-1, 1)
    options = dict(average=None, confidence_level=0.95)
    assert mla.multilabel_roc_auc(labels, scores.reshape(-1, 1), **options) == mla.multilabel_roc_auc(
        labels, ranks, **options
    )


def test_integer_scores_give_the_same_report_as_their_float_copy():
    labels, scores = tied_problem(seed=15)
    options = {"label_names": ["a", "b", "c", "d"], "confidence_level": 0.95}
    for average in ("macro", "micro", "weighted", None):
        as_integers = mla.multilabel_roc_auc(labels, scores.astype(np.int64), average=average, **options)
        assert as_integers == mla.multilabel_roc_auc(labels, scores, average=average, **options)


# ------------------------------------------------------------------------------------------------ DeLong


def naive_delong(is_positive: np.ndarray, scores: np.ndarray):
    """DeLong et al. (1988) written out directly: the m x n kernel matrix, placement values, unbiased variances."""
    positives, negatives = scores[is_positive], scores[~is_positive]
    kernel = (positives[:, None] > negatives[None, :]) + 0.5 * (positives[:, None] == negatives[None, :])
    auc = kernel.mean()
    v10, v01 = kernel.mean(axis=1), kernel.mean(axis=0)
    return auc, v10, v01


def naive_delong_covariance(is_positive, scores_a, scores_b):
    """DeLong's covariance of the AUCs of two scores on the same positives and negatives."""
    _, v10_a, v01_a = naive_delong(is_positive, scores_a)
    _, v10_b, v01_b = naive_delong(is_positive, scores_b)
    m, n = v10_a.size, v01_a.size
    return np.cov(v10_a, v10_b)[0, 1] / m + np.cov(v01_a, v01_b)[0, 1] / n


def few_ties_problem(seed: int, num_cases: int = 250, tied_share: float = 0.0):
    """Continuous scores, with ``tied_share`` of each column's cases given the score of another case."""
    labels, _ = tied_problem(seed, num_cases=num_cases)
    rng = np.random.default_rng(seed)
    scores = labels + rng.normal(size=labels.shape)
    copies = rng.random(labels.shape) < tied_share
    for column in range(labels.shape[1]):
        rows = np.flatnonzero(copies[:, column])
        scores[rows, column] = scores[rng.integers(0, num_cases, size=rows.size), column]
    return labels, scores


# the metric has one path for many ties (per tie group) and one for few (only the tied cases are corrected)
TIE_KINDS = {
    "many ties": lambda seed: tied_problem(seed, num_cases=250),
    "a few ties": lambda seed: few_ties_problem(seed, tied_share=0.05),
    "no ties": lambda seed: few_ties_problem(seed),
}


@pytest.mark.parametrize("ties", list(TIE_KINDS))
@pytest.mark.parametrize("seed", [0, 1])
def test_delong_variances_match_the_direct_implementation(seed, ties):
    labels, scores = TIE_KINDS[ties](seed)
    if ties == "a few ties":
        assert any(np.unique(column).size < column.size for column in scores.T)
    aucs, covariance = mla.delong_covariance(labels, scores)
    for column in range(labels.shape[1]):
        is_positive = labels[:, column] == 1
        auc, v10, v01 = naive_delong(is_positive, scores[:, column])
        variance = v10.var(ddof=1) / v10.size + v01.var(ddof=1) / v01.size
        assert aucs[column] == pytest.approx(auc, abs=1e-12)
        assert covariance[column, column] == pytest.approx(variance, rel=1e-10)


def test_delong_covariance_of_classes_sharing_references_is_delongs():
    # Two columns with the same references and different scores: the two-modality case of DeLong et al.
    rng = np.random.default_rng(7)
    truth = rng.random(300) < 0.3
    scores_a = np.round(truth + rng.normal(size=300), 1)
    scores_b = np.round(0.5 * truth + scores_a * 0.5 + rng.normal(size=300), 1)
    labels = np.column_stack([truth, truth]).astype(int)
    _, covariance = mla.delong_covariance(labels, np.column_stack([scores_a, scores_b]))
    assert covariance[0, 1] == pytest.approx(naive_delong_covariance(truth, scores_a, scores_b), rel=1e-10)


def test_cross_class_covariance_agrees_with_the_jackknife():
    # Classes with different references: compare with the leave-one-case-out jackknife of scikit-learn's AUCs.
    rng = np.random.default_rng(0)
    num_cases = 200
    latent = 0.8 * rng.normal(size=(num_cases, 1)) + 0.6 * rng.normal(size=(num_cases, 3))
    labels = (latent > [0.3, 0.8, 0.0]).astype(int)
    noise = 0.9 * rng.normal(size=(num_cases, 1)) + 0.45 * rng.normal(size=(num_cases, 3))
    scores = np.round(labels * [1.0, 0.7, 1.2] + noise, 1)
    _, covariance = mla.delong_covariance(labels, scores)
    leave_one_out = np.array(
        [roc_auc_score(np.delete(labels, k, 0), np.delete(scores, k, 0), average=None) for k in range(num_cases)]
    )
    centred = leave_one_out - leave_one_out.mean(axis=0)
    jackknife = (num_cases - 1) / num_cases * centred.T @ centred
    scale = np.sqrt(np.outer(np.diag(jackknife), np.diag(jackknife)))
    np.testing.assert_array_less(np.abs(covariance - jackknife), 0.05 * scale)
    correlation = covariance / np.sqrt(np.outer(np.diag(covariance), np.diag(covariance)))
    assert correlation[np.triu_indices(3, 1)].min() > 0.2  # the classes really are correlated in this problem


def test_per_class_intervals_are_logit_wald_intervals_of_the_direct_variance():
    labels, scores = tied_problem(seed=8, num_cases=250)
    names = ["a", "b", "c", "d"]
    result = mla.multilabel_roc_auc(labels, scores, label_names=names, confidence_level=0.9, interval="delong")
    z = NormalDist().inv_cdf(0.95)
    for column, name in enumerate(names):
        auc, v10, v01 = naive_delong(labels[:, column] == 1, scores[:, column])
        se = math.sqrt(v10.var(ddof=1) / v10.size + v01.var(ddof=1) / v01.size)
        logit, half = math.log(auc / (1 - auc)), z * se / (auc * (1 - auc))
        assert result[f"roc_auc_{name}_ci_low"] == pytest.approx(1 / (1 + math.exp(-(logit - half))), abs=1e-12)
        assert result[f"roc_auc_{name}_ci_high"] == pytest.approx(1 / (1 + math.exp(-(logit + half))), abs=1e-12)
        assert result[f"roc_auc_{name}_ci_low"] < result[f"roc_auc_{name}"] < result[f"roc_auc_{name}_ci_high"]


def test_macro_interval_uses_the_full_covariance():
    labels, scores = tied_problem(seed=9, num_cases=400)
    aucs, covariance = mla.delong_covariance(labels, scores)
    result = mla.multilabel_roc_auc(labels, scores, confidence_level=0.95, interval="delong")
    se = math.sqrt(covariance.mean())  # Var(mean) = sum of all covariances / C^2
    z = NormalDist().inv_cdf(0.975)
    macro = aucs.mean()
    logit, half = math.log(macro / (1 - macro)), z * se / (macro * (1 - macro))
    assert result["roc_auc_ci_low"] == pytest.approx(1 / (1 + math.exp(-(logit - half))), abs=1e-12)
    assert result["roc_auc_ci_high"] == pytest.approx(1 / (1 + math.exp(-(logit + half))), abs=1e-12)


def test_perfect_ranking_gets_an_interval_that_is_not_a_point():
    # Two positives and two negatives in the right order prove little: never report 1.0 (1.0-1.0).
    labels = np.array([[1], [1], [0], [0]])
    scores = [[0.9], [0.8], [0.2], [0.1]]
    for interval in ("auto", "score"):
        result = mla.multilabel_roc_auc(labels, scores, confidence_level=0.95, interval=interval)
        assert result["roc_auc"] == result["roc_auc_ci_high"] == 1.0
        assert 0.0 < result["roc_auc_ci_low"] < 0.8
    # DeLong's variance of a perfect ranking is 0: its logit interval is the point, which is why "auto" avoids it.
    delong = mla.multilabel_roc_auc(labels, scores, confidence_level=0.95, interval="delong")
    assert delong == {"roc_auc": 1.0, "roc_auc_ci_low": 1.0, "roc_auc_ci_high": 1.0}


# ------------------------------------------------------------------------------------- undefined classes


def problem_with_undefined_classes():
    labels, scores = tied_problem(seed=10, num_cases=200, prevalences=(0.3, 0.0, 0.4, 1.0))
    labels[:, 1], labels[:, 3] = 0, 1
    return labels, scores


NAMES = ["Atelectasis", "Hernia", "Effusion", "Pneumonia"]


def test_undefined_classes_are_nan_left_out_of_averages_and_named_in_warnings():
    labels, scores = problem_with_undefined_classes()
    with pytest.warns(mla.UndefinedAUCWarning) as caught:
        result = mla.multilabel_roc_auc(labels, scores, label_names=NAMES, confidence_level=0.95)
    messages = " ".join(str(warning.message) for warning in caught)
    assert "'Hernia'" in messages and "'Pneumonia'" in messages and "'Effusion'" not in messages
    assert math.isnan(result["roc_auc_Hernia"]) and math.isnan(result["roc_auc_Pneumonia"])
    assert math.isnan(result["roc_auc_Hernia_ci_low"]) and math.isnan(result["roc_auc_Hernia_ci_high"])
    defined = [0, 2]
    expected_macro = roc_auc_score(labels[:, defined], scores[:, defined], average="macro")
    assert result["roc_auc"] == pytest.approx(expected_macro, abs=1e-12)
    assert result["roc_auc_ci_low"] < result["roc_auc"] < result["roc_auc_ci_high"]


def test_undefined_classes_weighted_and_micro():
    labels, scores = problem_with_undefined_classes()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mla.UndefinedAUCWarning)
        weighted = mla.multilabel_roc_auc(labels, scores, average="weighted")["roc_auc"]
        micro = mla.multilabel_roc_auc(labels, scores, average="micro")["roc_auc"]
        per_class = mla.multilabel_roc_auc(labels, scores, average=None)["roc_auc"]
    defined = [0, 2]
    expected_weighted = roc_auc_score(labels[:, defined], scores[:, defined], average="weighted")
    assert weighted == pytest.approx(expected_weighted, abs=1e-12)
    # micro pools every entry, undefined columns included, exactly as scikit-learn does
    assert micro == pytest.approx(roc_auc_score(labels, scores, average="micro"), abs=1e-12)
    assert [math.isnan(value) for value in per_class] == [False, True, False, True]


def test_no_defined_class_gives_nan_average():
    with pytest.warns(mla.UndefinedAUCWarning):
        result = mla.multilabel_roc_auc([[0, 1], [0, 1]], [[0.1, 0.2], [0.3, 0.4]], confidence_level=0.95)
    assert all(math.isnan(value) for value in result.values())


# -------------------------------------------------------------------------------------- plain JSON output


def assert_plain_numbers(result):
    """Plain Python floats, and plain ints for the positive counts."""
    for key, value in result.items():
        values = value if isinstance(value, list) else [value]
        expected = int if key.endswith("_positives") else float
        assert all(type(item) is expected for item in values), (key, value)


@pytest.mark.parametrize("average", ["macro", "micro", "weighted", None])
def test_every_value_is_a_plain_float_and_json_safe(metric, average):
    labels, scores = tied_problem(seed=11)
    for result in (
        mla.multilabel_roc_auc(labels, scores, average=average, label_names=NAMES, confidence_level=0.95),
        metric.compute(
            references=labels, prediction_scores=scores, average=average, label_names=NAMES, confidence_level=0.95
        ),
    ):
        assert_plain_numbers(result)
        assert json.loads(json.dumps(result, allow_nan=False)) == result
        assert list(result)[:3] == ["roc_auc", "roc_auc_ci_low", "roc_auc_ci_high"]
        assert set(result) == {"roc_auc", "roc_auc_ci_low", "roc_auc_ci_high"} | (
            {"roc_auc_positives"} if average is None else set()
        ) | {f"roc_auc_{name}{suffix}" for name in NAMES for suffix in ("", "_ci_low", "_ci_high", "_positives")}


def test_positive_counts_come_with_the_intervals():
    labels, scores = tied_problem(seed=16)
    counts = labels.sum(axis=0).tolist()
    named = mla.multilabel_roc_auc(labels, scores, label_names=NAMES, confidence_level=0.95)
    assert [named[f"roc_auc_{name}_positives"] for name in NAMES] == counts
    assert mla.multilabel_roc_auc(labels, scores, average=None, confidence_level=0.95)["roc_auc_positives"] == counts
    assert not any(key.endswith("_positives") for key in mla.multilabel_roc_auc(labels, scores, label_names=NAMES))


def test_nan_is_written_as_json_nan_and_read_back():
    labels, scores = problem_with_undefined_classes()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mla.UndefinedAUCWarning)
        result = mla.multilabel_roc_auc(labels, scores, label_names=NAMES)
    text = json.dumps(result)
    assert '"roc_auc_Hernia": NaN' in text
    assert math.isnan(json.loads(text)["roc_auc_Hernia"])


# ------------------------------------------------------------------------------------------------ bad input

GOOD_INPUTS = {"references": [[1, 0], [0, 1]], "prediction_scores": [[0.1, 0.2], [0.3, 0.4]]}


def bad(case_id: str, message: str, **changes):
    return pytest.param({**GOOD_INPUTS, **changes}, message, id=case_id)


BAD_INPUTS = [
    bad("shapes", r"shape \(2, 2\).*shape \(2, 3\)", prediction_scores=[[0.1, 0.2, 0.3], [0.3, 0.4, 0.5]]),
    bad("reference-2", r"0 or 1.*row 1, column 0", references=[[1, 0], [2, 1]]),
    bad("reference-half", r"0 or 1.*row 1, column 0", references=[[1, 0], [0.5, 1]]),
    bad("reference-negative", r"0 or 1.*row 0, column 1", references=[[1, -1], [0, 1]]),
    bad("nan-score", r"finite.*row 0, column 1", prediction_scores=[[0.1, float("nan")], [0.3, 0.4]]),
    bad("inf-score", r"finite.*row 1, column 0", prediction_scores=[[0.1, 0.2], [float("inf"), 0.4]]),
    bad("label-names-length", r"label_names has 1 names.*2 classes", label_names=["a"]),
    bad("confidence-1", r"confidence_level", confidence_level=1.0),
    bad("confidence-0", r"confidence_level", confidence_level=0),
    bad("confidence-95", r"confidence_level", confidence_level=95),
    bad("average", r"unknown average 'samples'", average="samples"),
]


@pytest.mark.parametrize("kwargs, message", BAD_INPUTS)
def test_bad_input_raises_a_clear_value_error(kwargs, message):
    kwargs = dict(kwargs)
    references, scores = kwargs.pop("references"), kwargs.pop("prediction_scores")
    with pytest.raises(ValueError, match=message):
        mla.multilabel_roc_auc(references, scores, **kwargs)


@pytest.mark.parametrize("kwargs, message", BAD_INPUTS)
def test_bad_input_raises_a_clear_value_error_through_evaluate(metric, kwargs, message):
    with pytest.raises(ValueError, match=message):
        metric.compute(**kwargs)


def test_ragged_and_one_dimensional_inputs_are_rejected():
    with pytest.raises(ValueError, match="references must be a rectangular"):
        mla.multilabel_roc_auc([[1, 0], [1]], [[0.1, 0.2], [0.3, 0.4]])
    with pytest.raises(ValueError, match="2-dimensional.*reshape"):
        mla.multilabel_roc_auc([1, 0, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="prediction_scores must hold real numbers"):
        mla.multilabel_roc_auc([[1], [0]], [["a"], ["b"]])


def test_compute_without_any_example_says_so(metric):
    with pytest.raises(ValueError, match="call `add` or `add_batch`"):  # evaluate's own message
        metric.compute()


def test_a_batch_with_another_number_of_classes_is_rejected(metric):
    metric.add_batch(references=[[1, 0], [0, 1]], prediction_scores=[[0.1, 0.2], [0.3, 0.4]])
    metric.add_batch(references=[[1, 0, 1]], prediction_scores=[[0.1, 0.2, 0.3]])
    with pytest.raises(ValueError, match="C entries in every row, and in every batch"):
        metric.compute()


# ------------------------------------------------------------------------------------------------- batching


def test_add_batch_then_compute_equals_one_compute(metric):
    labels, scores = tied_problem(seed=12, num_cases=301)
    options = {"label_names": NAMES, "confidence_level": 0.95}
    for average in ("macro", "micro", "weighted", None):
        for start in range(0, 301, 64):
            metric.add_batch(references=labels[start:start + 64], prediction_scores=scores[start:start + 64])
        batched = metric.compute(average=average, **options)
        assert batched == metric.compute(references=labels, prediction_scores=scores, average=average, **options)


def test_add_one_example_at_a_time_equals_one_compute(metric):
    labels, scores = tied_problem(seed=13, num_cases=40)
    for reference, score in zip(labels.tolist(), scores.tolist()):
        metric.add(references=reference, prediction_scores=score)
    assert metric.compute() == metric.compute(references=labels, prediction_scores=scores)


# ------------------------------------------------------------------------------------------ documentation


def run_doctest(text: str, name: str, globs: dict) -> doctest.TestResults:
    parser, runner = doctest.DocTestParser(), doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    test = parser.get_doctest(text, globs, name, None, 0)
    runner.run(test, clear_globs=False)
    globs.update(test.globs)  # later blocks build on earlier ones, as a reader's session would
    return runner.summarize(verbose=False)


def test_module_docstring_examples_run(metric, monkeypatch):
    monkeypatch.chdir(REPO)  # the examples load the module by its path in the repository
    module = sys.modules[type(metric).__module__]
    results = run_doctest(module._KWARGS_DESCRIPTION, "roc_auc_multilabel._KWARGS_DESCRIPTION", {})
    assert results.attempted > 5 and results.failed == 0


def test_every_example_in_the_metric_card_runs(monkeypatch):
    pytest.importorskip("evaluate")
    monkeypatch.chdir(REPO)
    monkeypatch.setattr(sys, "path", list(sys.path))  # the card's last example extends sys.path
    card = (METRIC_DIR / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", card, flags=re.DOTALL)
    assert len(blocks) >= 5
    globs: dict = {}
    for number, block in enumerate(blocks):
        assert block.lstrip().startswith(">>>"), f"README block {number} is not a doctest"
        results = run_doctest(block, f"README.md python block {number}", globs)
        assert results.failed == 0, f"README.md python block {number} failed"


def test_a_bad_option_after_add_batch_is_a_clear_error(metric):
    # evaluate reads the added batches back before it calls _compute, which checks the options: the batches of a call
    # that fails are spent, and the module is ready for new ones.
    labels, scores = tied_problem(seed=14, num_cases=60)
    metric.add_batch(references=labels, prediction_scores=scores)
    with pytest.raises(ValueError, match="label_names has 2 names"):
        metric.compute(label_names=["a", "b"])
    metric.add_batch(references=labels, prediction_scores=scores)
    assert metric.compute()["roc_auc"] == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
