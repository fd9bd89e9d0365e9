"""The reliability diagram of a split, saved as a PNG for the model card: observed rate against predicted probability.

One panel per finding, in a grid: for each of the equal-width probability bins of the ECE (``calibration.py``) that
holds images, the bin's mean predicted probability against the share of its images that have the finding, with the
diagonal of perfect calibration; after scaling too, when a scaling was fitted on validation. Built with
``matplotlib.figure.Figure`` directly and written atomically, as ``training/plots.py`` does.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, Mapping, Optional, Sequence

import numpy as np
from matplotlib.figure import Figure

from nih_chestxray14.files import atomic_path
from training.evaluation.calibration import reliability_bins

__all__ = ["plot_reliability", "reliability_plot_file"]


def reliability_plot_file(split: str) -> str:
    """``"reliability_test.png"`` for ``"test"``."""
    return f"reliability_{split}.png"


def plot_reliability(
    references,
    probabilities,
    label_names: Sequence[str],
    output_dir,
    *,
    split: str = "test",
    bins: int = 10,
    calibration: Optional[Mapping[str, Mapping[str, float]]] = None,
    scaled_probabilities=None,
    scaling_name: Optional[str] = None,
) -> Dict[str, str]:
    """Draw the reliability diagram of ``probabilities`` (and ``scaled_probabilities``) against ``references``.

    Args:
        references: ``(N, C)`` 0/1. probabilities: ``(N, C)``. label_names: the C findings.
        output_dir: folder to write :func:`reliability_plot_file` into.
        split: the split's name, for the title and file name. bins: the ECE's equal-width bins.
        calibration: the report's ``calibration`` entry (finding → ``{"ece", "scaled": {"ece"}}``), for the titles.
        scaled_probabilities: ``(N, C)`` after scaling, or None. scaling_name: e.g. ``"temperature"``.

    Returns:
        caption → PNG file name, relative to ``output_dir``.
    """
    curves = [("model", np.asarray(probabilities), "tab:blue")]
    if scaled_probabilities is not None:
        curves.append((f"after {scaling_name or 'scaling'}", np.asarray(scaled_probabilities), "tab:orange"))
    columns = 5
    rows = math.ceil(len(label_names) / columns)
    figure = Figure(figsize=(2.6 * columns, 2.6 * rows + 0.6), layout="constrained")
    grid = figure.subplots(rows, columns, squeeze=False, sharex=True, sharey=True)
    binned = [(label, reliability_bins(references, values, bins), color) for label, values, color in curves]
    for index, axes in enumerate(grid.flat):
        if index >= len(label_names):
            axes.set_axis_off()
            continue
        name = label_names[index]
        axes.plot([0, 1], [0, 1], ":", color="grey", linewidth=0.8)
        for label, (counts, probability_sums, positive_counts), color in binned:
            filled = counts[index] > 0
            mean_probability = probability_sums[index][filled] / counts[index][filled]
            observed = positive_counts[index][filled] / counts[index][filled]
            axes.plot(mean_probability, observed, "o-", markersize=3, color=color, label=label)
        axes.set_title(f"{name}\n{_ece_caption(calibration, name)}", fontsize=9)
        axes.set_xlim(0, 1)
        axes.set_ylim(0, 1)
        axes.set_aspect("equal")
        if index % columns == 0:
            axes.set_ylabel("observed rate", fontsize=8)
        if index >= len(label_names) - columns:
            axes.set_xlabel("mean predicted probability", fontsize=8)
    handles, labels = grid.flat[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside lower center", ncols=len(labels), fontsize=8)
    figure.suptitle(f"Reliability on the {split} split ({bins} equal-width bins)")
    file_name = reliability_plot_file(split)
    with atomic_path(Path(output_dir) / file_name) as partial:
        figure.savefig(partial, format="png", dpi=110)
    return {f"Reliability diagram on the {split} split (calibration)": file_name}


def _ece_caption(calibration: Optional[Mapping[str, Mapping[str, float]]], name: str) -> str:
    entry = (calibration or {}).get(name)
    if not entry:
        return ""
    caption = f"ECE {entry['ece']:.3f}"
    if "scaled" in entry:
        caption += f" → {entry['scaled']['ece']:.3f}"
    return caption
