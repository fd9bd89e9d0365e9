"""Write a model's evaluation: the files that ``training/run.py --do_predict`` and ``training/evaluate.py`` leave.

For the scored splits (``validation`` and/or ``test``), in ``output_dir``:

- ``predictions_<split>.parquet``: each image's labels, probabilities and metadata (``predictions.py``);
- ``evaluation_<split>.json``: the report of ``report.py``;
- ``thresholds.json``: the operating points, chosen on validation when validation was scored (``operating_points.py``);
- ``calibration.json``: with ``calibration="temperature"`` or ``"platt"``, the scaling fitted on validation;
- ``reliability_<split>.png``: the reliability diagram of the test split (of validation when test was not scored).

With Google's expert labels, each report also scores the split's expert-labelled images against them.

Operating points and scaling are chosen on validation only, then applied unchanged to test. Without a scored
validation split, the caller may pass the model's own ``thresholds.json`` and ``calibration.json`` (read with
``operating_points.read_thresholds`` and ``calibration.read_scaling``); otherwise the report has no operating point.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

from nih_chestxray14.files import atomic_write_json
from training.evaluation.calibration import CALIBRATION_FILE, CalibrationScaling, fit_scaling, write_scaling
from training.evaluation.operating_points import OperatingPoints, choose_thresholds, write_thresholds
from training.evaluation.predictions import ScoredSplit, predictions_file, write_predictions
from training.evaluation.reliability_plot import plot_reliability
from training.evaluation.report import evaluate_split

logger = logging.getLogger(__name__)

__all__ = ["EvaluationOutputs", "evaluation_file", "write_evaluation", "write_split_files"]

VALIDATION, TEST = "validation", "test"


def evaluation_file(split: str) -> str:
    """``"evaluation_test.json"`` for ``"test"``."""
    return f"evaluation_{split}.json"


@dataclass
class EvaluationOutputs:
    """What :func:`write_evaluation` wrote.

    Attributes:
        reports: split → the content of its ``evaluation_<split>.json``.
        operating_points: the thresholds used (chosen now or given), or None.
        scaling: the calibration scaling used, or None.
        plots: caption → PNG file name relative to ``output_dir``.
        files: every file written, in order.
    """

    reports: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    operating_points: Optional[OperatingPoints] = None
    scaling: Optional[CalibrationScaling] = None
    plots: Dict[str, str] = field(default_factory=dict)
    files: List[Path] = field(default_factory=list)


def write_split_files(output_dir, scored: ScoredSplit, report: Mapping[str, Any]) -> List[Path]:
    """Write ``predictions_<split>.parquet`` and ``evaluation_<split>.json`` (NaN as ``NaN``) atomically."""
    output_dir = Path(output_dir)
    predictions = write_predictions(output_dir / predictions_file(scored.split), scored)
    evaluation = atomic_write_json(output_dir / evaluation_file(scored.split), report)
    return [predictions, evaluation]


def write_evaluation(
    output_dir,
    scored: Mapping[str, ScoredSplit],
    *,
    threshold_rule: str = "youden",
    target_sensitivity: Optional[float] = None,
    calibration: str = "none",
    confidence_level: float = 0.95,
    ece_bins: int = 10,
    operating_points: Optional[OperatingPoints] = None,
    scaling: Optional[CalibrationScaling] = None,
    expert: Optional[Any] = None,
) -> EvaluationOutputs:
    """Choose operating points (and a scaling) on validation, evaluate every scored split, and write the files.

    Args:
        output_dir: the folder to write into (the model folder for a training run); created if needed.
        scored: split name → :class:`ScoredSplit`; ``"validation"`` and/or ``"test"`` (other names are evaluated
            like test).
        threshold_rule, target_sensitivity: how thresholds are chosen on validation (``operating_points.py``).
        calibration: ``"none"``, ``"temperature"`` or ``"platt"``: the scaling fitted on validation.
        confidence_level: of every interval. ece_bins: equal-width bins of the ECE.
        operating_points, scaling: used when validation was not scored (e.g. read from the model's folder).
        expert: Google's expert labels (``nih_chestxray14.expert_labels.ExpertLabels``), to score each split's
            expert-labelled images against them too; or None.

    Returns:
        :class:`EvaluationOutputs`.

    Raises:
        ValueError: for a bad rule or method, or thresholds/scaling that miss a finding.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    outputs = EvaluationOutputs()
    validation = scored.get(VALIDATION)
    if validation is not None:
        operating_points = choose_thresholds(
            validation.references, validation.probabilities, validation.label_names, rule=threshold_rule,
            target_sensitivity=target_sensitivity, chosen_on=VALIDATION,
        )
        outputs.files.append(write_thresholds(output_dir, operating_points))
        scaling = None
        if calibration != "none":
            scaling = fit_scaling(validation.references, validation.probabilities, validation.label_names,
                                  calibration, fitted_on=VALIDATION)
            outputs.files.append(write_scaling(output_dir, scaling))
        elif (output_dir / CALIBRATION_FILE).is_file():
            (output_dir / CALIBRATION_FILE).unlink()  # an earlier run's scaling no longer matches this model's run
            logger.info("removed %s: this run fitted no calibration scaling", output_dir / CALIBRATION_FILE)
    elif operating_points is None:
        logger.warning("validation was not scored and no thresholds.json was given: the evaluation reports no "
                       "operating point")
    outputs.operating_points, outputs.scaling = operating_points, scaling

    order = sorted(scored, key=lambda split: (split != VALIDATION, split))  # validation first
    for split in order:
        report = evaluate_split(
            scored[split], operating_points=operating_points, scaling=scaling, confidence_level=confidence_level,
            ece_bins=ece_bins, reference=validation if split != VALIDATION else None, expert=expert,
        )
        outputs.reports[split] = report
        outputs.files.extend(write_split_files(output_dir, scored[split], report))
        logger.info("%s: macro ROC AUC %.4f on %d images; wrote %s", split, report["roc_auc"]["macro"]["value"],
                    scored[split].num_images, evaluation_file(split))

    shown = TEST if TEST in scored else order[-1] if order else None
    if shown is not None:
        split = scored[shown]
        outputs.plots.update(plot_reliability(
            split.references, split.probabilities, split.label_names, output_dir, split=shown, bins=ece_bins,
            calibration=outputs.reports[shown]["calibration"],
            scaled_probabilities=None if scaling is None else scaling.apply(split.probabilities, split.label_names),
            scaling_name=None if scaling is None else f"{scaling.method} scaling",
        ))
        outputs.files.extend(output_dir / name for name in outputs.plots.values())
    return outputs
