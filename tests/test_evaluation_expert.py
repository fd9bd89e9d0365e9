"""The evaluation against Google's expert labels: the mapped findings' AUCs against the radiologists' labels and
against NIH's own, on the expert-labelled images of a split, checked against scikit-learn on the files as written."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from nih_chestxray14.expert_labels import read_expert_labels
from nih_chestxray14.labels import LABELS, multi_hot, parse_findings
from nih_chestxray14.sample import make_release
from training.evaluation.expert import load_expert_labels
from training.evaluation.outputs import write_evaluation
from training.evaluation.predictions import ScoredSplit

GROUPS = {  # Google's finding -> NIH's findings, written out here rather than imported
    "Pneumothorax": ["Pneumothorax"],
    "Airspace opacity": ["Atelectasis", "Consolidation", "Edema", "Infiltration", "Pneumonia"],
    "Nodule or mass": ["Mass", "Nodule"],
}


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    root = tmp_path_factory.mktemp("expert-release")
    make_release(root, num_patients=60, image_size=16, layout="images", expert_labels="google",
                 expert_label_fraction=0.6, seed=4)
    return root


def read_csv_rows(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_the_expert_images_are_scored_against_both_label_sets(release, tmp_path):
    entries = {row["Image Index"]: row for row in read_csv_rows(release / "Data_Entry_2017_v2020.csv")}
    test_names = (release / "test_list.txt").read_text().split()
    rng = np.random.default_rng(0)
    labels = np.array([multi_hot(parse_findings(entries[name]["Finding Labels"])) for name in test_names])
    probabilities = 1 / (1 + np.exp(-(1.2 * labels + rng.normal(size=labels.shape))))
    # flip some NIH labels, as text mining does, so that the two references differ
    flipped = labels.copy()
    flipped[rng.random(labels.shape) < 0.15] ^= 1
    scored = ScoredSplit("test", test_names, LABELS, flipped, probabilities)

    expert = load_expert_labels(None, str(release))
    assert expert is not None and expert.counts()["test"] > 0
    report = write_evaluation(tmp_path, {"test": scored}, expert=expert).reports["test"]["expert_labels"]

    rows = read_csv_rows(release / "four_findings_expert_labels" / "test_labels.csv")
    by_name = {row["Image Index"]: row for row in rows}
    kept = [index for index, name in enumerate(test_names) if name in by_name]
    assert report["num_images"] == len(kept) == len(rows) and report["google_sets"] == {"test": len(rows),
                                                                                          "validation": 0}
    for finding, group in GROUPS.items():
        columns = [LABELS.index(name) for name in group]
        scores = probabilities[kept][:, columns].max(axis=1)
        radiologists = np.array([by_name[test_names[index]][finding] == "YES" for index in kept], dtype=int)
        nih = flipped[kept][:, columns].max(axis=1)
        against_expert = report["against_expert"]["per_finding"][finding]
        against_nih = report["against_nih"]["per_finding"][finding]
        assert against_expert["positives"] == radiologists.sum() and against_nih["positives"] == nih.sum()
        if 0 < radiologists.sum() < radiologists.size:
            assert against_expert["value"] == pytest.approx(roc_auc_score(radiologists, scores), abs=1e-12)
        if 0 < nih.sum() < nih.size:
            assert against_nih["value"] == pytest.approx(roc_auc_score(nih, scores), abs=1e-12)
        agreement = report["label_agreement"][finding]
        assert agreement["both"] == int(((radiologists == 1) & (nih == 1)).sum())
        assert sum(agreement.values()) == len(kept)
    assert "Fracture" in report["unmapped"] and "Fracture" not in report["against_expert"]["per_finding"]
    assert report["mapping"] == GROUPS


def test_a_split_without_expert_images_has_no_expert_section(release, tmp_path):
    expert = read_expert_labels(release)
    scored = ScoredSplit("test", ["99999999_000.png"], LABELS, np.zeros((1, 14)), np.full((1, 14), 0.3))
    assert "expert_labels" not in write_evaluation(tmp_path, {"test": scored}, expert=expert).reports["test"]


def test_expert_labels_are_optional_and_read_from_given_files(release, tmp_path):
    assert load_expert_labels(None, str(tmp_path)) is None  # a folder without expert labels: no section, no error
    assert load_expert_labels(None, None) is None
    given = load_expert_labels([str(release / "four_findings_expert_labels" / "test_labels.csv")], None)
    assert set(given.counts()) == {"test", "validation"} and given.counts()["validation"] == 0
