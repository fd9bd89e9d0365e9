"""The model card: Hub-parsable model-index with AUCs and intervals, the text a reader needs, and no secrets."""

import math
import re

import numpy as np
import pytest
from huggingface_hub import ModelCard

from model_card import ModelCardInputs, write_model_card
from nih_chestxray14 import LABELS

FAKE_TOKEN = "hf_" + "Q" * 34


def realistic_metrics(seed, *, intervals, undefined=()):
    """A metric dict shaped like roc_auc_multilabel's output (keys without the Trainer's prefix)."""
    rng = np.random.default_rng(seed)
    per_class = {label: float(rng.uniform(0.68, 0.92)) for label in LABELS}
    for label in undefined:
        per_class[label] = float("nan")
    metrics = {"loss": float(rng.uniform(0.14, 0.18)), "roc_auc": float(np.nanmean(list(per_class.values())))}
    for label, auc in per_class.items():
        metrics[f"roc_auc_{label}"] = auc
    if intervals:
        for key in [k for k in metrics if k.startswith("roc_auc")]:
            half_width = float(rng.uniform(0.005, 0.03))
            metrics[f"{key}_ci_low"] = metrics[key] - half_width
            metrics[f"{key}_ci_high"] = metrics[key] + half_width
    return metrics


def make_inputs(**overrides):
    fields = dict(
        model_name="someone/vit-chestxray14",
        base_model="google/vit-base-patch16-224-in21k",
        dataset_name="nih_chestxray14",
        dataset_config_name="resized-256",
        validation_fraction=0.1,
        label_names=LABELS,
        validation_metrics=realistic_metrics(1, intervals=False),
        test_metrics=realistic_metrics(2, intervals=True, undefined=("Hernia",)),
        hyperparameters={
            "learning_rate": 2e-4,
            "per_device_train_batch_size": 128,
            "num_train_epochs": 3,
            "seed": 42,
            "optim": "adamw_torch_fused",
            "bf16": True,
            "hub_token": FAKE_TOKEN,
        },
        hardware="1x NVIDIA H100 80GB",
        train_runtime_s=2712.6,
        train_samples_per_second=3104.2,
        plots={"Training loss and learning rate": "training_curves.png", "ROC curves, test split": "roc_curves.png"},
        num_train_samples=78024,
        num_validation_samples=8500,
        num_test_samples=25596,
    )
    fields.update(overrides)
    return ModelCardInputs(**fields)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("vit-chestxray14")
    inputs = make_inputs()
    card = write_model_card(output_dir, inputs)
    return inputs, output_dir / "README.md", card


def expected_results(inputs):
    """(split, metric type, metric name) -> value, derived from the inputs, NaNs left out: the macro and per-finding
    AUCs only (intervals and the rest of the evaluation stay in the card's text and the JSON files)."""
    expected = {}
    for split, metrics in (("validation", inputs.validation_metrics), ("test", inputs.test_metrics)):
        for label in (None, *LABELS):
            key = "roc_auc" if label is None else f"roc_auc_{label}"
            name = "macro ROC AUC" if label is None else f"ROC AUC ({label})"
            if key not in metrics or math.isnan(metrics[key]):
                continue
            expected[(split, "roc_auc", name)] = metrics[key]
    return expected


def test_hub_card_loader_reads_every_result_back(written):
    inputs, readme, _ = written
    card = ModelCard.load(readme)
    results = card.data.eval_results
    read_back = {(r.dataset_split, r.metric_type, r.metric_name): r.metric_value for r in results}
    expected = expected_results(inputs)
    assert read_back.keys() == expected.keys()
    for key, value in expected.items():
        assert read_back[key] == pytest.approx(value, abs=5e-5), key
    assert card.data.model_name == "someone/vit-chestxray14"
    for result in results:
        assert result.task_type == "image-classification"
        assert result.dataset_type == "nih_chestxray14"
        assert result.dataset_config == "resized-256"
        assert result.dataset_split in {"validation", "test"}


def test_metadata_names_base_model_dataset_license_and_tags(written):
    card = ModelCard.load(written[1])
    assert card.data.base_model == "google/vit-base-patch16-224-in21k"
    assert card.data.datasets == ["nih_chestxray14"]
    assert card.data.license == "apache-2.0"
    assert card.data.pipeline_tag == "image-classification"
    assert card.data.library_name == "transformers"
    assert {"medical-imaging", "chest-x-ray", "vision", "image-classification", "vit"} <= set(card.data.tags)


def test_undefined_auc_is_left_out_of_metadata_and_shown_as_na(written):
    inputs, readme, _ = written
    text = readme.read_text(encoding="utf-8")
    card = ModelCard.load(readme)
    assert not [r for r in card.data.eval_results if r.dataset_split == "test" and "Hernia" in r.metric_name]
    assert [r for r in card.data.eval_results if r.dataset_split == "validation" and "Hernia" in r.metric_name]
    assert "nan" not in card.data.to_yaml().lower()
    hernia_row = next(line for line in text.splitlines() if line.startswith("| Hernia |"))
    validation_cell, _, test_cell, _ = [cell.strip() for cell in hernia_row.strip("|").split("|")][1:]
    assert validation_cell == f"{inputs.validation_metrics['roc_auc_Hernia']:.4f}"
    assert test_cell == "n/a"


def test_results_table_shows_auc_with_interval(written):
    inputs, readme, _ = written
    text = readme.read_text(encoding="utf-8")
    m = inputs.test_metrics
    assert (
        f"| **Macro average** | {inputs.validation_metrics['roc_auc']:.4f} | 14 of 14 findings | "
        f"{m['roc_auc']:.4f} ({m['roc_auc_ci_low']:.4f}–{m['roc_auc_ci_high']:.4f}) | 13 of 14 findings |"
    ) in text
    for label in LABELS:
        assert re.search(rf"^\| {label} \| [0-9.]+ \| ", text, re.MULTILINE) or label == "Hernia", label


def test_text_explains_split_training_use_limits_and_citations(written):
    text = written[1].read_text(encoding="utf-8")
    assert "10% of the train_val *patients*" in text
    assert "no patient is in two splits" in text
    assert "split the images at random" in text  # the tutorial's leak, named
    assert "| learning_rate | 0.0002 |" in text and "| optim | adamw_torch_fused |" in text
    assert "1x NVIDIA H100 80GB" in text and "0:45:13 (h:mm:ss)" in text and "3,104.2 training images/s" in text
    assert "![Training loss and learning rate](training_curves.png)" in text
    assert "![ROC curves, test split](roc_curves.png)" in text
    assert "not a medical device" in text and "must not be used to diagnose" in text
    assert "natural language processing" in text and "Oakden-Rayner" in text and "NIH Clinical Center" in text
    for citation in ("wang2017chestxray8", "dosovitskiy2021vit", "delong1988comparing", "sun2014fast"):
        assert f"{{{citation}," in text


def test_no_token_reaches_the_card(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_" + "Z" * 34)
    inputs = make_inputs(
        hardware="1x NVIDIA H100 80GB",
        hyperparameters={"learning_rate": 1e-4, "hub_token": FAKE_TOKEN, "push_to_hub_token": "hf_" + "Z" * 34,
                         "run_name": "uses hf_" + "Z" * 34},
    )
    write_model_card(tmp_path, inputs)
    text = (tmp_path / "README.md").read_text(encoding="utf-8")
    assert FAKE_TOKEN not in text and "Z" * 34 not in text
    assert "hub_token" not in text
    assert "| learning_rate | 0.0001 |" in text


def test_without_test_predictions_only_validation_is_published(tmp_path):
    card = write_model_card(tmp_path, make_inputs(test_metrics={}))
    assert {r.dataset_split for r in ModelCard.load(tmp_path / "README.md").data.eval_results} == {"validation"}
    assert "The official test split was not scored" in card.text


def test_a_card_with_no_finite_result_still_loads(tmp_path):
    nan = float("nan")
    inputs = make_inputs(validation_metrics={"roc_auc": nan}, test_metrics={}, base_model=None)
    write_model_card(tmp_path, inputs)
    card = ModelCard.load(tmp_path / "README.md")
    assert not card.data.eval_results
    assert card.data.base_model is None
    assert "Trained from a random initialisation" in card.text


def test_a_local_dataset_folder_is_not_written_into_the_card(tmp_path):
    export = tmp_path / "exported-parquet"
    export.mkdir()
    card = write_model_card(tmp_path / "out", make_inputs(dataset_name=str(export), validation_fraction=None))
    content = (tmp_path / "out" / "README.md").read_text(encoding="utf-8")
    assert str(tmp_path) not in content
    assert ModelCard.load(tmp_path / "out" / "README.md").data.datasets == ["nih_chestxray14"]
    assert "a share of the train_val *patients*" in card.text


def test_rewriting_replaces_the_card_and_leaves_no_partial_file(tmp_path):
    (tmp_path / "README.md").write_text("old card")
    write_model_card(tmp_path, make_inputs())
    assert (tmp_path / "README.md").read_text(encoding="utf-8").startswith("---\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md"]


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"plots": {"ROC": "/abs/roc.png"}}, "plots"),
        ({"plots": {"ROC": "../roc.png"}}, "plots"),
        ({"test_metrics": {"roc_auc": "high"}}, "test_metrics['roc_auc']"),
        ({"model_name": " "}, "model_name"),
        ({"validation_fraction": 1.5}, "validation_fraction"),
        ({"label_names": ("Mass", "Mass")}, "label_names"),
        ({"localization": {"figure": "/abs/localization.png"}}, "plots['localization']"),
    ],
)
def test_bad_inputs_are_named(overrides, field):
    with pytest.raises(ValueError, match=re.escape(field)):
        make_inputs(**overrides)


def test_the_cards_usage_example_runs_and_gives_14_sigmoid_scores(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    from PIL import Image
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    config = ViTConfig(
        image_size=32, patch_size=16, num_channels=3, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, num_labels=len(LABELS), problem_type="multi_label_classification",
        id2label=dict(enumerate(LABELS)), label2id={label: i for i, label in enumerate(LABELS)},
    )
    torch.manual_seed(0)
    ViTForImageClassification(config).save_pretrained(tmp_path / "tiny-vit")
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(tmp_path / "tiny-vit")
    card = write_model_card(tmp_path / "tiny-vit", make_inputs(model_name="tiny-vit"))

    snippet = re.search(r"```python\n(.*?)```", card.text, re.DOTALL).group(1)
    monkeypatch.chdir(tmp_path)
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)).save("chest_x_ray.png")
    namespace = {}
    exec(compile(snippet, "model card usage example", "exec"), namespace)
    scores = namespace["scores"]
    assert sorted(s["label"] for s in scores) == sorted(LABELS)
    assert all(0.0 < s["score"] < 1.0 for s in scores)
    assert sum(s["score"] for s in scores) != pytest.approx(1.0, abs=1e-3)  # independent sigmoids, not a softmax


def test_a_run_on_synthetic_data_says_so(tmp_path):
    card = write_model_card(tmp_path, make_inputs(synthetic_data=True, dataset_config_name="default"))
    loaded = ModelCard.load(tmp_path / "README.md")
    assert card.text.lstrip().split("\n\n")[2].startswith("> **Demo model.**")  # right under the summary
    assert "not on NIH's images" in card.text
    assert loaded.data.datasets is None
    assert {r.dataset_name for r in loaded.data.eval_results} == {
        "Synthetic sample in NIH ChestX-ray14's format (not real X-rays)"}


def test_a_run_on_nih_data_has_no_demo_warning(written):
    assert "Demo model" not in written[1].read_text(encoding="utf-8")


def localization_summary():
    """What training/localize.py writes to localization.json (two findings), plus the figure's file name."""
    def scores(boxes, accuracies, false_positives):
        thresholds = ("0.1", "0.25", "0.5", "0.75", "0.9")
        return {"num_boxes": boxes, "num_images": boxes, "by_threshold": {
            threshold: {"accuracy": accuracy, "average_false_positives": false_positives}
            for threshold, accuracy in zip(thresholds, accuracies)}}

    return {
        "method": "gradient_rollout", "num_images": 30, "num_boxes": 33,
        "iobb_thresholds": [0.1, 0.25, 0.5, 0.75, 0.9],
        "findings": {"Cardiomegaly": scores(14, [1.0, 0.93, 0.5, 0.21, 0.07], 0.0),
                     "Nodule": scores(19, [0.1579, 0.0, 0.0, 0.0, 0.0], 2.96)},
        "random_lung_field_baseline": {"seed": 0, "findings": {
            "Cardiomegaly": scores(14, [0.79, 0.5, 0.2, 0.0, 0.0], 0.4),
            "Nodule": scores(19, [0.04, 0.0, 0.0, 0.0, 0.0], 3.1)}},
        "figure": "localization.png",
    }


def test_localization_scores_get_their_own_section_with_the_figure(tmp_path):
    card = write_model_card(tmp_path, make_inputs(localization=localization_summary()))
    section = card.text.split("## Where the model looks")[1].split("\n## ")[0]
    assert "`gradient_rollout`" in section and "33\nexpert boxes on the 30 test images" in section
    assert "| Finding | Boxes | Acc. T(IoBB)=0.1 | Acc. T(IoBB)=0.25 | Acc. T(IoBB)=0.5 |" in section
    assert "| Cardiomegaly | 14 | 1.00 | 0.93 | 0.50 | 0.21 | 0.07 | 0.00 | 0.79 |" in section
    assert "| Nodule | 19 | 0.16 | 0.00 | 0.00 | 0.00 | 0.00 | 2.96 | 0.04 |" in section
    assert "](localization.png)" in section


def test_without_localization_the_card_has_no_such_section(written):
    assert "Where the model looks" not in written[1].read_text(encoding="utf-8")
    assert "Its heatmaps show where it looks" in written[1].read_text(encoding="utf-8")
