"""Publish a finished run: the model card written from the run's arguments, hardware and metrics, and the upload of
``output_dir`` to the Hub.

The card itself (inputs, ``model-index``, text) is rendered by ``model_card/``; this module only says what the recipe
tells it. The upload goes through ``huggingface_hub``'s ``upload_folder`` in one commit. The token is taken from
``--hub_token``, ``HF_TOKEN`` or the local login, and only ever travels in the ``Authorization`` header: it is never
written to a file, a log line or an error message. A failed upload leaves ``output_dir`` untouched.
"""

from __future__ import annotations

import glob
import logging
import os
import platform
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

from model_card import EVAL_RESULTS_FOLDER, ModelCardInputs, write_eval_results, write_model_card
from nih_chestxray14 import NIHChestXray14Config
from nih_chestxray14.hub import redact_secrets
from nih_chestxray14.labels import LABELS
from training.arguments import BUILDER_DATASET, DataTrainingArguments, ModelArguments, precision
from training.augment import ImageGeometry

logger = logging.getLogger(__name__)

NOT_UPLOADED: List[str] = [
    "checkpoint-*",        # resumable training state: large, and not part of the published model
    "checkpoint-*/**",
    "incomplete-checkpoint-*",  # what a killed run left half-written, set aside on resume
    "incomplete-checkpoint-*/**",
    "training_args.bin",   # a pickle; the card lists the hyperparameters in plain text
    "*/.*",                # hidden files below the top (e.g. a half-written file in .eval_results/)
    "runs/**",
]
"""Patterns of ``output_dir`` that stay local. Hidden entries at the top of ``output_dir`` (e.g. a half-written card,
``.README.md.*.partial``) stay local too, all but ``.eval_results/``: see :func:`not_uploaded`."""


def not_uploaded(output_dir: Path) -> List[str]:
    """:data:`NOT_UPLOADED`, plus each hidden file or folder at the top of ``output_dir`` except ``.eval_results/``
    (the Hub's evaluation results, which go with the model)."""
    hidden = sorted(path.name for path in Path(output_dir).iterdir()
                    if path.name.startswith(".") and path.name != EVAL_RESULTS_FOLDER)
    return [*NOT_UPLOADED, *(pattern for name in hidden for pattern in (glob.escape(name), f"{glob.escape(name)}/*"))]


# ---- the model card --------------------------------------------------------------------------------------------------
def hyperparameters(
    model_args: ModelArguments, data_args: DataTrainingArguments, training_args: Any, geometry: ImageGeometry
) -> Dict[str, Any]:
    """The settings a reader needs to reproduce the run, as a flat dict of plain values (no secrets).

    On IPUs, ``training.ipu.ipu_hyperparameters`` replaces the batch, optimizer and precision entries with what
    ``IPUTrainer`` does (its arguments have no ``optim`` and keep gradient accumulation in the ``IPUConfig``).
    """
    world_size = max(1, int(getattr(training_args, "world_size", 1)))
    precision_text = precision(training_args)
    if getattr(training_args, "tf32", None):
        precision_text += " (TF32 matmuls)"
    values: Dict[str, Any] = {
        "learning_rate": training_args.learning_rate,
        "train_batch_size_per_device": training_args.per_device_train_batch_size,
        "eval_batch_size_per_device": training_args.per_device_eval_batch_size,
        "gradient_accumulation_steps": training_args.gradient_accumulation_steps,
        "total_train_batch_size": training_args.per_device_train_batch_size
        * training_args.gradient_accumulation_steps
        * world_size,
        "num_processes": world_size,
        "num_train_epochs": training_args.num_train_epochs,
        "max_steps": training_args.max_steps if training_args.max_steps > 0 else None,
        "seed": training_args.seed,
        "optimizer": _enum_text(getattr(training_args, "optim", None)),  # IPUTrainingArguments: none (see ipu.py)
        "weight_decay": training_args.weight_decay,
        "lr_scheduler": _enum_text(training_args.lr_scheduler_type),
        "warmup_steps": training_args.warmup_steps,
        "warmup_ratio": getattr(training_args, "warmup_ratio", None) or None,  # transformers 4.x only
        "precision": precision_text,
        "torch_compile": bool(getattr(training_args, "torch_compile", False)),
        "image_size": geometry.crop_size,
        "image_mean": list(geometry.image_mean),
        "image_std": list(geometry.image_std),
        "loss": "BCE with logits" + (" (balanced pos_weight)" if model_args.class_weighting == "balanced" else ""),
        "augmentation": _augmentation_text(data_args),
        "best_checkpoint_by": getattr(training_args, "metric_for_best_model", None),
    }
    for name in ("base_learning_rate", "layer_decay", "drop_path_rate", "ema_decay"):  # fine-tuning options, if set
        values[name] = getattr(model_args, name, None)
    if model_args.model_name_or_path is None:
        values["model_type"] = model_args.model_type
        values["config_overrides"] = model_args.config_overrides
    return {key: value for key, value in values.items() if value is not None}


def hardware_description(training_args: Any, ipu_config_name: Optional[str]) -> str:
    """E.g. ``"1x NVIDIA H100 80GB HBM3"``, ``"CPU (2 processes on 2 cores, x86_64)"`` or
    ``"Graphcore IPUs (IPUConfig ...)"``."""
    if ipu_config_name is not None:
        return f"Graphcore IPUs (IPUConfig {ipu_config_name})"
    world_size = max(1, int(getattr(training_args, "world_size", 1)))
    device = getattr(training_args, "device", None)
    if device is not None and device.type == "cuda":
        import torch

        return f"{world_size}x {torch.cuda.get_device_name(device)}"
    cores = os.cpu_count() or 1
    processes = f"{world_size} processes on " if world_size > 1 else ""
    return f"CPU ({processes}{cores} cores, {platform.machine()})"


def write_card(
    output_dir: Path,
    *,
    model_name: str,
    model_args: ModelArguments,
    data_args: DataTrainingArguments,
    hyperparameters: Mapping[str, Any],
    hardware: str,
    validation_metrics: Mapping[str, float],
    test_metrics: Mapping[str, float],
    train_metrics: Mapping[str, Any],
    plots: Mapping[str, str],
    split_sizes: Mapping[str, int],
    localization: Optional[Mapping[str, Any]] = None,
    evaluation: Optional[Mapping[str, Mapping[str, Any]]] = None,
    confidence_level: float = 0.95,
    split_description: Optional[str] = None,
):
    """Write ``output_dir/README.md`` through ``model_card.write_model_card``, and the Hub's ``.eval_results/`` file
    (``model_card.write_eval_results``); return the card.

    ``localization`` is :func:`training.localize.localize_test_split`'s summary, when the test split has boxes.
    ``evaluation`` is split → the run's ``evaluation_<split>.json`` report (``--do_predict``), for the card's
    evaluation sections; ``split_description`` names the split the dataset was built on
    (``training.dataset.split_used``).
    """
    if data_args.dataset_name == BUILDER_DATASET and data_args.split_lists:
        validation_fraction = None  # the user's lists: the card names them instead of the hash rule
    elif data_args.dataset_name == BUILDER_DATASET:
        validation_fraction = data_args.validation_fraction or NIHChestXray14Config.validation_fraction
    else:
        validation_fraction = None  # an exported copy: its split was made elsewhere
    inputs = ModelCardInputs(
        model_name=model_name,
        base_model=model_args.model_name_or_path,
        dataset_name=data_args.dataset_name,
        dataset_config_name=data_args.dataset_config_name,
        validation_fraction=validation_fraction,
        label_names=LABELS,
        validation_metrics=_numbers(validation_metrics),
        test_metrics=_numbers(test_metrics),
        hyperparameters=dict(hyperparameters),
        hardware=hardware,
        train_runtime_s=train_metrics.get("train_runtime"),
        train_samples_per_second=train_metrics.get("train_samples_per_second"),
        plots=dict(plots),
        num_train_samples=split_sizes.get("train"),
        num_validation_samples=split_sizes.get("validation"),
        num_test_samples=split_sizes.get("test"),
        synthetic_data=bool(data_args.make_sample_release),
        localization=dict(localization or {}),
        evaluation=dict(evaluation or {}),
        confidence_level=confidence_level,
        split_description=split_description,
        custom_split=bool(data_args.split_lists),
    )
    card = write_model_card(output_dir, inputs)
    write_eval_results(output_dir, inputs)
    return card


def _enum_text(value: Any) -> Optional[str]:
    return None if value is None else str(getattr(value, "value", value))


def _augmentation_text(data_args: DataTrainingArguments) -> str:
    if not data_args.augment:
        return "none"
    parts = [
        f"random resized crop (area {data_args.crop_scale_min:g}-{data_args.crop_scale_max:g})",
        f"rotation ±{data_args.rotation_degrees:g}°",
        f"brightness ±{data_args.brightness:g}",
        f"contrast ±{data_args.contrast:g}",
    ]
    parts.append("horizontal flip" if data_args.horizontal_flip else "no horizontal flip")
    return ", ".join(parts)


def _numbers(metrics: Mapping[str, Any]) -> Dict[str, float]:
    """The card's metric keys only: ``loss`` and the ``roc_auc*`` family (no runtime or epoch counters)."""
    return {key: float(value) for key, value in metrics.items()
            if (key == "loss" or key.startswith("roc_auc")) and isinstance(value, (int, float))}


# ---- the upload ------------------------------------------------------------------------------------------------------
class PushError(RuntimeError):
    """The upload to the Hub failed (or could not start). ``output_dir`` is complete and can be uploaded again."""


def resolve_repo_id(hub_model_id: Optional[str], output_dir: Path, token: Optional[str]) -> str:
    """The full ``namespace/name`` repo id: ``--hub_model_id``, or the output folder's name, under the token's user.

    Called before training, so a missing login or a bad token stops the run before hours of work.

    Raises:
        PushError: if no namespace is given and the token's user can't be found (not logged in, bad token, no Hub).
    """
    name = hub_model_id or Path(output_dir).resolve().name
    if "/" in name:
        return name
    from huggingface_hub import HfApi

    try:
        user = HfApi(token=token).whoami()["name"]
    except Exception as error:  # noqa: BLE001 - any failure here means the same thing to the user
        raise PushError(
            f"--push_to_hub: cannot find which Hub user to publish {name!r} under ({_describe(error, token)}). Log in "
            "with `hf auth login`, set HF_TOKEN, or give --hub_model_id as namespace/name"
        ) from None
    return f"{user}/{name}"


def push_output_dir(
    output_dir: Path,
    repo_id: str,
    *,
    token: Optional[str] = None,
    private: Optional[bool] = None,
    revision: Optional[str] = None,
) -> str:
    """Create ``repo_id`` if needed and upload ``output_dir`` (except :func:`not_uploaded`) in one commit.

    Returns:
        The URL of the commit.

    Raises:
        PushError: if the repo can't be created or the upload fails; the message names the repo, says that
            ``output_dir`` is intact and how to retry, and never contains the token.
    """
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    output_dir = Path(output_dir)
    try:
        api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        if revision is not None:
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        commit = api.upload_folder(
            repo_id=repo_id,
            folder_path=output_dir,
            repo_type="model",
            revision=revision,
            commit_message="Upload model trained on NIH ChestX-ray14",
            ignore_patterns=not_uploaded(output_dir),
        )
    except Exception as error:  # noqa: BLE001 - report every failure the same way, without the token
        raise PushError(
            f"upload of {output_dir} to the Hub repo {repo_id} failed ({_describe(error, token)}). The folder is "
            f"intact: retry with `hf upload {repo_id} {output_dir} . --exclude 'checkpoint-*'` or rerun with "
            "--push_to_hub"
        ) from None
    logger.info("pushed %s to %s", output_dir, commit.commit_url)
    return commit.commit_url


def _describe(error: BaseException, token: Optional[str]) -> str:
    """One line about ``error``, with any Hub token (``token``, or one this process knows) redacted."""
    first_line = (str(error).strip().splitlines() or [""])[0]
    return redact_secrets(f"{type(error).__name__}: {first_line}" if first_line else type(error).__name__, [token])
