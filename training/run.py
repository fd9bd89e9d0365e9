#!/usr/bin/env python
"""Fine-tune an image classifier on NIH ChestX-ray14 (14 findings, multi-label) and publish it with a model card.

Examples::

    # ViT-Base from ImageNet-21k on the pre-resized builder config, scored on the official test split, then pushed
    python training/run.py \\
        --model_name_or_path google/vit-base-patch16-224-in21k \\
        --dataset_name nih_chestxray14 --dataset_config_name resized-256 --data_dir /data/nih \\
        --output_dir vit-chestxray14 --do_train --do_eval --do_predict \\
        --push_to_hub --hub_model_id me/vit-chestxray14

    torchrun --nproc_per_node 8 training/run.py ...      # several GPUs, same script
    python training/run.py training/configs/demo.json    # offline demo: synthetic release, tiny ViT, CPU
    python training/run.py training/configs/vit-base-nih.json --data_dir /data/nih   # the published ViT-B recipe

Rerunning with the same ``--output_dir`` resumes from its last complete checkpoint unless ``--overwrite_output_dir`` is
given (one that a killed run left half-written is renamed ``incomplete-checkpoint-N-<time>`` and kept).

``main()`` only orchestrates; each step lives in a small module of ``training/`` that a test can call on its own. To
follow one run: ``arguments.py`` (the flags and their checks), ``dataset.py`` and ``data.py`` (the ``DatasetDict`` and
its transforms), ``model.py``, ``trainer.py`` (the Trainer and its checkpoints, with ``loss.py`` and ``metrics.py``),
then ``plots.py``, ``localize.py`` (with ``--do_predict``: heatmaps scored against the test split's expert boxes) and
``publish.py`` (the card, rendered by ``model_card/``, and the upload). With ``--do_predict``, ``evaluation/`` writes
the evaluation of validation and test (predictions, operating points in ``thresholds.json``, calibration, subgroups;
the same code as ``training/evaluate.py``). ``ipu.py`` matters only with
``--ipu_config_name``; ``learning_rate.py``, ``layer_decay.py``, ``drop_path.py`` and ``ema.py`` only with their
options (``--base_learning_rate``, ``--layer_decay``, ``--drop_path_rate``, ``--ema_decay``).
"""

from __future__ import annotations

import gc
import logging
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

# The recipe runs from a clone, as transformers' examples do. Put the repository root (which holds training/,
# metrics/ and model_card/) on the path, in place of this folder, whose module names would shadow top-level ones.
_REPO_ROOT = Path(__file__).resolve().parents[1]
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(_REPO_ROOT)
elif str(_REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(_REPO_ROOT))

import datasets  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

from nih_chestxray14.errors import NIHChestXray14Error  # noqa: E402
from nih_chestxray14.labels import LABELS  # noqa: E402
from training.arguments import (  # noqa: E402
    BUILDER_DATASET,
    DataTrainingArguments,
    EvaluationArguments,
    ModelArguments,
    ipu_config_name_from_argv,
    parse_arguments,
    precision,
)
from training.augment import AugmentAndNormalise  # noqa: E402
from training.data import AugmentingCollator, collate_xrays, xray_view  # noqa: E402
from training.dataset import load_chestxray14, split_used, write_sample_release  # noqa: E402
from training.evaluation.expert import load_expert_labels  # noqa: E402
from training.evaluation.outputs import EvaluationOutputs, write_evaluation  # noqa: E402
from training.evaluation.predictions import ScoredSplit  # noqa: E402
from training.evaluation.scoring import scored_split_from_logits  # noqa: E402
from training.ipu import (  # noqa: E402
    IPUUnavailableError,
    check_device_steps,
    ipu_defaults,
    ipu_hyperparameters,
    load_ipu_config,
    trainer_classes,
    write_ipu_config,
)
from training.learning_rate import apply_base_learning_rate  # noqa: E402
from training.loss import MultiLabelBCELoss, balanced_pos_weight  # noqa: E402
from training.metrics import MultiLabelROCAUC, logits_of, sigmoid, strip_prefix  # noqa: E402
from training.model import build_config, build_image_processor, build_model, image_geometry  # noqa: E402
from training.plots import plot_roc_curves, plot_training_curves  # noqa: E402
from training.publish import (  # noqa: E402
    PushError,
    hardware_description,
    hyperparameters,
    push_output_dir,
    resolve_repo_id,
    write_card,
)
from training.trainer import checkpoint_to_resume  # noqa: E402
from training.localize import localize_test_split  # noqa: E402

logger = logging.getLogger(__name__)


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, float]:
    """Run the recipe with command-line ``argv`` (default ``sys.argv[1:]``); return the metrics of ``all_results.json``.

    Raises:
        ValueError: for bad or inconsistent arguments and unusable data (the message names the argument or file).
        IPUUnavailableError: with ``--ipu_config_name`` when optimum-graphcore cannot be imported.
        PushError: with ``--push_to_hub`` when the upload fails; ``output_dir`` is left complete.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    ipu_config_name = ipu_config_name_from_argv(argv)
    trainer_class, training_arguments_class = trainer_classes(ipu_config_name)
    ipu_settings = ipu_defaults() if ipu_config_name is not None else None  # Graphcore's ViT tutorial's settings
    model_args, data_args, evaluation_args, training_args = parse_arguments(argv, training_arguments_class,
                                                                            ipu_settings)
    hub_token = _take_hub_token(training_args)
    push_to_hub, training_args.push_to_hub = training_args.push_to_hub, False  # we upload the finished folder
    _setup_logging(training_args)
    apply_base_learning_rate(model_args.base_learning_rate, training_args)  # the scaling rule, logged
    output_dir = Path(training_args.output_dir)
    checkpoint = checkpoint_to_resume(training_args, model_args.overwrite_output_dir)
    # Checked before training, so a missing login stops the run early. Only the main process pushes.
    will_push = push_to_hub and getattr(training_args, "process_index", 0) == 0  # IPUs: one process
    repo_id = resolve_repo_id(training_args.hub_model_id, output_dir, hub_token) if will_push else None

    # Model config and preprocessing first: a bad --config_overrides fails before the dataset is prepared.
    config = build_config(model_args)
    image_processor = build_image_processor(model_args, config)

    # Data: the main process writes the sample release and prepares the dataset; the others then read its cache.
    with training_args.main_process_first(desc="preparing the dataset"):
        write_sample_release(data_args)
        dataset = load_chestxray14(data_args, cache_dir=model_args.cache_dir)
    dataset = _limit_samples(dataset, data_args)

    # Model (seeded first, so a model built from scratch starts from the same weights every run)
    transformers.set_seed(training_args.seed)
    model = build_model(model_args, config)
    geometry = image_geometry(image_processor)
    augment_and_normalise = AugmentAndNormalise(geometry, data_args.augmentation() if data_args.augment else None)

    # Trainer: the same for GPUs, CPUs and IPUs; only the classes and a few keyword names differ.
    pos_weight = _balanced_pos_weight(dataset["train"], model_args) if model_args.class_weighting == "balanced" else None
    trainer = _build_trainer(
        trainer_class, model, training_args, ipu_config_name, image_processor, pos_weight, augment_and_normalise,
        fine_tuning={"layer_decay": model_args.layer_decay, "ema_decay": model_args.ema_decay},
        train_dataset=xray_view(dataset["train"]) if training_args.do_train else None,
        eval_dataset=xray_view(dataset["validation"]),
    )
    if ipu_config_name is not None:  # a device step has a fixed size: check every split fits it before any work
        check_device_steps(trainer, {split: len(dataset[split]) for split, used in (
            ("train", training_args.do_train), ("validation", training_args.do_eval or training_args.do_predict),
            ("test", training_args.do_predict)) if used})

    # Train, evaluate, predict
    results: Dict[str, Any] = {}
    if training_args.do_train:
        train_result = trainer.train(resume_from_checkpoint=checkpoint)
        trainer.save_model()
        trainer.save_state()
        results.update(_report(trainer, "train", train_result.metrics))
    trainer.compute_metrics = MultiLabelROCAUC(LABELS, confidence_level=evaluation_args.confidence_level)
    if training_args.do_eval:
        results.update(_report(trainer, "eval", trainer.evaluate()))
    prediction, scored = None, {}
    if training_args.do_predict:
        prediction = trainer.predict(xray_view(dataset["test"]), metric_key_prefix="test")
        results.update(_report(trainer, "test", prediction.metrics))
        scored = _score_for_evaluation(trainer, dataset, prediction, data_args)

    # What gets published: the model folder with plots, ipu_config.json and the model card (main process only)
    if trainer.is_world_process_zero():
        evaluation = _write_evaluation(output_dir, scored, data_args, evaluation_args) if scored else None
        plots = _write_published_folder(trainer, output_dir, image_processor, prediction, ipu_config_name)
        if evaluation is not None:
            plots.update(evaluation.plots)
        # Heatmaps scored against the test split's expert boxes, when it has any (NIH's are all in test)
        localization = localize_test_split(trainer.model, image_processor, dataset["test"], output_dir) \
            if prediction is not None and ipu_config_name is None else {}
        write_card(
            output_dir,
            model_name=repo_id or output_dir.name,
            model_args=model_args,
            data_args=data_args,
            hyperparameters=hyperparameters(model_args, data_args, training_args, geometry)
            | ipu_hyperparameters(trainer),
            hardware=hardware_description(training_args, ipu_config_name),
            validation_metrics=strip_prefix(results, "eval_") or _last_validation_metrics(trainer.state.log_history),
            test_metrics=strip_prefix(results, "test_"),
            train_metrics=results,
            plots=plots,
            split_sizes={split: len(dataset[split]) for split in dataset},
            **localization,
            evaluation=evaluation.reports if evaluation is not None else None,
            confidence_level=evaluation_args.confidence_level,
            split_description=split_used(dataset, data_args),
        )
        # save_metrics("all", ...) merges into an old all_results.json; this run's results replace it instead.
        trainer.save_metrics("all", results, combined=False)
        if will_push:
            push_output_dir(output_dir, repo_id, token=hub_token, private=training_args.hub_private_repo,
                            revision=getattr(training_args, "hub_revision", None))
    return results


def _build_trainer(trainer_class, model, training_args, ipu_config_name: Optional[str], image_processor,
                   pos_weight: Optional[torch.Tensor], augment_and_normalise: AugmentAndNormalise, *,
                   fine_tuning: Dict[str, Any], train_dataset, eval_dataset):
    """The Trainer (or IPUTrainer) with the recipe's collator, metrics and loss.

    On GPUs and CPUs the loss is :class:`MultiLabelBCELoss` (with ``pos_weight`` for ``--class_weighting balanced``)
    and batches are augmented and normalised on the model's device (:class:`~training.trainer.ChestXray14Trainer`); on IPUs the model's own
    BCE runs on the device and the collators augment and normalise on the host. ``fine_tuning`` holds
    ``ChestXray14Trainer``'s ``layer_decay`` and ``ema_decay`` (``None`` for off; the arguments refuse them on IPUs).
    """
    kwargs: Dict[str, Any] = {}
    if ipu_config_name is not None:
        kwargs.update(ipu_config=load_ipu_config(ipu_config_name), tokenizer=image_processor,
                      data_collator=AugmentingCollator(augment_and_normalise, training=True),
                      eval_data_collator=AugmentingCollator(augment_and_normalise, training=False))
    else:
        kwargs.update(processing_class=image_processor, compute_loss_func=MultiLabelBCELoss(pos_weight),
                      data_collator=collate_xrays, augment_and_normalise=augment_and_normalise, **fine_tuning)
    return trainer_class(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        compute_metrics=MultiLabelROCAUC(LABELS),
        **kwargs,
    )


def _report(trainer, split: str, metrics: Dict[str, float]) -> Dict[str, float]:
    """Log a stage's metrics and save them to ``<split>_results.json``."""
    trainer.log_metrics(split, metrics)
    trainer.save_metrics(split, metrics)
    return metrics


def _write_published_folder(trainer, output_dir: Path, image_processor, prediction, ipu_config_name) -> Dict[str, str]:
    """Write the image processor, the plots and ``ipu_config.json`` next to the model; return the plots' captions."""
    output_dir.mkdir(parents=True, exist_ok=True)
    image_processor.save_pretrained(output_dir)
    plots = plot_training_curves(trainer.state.log_history, output_dir)
    if prediction is not None:
        probabilities = sigmoid(logits_of(prediction.predictions))
        plots.update(plot_roc_curves(prediction.label_ids, probabilities, LABELS, output_dir,
                                     strip_prefix(prediction.metrics, "test_")))
    write_ipu_config(output_dir, ipu_config_name, getattr(trainer, "ipu_config", None))  # IPUs: the one used
    return plots


# ---- the evaluation written with --do_predict (training/evaluation/) -----------------------------------------------
def _score_for_evaluation(trainer, dataset: datasets.DatasetDict, test_prediction,
                          data_args: DataTrainingArguments) -> Dict[str, ScoredSplit]:
    """The validation and test splits' probabilities, labels and metadata for the evaluation files.

    Test comes from the prediction just made; validation, where the operating points and the calibration are chosen,
    is predicted now. Every process takes part in the predictions; only the main one writes.
    """
    validation = trainer.predict(xray_view(dataset["validation"]), metric_key_prefix="eval")
    description = split_used(dataset, data_args)
    return {
        split: scored_split_from_logits(split, dataset[split], prediction.predictions, description=description,
                                        label_ids=prediction.label_ids)
        for split, prediction in (("validation", validation), ("test", test_prediction))
    }


def _write_evaluation(output_dir: Path, scored: Dict[str, ScoredSplit], data_args: DataTrainingArguments,
                      evaluation_args: EvaluationArguments) -> EvaluationOutputs:
    """Write predictions, evaluations, ``thresholds.json`` (and ``calibration.json``) and the reliability diagram;
    with Google's expert labels (``--expert_labels``, or found in ``--data_dir``), score against them too."""
    builder_data_dir = data_args.data_dir if data_args.dataset_name == BUILDER_DATASET else None
    return write_evaluation(
        output_dir, scored, threshold_rule=evaluation_args.threshold_rule,
        target_sensitivity=evaluation_args.target_sensitivity, calibration=evaluation_args.calibration,
        confidence_level=evaluation_args.confidence_level, ece_bins=evaluation_args.ece_bins,
        expert=load_expert_labels(evaluation_args.expert_labels, builder_data_dir),
    )


def _take_hub_token(training_args) -> Optional[str]:
    """Move ``--hub_token`` out of the arguments, which the Trainer pickles into ``training_args.bin``."""
    token = getattr(training_args, "hub_token", None)
    if token is not None:
        training_args.hub_token = None
    return token


def _setup_logging(training_args) -> None:
    logging.basicConfig(
        format="%(asctime)s - %(levelname)s - %(name)s - %(message)s",
        datefmt="%m/%d/%Y %H:%M:%S",
        handlers=[logging.StreamHandler(sys.stdout)],
    )
    log_level = training_args.get_process_log_level()
    if log_level == logging.WARNING and training_args.should_log:
        log_level = logging.INFO  # the recipe's own progress is worth seeing on the main process
    for name in ("training", "__main__", __name__):
        logging.getLogger(name).setLevel(log_level)
    datasets.utils.logging.set_verbosity(max(log_level, logging.WARNING))
    transformers.utils.logging.set_verbosity(training_args.get_process_log_level())
    logger.info(
        "process rank %s, device %s, %s process(es), precision %s",
        getattr(training_args, "process_index", 0), training_args.device, getattr(training_args, "world_size", 1),
        precision(training_args),
    )


def end_process_group() -> None:
    """Under torchrun, free what training left behind, then destroy the process group, while Python is still whole.

    Called after ``main()`` has returned (successfully), so its Trainer and the DDP wrapper it holds are gone first:
    freeing them after the group is destroyed can deadlock. A group left to interpreter exit can abort the process
    after a good run: a gloo thread still releasing a finished collective's tensors can't take the GIL while Python
    finalises ("terminate called without an active exception", SIGABRT). Not called after an error, when other
    processes may be inside a collective and destroying the group could hang.
    """
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        gc.collect()  # the Trainer sits in reference cycles; collect it (and its DDP model) now
        torch.distributed.destroy_process_group()


def _limit_samples(dataset: datasets.DatasetDict, data_args: DataTrainingArguments) -> datasets.DatasetDict:
    limits = {
        "train": data_args.max_train_samples,
        "validation": data_args.max_eval_samples,
        "test": data_args.max_predict_samples,
    }
    for split, limit in limits.items():
        if limit is not None and limit < len(dataset[split]):
            dataset[split] = dataset[split].select(range(limit))
    return dataset


def _balanced_pos_weight(train_split: datasets.Dataset, model_args: ModelArguments) -> torch.Tensor:
    """Positive weights from the training labels, read from Arrow without decoding a single image."""
    labels = np.asarray(train_split.select_columns(["labels"]).with_format("numpy")["labels"])
    pos_weight = balanced_pos_weight(labels, model_args.max_pos_weight)
    logger.info("positive weights per finding: %s", dict(zip(LABELS, [round(w, 2) for w in pos_weight.tolist()])))
    return pos_weight


def _last_validation_metrics(log_history: List[Dict[str, Any]]) -> Dict[str, float]:
    evaluations = [entry for entry in log_history if "eval_roc_auc" in entry]
    return strip_prefix(evaluations[-1], "eval_") if evaluations else {}


if __name__ == "__main__":
    try:
        main()
    except (ValueError, FileNotFoundError, NIHChestXray14Error, IPUUnavailableError, PushError) as error:
        logger.debug("the recipe stopped", exc_info=True)
        sys.exit(f"{Path(sys.argv[0]).name}: error: {error}")
    end_process_group()
