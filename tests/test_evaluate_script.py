"""``training/evaluate.py``: any checkpoint with the 14 findings, scored without training, its labels mapped by name."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

from nih_chestxray14.labels import LABELS
from training.evaluate import main
from training.evaluation.predictions import read_predictions

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[1]


def save_checkpoint(folder: Path, labels, weights=None, biases=None) -> Path:
    """A tiny random ViT whose classifier outputs are named ``labels``, saved as a transformers folder."""
    config = ViTConfig(image_size=32, patch_size=8, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                       intermediate_size=32, num_labels=len(labels), problem_type="multi_label_classification",
                       id2label=dict(enumerate(labels)), label2id={label: i for i, label in enumerate(labels)})
    torch.manual_seed(0)
    model = ViTForImageClassification(config)
    if weights is not None:
        with torch.no_grad():
            model.classifier.weight.copy_(weights)
            model.classifier.bias.copy_(biases)
    model.save_pretrained(folder)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("evaluate-script")


def data_args(workdir: Path):
    return ["--data_dir", str(workdir / "release"), "--make_sample_release", "--sample_num_patients", "24",
            "--sample_image_size", "32", "--cache_dir", str(workdir / "cache"), "--use_cpu",
            "--per_device_eval_batch_size", "16"]


@pytest.fixture(scope="module")
def checkpoints(workdir):
    """The same model twice: once in NIH's label order, once with its outputs reversed plus a "No Finding" output."""
    in_order = save_checkpoint(workdir / "in-order", LABELS)
    model = ViTForImageClassification.from_pretrained(in_order)
    weights, biases = model.classifier.weight.detach(), model.classifier.bias.detach()
    reordered_labels = ["No Finding", *reversed(LABELS)]
    reordered_weights = torch.cat([torch.zeros(1, weights.shape[1]), weights.flip(0)])
    reordered_biases = torch.cat([torch.zeros(1), biases.flip(0)])
    # same backbone: the extra output and the order are the only difference
    shuffled = workdir / "reordered"
    model.config.id2label = dict(enumerate(reordered_labels))
    model.config.label2id = {label: i for i, label in enumerate(reordered_labels)}
    model.config.num_labels = len(reordered_labels)
    model.classifier = torch.nn.Linear(weights.shape[1], len(reordered_labels))
    with torch.no_grad():
        model.classifier.weight.copy_(reordered_weights)
        model.classifier.bias.copy_(reordered_biases)
    model.save_pretrained(shuffled)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(shuffled)
    return in_order, shuffled


@pytest.fixture(scope="module")
def evaluated(workdir, checkpoints):
    in_order, reordered = checkpoints
    reports = {}
    for name, checkpoint in (("in-order", in_order), ("reordered", reordered)):
        reports[name] = main(["--model_name_or_path", str(checkpoint), *data_args(workdir),
                              "--output_dir", str(workdir / f"eval-{name}")])
    return reports


def test_a_checkpoint_is_scored_on_validation_and_test_without_training(evaluated, workdir):
    reports = evaluated["in-order"]
    assert set(reports) == {"validation", "test"}
    output_dir = workdir / "eval-in-order"
    for split in ("validation", "test"):
        written = json.loads((output_dir / f"evaluation_{split}.json").read_text())
        assert written["num_images"] == read_predictions(output_dir / f"predictions_{split}.parquet").num_images
        assert written["operating_point_rule"]["chosen_on"] == "validation"
    assert {"thresholds.json", "reliability_test.png"} <= {path.name for path in output_dir.iterdir()}
    assert not (output_dir / "model.safetensors").exists()  # nothing was trained or saved


def test_outputs_are_mapped_to_the_findings_by_name(evaluated, workdir):
    for split in ("validation", "test"):
        in_order = read_predictions(workdir / "eval-in-order" / f"predictions_{split}.parquet")
        reordered = read_predictions(workdir / "eval-reordered" / f"predictions_{split}.parquet")
        assert reordered.label_names == LABELS
        np.testing.assert_array_equal(in_order.image_ids, reordered.image_ids)
        np.testing.assert_allclose(reordered.probabilities, in_order.probabilities, rtol=1e-5, atol=1e-7)
        assert len(np.unique(in_order.probabilities[:, 0])) > 1  # real, varying scores
    aucs = {name: [report["test"]["roc_auc"]["per_finding"][label]["value"] for label in LABELS]
            for name, report in evaluated.items()}
    np.testing.assert_allclose(aucs["reordered"], aucs["in-order"], atol=1e-9)  # NaN where undefined, in both


def test_without_validation_the_checkpoints_own_thresholds_are_used(evaluated, workdir, checkpoints):
    in_order, _ = checkpoints
    with_thresholds = workdir / "with-thresholds"
    shutil.copytree(in_order, with_thresholds)
    saved = json.loads((workdir / "eval-in-order" / "thresholds.json").read_text())
    saved["thresholds"]["Atelectasis"] = 0.123
    (with_thresholds / "thresholds.json").write_text(json.dumps(saved))
    reports = main(["--model_name_or_path", str(with_thresholds), *data_args(workdir), "--splits", "test",
                    "--output_dir", str(workdir / "eval-test-only")])
    assert set(reports) == {"test"}
    assert reports["test"]["operating_points"]["Atelectasis"]["threshold"] == 0.123
    assert not (workdir / "eval-test-only" / "thresholds.json").exists()


def test_a_checkpoint_missing_a_finding_is_refused_in_one_line_before_any_data_is_prepared(tmp_path):
    checkpoint = save_checkpoint(tmp_path / "thirteen", [label for label in LABELS if label != "Hernia"])
    completed = subprocess.run(
        [sys.executable, str(REPO_ROOT / "training" / "evaluate.py"), "--model_name_or_path", str(checkpoint),
         "--data_dir", str(tmp_path / "release"), "--make_sample_release", "--output_dir", str(tmp_path / "out"),
         "--use_cpu"],
        capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode != 0 and "Traceback" not in completed.stderr
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("evaluate.py: error:"), completed.stderr[-2000:]
    assert "no output for Hernia" in lines[0] and str(checkpoint) in lines[0]
    assert not (tmp_path / "release").exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize("argv, message", [
    (["--data_dir", "x"], "--model_name_or_path"),
    (["--model_name_or_path", "m", "--data_dir", "x", "--splits", "train"], "--splits"),
    (["--model_name_or_path", "m", "--data_dir", "x", "--threshold_rule", "max_f1", "--target_sensitivity", "0.9"],
     "--target_sensitivity"),
    (["--compare", "only-one.parquet"], "--compare takes two"),
])
def test_bad_arguments_are_named(argv, message):
    with pytest.raises(ValueError, match=message):
        main(argv)


def test_custom_split_lists_are_named_in_every_report(evaluated, workdir, checkpoints):
    in_order, _ = checkpoints
    release = workdir / "release"
    reports = main(["--model_name_or_path", str(in_order), *data_args(workdir), "--output_dir",
                    str(workdir / "eval-lists"), "--split_lists", f"train={release / 'train_val_list.txt'}",
                    f"test={release / 'test_list.txt'}"])
    for report in reports.values():
        assert report["split_description"].startswith("Custom split lists (checked disjoint and patient-wise)")
        assert "train = train_val_list.txt (sha256" in report["split_description"]
    official = json.loads((workdir / "eval-in-order" / "evaluation_test.json").read_text())
    assert official["split_description"].startswith("NIH's official patient-wise split")
