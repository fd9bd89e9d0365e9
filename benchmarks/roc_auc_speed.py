"""Benchmark: multi-label ROC AUC on a problem the size of NIH's official test split, against scikit-learn.

N = 25,596 images x C = 14 findings. The references are the real test labels (``Data_Entry_2017_v2020.csv`` rows of
the images in ``test_list.txt``, mapped with ``nih_chestxray14.labels``) when the NIH metadata is present, otherwise
synthetic labels with the dataset's prevalence per finding. Scores are synthetic float32 logits correlated with the
labels (``1.2 * label + N(0, 1)``), rounded to 3 decimals so that ties occur, as in low-precision model outputs.

Measured side by side in one process, in two groups of interleaved rounds, each figure the median of ``--repeats``
runs after a warm-up:

- against scikit-learn ``roc_auc_score(average=None)``: the plain NumPy ``multilabel_roc_auc(average=None)``, with
  per-class intervals (``confidence_level=0.95``, the default ``interval="auto"``), and the macro and micro averages
  with their intervals; ``roc_auc_summary`` (per-class and macro intervals and counts), the same on the whole set
  plus 9 subgroups (sex, 5 age bands, view position: the interval part of a disaggregated evaluation) with
  ``roc_auc_by_subgroup`` (one sort per class) and by slicing each subgroup out, and the paired comparison
  ``compare_roc_auc`` of two models;
- against the plain function: ``module.compute(...)`` of the loaded evaluate module (evaluate's own Arrow write and
  read included), without and with intervals, and both on the first 256 rows, which shows evaluate's fixed cost per
  call (cache file, lock, Arrow reader, ``Dataset``). The one-off ``evaluate.load(...)`` is timed once.

The subgroups come from the metadata's sex, age and view position when it is present, otherwise they are drawn with
NIH's proportions (56% male; ages in the five bands 2/22/37/35/4%; 60% PA).

Wall time and process CPU time are both reported: on a machine shared with other work, CPU time is steadier.

    python benchmarks/roc_auc_speed.py
    python benchmarks/roc_auc_speed.py --repeats 31
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # the recipe's modules live in the clone, as in transformers' examples
    sys.path.insert(0, str(REPO_ROOT))

from metrics.roc_auc_multilabel import (  # noqa: E402
    compare_roc_auc,
    multilabel_roc_auc,
    roc_auc_by_subgroup,
    roc_auc_summary,
)

METRIC_DIR = REPO_ROOT / "metrics" / "roc_auc_multilabel"
NUM_TEST_IMAGES = 25_596
AGE_BANDS = (0, 18, 40, 60, 80)  # 0-17, 18-39, 40-59, 60-79, 80+
TARGETS = {  # name: (numerator, denominator, largest allowed ratio)
    "plain / sklearn": ("plain", "sklearn", 1.0),
    "plain + per-class CIs / sklearn": ("plain_ci", "sklearn", 2.0),
    "summary on the whole set + 9 subgroups / sklearn": ("summary_subgroups", "sklearn", 2.0),
    "evaluate compute / plain": ("evaluate_compute", "plain", 3.0),
}


def metadata_dir() -> Path:
    default = REPO_ROOT.parent / "shared" / "data" / "nih-chestxray14"
    return Path(os.environ.get("NIH_CHESTXRAY14_METADATA", default))


def official_test_metadata(folder: Path) -> Optional[Tuple[np.ndarray, Dict[str, np.ndarray]]]:
    """Multi-hot labels ``(25596, 14)`` of NIH's official test images and their metadata columns (``patient_id``,
    ``sex``, ``age``, ``view_position``), or None when the metadata is absent."""
    if not folder.is_dir():
        return None
    from nih_chestxray14.errors import MissingMetadataError
    from nih_chestxray14.labels import multi_hot
    from nih_chestxray14.metadata import read_release_metadata

    try:
        release = read_release_metadata(str(folder))
    except MissingMetadataError:
        return None
    entries = [release.entries[name] for name in release.test]
    labels = np.asarray([multi_hot(entry.findings) for entry in entries], dtype=np.int8)
    columns = {
        "patient_id": np.asarray([entry.patient_id for entry in entries]),
        "sex": np.asarray([entry.sex for entry in entries]),
        "age": np.asarray([entry.age for entry in entries]),
        "view_position": np.asarray([entry.view_position for entry in entries]),
    }
    return labels, columns


def official_test_set(folder: Path) -> Optional[Tuple[np.ndarray, Dict[str, np.ndarray]]]:
    """Multi-hot labels ``(25596, 14)`` of the official test images and their subgroup masks (sex, age band, view),
    or None when the metadata is absent."""
    official = official_test_metadata(folder)
    if official is None:
        return None
    labels, columns = official
    age_band = np.searchsorted(AGE_BANDS, columns["age"], side="right") - 1
    return labels, subgroup_masks(columns["sex"] == "M", age_band, columns["view_position"] == "PA")


def synthetic_test_set(rng: np.random.Generator) -> Tuple[np.ndarray, Dict[str, np.ndarray]]:
    from nih_chestxray14.labels import LABELS
    from nih_chestxray14.sample import NIH_PREVALENCE

    prevalence = np.asarray([NIH_PREVALENCE[name] for name in LABELS])
    labels = (rng.random((NUM_TEST_IMAGES, len(LABELS))) < prevalence).astype(np.int8)
    male = rng.random(NUM_TEST_IMAGES) < 0.56
    age_band = rng.choice(len(AGE_BANDS), size=NUM_TEST_IMAGES, p=[0.02, 0.22, 0.37, 0.35, 0.04])
    return labels, subgroup_masks(male, age_band, rng.random(NUM_TEST_IMAGES) < 0.6)


def subgroup_masks(male: np.ndarray, age_band: np.ndarray, posteroanterior: np.ndarray) -> Dict[str, np.ndarray]:
    """Boolean row masks of the 9 subgroups: sex (2), age band (5), view position (2)."""
    masks = {"M": male, "F": ~male, "PA": posteroanterior, "AP": ~posteroanterior}
    masks.update({f"age band {band}": age_band == band for band in range(len(AGE_BANDS))})
    return masks


def summaries_with_subgroups(labels: np.ndarray, scores: np.ndarray, masks: Dict[str, np.ndarray]) -> None:
    """``roc_auc_summary`` on the whole set, and ``roc_auc_by_subgroup`` (one sort per class for all subgroups)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="ROC AUC", category=RuntimeWarning)
        roc_auc_summary(labels, scores)
        roc_auc_by_subgroup(labels, scores, masks)


def summaries_of_sliced_subgroups(labels: np.ndarray, scores: np.ndarray, masks: Dict[str, np.ndarray]) -> None:
    """The same by slicing each subgroup out and summarising it on its own (a sort per subgroup and class)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="ROC AUC", category=RuntimeWarning)
        roc_auc_summary(labels, scores)
        for mask in masks.values():
            roc_auc_summary(labels[mask], scores[mask])


def median_seconds(functions: Dict[str, Callable[[], object]], repeats: int) -> Dict[str, Dict[str, float]]:
    """Median wall time and median process CPU time (all threads) of each function, measured in interleaved rounds
    so that drifts in machine load hit all alike. CPU time is the steadier figure on a shared machine."""
    for function in functions.values():
        function()  # warm-up: caches, lazy imports
    wall: Dict[str, List[float]] = {name: [] for name in functions}
    cpu: Dict[str, List[float]] = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            start_wall, start_cpu = time.perf_counter(), time.process_time()
            function()
            cpu[name].append(time.process_time() - start_cpu)
            wall[name].append(time.perf_counter() - start_wall)
    return {
        "wall": {name: statistics.median(values) for name, values in wall.items()},
        "cpu": {name: statistics.median(values) for name, values in cpu.items()},
    }


def run(repeats: int, seed: int):
    import evaluate
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(seed)
    test_set = official_test_set(metadata_dir())
    source = "real official test labels and subgroups (Data_Entry_2017_v2020.csv, test_list.txt)"
    if test_set is None:
        test_set = synthetic_test_set(rng)
        source = "synthetic labels and subgroups with ChestX-ray14 proportions (metadata absent)"
    labels, masks = test_set
    scores = np.round(1.2 * labels + rng.normal(size=labels.shape), 3).astype(np.float32)
    other_scores = np.round(1.0 * labels + rng.normal(size=labels.shape), 3).astype(np.float32)

    start = time.perf_counter()
    module = evaluate.load(str(METRIC_DIR))
    load_seconds = time.perf_counter() - start

    expected = roc_auc_score(labels, scores, average=None)  # same values before timing anything
    ours = multilabel_roc_auc(labels, scores, average=None)["roc_auc"]
    through_evaluate = module.compute(references=labels, prediction_scores=scores, average=None)["roc_auc"]
    assert np.allclose(ours, expected, atol=1e-12, rtol=0)
    assert np.allclose(through_evaluate, expected, atol=1e-12, rtol=0)

    # Two groups, each interleaved: against scikit-learn, and evaluate against the plain function. Interleaving
    # evaluate with scikit-learn's large allocations makes evaluate's own allocations page-fault more, which says
    # more about the harness than about evaluate, so each comparison is measured among its own kind.
    against_sklearn = median_seconds(
        {
            "sklearn": lambda: roc_auc_score(labels, scores, average=None),
            "plain": lambda: multilabel_roc_auc(labels, scores, average=None),
            "plain_ci": lambda: multilabel_roc_auc(labels, scores, average=None, confidence_level=0.95),
            "plain_macro_ci": lambda: multilabel_roc_auc(labels, scores, confidence_level=0.95),
            "plain_micro_ci": lambda: multilabel_roc_auc(labels, scores, average="micro", confidence_level=0.95),
            "summary": lambda: roc_auc_summary(labels, scores),
            "summary_subgroups": lambda: summaries_with_subgroups(labels, scores, masks),
            "summary_sliced_subgroups": lambda: summaries_of_sliced_subgroups(labels, scores, masks),
            "compare": lambda: compare_roc_auc(labels, scores, other_scores),
        },
        repeats,
    )
    against_plain = median_seconds(
        {
            "plain": lambda: multilabel_roc_auc(labels, scores, average=None),
            "evaluate_compute": lambda: module.compute(references=labels, prediction_scores=scores, average=None),
            "evaluate_compute_ci": lambda: module.compute(
                references=labels, prediction_scores=scores, average=None, confidence_level=0.95
            ),
            # evaluate's fixed cost per call (cache file, lock, Arrow reader, Dataset), nearly independent of N
            "plain_small": lambda: multilabel_roc_auc(labels[:256], scores[:256], average=None),
            "evaluate_compute_small": lambda: module.compute(
                references=labels[:256], prediction_scores=scores[:256], average=None
            ),
        },
        repeats,
    )
    timings = {"against sklearn": against_sklearn, "against the plain function": against_plain}
    timings["load_seconds"] = load_seconds
    return timings, source, labels.shape


ROW_NAMES = {
    "sklearn": "scikit-learn `roc_auc_score(average=None)`",
    "plain": "`multilabel_roc_auc(average=None)`",
    "plain_ci": "`multilabel_roc_auc(average=None, confidence_level=0.95)` (per-class intervals)",
    "plain_macro_ci": "`multilabel_roc_auc(confidence_level=0.95)` (macro, MOVER over DeLong correlations)",
    "plain_micro_ci": '`multilabel_roc_auc(average="micro", confidence_level=0.95)` (cluster DeLong)',
    "summary": "`roc_auc_summary` (per-class and macro intervals, counts)",
    "summary_subgroups": "`roc_auc_summary` on the whole set + `roc_auc_by_subgroup` on 9 subgroups",
    "summary_sliced_subgroups": "the same, each subgroup sliced out and summarised on its own",
    "compare": "`compare_roc_auc` of two models (paired DeLong, per class and macro)",
    "evaluate_compute": "evaluate module `.compute(average=None)` (evaluate's Arrow write + read)",
    "evaluate_compute_ci": "evaluate module `.compute(average=None, confidence_level=0.95)`",
    "plain_small": "`multilabel_roc_auc(average=None)`, first 256 rows",
    "evaluate_compute_small": "evaluate module `.compute(average=None)`, first 256 rows (its fixed cost)",
}


def report(timings, source: str, shape: Tuple[int, int], repeats: int) -> str:
    lines = [
        f"Problem: {shape[0]:,} x {shape[1]}, {source}; float32 logits rounded to 3 decimals.",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"NumPy {np.__version__}. Medians of {repeats} interleaved runs after a warm-up; "
        f"load average at the end {os.getloadavg()[0]:.1f}.",
    ]
    for group, baseline in (("against sklearn", "sklearn"), ("against the plain function", "plain")):
        wall, cpu = timings[group]["wall"], timings[group]["cpu"]
        lines += [
            "",
            f"| {group} | wall ms | wall ratio | CPU ms | CPU ratio |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        for key in wall:
            lines.append(
                f"| {ROW_NAMES[key]} | {wall[key] * 1e3:.1f} | {wall[key] / wall[baseline]:.2f}x "
                f"| {cpu[key] * 1e3:.1f} | {cpu[key] / cpu[baseline]:.2f}x |"
            )
    lines += ["", f"`evaluate.load(...)`, once per process: {timings['load_seconds'] * 1e3:.1f} ms wall."]
    lines += ["", "| target | wall ratio | CPU ratio | limit |", "| --- | ---: | ---: | ---: |"]
    for name, (numerator, denominator, limit) in TARGETS.items():
        group = timings["against sklearn" if denominator == "sklearn" else "against the plain function"]
        lines.append(
            f"| {name} | {group['wall'][numerator] / group['wall'][denominator]:.2f}x "
            f"| {group['cpu'][numerator] / group['cpu'][denominator]:.2f}x | {limit:.1f}x |"
        )
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=15, help="timed runs per measurement (median is reported)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    timings, source, shape = run(args.repeats, args.seed)
    print(report(timings, source, shape, args.repeats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
