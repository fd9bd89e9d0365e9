"""Pictures of a run, saved as PNGs in ``output_dir`` for the model card: convergence curves and per-finding ROC curves.

Figures are built with ``matplotlib.figure.Figure`` directly (no ``pyplot``), so nothing depends on a display or on
global plotting state, and each PNG is written atomically (a killed run leaves the old picture or none).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
from matplotlib.figure import Figure

from nih_chestxray14.files import atomic_path

LOSS_PLOT = "training_loss.png"
LEARNING_RATE_PLOT = "learning_rate.png"
ROC_PLOT = "roc_curves_test.png"


def plot_training_curves(log_history: Sequence[Mapping[str, Any]], output_dir: Path) -> Dict[str, str]:
    """Plot the training (and validation) loss and the learning rate against the optimizer step.

    Args:
        log_history: ``trainer.state.log_history``: dicts with ``step`` and ``loss`` / ``learning_rate`` /
            ``eval_loss`` / ``eval_roc_auc`` entries.
        output_dir: folder to write :data:`LOSS_PLOT` and :data:`LEARNING_RATE_PLOT` into.

    Returns:
        caption → PNG file name (relative to ``output_dir``) of the plots written; a curve with no logged point is
        skipped.
    """
    train_loss = _series(log_history, "loss")
    eval_loss = _series(log_history, "eval_loss")
    eval_auc = _series(log_history, "eval_roc_auc")
    learning_rate = _series(log_history, "learning_rate")
    written: Dict[str, str] = {}
    if train_loss or eval_loss:
        figure = Figure(figsize=(6.4, 4.0), layout="constrained")
        axes = figure.add_subplot()
        if train_loss:
            axes.plot(*zip(*train_loss), label="training loss", color="tab:blue")
        if eval_loss:
            axes.plot(*zip(*eval_loss), "o-", label="validation loss", color="tab:orange")
        axes.set_xlabel("optimizer step")
        axes.set_ylabel("BCE loss")
        if eval_auc:
            auc_axes = axes.twinx()
            auc_axes.plot(*zip(*eval_auc), "s--", label="validation macro ROC AUC", color="tab:green")
            auc_axes.set_ylabel("macro ROC AUC")
            auc_axes.set_ylim(0.0, 1.0)
            handles = axes.get_legend_handles_labels()[0] + auc_axes.get_legend_handles_labels()[0]
            axes.legend(handles=handles, loc="center right")
        else:
            axes.legend(loc="upper right")
        axes.set_title("Convergence")
        axes.grid(alpha=0.3)
        _save_png(figure, Path(output_dir) / LOSS_PLOT, dpi=120)
        written["Training loss, validation loss and validation macro ROC AUC"] = LOSS_PLOT
    if learning_rate:
        figure = Figure(figsize=(6.4, 3.2), layout="constrained")
        axes = figure.add_subplot()
        axes.plot(*zip(*learning_rate), color="tab:purple")
        axes.set_xlabel("optimizer step")
        axes.set_ylabel("learning rate")
        axes.set_title("Learning-rate schedule")
        axes.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
        axes.grid(alpha=0.3)
        _save_png(figure, Path(output_dir) / LEARNING_RATE_PLOT, dpi=120)
        written["Learning rate"] = LEARNING_RATE_PLOT
    return written


def roc_points(references: np.ndarray, scores: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """ROC curve of one finding: false- and true-positive rates at every distinct score threshold.

    Args:
        references: (N,) 0/1. scores: (N,) real scores, higher meaning "finding present".

    Returns:
        ``(fpr, tpr)``, both starting at 0 and ending at 1; ``(nan, nan)`` arrays if either class is absent.
    """
    references = np.asarray(references).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    positives, negatives = int(references.sum()), int((~references).sum())
    if positives == 0 or negatives == 0:
        return np.array([math.nan]), np.array([math.nan])
    order = np.argsort(-scores, kind="mergesort")
    sorted_scores, sorted_refs = scores[order], references[order]
    # One point per distinct threshold: the last index of each run of equal scores.
    last_of_run = np.r_[np.flatnonzero(np.diff(sorted_scores)), len(sorted_scores) - 1]
    true_positives = np.cumsum(sorted_refs)[last_of_run]
    false_positives = (last_of_run + 1) - true_positives
    return np.r_[0.0, false_positives / negatives], np.r_[0.0, true_positives / positives]


def plot_roc_curves(
    references: np.ndarray,
    probabilities: np.ndarray,
    label_names: Sequence[str],
    output_dir: Path,
    metrics: Optional[Mapping[str, float]] = None,
    split: str = "test",
) -> Dict[str, str]:
    """Plot one ROC curve per finding in a grid, with its AUC (and 95% interval, when in ``metrics``) in the title.

    Args:
        references: (N, C) 0/1 labels. probabilities: (N, C) sigmoid scores. label_names: the C names.
        metrics: the split's metrics without prefix (``roc_auc_<name>``, ``roc_auc_<name>_ci_low``, ...).

    Returns:
        caption → PNG file name (:data:`ROC_PLOT`) relative to ``output_dir``.
    """
    metrics = metrics or {}
    references, probabilities = np.asarray(references), np.asarray(probabilities)
    columns = 5
    rows = math.ceil(len(label_names) / columns)
    figure = Figure(figsize=(2.6 * columns, 2.6 * rows + 0.4), layout="constrained")
    grid = figure.subplots(rows, columns, squeeze=False, sharex=True, sharey=True)
    for index, axes in enumerate(grid.flat):
        if index >= len(label_names):
            axes.set_axis_off()
            continue
        name = label_names[index]
        fpr, tpr = roc_points(references[:, index], probabilities[:, index])
        axes.plot([0, 1], [0, 1], ":", color="grey", linewidth=0.8)
        axes.plot(fpr, tpr, color="tab:blue")
        axes.set_title(f"{name}\n{_auc_caption(metrics, name)}", fontsize=9)
        axes.set_aspect("equal")
        if index % columns == 0:
            axes.set_ylabel("true-positive rate", fontsize=8)
        if index >= len(label_names) - columns:
            axes.set_xlabel("false-positive rate", fontsize=8)
    macro = metrics.get("roc_auc")
    title = f"ROC curves on the {split} split"
    if macro is not None and not math.isnan(macro):
        title += f" (macro AUC {macro:.3f})"
    figure.suptitle(title)
    _save_png(figure, Path(output_dir) / ROC_PLOT, dpi=110)
    return {f"Per-finding ROC curves on the {split} split": ROC_PLOT}


def _save_png(figure: Figure, target: Path, dpi: int) -> None:
    with atomic_path(target) as partial:
        figure.savefig(partial, format="png", dpi=dpi)


def _auc_caption(metrics: Mapping[str, float], name: str) -> str:
    auc = metrics.get(f"roc_auc_{name}")
    if auc is None or math.isnan(auc):
        return "AUC n/a"
    low, high = metrics.get(f"roc_auc_{name}_ci_low"), metrics.get(f"roc_auc_{name}_ci_high")
    if low is None or high is None or math.isnan(low):
        return f"AUC {auc:.3f}"
    return f"AUC {auc:.3f} [{low:.2f}, {high:.2f}]"


def _series(log_history: Sequence[Mapping[str, Any]], key: str) -> List[Tuple[int, float]]:
    return [
        (int(entry["step"]), float(entry[key]))
        for entry in log_history
        if key in entry and "step" in entry and entry[key] is not None and not math.isnan(float(entry[key]))
    ]
