"""The metric through evaluate's own machinery: `_info` and `_compute` only, `evaluate.combine`, the "predictions"
config, one warning class for both entry points, and what evaluate's Arrow storage does to the inputs."""

from __future__ import annotations

import inspect
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from metrics.roc_auc_multilabel import multilabel_auc as mla

evaluate = pytest.importorskip("evaluate")

METRIC_DIR = Path(__file__).resolve().parents[1] / "metrics" / "roc_auc_multilabel"
REFERENCES = [[1, 0], [0, 1], [1, 1], [0, 0], [1, 0], [0, 1]]
SCORES = [[0.9, 0.2], [0.3, 0.6], [0.7, 0.8], [0.2, 0.1], [0.4, 0.3], [0.6, 0.4]]


@pytest.fixture(scope="module")
def metric():
    return evaluate.load(str(METRIC_DIR))


def test_the_module_defines_only_info_and_compute(metric):
    own = {name for name, _ in inspect.getmembers(type(metric)) if name in type(metric).__dict__}
    assert own & {"compute", "add_batch", "add", "_init_writer", "_finalize"} == set()
    assert {"_info", "_compute"} <= own


def test_evaluate_combine_works(metric):
    combined = evaluate.combine([metric])
    expected = roc_auc_score(REFERENCES, SCORES)
    assert combined.compute(references=REFERENCES, prediction_scores=SCORES)["roc_auc"] == pytest.approx(expected)
    combined.add_batch(references=REFERENCES[:3], prediction_scores=SCORES[:3])
    combined.add_batch(references=REFERENCES[3:], prediction_scores=SCORES[3:])
    assert combined.compute()["roc_auc"] == pytest.approx(expected)


def test_the_predictions_config_takes_evaluates_usual_spelling():
    with_predictions = evaluate.load(str(METRIC_DIR), "predictions")
    expected = roc_auc_score(REFERENCES, SCORES)
    assert with_predictions.compute(references=REFERENCES, predictions=SCORES)["roc_auc"] == pytest.approx(expected)
    combined = evaluate.combine([with_predictions])
    result = combined.compute(references=REFERENCES, predictions=SCORES, average=None)
    assert result["roc_auc"] == pytest.approx(roc_auc_score(REFERENCES, SCORES, average=None))


def test_the_other_spelling_is_refused_with_a_message_that_names_the_input(metric):
    with pytest.raises(ValueError, match=r"inputs are missing: \['prediction_scores'\]"):
        metric.compute(references=REFERENCES, predictions=SCORES)


def test_an_unknown_config_names_the_known_ones():
    with pytest.raises(ValueError, match="unknown config 'multilabel'.*'default' or 'predictions'"):
        evaluate.load(str(METRIC_DIR), "multilabel")


def test_both_entry_points_raise_one_warning_class(metric):
    # evaluate imports the folder as a copy in its module cache: a second multilabel_auc module object.
    copied = sys.modules[type(metric).__module__.rsplit(".", 1)[0] + ".multilabel_auc"]
    assert copied is not mla
    assert copied.UndefinedAUCWarning is mla.UndefinedAUCWarning
    undefined = {"references": [[1, 0], [0, 0]], "prediction_scores": [[0.2, 0.1], [0.1, 0.3]]}
    with warnings.catch_warnings():
        warnings.filterwarnings("error", category=copied.UndefinedAUCWarning)
        with pytest.raises(mla.UndefinedAUCWarning, match="ROC AUC of class 'column 1'"):
            mla.multilabel_roc_auc(undefined["references"], undefined["prediction_scores"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # anything but the filtered warning would raise
        warnings.filterwarnings("ignore", message="ROC AUC", category=mla.UndefinedAUCWarning)
        assert metric.compute(**undefined) == {"roc_auc": 1.0}


@pytest.mark.parametrize(
    "references",
    [[[True, False], [False, True]], np.array([[1, 0], [0, 1]], dtype=np.int8), np.array([[1.0, 0.0], [0.0, 1.0]])],
    ids=["bool", "int8", "float"],
)
def test_references_of_any_type_are_stored_and_read_back(metric, references):
    scores = np.array([[0.9, 0.2], [0.3, 0.6]], dtype=np.float32)
    assert metric.compute(references=references, prediction_scores=scores) == {"roc_auc": 1.0}


def test_a_fractional_reference_reaches_the_check_instead_of_being_truncated(metric):
    with pytest.raises(ValueError, match=r"references must be 0 or 1; row 1, column 0 holds 0.5"):
        metric.compute(references=[[1, 0], [0.5, 1]], prediction_scores=[[0.1, 0.2], [0.3, 0.4]])


def test_integer_scores_through_evaluate_are_exact_or_refused(metric):
    # evaluate stores scores as float64: exact up to 2**53; a NumPy array beyond it is refused by evaluate itself
    assert metric.compute(references=[[0], [1]], prediction_scores=np.array([[2**52], [2**52 + 1]]))["roc_auc"] == 1.0
    with pytest.raises(ValueError, match="don't match the expected format"):
        metric.compute(references=[[0], [1]], prediction_scores=np.array([[2**53], [2**53 + 1]]))


def test_intervals_and_counts_through_evaluate_equal_the_plain_function(metric):
    rng = np.random.default_rng(0)
    labels = (rng.random((300, 3)) < [0.03, 0.2, 0.5]).astype(int)
    scores = labels + rng.normal(size=labels.shape)
    options = {"label_names": ["a", "b", "c"], "confidence_level": 0.9}
    for interval in ("auto", "delong", "score"):
        through_evaluate = metric.compute(references=labels, prediction_scores=scores, interval=interval, **options)
        assert through_evaluate == mla.multilabel_roc_auc(labels, scores, interval=interval, **options)
    with pytest.raises(ValueError, match="unknown interval 'bootstrap'"):
        metric.compute(references=labels, prediction_scores=scores, interval="bootstrap")
