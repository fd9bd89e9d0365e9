"""Benchmark: the whole evaluation of a test split the size of NIH's official one, against scikit-learn's AUC alone.

N = 25,596 images x C = 14 findings. The references, sex, age and view position are the real test images' rows of
``Data_Entry_2017_v2020.csv`` (those in ``test_list.txt``) when the NIH metadata is present, otherwise synthetic
labels with ChestX-ray14's prevalence per finding and subgroups with its proportions. Scores are synthetic: float32
logits ``1.2 * label + N(0, 1) - 2``, turned into float64 sigmoid probabilities as the recipe does. A validation set
of 8,569 synthetic images (the size of the builder's default validation split) gives the operating points (Youden's
J) and a temperature scaling per finding, fitted beforehand.

Two kinds of synthetic scores are timed, each against scikit-learn on the same data: ``continuous`` (what the recipe
writes: float64 probabilities, almost no ties) and ``rounded`` (probabilities rounded to 3 decimals, with many ties,
the convention of ``roc_auc_speed.py``). Ties matter: the metric's DeLong work is per tie group.

Timed side by side in one process, in interleaved rounds (median of ``--repeats`` after a warm-up), as wall and
process CPU time:

- **sklearn**: ``roc_auc_score(labels, probabilities, average=None)``, the per-finding AUCs and nothing else;
- **evaluation**: ``training.evaluation.report.evaluate_split`` on the test split, which is what
  ``evaluation_test.json`` holds: prevalences; per-finding and macro AUC with intervals and positive counts; the same
  in 9 subgroups (sex, 5 age bands, view position); sensitivity, specificity, PPV, NPV at the operating points and
  true/false-positive rates per subgroup, all with Wilson intervals; the "No Finding" false-positive rate overall
  and per subgroup; largest gaps; ECE and Brier score before and after the temperature scaling; the prevalence shift
  against validation. Target: at most 2x scikit-learn's time. Beside it, the metric's part alone
  (``roc_auc_by_subgroup`` of the whole split and the 9 subgroups), to show what the rest costs;
- the parts, for scale: choosing the thresholds and fitting the scaling on validation (done once per model, not per
  evaluation), and writing the split's files (``predictions_test.parquet``, ``evaluation_test.json``).

    python benchmarks/evaluation_speed.py
    python benchmarks/evaluation_speed.py --repeats 31
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # the recipe's modules live in the clone, as in transformers' examples
    sys.path.insert(0, str(REPO_ROOT))

from roc_auc_speed import median_seconds, metadata_dir, official_test_metadata  # noqa: E402  (the sibling benchmark's)

from nih_chestxray14.labels import LABELS  # noqa: E402
from training.evaluation.calibration import fit_scaling  # noqa: E402
from training.evaluation.operating_points import choose_thresholds  # noqa: E402
from training.evaluation.outputs import write_split_files  # noqa: E402
from training.evaluation.predictions import ScoredSplit  # noqa: E402
from training.evaluation.report import evaluate_split  # noqa: E402
from training.evaluation.subgroups import subgroup_masks  # noqa: E402
from metrics.roc_auc_multilabel import roc_auc_by_subgroup  # noqa: E402

NUM_TEST_IMAGES = 25_596
NUM_VALIDATION_IMAGES = 8_569
TARGET = 2.0


def synthetic_metadata(rng: np.random.Generator, num_images: int) -> Tuple[np.ndarray, Dict[str, np.ndarray]]:
    """Labels with NIH's prevalences and metadata with its proportions (56% male, 60% PA, ages 1-95)."""
    from nih_chestxray14.sample import NIH_PREVALENCE

    prevalence = np.asarray([NIH_PREVALENCE[name] for name in LABELS])
    labels = (rng.random((num_images, len(LABELS))) < prevalence).astype(np.int8)
    metadata = {
        "patient_id": rng.integers(1, max(2, num_images // 9), size=num_images),
        "sex": np.where(rng.random(num_images) < 0.56, "M", "F"),
        "age": rng.integers(1, 96, size=num_images),
        "view_position": np.where(rng.random(num_images) < 0.6, "PA", "AP"),
    }
    return labels, metadata


SCORE_KINDS = {
    "continuous": "float64 sigmoid probabilities of float32 logits, as the recipe writes them (almost no ties)",
    "rounded": "probabilities rounded to 3 decimals (many ties; the convention of roc_auc_speed.py's scores)",
}


def scored_split(split: str, labels: np.ndarray, metadata: Dict[str, np.ndarray], rng: np.random.Generator,
                 kind: str = "continuous") -> ScoredSplit:
    logits = (1.2 * labels + rng.normal(size=labels.shape) - 2.0).astype(np.float32)
    probabilities = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
    if kind == "rounded":
        probabilities = np.round(probabilities, 3)
    image_ids = np.asarray([f"{index:08d}_000.png" for index in range(labels.shape[0])])
    return ScoredSplit(split, image_ids, LABELS, labels, probabilities, metadata)


def auc_summaries(test: ScoredSplit) -> None:
    """The metric's part of the evaluation alone: ``roc_auc_by_subgroup`` of the whole split and its 9 subgroups."""
    masks, _ = subgroup_masks(test.metadata, test.num_images)
    groups = {"all": np.ones(test.num_images, dtype=bool)}
    groups.update({f"{attribute}/{name}": mask for attribute, named in masks.items() for name, mask in named.items()})
    roc_auc_by_subgroup(test.references, test.probabilities, groups, label_names=list(LABELS))


def measure(kind: str, test_set, repeats: int, seed: int, output_dir: Path) -> Dict[str, Dict[str, float]]:
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(seed)
    test = scored_split("test", *test_set, rng, kind)
    validation = scored_split("validation", *synthetic_metadata(rng, NUM_VALIDATION_IMAGES), rng, kind)
    operating_points = choose_thresholds(validation.references, validation.probabilities, LABELS)
    scaling = fit_scaling(validation.references, validation.probabilities, LABELS, "temperature")

    def evaluation():
        return evaluate_split(test, operating_points=operating_points, scaling=scaling, reference=validation)

    report = evaluation()  # the same AUCs as scikit-learn before anything is timed
    expected = roc_auc_score(test.references, test.probabilities, average=None)
    ours = [report["roc_auc"]["per_finding"][name]["value"] for name in LABELS]
    assert np.allclose(ours, expected, atol=1e-12, rtol=0, equal_nan=True), (ours, expected)

    figures = median_seconds(
        {
            "sklearn": lambda: roc_auc_score(test.references, test.probabilities, average=None),
            "evaluation": evaluation,
            "auc_summaries": lambda: auc_summaries(test),
        },
        repeats,
    )
    parts = median_seconds(
        {
            "sklearn": lambda: roc_auc_score(test.references, test.probabilities, average=None),
            "thresholds": lambda: choose_thresholds(validation.references, validation.probabilities, LABELS),
            "scaling": lambda: fit_scaling(validation.references, validation.probabilities, LABELS, "temperature"),
            "files": lambda: write_split_files(output_dir, test, report),
        },
        max(3, repeats // 3),
    )
    print(f"\n### scores: {kind}, {SCORE_KINDS[kind]}\n")
    rows = [
        ("scikit-learn `roc_auc_score(average=None)`", figures, "sklearn"),
        ("**whole evaluation** of the test split (`evaluate_split`)", figures, "evaluation"),
        ("of which the metric's AUC summaries (whole split + 9 subgroups, `roc_auc_by_subgroup`)", figures,
         "auc_summaries"),
        ("scikit-learn again (the parts' rounds)", parts, "sklearn"),
        ("choose thresholds on validation (Youden, 14 findings; once per model)", parts, "thresholds"),
        ("fit temperature scaling on validation (14 findings; once per model)", parts, "scaling"),
        ("write `predictions_test.parquet` + `evaluation_test.json`", parts, "files"),
    ]
    print("| what | wall ms | wall ratio | CPU ms | CPU ratio |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for label, measured, key in rows:
        wall, cpu = measured["wall"], measured["cpu"]
        print(f"| {label} | {1000 * wall[key]:.1f} | {wall[key] / wall['sklearn']:.2f}x | {1000 * cpu[key]:.1f} | "
              f"{cpu[key] / cpu['sklearn']:.2f}x |")
    ratio = figures["cpu"]["evaluation"] / figures["cpu"]["sklearn"]
    own = (figures["cpu"]["evaluation"] - figures["cpu"]["auc_summaries"]) / figures["cpu"]["sklearn"]
    verdict = "met" if ratio <= TARGET else "MISSED"
    print(f"\nTarget: the whole evaluation at most {TARGET:.1f}x scikit-learn's time: {ratio:.2f}x CPU, "
          f"{figures['wall']['evaluation'] / figures['wall']['sklearn']:.2f}x wall ({verdict}); the evaluation's own "
          f"work beyond the metric's AUC summaries: {own:.2f}x")
    print(f"report size: {len(json.dumps(report)):,} characters of JSON")
    return figures


def run(repeats: int, seed: int, kinds=tuple(SCORE_KINDS), num_images: Optional[int] = None
        ) -> Dict[str, Dict[str, Dict[str, float]]]:
    test_set = official_test_metadata(metadata_dir()) if num_images is None else None
    source = "real official test labels, sex, age and view (Data_Entry_2017_v2020.csv, test_list.txt)"
    if test_set is None:
        test_set = synthetic_metadata(np.random.default_rng(seed), num_images or NUM_TEST_IMAGES)
        source = "synthetic labels and subgroups with ChestX-ray14 proportions"
    warnings.filterwarnings("ignore", message="ROC AUC", category=RuntimeWarning)
    print(f"data: {source}; {test_set[0].shape[0]:,} test x {len(LABELS)} findings; validation "
          f"{NUM_VALIDATION_IMAGES:,} synthetic images")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load average "
          f"{', '.join(f'{load:.1f}' for load in os.getloadavg())}; median of {repeats} interleaved rounds")
    output_dir = Path(tempfile.mkdtemp(prefix="evaluation-speed-"))
    return {kind: measure(kind, test_set, repeats, seed, output_dir) for kind in kinds}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=15, help="interleaved rounds (median reported)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scores", choices=tuple(SCORE_KINDS), nargs="+", default=list(SCORE_KINDS),
                        help="which synthetic scores to time (default: both)")
    parser.add_argument("--num-images", type=int, default=None,
                        help="a synthetic test set of this size instead of NIH's 25,596 test images (smoke tests)")
    arguments = parser.parse_args(argv)
    run(arguments.repeats, arguments.seed, tuple(arguments.scores), arguments.num_images)


if __name__ == "__main__":
    main()
