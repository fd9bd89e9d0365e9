"""The card's evaluation: positive counts beside every AUC, operating points, disaggregated results, calibration,
prevalence shift, the metric's own interval wording, a trimmed model-index, and the Hub's ``.eval_results/`` file."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import yaml
from huggingface_hub import ModelCard

from metrics.roc_auc_multilabel import INTERVAL_DESCRIPTIONS
from model_card import ModelCardInputs, eval_results_entries, write_eval_results, write_model_card
from model_card.card import format_auc
from nih_chestxray14.labels import LABELS
from training.evaluation.outputs import write_evaluation
from training.evaluation.predictions import ScoredSplit


def scored(split, num_images, seed):
    rng = np.random.default_rng(seed)
    labels = (rng.random((num_images, len(LABELS))) < 0.15).astype(np.int8)
    probabilities = 1 / (1 + np.exp(-(1.3 * labels + rng.normal(size=labels.shape) - 1.5)))
    metadata = {"patient_id": rng.integers(1, 200, num_images),
                "sex": np.where(rng.random(num_images) < 0.5, "M", "F"),
                "age": rng.integers(0, 96, num_images),
                "view_position": np.where(rng.random(num_images) < 0.5, "PA", "AP")}
    return ScoredSplit(split, [f"{i:08d}_000.png" for i in range(num_images)], LABELS, labels, probabilities, metadata,
                       description=f"{split} images of the test fixture")


def metrics_of(report):
    """The Trainer-style metrics (``roc_auc_<finding>``, ``_ci_low``, ``_ci_high``, ``_positives``) of a report."""
    auc = report["roc_auc"]
    metrics = {"roc_auc": auc["macro"]["value"], "roc_auc_ci_low": auc["macro"]["ci_low"],
               "roc_auc_ci_high": auc["macro"]["ci_high"]}
    for name, entry in auc["per_finding"].items():
        metrics.update({f"roc_auc_{name}": entry["value"], f"roc_auc_{name}_ci_low": entry["ci_low"],
                        f"roc_auc_{name}_ci_high": entry["ci_high"]})
    return metrics


@pytest.fixture(scope="module")
def card(tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("card")
    outputs = write_evaluation(output_dir, {"validation": scored("validation", 400, 1), "test": scored("test", 600, 2)},
                               calibration="platt")
    plots = {"Per-finding ROC curves on the test split": "roc_curves_test.png", **outputs.plots}
    inputs = ModelCardInputs(
        model_name="someone/vit-chestxray14", base_model="google/vit-base-patch16-224-in21k",
        dataset_config_name="resized-256", validation_fraction=0.1,
        validation_metrics=metrics_of(outputs.reports["validation"]), test_metrics=metrics_of(outputs.reports["test"]),
        plots=plots, num_test_samples=600, evaluation=outputs.reports,
    )
    written = write_model_card(output_dir, inputs)
    return inputs, outputs.reports, written.text, output_dir


def table_after(text, heading):
    """The Markdown table rows that follow ``heading``."""
    section = text[text.index(heading):]
    rows = []
    for line in section.splitlines()[1:]:
        if line.startswith("|"):
            rows.append([cell.strip() for cell in line.strip("|").split("|")])
        elif rows:
            break
    return rows[2:]  # without the header and the --- line


def test_every_auc_of_the_results_table_has_its_positive_count(card):
    _, reports, text, _ = card
    rows = {row[0]: row for row in table_after(text, "## Results")}
    for name in LABELS:
        for split, column in (("validation", 2), ("test", 4)):
            positives = reports[split]["roc_auc"]["per_finding"][name]["positives"]
            assert rows[name][column] == f"{positives:,}", (name, split)
    assert rows["**Macro average**"][4] == f"{reports['test']['roc_auc']['macro']['findings']} of 14 findings"


def test_the_interval_wording_is_the_metrics_own(card):
    assert f"Intervals are from {INTERVAL_DESCRIPTIONS['auto']}." in card[2]


def test_a_collapsed_interval_is_never_shown_as_certain(tmp_path):
    assert format_auc(1.0, 1.0, 1.0) == "1.0000 (no interval could be computed)"
    assert format_auc(0.9, 0.8, 0.95) == "0.9000 (0.8000–0.9500)"
    metrics = {"roc_auc": 1.0, "roc_auc_ci_low": 1.0, "roc_auc_ci_high": 1.0, "roc_auc_Hernia": 1.0,
               "roc_auc_Hernia_ci_low": 1.0, "roc_auc_Hernia_ci_high": 1.0, "roc_auc_Hernia_positives": 3}
    text = write_model_card(tmp_path, ModelCardInputs(model_name="m", test_metrics=metrics)).text
    assert "1.0000 (1.0000–1.0000)" not in text
    assert "| Hernia | n/a |  | 1.0000 (no interval could be computed) | 3 |" in text


def test_the_operating_points_table_is_the_test_reports(card):
    _, reports, text, _ = card
    assert "chosen by Youden's J (the largest sensitivity + specificity - 1) on the validation split (400 images)" \
        in " ".join(text.split())
    rows = table_after(text, "### Operating points")
    assert [row[0] for row in rows] == list(LABELS)
    for row in rows:
        entry = reports["test"]["operating_points"][row[0]]
        assert row[1] == f"{entry['threshold']:.4f}"
        sensitivity = entry["sensitivity"]
        assert row[2] == (f"{sensitivity['value']:.3f} ({sensitivity['ci_low']:.3f}–{sensitivity['ci_high']:.3f}; "
                          f"{sensitivity['successes']:,}/{sensitivity['trials']:,})")


def test_the_disaggregated_table_has_every_subgroup_with_its_size(card):
    _, reports, text, _ = card
    rows = table_after(text, "### Disaggregated results")
    assert [(row[0], row[1]) for row in rows] == [
        ("Sex", "M"), ("Sex", "F"), ("Age band", "0-17"), ("Age band", "18-39"), ("Age band", "40-59"),
        ("Age band", "60-79"), ("Age band", "80+"), ("View", "PA"), ("View", "AP")]
    female = reports["test"]["subgroups"]["sex"]["F"]
    row = rows[1]
    assert row[2] == f"{female['num_images']:,} ({female['num_patients']:,} patients)"
    assert row[3].startswith(f"{female['roc_auc']['macro']['value']:.4f} (")
    assert row[5].endswith(f"{female['no_finding_false_positive_rate']['successes']}/"
                           f"{female['no_finding_false_positive_rate']['trials']})")
    gaps = table_after(text, "Largest gap in sensitivity")
    assert [row[0] for row in gaps] == list(LABELS)
    assert all(re.match(r"^(Sex|Age band|View)$", row[1]) for row in gaps)


def test_calibration_states_its_binning_and_shows_the_diagram_once(card):
    inputs, reports, text, _ = card
    section = text[text.index("### Calibration"):text.index("### Prevalence shift")]
    assert "10 equal-width bins of the predicted probability" in section
    assert "before and after platt scaling fitted per finding on the validation split" in " ".join(section.split())
    assert "![Reliability diagram on the test split](reliability_test.png)" in section
    assert text.count("reliability_test.png") == 1  # not repeated among the other plots
    rows = table_after(text, "### Calibration")
    atelectasis = reports["test"]["calibration"]["Atelectasis"]
    assert rows[0][:5] == ["Atelectasis", f"{atelectasis['observed_rate']:.3f}",
                           f"{atelectasis['mean_probability']:.3f}", f"{atelectasis['ece']:.4f}",
                           f"{atelectasis['brier']:.4f}"]
    assert rows[0][5] == f"{atelectasis['scaled']['ece']:.4f}"


def test_the_prevalence_shift_is_shown(card):
    _, reports, text, _ = card
    rows = table_after(text, "### Prevalence shift between validation and test")
    assert [row[0] for row in rows] == [*LABELS, "No Finding"]
    shift = reports["test"]["prevalence_shift"]["per_finding"]["Effusion"]
    assert rows[2][3] == f"{100 * shift['difference']:+.1f} points"
    assert "validation images of the test fixture" in text  # every report names its split


def test_the_model_index_keeps_the_macro_and_per_finding_aucs_only(card):
    _, _, _, output_dir = card
    results = ModelCard.load(output_dir / "README.md").data.eval_results
    assert {result.metric_type for result in results} == {"roc_auc"}
    assert len([result for result in results if result.dataset_split == "test"]) == 15


def test_the_hubs_eval_results_file_holds_the_test_macro_auc(card, tmp_path):
    inputs, reports, _, _ = card
    path = write_eval_results(tmp_path, inputs)
    assert path.relative_to(tmp_path).as_posix() == ".eval_results/nih_chestxray14.yaml"
    (entry,) = yaml.safe_load(path.read_text())
    assert entry["dataset"] == {"id": "nih_chestxray14", "task_id": "test"}
    assert entry["value"] == round(reports["test"]["roc_auc"]["macro"]["value"], 4)
    assert "macro ROC AUC over 14 of 14 findings" in entry["notes"] and "NIH's official test list" in entry["notes"]
    assert entry["source"]["url"] == "https://huggingface.co/someone/vit-chestxray14"
    assert not [name for name in (tmp_path / ".eval_results").iterdir() if name.name.endswith(".partial")]


def test_eval_results_say_when_data_is_synthetic_and_go_when_test_was_not_scored(card, tmp_path):
    inputs, _, _, _ = card
    synthetic = ModelCardInputs(model_name="demo-output", test_metrics=inputs.test_metrics, synthetic_data=True)
    (entry,) = eval_results_entries(synthetic)
    assert "SYNTHETIC" in entry["notes"] and "source" not in entry
    path = write_eval_results(tmp_path, synthetic)
    assert path.is_file()
    assert write_eval_results(tmp_path, ModelCardInputs(model_name="demo-output")) is None
    assert not path.exists()  # an earlier run's result does not outlive a run without a test score
    nan_macro = ModelCardInputs(model_name="m", test_metrics={"roc_auc": math.nan})
    assert eval_results_entries(nan_macro) == []


def test_a_card_without_evaluation_has_no_evaluation_section(tmp_path):
    text = write_model_card(tmp_path, ModelCardInputs(model_name="m", test_metrics={"roc_auc": 0.8})).text
    assert "## Evaluation" not in text and "### Operating points" not in text
    with pytest.raises(ValueError, match="evaluation"):
        ModelCardInputs(model_name="m", evaluation={"test": {"no": "report"}})


def test_a_run_on_custom_split_lists_says_so_in_the_card_and_the_eval_results(tmp_path):
    description = "Custom split lists (checked disjoint and patient-wise): train = train_list.txt (sha256 abc); ..."
    inputs = ModelCardInputs(model_name="m", test_metrics={"roc_auc": 0.8}, split_description=description,
                             custom_split=True)
    text = write_model_card(tmp_path, inputs).text
    assert "the user's own lists, not NIH's official split" in text and description in text
    assert "**Validation:**" not in text
    (entry,) = eval_results_entries(inputs)
    assert "a custom test list, not NIH's official one" in entry["notes"]
