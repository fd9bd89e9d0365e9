"""The evaluation's parts on their own: Wilson intervals, scaling fits, label mapping by name, files and bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from scipy.optimize import minimize

from training.arguments import DataTrainingArguments, EvaluationArguments
from training.evaluation.calibration import fit_scaling, read_scaling, write_scaling
from training.evaluation.operating_points import choose_thresholds, read_thresholds
from training.evaluation.predictions import ScoredSplit, read_predictions, write_predictions
from training.evaluation.proportions import proportion, wilson_interval
from training.evaluation.reliability_plot import plot_reliability
from training.evaluation.scoring import finding_columns

NAMES = ("Atelectasis", "Effusion")


@pytest.mark.parametrize(
    "successes, trials, low, high",
    # Newcombe (1998), Statistics in Medicine 17:857-872, Table I, method 3 (Wilson score, no continuity correction)
    [(81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605), (0, 20, 0.0, 0.1611), (1, 29, 0.0061, 0.1718)],
)
def test_wilson_intervals_match_published_values(successes, trials, low, high):
    rate = proportion(successes, trials)
    assert rate["value"] == pytest.approx(successes / trials)
    assert (round(rate["ci_low"], 4), round(rate["ci_high"], 4)) == (low, high)


def test_wilson_intervals_never_collapse_and_are_nan_without_trials():
    value, low, high = wilson_interval([0, 5, 0], [5, 5, 0])
    assert low[0] == 0.0 and 0.0 < high[0] < 1.0  # 0/5 is not "certainly 0"
    assert high[1] == 1.0 and 0.0 < low[1] < 1.0  # nor is 5/5 "certainly 1"
    with pytest.raises(ValueError):
        wilson_interval([6], [5])
    assert np.isnan(value[2]) and np.isnan(low[2]) and np.isnan(high[2])


def calibration_problem(seed=0, num_images=2000):
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=2.0, size=(num_images, 2))
    truth = 1 / (1 + np.exp(-(0.5 * logits + np.array([0.3, -0.8]))))  # over-confident and shifted
    labels = (rng.random(logits.shape) < truth).astype(np.int8)
    return labels, 1 / (1 + np.exp(-logits))


def test_platt_scaling_is_the_maximum_likelihood_logistic_fit_on_the_logit():
    labels, probabilities = calibration_problem()
    scaling = fit_scaling(labels, probabilities, NAMES, "platt")
    logits = np.log(probabilities / (1 - probabilities))
    for column, name in enumerate(NAMES):
        def negative_log_likelihood(parameters):
            scaled = parameters[0] * logits[:, column] + parameters[1]
            return np.sum(np.logaddexp(0, scaled) - labels[:, column] * scaled)

        best = minimize(negative_log_likelihood, x0=[1.0, 0.0], method="Nelder-Mead",
                        options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 10000})
        assert scaling.slopes[name] == pytest.approx(best.x[0], abs=1e-4)
        assert scaling.intercepts[name] == pytest.approx(best.x[1], abs=1e-4)
    assert scaling.slopes["Atelectasis"] == pytest.approx(0.5, abs=0.1)  # recovers the planted slope


def test_scaling_round_trips_through_its_file_and_skips_what_it_cannot_fit(tmp_path):
    labels, probabilities = calibration_problem(1, 300)
    labels[:, 1] = 0  # Effusion: no positive image
    scaling = fit_scaling(labels, probabilities, NAMES, "temperature")
    assert "no positive image" in scaling.not_fitted["Effusion"] and scaling.slopes["Effusion"] == 1.0
    reversed_labels = labels.copy()
    reversed_labels[:, 0] = (probabilities[:, 0] < 0.5).astype(np.int8)  # a model that ranks Atelectasis backwards
    assert "not positive" in fit_scaling(reversed_labels, probabilities, NAMES, "platt").not_fitted["Atelectasis"]
    read_back = read_scaling(write_scaling(tmp_path, scaling), NAMES)
    np.testing.assert_allclose(read_back.apply(probabilities, NAMES), scaling.apply(probabilities, NAMES), rtol=1e-12)
    (tmp_path / "calibration.json").write_text(json.dumps({"method": "isotonic", "parameters": {}}))
    with pytest.raises(ValueError, match="calibration.json"):
        read_scaling(tmp_path / "calibration.json", NAMES)


def test_findings_are_matched_by_name_in_any_order_with_other_outputs_ignored():
    labels = ["No Finding", "Effusion", "Infiltrate", "Atelectasis", "Pleural Thickening"]
    id2label = {str(index): name for index, name in enumerate(labels)}  # JSON configs have string keys
    assert finding_columns(id2label, ["Atelectasis", "Effusion", "Infiltration", "Pleural_Thickening"]) == [3, 1, 2, 4]


@pytest.mark.parametrize(
    "id2label, message",
    [
        ({0: "Atelectasis", 1: "Cardiomegaly"}, "no output for Effusion"),
        ({i: f"LABEL_{i}" for i in range(14)}, "LABEL_0"),
        ({0: "Atelectasis", 1: "Atelectasis", 2: "Effusion"}, "names Atelectasis twice"),
        ({0: "Atelectasis-like opacity", 1: "Effusion"}, "no output for Atelectasis"),  # never by substring
    ],
)
def test_a_model_without_the_findings_is_refused_with_their_names(id2label, message):
    with pytest.raises(ValueError, match=message):
        finding_columns(id2label, ["Atelectasis", "Effusion"])


def scored(num_images=6, **overrides):
    fields = dict(
        split="test", image_ids=[f"{i:08d}_000.png" for i in range(num_images)], label_names=NAMES,
        references=np.eye(num_images, 2, dtype=int), probabilities=np.full((num_images, 2), 0.5),
        metadata={"sex": np.array(["M", "F"] * (num_images // 2)), "age": np.arange(num_images)},
    )
    fields.update(overrides)
    return ScoredSplit(**fields)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"probabilities": np.array([[0.5, 0.5]] * 5 + [[0.5, np.nan]])}, "Effusion for image 00000005_000.png"),
        ({"probabilities": np.array([[0.5, 1.5]] * 6)}, "not in \\[0, 1\\]"),
        ({"references": np.full((6, 2), 2)}, "not 0 or 1"),
        ({"image_ids": ["a.png"] * 6}, "'a.png' appears 6 times"),
        ({"probabilities": np.full((5, 2), 0.5)}, "must both be"),
    ],
)
def test_bad_predictions_are_refused_naming_the_image_and_finding(overrides, message):
    with pytest.raises(ValueError, match=message):
        scored(**overrides)


def test_predictions_round_trip_through_parquet(tmp_path):
    original = scored(description="NIH's official test list")
    path = write_predictions(tmp_path / "predictions_test.parquet", original)
    read_back = read_predictions(path)
    assert read_back.split == "test" and read_back.description == "NIH's official test list"
    assert list(read_back.image_ids) == list(original.image_ids) and read_back.label_names == NAMES
    np.testing.assert_array_equal(read_back.references, original.references)
    np.testing.assert_array_equal(read_back.probabilities, original.probabilities)
    assert list(read_back.metadata["sex"]) == list(original.metadata["sex"])
    import pyarrow.parquet as pq

    columns = pq.read_schema(path).names
    assert columns == ["image_id", "sex", "age", "label_Atelectasis", "label_Effusion", "prob_Atelectasis",
                       "prob_Effusion"]


def test_unreadable_prediction_files_are_named(tmp_path):
    (tmp_path / "notes.parquet").write_text("not parquet")
    with pytest.raises(ValueError, match="notes.parquet"):
        read_predictions(tmp_path / "notes.parquet")
    path = write_predictions(tmp_path / "predictions_test.parquet", scored())
    with pytest.raises(ValueError, match="no column label_Hernia, prob_Hernia"):
        read_predictions(path, ["Atelectasis", "Hernia"])


def test_threshold_files_are_checked_when_read(tmp_path):
    path = tmp_path / "thresholds.json"
    path.write_text(json.dumps({"rule": "youden", "thresholds": {"Atelectasis": 0.3}}))
    with pytest.raises(ValueError, match="no threshold for Effusion"):
        read_thresholds(path, NAMES)
    path.write_text(json.dumps({"rule": "youden", "thresholds": {"Atelectasis": 0.3, "Effusion": 1.3}}))
    with pytest.raises(ValueError, match="'Effusion' is 1.3"):
        read_thresholds(path, NAMES)
    with pytest.raises(ValueError, match="target sensitivity"):
        choose_thresholds(np.eye(4, 2), np.full((4, 2), 0.5), NAMES, rule="sensitivity")
    with pytest.raises(ValueError, match="unknown threshold rule"):
        choose_thresholds(np.eye(4, 2), np.full((4, 2), 0.5), NAMES, rule="roc")


def test_the_evaluation_arguments_resolve_the_rule_and_refuse_contradictions():
    assert EvaluationArguments().threshold_rule == "youden"
    assert EvaluationArguments(target_sensitivity=0.9).threshold_rule == "sensitivity"
    for kwargs, message in [({"threshold_rule": "sensitivity"}, "needs --target_sensitivity"),
                            ({"threshold_rule": "max_f1", "target_sensitivity": 0.9}, "only applies"),
                            ({"target_sensitivity": 1.5}, "in \\(0, 1\\]"), ({"ece_bins": 1}, "--ece_bins"),
                            ({"confidence_level": 1.0}, "--confidence_level")]:
        with pytest.raises(ValueError, match=message):
            EvaluationArguments(**kwargs)


def test_the_reliability_diagram_is_a_png(tmp_path):
    labels, probabilities = calibration_problem(2, 300)
    plots = plot_reliability(labels, probabilities, NAMES, tmp_path, split="test",
                             scaled_probabilities=probabilities ** 1.2, scaling_name="temperature scaling")
    (caption, file_name), = plots.items()
    assert file_name == "reliability_test.png" and "calibration" in caption
    with Image.open(tmp_path / file_name) as image:
        assert image.format == "PNG" and image.width > 500


def test_split_lists_are_parsed_for_the_builder_and_refused_elsewhere(tmp_path):
    arguments = DataTrainingArguments(data_dir=str(tmp_path), split_lists=["train=a.txt", "test=b.txt"])
    assert arguments.split_list_files() == {"train": "a.txt", "test": "b.txt"}
    for split_lists, message in [(["train=a.txt"], "at least train=FILE and test=FILE"),
                                 (["train=a.txt", "test=b.txt", "test=c.txt"], "'test=c.txt'"),
                                 (["training=a.txt", "test=b.txt"], "'training=a.txt'")]:
        with pytest.raises(ValueError, match=message):
            DataTrainingArguments(data_dir=str(tmp_path), split_lists=split_lists)
    with pytest.raises(ValueError, match="--split_lists only applies with --dataset_name nih_chestxray14"):
        DataTrainingArguments(dataset_name="me/exported", split_lists=["train=a.txt", "test=b.txt"])
    with pytest.raises(ValueError, match="--allow_split_overlap only applies with --split_lists"):
        DataTrainingArguments(data_dir=str(tmp_path), allow_split_overlap=True)


def test_a_perfectly_separated_finding_is_noted_in_the_scaling():
    labels, probabilities = calibration_problem(3, 400)
    labels[:, 0] = (probabilities[:, 0] > 0.5).astype(np.int8)  # validation separates Atelectasis perfectly
    scaling = fit_scaling(labels, probabilities, NAMES, "temperature")
    assert "separates it perfectly" in scaling.notes["Atelectasis"] and "Effusion" not in scaling.notes
    assert scaling.slopes["Atelectasis"] > 10  # a temperature near 0: close to a step
