"""Statistical properties of the multi-label ROC AUC: rank invariances (hypothesis) and the coverage of its
confidence intervals on simulated data with a known true AUC."""

from __future__ import annotations

import math
import warnings
from statistics import NormalDist

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from metrics.roc_auc_multilabel import multilabel_auc as mla


AVERAGES = ["macro", "micro", "weighted", None]


@st.composite
def labelled_scores(draw):
    """Small problems with integer scores in [-6, 6] (so ties are common and transforms are exact)."""
    num_cases = draw(st.integers(2, 25))
    num_classes = draw(st.integers(1, 4))
    labels = draw(hnp.arrays(np.int8, (num_cases, num_classes), elements=st.integers(0, 1)))
    scores = draw(hnp.arrays(np.int64, (num_cases, num_classes), elements=st.integers(-6, 6))).astype(np.float64)
    return labels, scores


def quiet_auc(labels, scores, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mla.UndefinedAUCWarning)
        return mla.multilabel_roc_auc(labels, scores, **options)


def assert_same(first, second, atol=1e-12):
    assert first.keys() == second.keys()
    for key in first:
        np.testing.assert_allclose(first[key], second[key], rtol=0, atol=atol, equal_nan=True, err_msg=key)


STRICTLY_INCREASING = {
    "affine": lambda x: 3.0 * x - 7.0,
    "cube": lambda x: x**3 + x,
    "exp": lambda x: np.exp(x / 2.0),
    "sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x / 3.0)),
}


@settings(max_examples=40, deadline=None)
@given(
    problem=labelled_scores(), transform=st.sampled_from(sorted(STRICTLY_INCREASING)), average=st.sampled_from(AVERAGES)
)
def test_a_strictly_increasing_transform_changes_nothing(problem, transform, average):
    labels, scores = problem
    options = {"average": average, "confidence_level": 0.9}
    transformed = STRICTLY_INCREASING[transform](scores)
    assert_same(quiet_auc(labels, scores, **options), quiet_auc(labels, transformed, **options))


@settings(max_examples=40, deadline=None)
@given(problem=labelled_scores(), average=st.sampled_from(AVERAGES))
def test_negating_the_scores_gives_one_minus_the_auc(problem, average):
    labels, scores = problem
    auc = quiet_auc(labels, scores, average=average)["roc_auc"]
    negated = quiet_auc(labels, -scores, average=average)["roc_auc"]
    np.testing.assert_allclose(negated, 1.0 - np.asarray(auc), rtol=0, atol=1e-12, equal_nan=True)


@settings(max_examples=40, deadline=None)
@given(problem=labelled_scores(), seed=st.integers(0, 2**32 - 1), average=st.sampled_from(AVERAGES))
def test_permuting_the_rows_changes_nothing(problem, seed, average):
    labels, scores = problem
    order = np.random.default_rng(seed).permutation(labels.shape[0])
    names = [f"c{i}" for i in range(labels.shape[1])]
    options = {"average": average, "confidence_level": 0.95, "label_names": names}
    assert_same(quiet_auc(labels, scores, **options), quiet_auc(labels[order], scores[order], **options))


# ------------------------------------------------------------------------------------------ interval coverage

# Four findings with correlated labels (a shared latent factor) and correlated scores (a shared noise factor).
# Score of class c: offset_c + shift_c * label_c + noise_c with noise_c ~ N(0, 1) independent of the labels, so the
# true AUC of class c is Phi(shift_c / sqrt(2)); class-specific offsets make the micro average differ from the others.
THRESHOLDS = np.array([1.6, 1.0, 0.5, 1.2])
SHIFTS = np.array([1.2, 0.8, 1.0, 1.5])
OFFSETS = np.array([0.0, 0.5, -0.3, 0.2])
PHI = NormalDist().cdf


def simulate(rng, num_cases):
    label_latent = 0.6 * rng.normal(size=(num_cases, 1)) + 0.8 * rng.normal(size=(num_cases, 4))
    labels = (label_latent > THRESHOLDS).astype(np.int8)
    noise = 0.7 * rng.normal(size=(num_cases, 1)) + math.sqrt(1 - 0.49) * rng.normal(size=(num_cases, 4))
    return labels, OFFSETS + SHIFTS * labels + noise


def true_values():
    prevalence = np.array([1.0 - PHI(t) for t in THRESHOLDS])
    per_class = np.array([PHI(shift / math.sqrt(2.0)) for shift in SHIFTS])
    pair_weight = np.outer(prevalence, 1.0 - prevalence)  # P(positive entry of class c, negative entry of class d)
    pair_auc = np.array(
        [[PHI((OFFSETS[c] + SHIFTS[c] - OFFSETS[d]) / math.sqrt(2.0)) for d in range(4)] for c in range(4)]
    )
    return {
        "per_class": per_class,
        "macro": per_class.mean(),
        "weighted": (prevalence * per_class).sum() / prevalence.sum(),
        "micro": (pair_weight * pair_auc).sum() / pair_weight.sum(),
    }


@pytest.fixture(scope="module")
def coverage():
    """Share of 95% intervals that contain the true AUC, over 400 simulated data sets of 600 cases."""
    rng = np.random.default_rng(20240601)
    truth = true_values()
    names = ["a", "b", "c", "d"]
    hits = {"macro": 0, "weighted": 0, "micro": 0, "per_class": 0}
    repetitions = 400
    for _ in range(repetitions):
        labels, scores = simulate(rng, 600)
        for average in ("macro", "weighted", "micro"):
            result = mla.multilabel_roc_auc(labels, scores, average=average, label_names=names, confidence_level=0.95)
            hits[average] += result["roc_auc_ci_low"] <= truth[average] <= result["roc_auc_ci_high"]
        hits["per_class"] += sum(
            result[f"roc_auc_{name}_ci_low"] <= value <= result[f"roc_auc_{name}_ci_high"]
            for name, value in zip(names, truth["per_class"])
        )
    return {
        "macro": hits["macro"] / repetitions,
        "weighted": hits["weighted"] / repetitions,
        "micro": hits["micro"] / repetitions,
        "per_class": hits["per_class"] / (4 * repetitions),
    }


@pytest.mark.parametrize("quantity", ["per_class", "macro", "weighted", "micro"])
def test_95_percent_intervals_cover_the_true_auc_95_percent_of_the_time(coverage, quantity):
    # 400 repetitions: a binomial standard error of 1.1 points; the band is about 3 standard errors wide each side.
    assert 0.915 <= coverage[quantity] <= 0.985, coverage

