"""Localization where the truth is known: a synthetic release plants each finding at a known box.

One tiny ViT is trained like the demo with the recipe's real ``main()`` (which also scores localization for its model
card), then ``training/localize.py``'s ``main()`` writes heatmaps and scores; findings the model learned must
localize far better than the same heatmaps moved to random places in the lung fields.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from huggingface_hub import ModelCard

import nih_chestxray14
from nih_chestxray14.labels import LABELS
from nih_chestxray14.sample import make_release
from training.localize import FIGURE_FILE, HEATMAPS_FILE, SUMMARY_FILE, localize_test_split, main
from training.run import main as run_recipe

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[1]
TINY_VIT = "hidden_size=64,num_hidden_layers=2,num_attention_heads=4,intermediate_size=128,image_size=32,patch_size=8"
LEARNED_AUC = 0.95


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("localize")


@pytest.fixture(scope="module")
def release(workdir):
    """600 X-ray-like 32-px images; every image gets a box row where it can (bbox_fraction=1), ~120 in test."""
    return make_release(workdir / "release", num_patients=200, images_per_patient=3, image_size=32, layout="images",
                        signal_strength=2.5, prevalence={name: 0.2 for name in LABELS}, bbox_fraction=1.0, seed=0)


@pytest.fixture(scope="module")
def trained(workdir, release):
    """The recipe, as the demo runs it but shorter: 400 steps, then --do_predict (which localizes for the card)."""
    output_dir = workdir / "model"
    results = run_recipe([
        "--model_type", "vit", "--config_overrides", TINY_VIT, "--data_dir", str(release),
        "--cache_dir", str(workdir / "cache"), "--output_dir", str(output_dir), "--use_cpu", "--seed", "0",
        "--do_train", "--do_eval", "--do_predict", "--max_steps", "400", "--per_device_train_batch_size", "32",
        "--per_device_eval_batch_size", "64", "--learning_rate", "1e-3", "--warmup_steps", "20",
        "--lr_scheduler_type", "cosine", "--eval_strategy", "steps", "--save_strategy", "steps", "--eval_steps", "200",
        "--save_steps", "200",
        "--logging_steps", "50",
    ])
    return results, output_dir


@pytest.fixture(scope="module")
def localized(workdir, release, trained):
    _, model_dir = trained
    output_dir = workdir / "loc-out"
    summary = main(["--model_name_or_path", str(model_dir), "--dataset_name", "nih_chestxray14",
                    "--data_dir", str(release), "--cache_dir", str(workdir / "cache"), "--output_dir", str(output_dir)])
    return summary, output_dir


def pooled_accuracy(findings, names, threshold="0.1"):
    boxes = sum(findings[name]["num_boxes"] for name in names)
    return sum(findings[name]["by_threshold"][threshold]["accuracy"] * findings[name]["num_boxes"]
               for name in names) / boxes


def test_learned_findings_localize_far_above_heatmaps_at_random_places_in_the_lungs(trained, localized):
    results, _ = trained
    summary, _ = localized
    learned = [name for name in summary["findings"] if results[f"test_roc_auc_{name}"] >= LEARNED_AUC]
    assert len(learned) >= 4, {name: results[f"test_roc_auc_{name}"] for name in summary["findings"]}
    model = pooled_accuracy(summary["findings"], learned)
    random = pooled_accuracy(summary["random_lung_field_baseline"]["findings"], learned)
    print(f"\nlearned findings {learned}: accuracy at T(IoBB)=0.1 {model:.3f}, random lung-field baseline {random:.3f}")
    assert model >= 0.8
    assert model >= random + 0.3


def test_every_boxed_finding_of_the_test_split_gets_a_heatmap_in_the_box_files_frame(release, localized):
    summary, output_dir = localized
    test = nih_chestxray14.load("default", data_dir=str(release), split="test").select_columns(["image_id", "bboxes"])
    expected = {f"{row['image_id']}/{LABELS[box['finding']]}" for row in test for box in row["bboxes"]}
    with np.load(output_dir / HEATMAPS_FILE) as heatmaps:
        assert set(heatmaps.files) == expected
        for key in sorted(expected)[:20]:
            heatmap = heatmaps[key]
            assert heatmap.dtype == np.float16 and heatmap.shape == (1024, 1024)
            assert heatmap.min() >= 0.0 and heatmap.max() <= 1.0 and heatmap.max() > 0.5
    assert summary["method"] == "gradient_rollout"  # the measured default for ViTs
    assert summary["num_boxes"] == sum(len(row["bboxes"]) for row in test)
    assert sum(scores["num_boxes"] for scores in summary["findings"].values()) == summary["num_boxes"]
    assert json.loads((output_dir / SUMMARY_FILE).read_text()) == {k: v for k, v in summary.items() if k != "figure"}
    for scores in summary["findings"].values():
        assert list(scores["by_threshold"]) == ["0.1", "0.25", "0.5", "0.75", "0.9"]
    assert (output_dir / FIGURE_FILE).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(output_dir.glob(".*partial"))


def test_the_recipes_model_card_shows_where_the_model_looks(trained):
    _, output_dir = trained
    card = ModelCard.load(output_dir / "README.md")
    assert "## Where the model looks" in card.text
    assert f"![Heatmaps with expert boxes (green) and the boxes drawn from them (dashed yellow)]({FIGURE_FILE})" \
        in card.text
    assert "| Effusion |" in card.text.split("## Where the model looks")[1]
    assert (output_dir / FIGURE_FILE).is_file() and (output_dir / SUMMARY_FILE).is_file()
    assert not (output_dir / HEATMAPS_FILE).exists()  # heatmaps stay out of the published folder


def test_a_test_split_without_boxes_adds_nothing_to_the_card(workdir, release, trained):
    from training.localize import load_classifier

    _, model_dir = trained
    model, image_processor = load_classifier(str(model_dir))
    test = nih_chestxray14.load("default", data_dir=str(release), split="test", cache_dir=str(workdir / "cache"))
    unboxed = test.map(lambda example: {"bboxes": []}, features=test.features)
    assert localize_test_split(model, image_processor, unboxed, workdir / "unboxed") == {}
    assert not (workdir / "unboxed").exists() or not any((workdir / "unboxed").iterdir())


def test_bad_input_stops_with_one_line_that_names_the_argument(workdir, release, trained):
    _, model_dir = trained
    with pytest.raises(ValueError, match="--model_name_or_path"):
        main(["--data_dir", str(release), "--output_dir", str(workdir / "x")])
    with pytest.raises(ValueError, match="--data_dir"):
        main(["--model_name_or_path", str(model_dir), "--output_dir", str(workdir / "x")])
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "training" / "localize.py"), "--model_name_or_path", str(workdir / "nowhere"),
         "--data_dir", str(release), "--output_dir", str(workdir / "x")],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("localize.py: error: --model_name_or_path ")
