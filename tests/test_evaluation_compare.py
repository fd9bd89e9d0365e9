"""``training/evaluate.py --compare A B``: two prediction files joined on ``image_id``, and the paired DeLong test,
checked against a direct O(N^2) implementation on the images both files share."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from training.evaluate import main
from training.evaluation.comparison import compare_prediction_files
from training.evaluation.predictions import ScoredSplit, write_predictions

REPO_ROOT = Path(__file__).resolve().parents[1]
NAMES = ("Atelectasis", "Effusion", "Hernia")


def direct_components(labels, scores):
    """Placement values of DeLong et al. (1988) from all positive-negative pairs: (auc, V10, V01)."""
    positives, negatives = scores[labels == 1], scores[labels == 0]
    kernel = (positives[:, None] > negatives[None, :]) + 0.5 * (positives[:, None] == negatives[None, :])
    return kernel.mean(), kernel.mean(axis=1), kernel.mean(axis=0)


def direct_paired_test(labels, scores_a, scores_b):
    """AUC difference, its DeLong standard error from the 2x2 covariance of the two AUCs, and the p-value."""
    auc_a, v10_a, v01_a = direct_components(labels, scores_a)
    auc_b, v10_b, v01_b = direct_components(labels, scores_b)
    s10 = np.cov(np.vstack([v10_a, v10_b]))
    s01 = np.cov(np.vstack([v01_a, v01_b]))
    covariance = s10 / v10_a.size + s01 / v01_a.size
    variance = covariance[0, 0] + covariance[1, 1] - 2 * covariance[0, 1]
    difference = auc_a - auc_b
    se = math.sqrt(variance)
    return auc_a, auc_b, difference, se, 2 * (1 - NormalDist().cdf(abs(difference / se)))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Model A and model B on overlapping images, in different row orders, with tied scores."""
    folder = tmp_path_factory.mktemp("compare")
    rng = np.random.default_rng(3)
    num_images = 260
    labels = (rng.random((num_images, len(NAMES))) < [0.3, 0.2, 0.06]).astype(np.int8)
    difficulty = rng.normal(size=labels.shape)
    scores_a = 1 / (1 + np.exp(-np.round(1.4 * labels + difficulty + 0.5 * rng.normal(size=labels.shape), 1)))
    scores_b = 1 / (1 + np.exp(-np.round(0.9 * labels + difficulty + 0.5 * rng.normal(size=labels.shape), 1)))
    ids = np.array([f"{index:08d}_000.png" for index in range(num_images)])
    keep_a, keep_b = np.arange(0, 250), rng.permutation(np.arange(10, num_images))  # 10 only in A, 10 only in B
    write_predictions(folder / "a.parquet", ScoredSplit("test", ids[keep_a], NAMES, labels[keep_a], scores_a[keep_a]))
    write_predictions(folder / "b.parquet", ScoredSplit("test", ids[keep_b], NAMES, labels[keep_b], scores_b[keep_b]))
    shared = np.arange(10, 250)
    return folder, labels[shared], scores_a[shared], scores_b[shared]


def test_the_paired_test_agrees_with_a_direct_implementation_on_the_shared_images(files):
    folder, labels, scores_a, scores_b = files
    comparison = compare_prediction_files(folder / "a.parquet", folder / "b.parquet")
    assert (comparison["num_images"], comparison["only_in_a"], comparison["only_in_b"]) == (240, 10, 10)
    for column, name in enumerate(NAMES):
        entry = comparison["per_finding"][name]
        auc_a, auc_b, difference, se, p_value = direct_paired_test(labels[:, column], scores_a[:, column],
                                                                   scores_b[:, column])
        assert entry["auc_a"] == pytest.approx(roc_auc_score(labels[:, column], scores_a[:, column]), abs=1e-12)
        assert entry["auc_a"] == pytest.approx(auc_a, abs=1e-12) and entry["auc_b"] == pytest.approx(auc_b, abs=1e-12)
        assert entry["difference"] == pytest.approx(difference, abs=1e-12)
        assert entry["se"] == pytest.approx(se, rel=1e-9)
        assert entry["p_value"] == pytest.approx(p_value, rel=1e-6, abs=1e-12)
        assert entry["ci_low"] == pytest.approx(difference - 1.959963984540054 * se, abs=1e-9)
        assert entry["positives"] == int(labels[:, column].sum())
    macro = comparison["macro"]
    assert macro["difference"] == pytest.approx(
        np.mean([comparison["per_finding"][name]["difference"] for name in NAMES]), abs=1e-12)


def test_the_command_line_prints_a_table_and_writes_the_json(files, tmp_path, capsys):
    folder, *_ = files
    output = tmp_path / "out" / "comparison.json"
    returned = main(["--compare", str(folder / "a.parquet"), str(folder / "b.parquet"), "--output_file", str(output)])
    printed = capsys.readouterr().out
    written = json.loads(output.read_text())
    assert written["per_finding"]["Effusion"]["difference"] == returned["per_finding"]["Effusion"]["difference"]
    assert "| finding | positives | AUC A | AUC B | A - B (95% CI) | p |" in printed
    assert "| **macro mean** | 3 findings |" in printed
    assert "240 images scored by both (only in A: 10; only in B: 10)" in printed


def test_files_that_label_an_image_differently_are_refused(tmp_path):
    ids = [f"{index:08d}_000.png" for index in range(4)]
    labels = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 1]])
    write_predictions(tmp_path / "a.parquet", ScoredSplit("test", ids, NAMES, labels, np.full((4, 3), 0.4)))
    relabelled = labels.copy()
    relabelled[2, 1] = 0
    write_predictions(tmp_path / "b.parquet", ScoredSplit("test", ids, NAMES, relabelled, np.full((4, 3), 0.6)))
    with pytest.raises(ValueError, match="label image 00000002_000.png differently for Effusion"):
        compare_prediction_files(tmp_path / "a.parquet", tmp_path / "b.parquet")
    other = ScoredSplit("test", [f"x{i}.png" for i in range(4)], NAMES, labels, np.full((4, 3), 0.6))
    write_predictions(tmp_path / "c.parquet", other)
    with pytest.raises(ValueError, match="share no image_id"):
        compare_prediction_files(tmp_path / "a.parquet", tmp_path / "c.parquet")


def test_a_bad_comparison_stops_with_one_line(tmp_path):
    (tmp_path / "a.parquet").write_text("not parquet")
    completed = subprocess.run(
        [sys.executable, str(REPO_ROOT / "training" / "evaluate.py"), "--compare", str(tmp_path / "a.parquet"),
         str(tmp_path / "missing.parquet")],
        capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode != 0 and "Traceback" not in completed.stderr
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("evaluate.py: error:") and "missing.parquet" in lines[0], lines
