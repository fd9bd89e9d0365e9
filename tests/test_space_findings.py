"""The Space's model side: labels from the config, probabilities, thresholds.json, the chart, the heatmap overlay."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from PIL import Image

from findings import FindingsModel, ModelLoadError, OperatingPoint, model_view, read_operating_point
from heatmap import HeatmapsUnavailable, load_explain, overlay
from page import findings_chart, operating_point_text, tag_table
from space_models import reference_probabilities, save_tiny_model, synthetic_image, thresholds_around, write_thresholds

from nih_chestxray14 import LABELS


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("tiny-vit") / "model")


def test_probabilities_are_the_models_own_sigmoid_scores(model_folder):
    image = Image.fromarray(synthetic_image(seed=1))
    loaded = FindingsModel.load(str(model_folder))
    probabilities = loaded.probabilities(image)
    expected = reference_probabilities(model_folder, image)
    assert list(probabilities) == list(LABELS)
    assert all(isinstance(value, float) for value in probabilities.values())
    np.testing.assert_allclose([probabilities[k] for k in LABELS], [expected[k] for k in LABELS], atol=1e-6)
    assert max(probabilities.values()) - min(probabilities.values()) > 0.05  # the test model tells findings apart


def test_a_non_square_image_is_seen_through_its_central_square(model_folder):
    pixels = synthetic_image(seed=2, size=96)
    wide = np.concatenate([np.zeros((96, 20), np.uint8), pixels, np.full((96, 20), 255, np.uint8)], axis=1)
    image = Image.fromarray(wide)
    assert np.array_equal(np.asarray(model_view(image)), pixels)
    probabilities = FindingsModel.load(str(model_folder)).probabilities(image)
    expected = reference_probabilities(model_folder, Image.fromarray(pixels))
    np.testing.assert_allclose([probabilities[k] for k in LABELS], [expected[k] for k in LABELS], atol=1e-6)


def test_label_names_come_from_the_models_config(tmp_path):
    folder = save_tiny_model(tmp_path / "renamed")
    config = json.loads((folder / "config.json").read_text())
    config["id2label"] = {str(i): f"finding {13 - i}" for i in range(14)}
    config["label2id"] = {f"finding {13 - i}": i for i in range(14)}
    (folder / "config.json").write_text(json.dumps(config))
    loaded = FindingsModel.load(str(folder))
    assert loaded.labels == tuple(f"finding {13 - i}" for i in range(14))
    assert list(loaded.probabilities(Image.new("L", (40, 40), 90))) == list(loaded.labels)


def test_without_thresholds_json_the_page_shows_probabilities_only(model_folder):
    loaded = FindingsModel.load(str(model_folder))
    assert loaded.operating_point is None
    chart = findings_chart(loaded.probabilities(Image.new("L", (32, 32), 50)), None)
    assert "positive" not in chart and "negative" not in chart and chart.count("<tr ") == 14
    assert "no `thresholds.json`" in operating_point_text(None)


def test_thresholds_json_gives_the_calls_and_the_rule(tmp_path):
    folder = save_tiny_model(tmp_path / "with-thresholds")
    image = Image.fromarray(synthetic_image(seed=3))
    thresholds = thresholds_around(reference_probabilities(folder, image))
    write_thresholds(folder, thresholds, calibration={"temperature": 1.3})  # unknown keys are ignored
    loaded = FindingsModel.load(str(folder))
    assert loaded.operating_point.thresholds == pytest.approx(thresholds)
    probabilities = loaded.probabilities(image)
    calls = {label: loaded.operating_point.is_positive(label, p) for label, p in probabilities.items()}
    assert sum(calls.values()) == 5
    chart = findings_chart(probabilities, loaded.operating_point)
    assert chart.count('class="positive"') == 5 and chart.count('class="negative"') == 9
    assert "Youden&#x27;s J" in operating_point_text(loaded.operating_point)
    assert "validation split (1,234 images)" in loaded.operating_point.describe()


def test_a_probability_equal_to_its_threshold_is_positive():
    point = OperatingPoint(thresholds={"Edema": 0.25})
    assert point.is_positive("Edema", 0.25) and not point.is_positive("Edema", 0.2499999)


@pytest.mark.parametrize("rule, target, words", [
    ("youden", None, "Youden's J"),
    ("max_f1", None, "the F1 score at its maximum"),
    ("sensitivity", 0.9, "sensitivity of at least 0.9"),
    ("cost_weighted", None, "the rule 'cost_weighted'"),
])
def test_the_rule_is_described_in_words(rule, target, words):
    point = OperatingPoint(thresholds={}, rule=rule, target_sensitivity=target, chosen_on="validation", num_images=8569)
    assert words in point.describe() and "validation split (8,569 images)" in point.describe()


@pytest.mark.parametrize("content, message", [
    ("{not json", "cannot be read as JSON"),
    (json.dumps({"rule": "youden"}), "no 'thresholds' mapping"),
    (json.dumps({"thresholds": {}}), "no threshold for any of them"),
    (json.dumps({"thresholds": {**{label: 0.5 for label in LABELS}, "Fracture": 0.5}}), "unknown \\['Fracture'\\]"),
    (json.dumps({"thresholds": {**{label: 0.5 for label in LABELS}, "Edema": 1.5}}), "'Edema' is 1.5"),
    (json.dumps({"thresholds": {**{label: 0.5 for label in LABELS}, "Edema": "0.3"}}), "'Edema' is '0.3'"),
])
def test_a_malformed_thresholds_json_is_refused_with_the_reason(tmp_path, content, message):
    path = tmp_path / "thresholds.json"
    path.write_text(content)
    with pytest.raises(ModelLoadError, match=message) as raised:
        read_operating_point(path, LABELS)
    assert str(path) in str(raised.value)


def test_labels_without_a_threshold_get_no_call(tmp_path):
    # training/evaluate.py chooses thresholds for the 14 findings only; a checkpoint may have more outputs
    path = tmp_path / "thresholds.json"
    path.write_text(json.dumps({"thresholds": {"Effusion": 0.3}, "rule": "youden"}))
    point = read_operating_point(path, [*LABELS, "Fracture"])
    assert point.thresholds == {"Effusion": 0.3}
    assert point.is_positive("Effusion", 0.31) is True and point.is_positive("Effusion", 0.29) is False
    assert point.is_positive("Fracture", 0.99) is None
    chart = findings_chart({"Effusion": 0.31, "Fracture": 0.99}, point)
    fracture_row = chart[chart.index('data-finding="Fracture"'):].split("</tr>")[0]
    assert "no call" in fracture_row and "positive" not in fracture_row and "≥ 0.3000" in chart


def test_a_missing_model_gives_a_clear_error(tmp_path):
    with pytest.raises(ModelLoadError, match=r"cannot load the model .*no-such-model.*training/run.py"):
        FindingsModel.load(str(tmp_path / "no-such-model"))


def test_a_hub_model_brings_its_thresholds_from_the_hub(hub, tmp_path):
    from huggingface_hub import HfApi

    folder = save_tiny_model(tmp_path / "hub-model")
    api = HfApi()
    api.create_repo("test-user/no-thresholds")
    api.upload_folder(repo_id="test-user/no-thresholds", folder_path=folder)
    assert FindingsModel.load("test-user/no-thresholds").operating_point is None
    write_thresholds(folder, {label: 0.4 for label in LABELS}, rule="max_f1")
    api.create_repo("test-user/with-thresholds")
    api.upload_folder(repo_id="test-user/with-thresholds", folder_path=folder)
    point = FindingsModel.load("test-user/with-thresholds").operating_point
    assert point.rule == "max_f1" and point.thresholds["Edema"] == 0.4


def test_the_chart_is_sorted_by_probability_and_escapes_names():
    probabilities = {"Edema": 0.2, "<b>Mass</b>": 0.9, "Nodule": 0.2, "Hernia": 0.55}
    chart = findings_chart(probabilities, OperatingPoint(thresholds={k: 0.5 for k in probabilities}))
    order = [chart.index(name) for name in ("&lt;b&gt;Mass&lt;/b&gt;", "Hernia", "Edema", "Nodule")]
    assert order == sorted(order)  # highest first; ties keep the model's order
    assert "<b>" not in chart and "0.9000" in chart and "≥ 0.5000" in chart
    assert tag_table({"Sex": "<script>alert(1)</script>"}).count("<script>") == 0
    assert tag_table({}) == ""


def test_the_overlay_is_the_image_where_the_heatmap_is_zero():
    image = Image.fromarray(synthetic_image(seed=4, size=64))
    heat = np.zeros((64, 64), np.float32)
    heat[:, 32:] = 1.0
    drawn = np.asarray(overlay(image, heat))
    assert drawn.shape == (64, 64, 3)
    grey = np.asarray(image)
    np.testing.assert_array_equal(drawn[:, :32], np.repeat(grey[:, :32, None], 3, axis=2))
    assert np.abs(drawn[:, 32:].astype(int) - grey[:, 32:, None]).mean() > 20
    with pytest.raises(ValueError, match="a heatmap is"):
        overlay(image, np.zeros((2, 64, 64)))


def test_explain_is_loaded_from_the_first_heatmaps_file_found(tmp_path, monkeypatch):
    import heatmap

    monkeypatch.delitem(sys.modules, heatmap.HEATMAPS_MODULE, raising=False)
    monkeypatch.setattr(heatmap, "CANDIDATES", (tmp_path / "space" / "heatmaps.py", tmp_path / "heatmaps.py"))
    with pytest.raises(HeatmapsUnavailable, match="heatmaps.py was found neither"):
        load_explain()
    (tmp_path / "heatmaps.py").write_text(
        "from dataclasses import dataclass\n\n@dataclass\nclass Explanation:\n    heatmaps: dict\n\n"
        "def explain(model, image_processor, image, method='auto', findings=None):\n    return Explanation({})\n"
    )
    assert load_explain()(None, None, None).heatmaps == {}
    monkeypatch.delitem(sys.modules, heatmap.HEATMAPS_MODULE)
