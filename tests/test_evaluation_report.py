"""Every number of ``evaluation_<split>.json``, checked against an independent computation from the Parquet file.

The evaluation is written by ``write_evaluation`` (the code ``training/run.py --do_predict`` and
``training/evaluate.py`` run) for a synthetic validation and test split with ties, a finding absent from the test
split, subgroups in which findings have no positive image, and a "No Finding" share. The test then reads back
``predictions_<split>.parquet`` and recomputes each entry its own way: scikit-learn for AUCs, ROC curves, confusion
matrices and Brier scores; direct formulas for Wilson intervals and the ECE; a brute-force search for the thresholds;
SciPy's optimiser for the temperatures.
"""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
from scipy.optimize import minimize_scalar
from sklearn.metrics import brier_score_loss, confusion_matrix, roc_auc_score, roc_curve

from metrics.roc_auc_multilabel import roc_auc_summary
from training.evaluation.outputs import write_evaluation
from training.evaluation.predictions import ScoredSplit, read_predictions

NAMES = ("Atelectasis", "Cardiomegaly", "Effusion", "Hernia")
Z95 = 1.959963984540054
AGE_BANDS = {"0-17": (0, 17), "18-39": (18, 39), "40-59": (40, 59), "60-79": (60, 79), "80+": (80, 200)}


def wilson(successes, trials, z=Z95):
    """Wilson's score interval, written out from its definition (Wilson, 1927)."""
    if trials == 0:
        return math.nan, math.nan, math.nan
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z / (1 + z * z / trials) * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials))
    return p, max(0.0, centre - half), min(1.0, centre + half)


def assert_rate(entry, successes, trials):
    value, low, high = wilson(successes, trials)
    assert (entry["successes"], entry["trials"]) == (successes, trials)
    assert entry["value"] == pytest.approx(value, abs=1e-12, nan_ok=True)
    assert entry["ci_low"] == pytest.approx(low, abs=1e-12, nan_ok=True)
    assert entry["ci_high"] == pytest.approx(high, abs=1e-12, nan_ok=True)


def make_split(name, num_images, seed, prevalence):
    rng = np.random.default_rng(seed)
    labels = (rng.random((num_images, len(NAMES))) < prevalence).astype(np.int8)
    logits = 1.5 * labels + rng.normal(size=labels.shape) - 1.0
    probabilities = np.round(1.0 / (1.0 + np.exp(-logits)), 2)  # rounded: ties, as low-precision outputs have
    patients = rng.integers(1, num_images // 3, size=num_images)
    metadata = {
        "patient_id": patients,
        "sex": np.where(rng.random(num_images) < 0.55, "M", "F"),
        "age": rng.integers(0, 96, size=num_images),
        "view_position": np.where(rng.random(num_images) < 0.6, "PA", "AP"),
    }
    image_ids = [f"{patient:08d}_{index:03d}.png" for index, patient in enumerate(patients)]
    return ScoredSplit(name, image_ids, NAMES, labels, probabilities, metadata, description=f"the {name} split")


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("evaluation")
    validation = make_split("validation", 300, 1, [0.3, 0.15, 0.2, 0.05])
    test = make_split("test", 400, 2, [0.35, 0.1, 0.3, 0.0])  # no Hernia at all in test
    test.references[:3, 1] = 1  # ...and Cardiomegaly positives that the 80+ band may lack
    outputs = write_evaluation(output_dir, {"validation": validation, "test": test}, calibration="temperature")
    return output_dir, outputs


def read_json(path):
    return json.loads(path.read_text(encoding="utf-8"))  # Python's json reads NaN back


@pytest.fixture(scope="module", params=["validation", "test"])
def split(request, written):
    output_dir, _ = written
    scored = read_predictions(output_dir / f"predictions_{request.param}.parquet")
    return scored, read_json(output_dir / f"evaluation_{request.param}.json"), output_dir


def test_the_files_of_each_split_are_written(written):
    output_dir, outputs = written
    names = {path.name for path in output_dir.iterdir()}
    assert {"predictions_validation.parquet", "predictions_test.parquet", "evaluation_validation.json",
            "evaluation_test.json", "thresholds.json", "calibration.json", "reliability_test.png"} <= names
    assert not [name for name in names if name.endswith(".partial")]
    assert set(outputs.reports) == {"validation", "test"}


def test_the_parquet_file_holds_the_predictions_and_metadata(split):
    scored, report, _ = split
    assert report["split"] == scored.split and report["split_description"] == f"the {scored.split} split"
    assert report["num_images"] == scored.num_images
    assert report["num_patients"] == len(set(scored.metadata["patient_id"].tolist()))
    assert report["label_names"] == list(NAMES) == list(scored.label_names)
    assert set(scored.metadata) == {"patient_id", "sex", "age", "view_position"}


def test_prevalences_are_counted_with_wilson_intervals(split):
    scored, report, _ = split
    for column, name in enumerate(NAMES):
        assert_rate(report["prevalence"][name], int(scored.references[:, column].sum()), scored.num_images)
    assert_rate(report["prevalence"]["No Finding"], int((scored.references.sum(axis=1) == 0).sum()), scored.num_images)


def test_aucs_agree_with_scikit_learn_and_undefined_ones_are_nan_and_left_out(split):
    scored, report, _ = split
    defined = []
    for column, name in enumerate(NAMES):
        entry = report["roc_auc"]["per_finding"][name]
        labels, scores = scored.references[:, column], scored.probabilities[:, column]
        assert entry["positives"] == int(labels.sum()) and entry["negatives"] == int((labels == 0).sum())
        if 0 < labels.sum() < labels.size:
            assert entry["value"] == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
            assert entry["ci_low"] < entry["value"] < entry["ci_high"]
            defined.append(entry["value"])
        else:
            assert math.isnan(entry["value"]) and math.isnan(entry["ci_low"]) and entry["interval"] is None
    macro = report["roc_auc"]["macro"]
    assert macro["findings"] == len(defined)
    assert macro["value"] == pytest.approx(np.mean(defined), abs=1e-12)
    # the intervals are the metric's own, as its summary of the split gives them
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="ROC AUC", category=RuntimeWarning)  # test has no Hernia
        summary = roc_auc_summary(scored.references, scored.probabilities, label_names=list(NAMES))
    assert macro["ci_low"] == pytest.approx(summary["macro"]["ci_low"], abs=1e-12)
    assert report["roc_auc"]["interval"] == "auto" and "DeLong" in report["roc_auc"]["interval_description"]
    if scored.split == "test":
        assert math.isnan(report["roc_auc"]["per_finding"]["Hernia"]["value"])


def brute_force_threshold(labels, scores, rule, target=None):
    """Search every distinct score as a threshold, with scikit-learn's ROC curve; ties go to the highest."""
    fpr, tpr, thresholds = roc_curve(labels, scores, drop_intermediate=False)
    fpr, tpr, thresholds = fpr[1:], tpr[1:], thresholds[1:]  # the first point is "nothing called positive"
    if rule == "youden":
        return thresholds[np.argmax(tpr - fpr)]
    if rule == "sensitivity":
        return thresholds[np.argmax(tpr >= target)]
    positives = labels.sum()
    f1 = [2 * tp / (tp + fp + positives) for tp, fp in
          ((int((labels[scores >= t] == 1).sum()), int((labels[scores >= t] == 0).sum())) for t in thresholds)]
    return thresholds[int(np.argmax(f1))]


def test_thresholds_are_chosen_on_validation_by_youden_and_saved_as_agreed(written):
    output_dir, outputs = written
    validation = read_predictions(output_dir / "predictions_validation.parquet")
    saved = read_json(output_dir / "thresholds.json")
    assert set(saved) == {"rule", "target_sensitivity", "chosen_on", "num_images", "thresholds"}
    assert saved["rule"] == "youden" and saved["target_sensitivity"] is None and saved["chosen_on"] == "validation"
    assert saved["num_images"] == validation.num_images and list(saved["thresholds"]) == list(NAMES)
    for column, name in enumerate(NAMES):
        labels, scores = validation.references[:, column], validation.probabilities[:, column]
        expected = brute_force_threshold(labels, scores, "youden")
        assert saved["thresholds"][name] == pytest.approx(expected, abs=0)


def test_the_space_reads_the_thresholds_file(written):
    findings = pytest.importorskip("findings", reason="the Space's modules are on the test path (setup.cfg)")
    output_dir, _ = written
    point = findings.read_operating_point(output_dir / "thresholds.json", list(NAMES))
    assert point.rule == "youden" and point.chosen_on == "validation"


@pytest.mark.parametrize("rule, target", [("max_f1", None), ("sensitivity", 0.9), ("sensitivity", 0.5)])
def test_the_other_rules_choose_what_a_brute_force_search_chooses(tmp_path, rule, target):
    validation = make_split("validation", 250, 5, [0.3, 0.15, 0.2, 0.05])
    outputs = write_evaluation(tmp_path, {"validation": validation}, threshold_rule=rule, target_sensitivity=target)
    saved = read_json(tmp_path / "thresholds.json")
    assert saved["rule"] == rule and saved["target_sensitivity"] == target
    for column, name in enumerate(NAMES):
        labels, scores = validation.references[:, column], validation.probabilities[:, column]
        assert saved["thresholds"][name] == brute_force_threshold(labels, scores, rule, target)
        if rule == "sensitivity":
            sensitivity = outputs.reports["validation"]["operating_points"][name]["sensitivity"]["value"]
            assert sensitivity >= target


def test_operating_points_apply_the_validation_thresholds_unchanged(split):
    scored, report, output_dir = split
    thresholds = read_json(output_dir / "thresholds.json")["thresholds"]
    assert report["operating_point_rule"]["chosen_on"] == "validation"
    assert report["operating_point_rule"]["rule"] == "youden"
    for column, name in enumerate(NAMES):
        entry = report["operating_points"][name]
        assert entry["threshold"] == thresholds[name] and entry["rule"] == "youden"
        calls = (scored.probabilities[:, column] >= thresholds[name]).astype(int)
        tn, fp, fn, tp = confusion_matrix(scored.references[:, column], calls, labels=[0, 1]).ravel()
        assert (entry["true_positives"], entry["false_positives"], entry["true_negatives"],
                entry["false_negatives"]) == (tp, fp, tn, fn)
        assert_rate(entry["sensitivity"], tp, tp + fn)
        assert_rate(entry["specificity"], tn, tn + fp)
        assert_rate(entry["ppv"], tp, tp + fp)
        assert_rate(entry["npv"], tn, tn + fn)
    thresholds_row = np.array([thresholds[name] for name in NAMES])
    has_finding = scored.references.any(axis=1)
    called_normal = ~(scored.probabilities >= thresholds_row).any(axis=1)
    assert_rate(report["no_finding_false_positive_rate"], int((has_finding & called_normal).sum()),
                int(has_finding.sum()))


def direct_ece(labels, probabilities, bins):
    total = 0.0
    for b in range(bins):
        low, high = b / bins, (b + 1) / bins
        inside = (probabilities >= low) & ((probabilities < high) if b < bins - 1 else (probabilities <= high))
        if inside.any():
            total += inside.sum() / labels.size * abs(probabilities[inside].mean() - labels[inside].mean())
    return total


def test_temperatures_are_the_maximum_likelihood_ones_on_validation(written):
    output_dir, _ = written
    validation = read_predictions(output_dir / "predictions_validation.parquet")
    saved = read_json(output_dir / "calibration.json")
    assert saved["method"] == "temperature" and saved["fitted_on"] == "validation"
    for column, name in enumerate(NAMES):
        labels = validation.references[:, column]
        logits = np.log(validation.probabilities[:, column] / (1 - validation.probabilities[:, column]))

        def negative_log_likelihood(log_temperature):
            scaled = logits / np.exp(log_temperature)
            return np.sum(np.logaddexp(0, scaled) - labels * scaled)

        best = minimize_scalar(negative_log_likelihood, bounds=(-5, 5), method="bounded", options={"xatol": 1e-10})
        assert saved["parameters"][name]["temperature"] == pytest.approx(np.exp(best.x), rel=1e-4)


def test_calibration_is_the_direct_ece_and_brier_before_and_after_scaling(split):
    scored, report, output_dir = split
    settings = report["calibration_settings"]
    assert settings["ece_bins"] == 10 and "10 equal-width bins" in settings["ece_binning"]
    assert settings["scaling"] == "temperature" and settings["scaling_fitted_on"] == "validation"
    temperatures = read_json(output_dir / "calibration.json")["parameters"]
    for column, name in enumerate(NAMES):
        entry = report["calibration"][name]
        labels, probabilities = scored.references[:, column], scored.probabilities[:, column]
        assert entry["ece"] == pytest.approx(direct_ece(labels, probabilities, 10), abs=1e-12)
        assert entry["brier"] == pytest.approx(brier_score_loss(labels, probabilities), abs=1e-12)
        assert entry["observed_rate"] == pytest.approx(labels.mean(), abs=1e-12)
        assert entry["mean_probability"] == pytest.approx(probabilities.mean(), abs=1e-12)
        logits = np.log(probabilities / (1 - probabilities))
        scaled = 1 / (1 + np.exp(-logits / temperatures[name]["temperature"]))
        assert entry["scaled"]["ece"] == pytest.approx(direct_ece(labels, scaled, 10), abs=1e-9)
        assert entry["scaled"]["brier"] == pytest.approx(np.mean((scaled - labels) ** 2), abs=1e-12)


def subgroup_masks(scored):
    sex, age, view = scored.metadata["sex"], scored.metadata["age"], scored.metadata["view_position"]
    return {
        "sex": {"M": sex == "M", "F": sex == "F"},
        "age": {band: (age >= low) & (age <= high) for band, (low, high) in AGE_BANDS.items()},
        "view_position": {"PA": view == "PA", "AP": view == "AP"},
    }


def test_each_subgroup_is_evaluated_on_its_own_images(split):
    scored, report, output_dir = split
    thresholds = read_json(output_dir / "thresholds.json")["thresholds"]
    found_undefined = False
    for attribute, groups in subgroup_masks(scored).items():
        assert list(report["subgroups"][attribute]) == list(groups)
        for name, mask in groups.items():
            entry = report["subgroups"][attribute][name]
            labels, probabilities = scored.references[mask], scored.probabilities[mask]
            assert entry["num_images"] == int(mask.sum())
            assert entry["num_patients"] == len(set(scored.metadata["patient_id"][mask].tolist()))
            defined = []
            for column, finding in enumerate(NAMES):
                auc = entry["roc_auc"]["per_finding"][finding]
                positives = int(labels[:, column].sum())
                assert auc["positives"] == positives
                if 0 < positives < labels.shape[0]:
                    assert auc["value"] == pytest.approx(roc_auc_score(labels[:, column], probabilities[:, column]),
                                                         abs=1e-12)
                    defined.append(auc["value"])
                else:
                    assert math.isnan(auc["value"])
                    found_undefined = True
                calls = probabilities[:, column] >= thresholds[finding]
                rates = entry["operating_points"][finding]
                assert_rate(rates["true_positive_rate"], int((calls & (labels[:, column] == 1)).sum()), positives)
                assert_rate(rates["false_positive_rate"], int((calls & (labels[:, column] == 0)).sum()),
                            labels.shape[0] - positives)
            macro = entry["roc_auc"]["macro"]
            assert macro["findings"] == len(defined)
            if defined:
                assert macro["value"] == pytest.approx(np.mean(defined), abs=1e-12)
            else:
                assert math.isnan(macro["value"])
            called = (probabilities >= np.array([thresholds[f] for f in NAMES])).any(axis=1)
            has_finding = labels.any(axis=1)
            assert_rate(entry["no_finding_false_positive_rate"], int((has_finding & ~called).sum()),
                        int(has_finding.sum()))
    assert found_undefined or scored.split == "validation"  # test has no Hernia: NaN in every subgroup


def test_largest_gaps_are_the_extremes_of_the_subgroups(split):
    _, report, _ = split
    for attribute, groups in report["subgroups"].items():
        gaps = report["largest_gaps"][attribute]
        for finding in NAMES:
            rates = {name: group["operating_points"][finding]["true_positive_rate"] for name, group in groups.items()}
            defined = {name: rate["value"] for name, rate in rates.items() if not math.isnan(rate["value"])}
            gap = gaps["per_finding"][finding]["true_positive_rate"]
            if len(defined) < 2:
                assert math.isnan(gap["gap"]) and gap["highest"] is None
                continue
            assert gap["gap"] == pytest.approx(max(defined.values()) - min(defined.values()), abs=1e-12)
            assert defined[gap["highest"]["subgroup"]] == max(defined.values())
            assert defined[gap["lowest"]["subgroup"]] == min(defined.values())
            assert gap["highest"]["num_images"] == groups[gap["highest"]["subgroup"]]["num_images"]
            assert gap["lowest"]["count"] == rates[gap["lowest"]["subgroup"]]["trials"]
            aucs = {name: group["roc_auc"]["per_finding"][finding]["value"] for name, group in groups.items()}
            aucs = {name: value for name, value in aucs.items() if not math.isnan(value)}
            auc_gap = gaps["per_finding"][finding]["roc_auc"]["gap"]
            if len(aucs) >= 2:
                assert auc_gap == pytest.approx(max(aucs.values()) - min(aucs.values()), abs=1e-12)
        underdiagnosis = {name: group["no_finding_false_positive_rate"]["value"] for name, group in groups.items()}
        underdiagnosis = {name: value for name, value in underdiagnosis.items() if not math.isnan(value)}
        assert gaps["no_finding_false_positive_rate"]["gap"] == pytest.approx(
            max(underdiagnosis.values()) - min(underdiagnosis.values()), abs=1e-12)


def test_the_prevalence_shift_is_shown_on_test(written):
    output_dir, _ = written
    validation = read_predictions(output_dir / "predictions_validation.parquet")
    test = read_predictions(output_dir / "predictions_test.parquet")
    report = read_json(output_dir / "evaluation_test.json")
    shift = report["prevalence_shift"]
    assert shift["reference_split"] == "validation" and shift["split"] == "test"
    for column, name in enumerate(NAMES):
        entry = shift["per_finding"][name]
        assert_rate(entry["reference"], int(validation.references[:, column].sum()), validation.num_images)
        assert_rate(entry["split"], int(test.references[:, column].sum()), test.num_images)
        assert entry["difference"] == pytest.approx(test.references[:, column].mean()
                                                    - validation.references[:, column].mean(), abs=1e-12)
    assert "No Finding" in shift["per_finding"]
    assert "prevalence_shift" not in read_json(output_dir / "evaluation_validation.json")


def test_without_validation_given_thresholds_are_used_and_nothing_is_chosen(tmp_path, written):
    from training.evaluation.operating_points import read_thresholds

    output_dir, _ = written
    saved = read_thresholds(output_dir / "thresholds.json", NAMES)
    test = read_predictions(output_dir / "predictions_test.parquet")
    outputs = write_evaluation(tmp_path, {"test": test}, operating_points=saved)
    assert not (tmp_path / "thresholds.json").exists()
    report = outputs.reports["test"]
    assert report["operating_points"]["Atelectasis"]["threshold"] == saved.thresholds["Atelectasis"]
    assert "prevalence_shift" not in report and report["calibration_settings"]["scaling"] is None
    without = write_evaluation(tmp_path / "bare", {"test": test})
    assert "operating_points" not in without.reports["test"]
    assert "operating_points" not in without.reports["test"]["subgroups"]["sex"]["M"]


def test_a_finding_absent_from_validation_gets_the_fallback_threshold_and_says_so(tmp_path):
    validation = make_split("validation", 120, 9, [0.3, 0.2, 0.2, 0.0])
    write_evaluation(tmp_path, {"validation": validation})
    saved = read_json(tmp_path / "thresholds.json")
    assert saved["thresholds"]["Hernia"] == 0.5
    assert "no positive image in validation" in saved["fallbacks"]["Hernia"]
