#!/usr/bin/env python
"""Evaluate an image classifier on NIH ChestX-ray14 without training it, or compare two models' predictions.

Examples::

    # any image-classification checkpoint whose id2label names the 14 findings (any order), local or on the Hub
    python training/evaluate.py --model_name_or_path me/vit-chestxray14 \\
        --dataset_name nih_chestxray14 --dataset_config_name resized-256 --data_dir /data/nih --output_dir eval-out

    # two models scored on the same images: paired DeLong test per finding and for the macro mean
    python training/evaluate.py --compare runA/predictions_test.parquet runB/predictions_test.parquet

Scoring writes, in ``--output_dir``, for each split of ``--splits`` (default ``validation,test``):
``predictions_<split>.parquet`` (each image's labels, probabilities, sex, age, view position) and
``evaluation_<split>.json`` (AUCs with intervals and positive counts, operating points, calibration, subgroups,
prevalence shift), plus ``thresholds.json`` (chosen on validation by ``--threshold_rule``), ``calibration.json``
(with ``--calibration``) and the reliability diagram. Without validation in ``--splits``, the checkpoint's own
``thresholds.json`` and ``calibration.json`` are used when it has them. Both files cover the 14 findings: for a
checkpoint with other outputs too (a "No Finding" class), they do not cover those. ``training/run.py --do_predict``
writes the same files through the same code (``training/evaluation/``).

``--compare A B`` joins two ``predictions_<split>.parquet`` files on ``image_id``, prints a table and writes the
comparison to ``--output_file`` (``comparison.json``).

Arguments are parsed as ``training/run.py``'s (dataclasses, flags or one ``.json`` file, transformers'
``TrainingArguments`` for batch size, device and precision); a bad one stops with a one-line error.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

# Run from a clone, as training/run.py: the repository root on the path in place of this folder (whose evaluate.py
# would shadow the `evaluate` library).
_REPO_ROOT = Path(__file__).resolve().parents[1]
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(_REPO_ROOT)
elif str(_REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(_REPO_ROOT))

from nih_chestxray14.errors import NIHChestXray14Error  # noqa: E402
from nih_chestxray14.files import atomic_write_json  # noqa: E402
from nih_chestxray14.labels import LABELS  # noqa: E402
from training.arguments import (  # noqa: E402
    DataTrainingArguments,
    EvaluationArguments,
    RecipeArgumentParser,
    parse_arguments,
)

logger = logging.getLogger("training.evaluate")

SPLITS = ("validation", "test")
PREDICT_ONLY = {"eval_strategy": "no", "save_strategy": "no", "load_best_model_at_end": False, "logging_strategy": "no"}
"""``TrainingArguments`` defaults for a Trainer that only predicts (the recipe's are for training)."""


@dataclass
class ScoringArguments:
    """Which checkpoint to score, and on which splits."""

    model_name_or_path: Optional[str] = field(
        default=None,
        metadata={"help": "The image-classification checkpoint to score: a Hub id or a local folder. Its id2label must "
                          "name the 14 findings (any order; other outputs are ignored). To compare two models' "
                          "predictions instead: evaluate.py --compare A.parquet B.parquet [--output_file F]."},
    )
    model_revision: str = field(
        default="main", metadata={"help": "Branch, tag or commit of the checkpoint on the Hub."}
    )
    cache_dir: Optional[str] = field(
        default=None, metadata={"help": "Where downloaded checkpoints and prepared datasets are cached."}
    )
    image_processor_name: Optional[str] = field(
        default=None, metadata={"help": "Image processor to take size, mean and std from; default: the checkpoint's."}
    )
    splits: str = field(
        default="validation,test",
        metadata={"help": "Comma-separated splits to score: 'validation' (where operating points and calibration are "
                          "chosen) and/or 'test'."},
    )

    def __post_init__(self) -> None:
        if not self.model_name_or_path:
            raise ValueError("give --model_name_or_path (a checkpoint to score), or --compare A.parquet B.parquet")
        chosen = [split.strip() for split in self.splits.split(",") if split.strip()]
        unknown = [split for split in chosen if split not in SPLITS]
        if not chosen or unknown:
            raise ValueError(f"--splits {self.splits!r}: give 'validation', 'test' or both, comma-separated")
        self.split_list: List[str] = [split for split in SPLITS if split in chosen]


@dataclass
class ComparisonArguments:
    """Two prediction files to compare."""

    compare: List[str] = field(
        default_factory=list,
        metadata={"help": "Two predictions_<split>.parquet files, A then B: paired DeLong test of A against B."},
    )
    output_file: str = field(default="comparison.json", metadata={"help": "Where the comparison's JSON is written."})
    confidence_level: float = field(default=0.95, metadata={"help": "Level of the intervals of the differences."})

    def __post_init__(self) -> None:
        if len(self.compare) != 2:
            raise ValueError(f"--compare takes two predictions files (A and B), got {len(self.compare)}")
        for path in self.compare:
            if not Path(path).is_file():
                raise ValueError(f"--compare: {path} is not a file")
        if not 0.0 < self.confidence_level < 1.0:
            raise ValueError(f"--confidence_level must be in (0, 1), got {self.confidence_level}")


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """Score a checkpoint (or, with ``--compare``, compare two prediction files); return what was written.

    Returns:
        split → the content of ``evaluation_<split>.json``; with ``--compare``, the comparison's dict.

    Raises:
        ValueError: for a bad argument, a checkpoint that lacks a finding, unusable data or prediction files (the
            message names the argument, file, row or finding).
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    if any(item == "--compare" or item.startswith("--compare=") for item in argv):
        return compare(argv)

    from transformers import TrainingArguments

    scoring_args, data_args, evaluation_args, training_args = parse_arguments(
        argv, TrainingArguments, defaults=PREDICT_ONLY,
        argument_classes=(ScoringArguments, DataTrainingArguments, EvaluationArguments))
    _setup_logging(training_args)

    from training.augment import AugmentAndNormalise
    from training.data import collate_xrays
    from training.arguments import BUILDER_DATASET
    from training.dataset import load_chestxray14, split_used, write_sample_release
    from training.evaluation.checkpoint import load_checkpoint, saved_operating_points
    from training.evaluation.expert import load_expert_labels
    from training.evaluation.outputs import write_evaluation
    from training.evaluation.scoring import predict_split
    from training.model import image_geometry
    from training.trainer import ChestXray14Trainer

    # The checkpoint first: one that lacks a finding is refused before any data is prepared.
    model, image_processor, columns = load_checkpoint(scoring_args)
    with training_args.main_process_first(desc="preparing the dataset"):
        write_sample_release(data_args)
        dataset = load_chestxray14(data_args, cache_dir=scoring_args.cache_dir)
    limits = {"validation": data_args.max_eval_samples, "test": data_args.max_predict_samples}

    trainer = ChestXray14Trainer(
        model=model, args=training_args, data_collator=collate_xrays, processing_class=image_processor,
        augment_and_normalise=AugmentAndNormalise(image_geometry(image_processor)),
    )
    scored, description = {}, split_used(dataset, data_args)
    for split in scoring_args.split_list:
        images = dataset[split]
        if limits[split] is not None and limits[split] < len(images):
            images = images.select(range(limits[split]))
        scored[split] = predict_split(trainer, split, images, columns, description=description)

    if not trainer.is_world_process_zero():
        return {}
    operating_points = scaling = None
    if "validation" not in scored:
        operating_points, scaling = saved_operating_points(scoring_args, LABELS)
    outputs = write_evaluation(
        training_args.output_dir, scored, threshold_rule=evaluation_args.threshold_rule,
        target_sensitivity=evaluation_args.target_sensitivity, calibration=evaluation_args.calibration,
        confidence_level=evaluation_args.confidence_level, ece_bins=evaluation_args.ece_bins,
        operating_points=operating_points, scaling=scaling,
        expert=load_expert_labels(evaluation_args.expert_labels,
                                  data_args.data_dir if data_args.dataset_name == BUILDER_DATASET else None),
    )
    for split, report in outputs.reports.items():
        print(summary_table(report))
    logger.info("wrote %s", ", ".join(str(path) for path in outputs.files))
    return outputs.reports


def compare(argv: Sequence[str]) -> Dict[str, Any]:
    """``--compare A B``: print the paired comparison as a table and write it to ``--output_file`` as JSON."""
    from training.evaluation.comparison import compare_prediction_files, comparison_table

    (arguments,) = RecipeArgumentParser((ComparisonArguments,)).parse_args_into_dataclasses(
        args=list(argv), look_for_args_file=False)
    comparison = compare_prediction_files(*arguments.compare, confidence_level=arguments.confidence_level)
    output = Path(arguments.output_file)
    output.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(output, comparison)
    print(comparison_table(comparison))
    print(f"\nwritten to {output}")
    return comparison


def summary_table(report: Dict[str, Any]) -> str:
    """A short Markdown summary of one split's report: AUC with positives, and the operating point, per finding."""
    level = f"{report['confidence_level']:.0%}"
    macro = report["roc_auc"]["macro"]
    lines = [
        f"\n{report['split']}: {report['num_images']:,} images; macro ROC AUC {_auc(macro)} over {macro['findings']} "
        "findings",
        f"| finding | positives | AUC ({level} CI) | sensitivity | specificity |",
        "| --- | ---: | --- | ---: | ---: |",
    ]
    for name, entry in report["roc_auc"]["per_finding"].items():
        point = report.get("operating_points", {}).get(name)
        rates = (f"{point['sensitivity']['value']:.3f} | {point['specificity']['value']:.3f}" if point else "n/a | n/a")
        lines.append(f"| {name} | {entry['positives']:,} | {_auc(entry)} | {rates} |")
    return "\n".join(lines)


def _auc(entry: Dict[str, Any]) -> str:
    value, low, high = entry["value"], entry["ci_low"], entry["ci_high"]
    if value != value:  # NaN
        return "n/a"
    return f"{value:.4f} ({low:.4f}-{high:.4f})"


def _setup_logging(training_args) -> None:
    import datasets
    import transformers

    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", datefmt="%m/%d/%Y %H:%M:%S",
                        handlers=[logging.StreamHandler(sys.stdout)])
    log_level = training_args.get_process_log_level()
    if log_level == logging.WARNING and training_args.should_log:
        log_level = logging.INFO
    for name in ("training", "__main__"):
        logging.getLogger(name).setLevel(log_level)
    datasets.utils.logging.set_verbosity(max(log_level, logging.WARNING))
    transformers.utils.logging.set_verbosity(training_args.get_process_log_level())


if __name__ == "__main__":
    try:
        main()
    except (ValueError, FileNotFoundError, NIHChestXray14Error) as error:
        logger.debug("the evaluation stopped", exc_info=True)
        sys.exit(f"{Path(sys.argv[0]).name}: error: {error}")
