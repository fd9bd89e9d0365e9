"""The recipe's command-line arguments: two dataclasses parsed with transformers' ``TrainingArguments``.

``parse_arguments`` accepts flags, one ``.json`` file, or a ``.json`` file followed by flags that override it. Where
this recipe's defaults differ from ``TrainingArguments``' own (evaluate and save every epoch, keep the best checkpoint
by validation macro ROC AUC, keep the image column for on-the-fly transforms, mixed precision on GPUs that have it),
they are parser defaults, so an explicit flag or JSON key always wins.

Every number is checked while parsing (:data:`NUMBER_RULES`, plus a type check of JSON values and a finite check of
every float), so a negative learning rate or a fractional batch size stops the run with a one-line error that names
the option, before any data is prepared, rather than with an error from deep inside torch.
"""

from __future__ import annotations

import json
import math
import os
import typing
from dataclasses import MISSING, dataclass, field, fields, make_dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from transformers import HfArgumentParser

from nih_chestxray14.builder import DATASET_NAME
from training.augment import AugmentationConfig

BUILDER_DATASET = DATASET_NAME
"""``--dataset_name`` value that selects the project's builder (a raw NIH release in ``--data_dir``)."""

CLASS_WEIGHTINGS = ("none", "balanced")

OLDER_SPELLINGS = {"eval_strategy": "evaluation_strategy"}
"""``TrainingArguments`` fields that transformers 4.x, and so optimum-graphcore's ``IPUTrainingArguments``, spell the
old way. Recipe defaults, JSON keys and flags in the new spelling are respelled for a class that only has the old."""

NUMBER_RULES: List[Tuple[str, Callable[[Any], bool], str]] = [
    # (argument, test of its value, what the test asks for); an unset (None) optional argument is not tested.
    ("learning_rate", lambda value: value >= 0, ">= 0"),
    ("per_device_train_batch_size", lambda value: value >= 1, ">= 1"),
    ("per_device_eval_batch_size", lambda value: value >= 1, ">= 1"),
    ("gradient_accumulation_steps", lambda value: value >= 1, ">= 1"),
    ("eval_accumulation_steps", lambda value: value >= 1, ">= 1"),
    ("max_steps", lambda value: value > 0 or value == -1, "> 0, or -1 to train for --num_train_epochs"),
    ("num_train_epochs", lambda value: value >= 0, ">= 0"),
    ("weight_decay", lambda value: value >= 0, ">= 0"),
    ("adam_beta1", lambda value: 0 <= value < 1, "in [0, 1)"),
    ("adam_beta2", lambda value: 0 <= value < 1, "in [0, 1)"),
    ("adam_epsilon", lambda value: value >= 0, ">= 0"),
    ("max_grad_norm", lambda value: value >= 0, ">= 0 (0 turns clipping off)"),
    ("warmup_steps", lambda value: value >= 0, ">= 0"),
    ("logging_steps", lambda value: value > 0, "> 0"),
    ("eval_steps", lambda value: value > 0, "> 0"),
    ("save_steps", lambda value: value > 0, "> 0"),
    ("eval_delay", lambda value: value >= 0, ">= 0"),
    ("save_total_limit", lambda value: value >= 0, ">= 0 (0 keeps every checkpoint)"),
    ("seed", lambda value: 0 <= value < 2**32, "in [0, 2**32)"),
    ("data_seed", lambda value: 0 <= value < 2**32, "in [0, 2**32)"),
    ("dataloader_num_workers", lambda value: value >= 0, ">= 0 (0 loads in the main process)"),
    ("dataloader_prefetch_factor", lambda value: value >= 1, ">= 1"),
    ("preprocessing_num_workers", lambda value: value >= 1, ">= 1"),
]
"""Ranges of the numeric arguments that torch or the Trainer would otherwise reject late, or accept silently."""


@dataclass
class ModelArguments:
    """Which model to fine-tune (or build from scratch), its loss, and how checkpoints in ``output_dir`` are reused."""

    model_name_or_path: Optional[str] = field(
        default=None,
        metadata={
            "help": "Image-classification checkpoint to fine-tune: a Hub id such as google/vit-base-patch16-224-in21k "
            "or a local folder. Its classification head is replaced by a 14-finding multi-label head. Leave unset to "
            "build a randomly initialised model from --model_type."
        },
    )
    model_type: Optional[str] = field(
        default=None,
        metadata={"help": "Model type to build from scratch when no --model_name_or_path is given, e.g. 'vit'."},
    )
    config_overrides: Optional[str] = field(
        default=None,
        metadata={
            "help": "With --model_type: comma-separated config settings such as "
            "'hidden_size=64,num_hidden_layers=2,num_attention_heads=2,intermediate_size=128,image_size=64,patch_size=8'."
        },
    )
    image_processor_name: Optional[str] = field(
        default=None,
        metadata={
            "help": "Image processor (Hub id or folder) to take size, mean and std from. Defaults to the checkpoint's "
            "own; with --model_type, a ViT image processor at the config's image_size."
        },
    )
    model_revision: str = field(
        default="main", metadata={"help": "Branch, tag or commit of --model_name_or_path on the Hub."}
    )
    cache_dir: Optional[str] = field(
        default=None, metadata={"help": "Where downloaded checkpoints and prepared datasets are cached."}
    )
    ignore_mismatched_sizes: bool = field(
        default=True,
        metadata={"help": "Replace a checkpoint's classification head whose size differs from 14 labels."},
    )
    attn_implementation: str = field(
        default="sdpa",
        metadata={"help": "Attention kernel: 'sdpa' (PyTorch scaled_dot_product_attention), 'eager', ..."},
    )
    class_weighting: str = field(
        default="none",
        metadata={
            "help": "Weighting of the BCE loss for class imbalance: 'none', or 'balanced' (each finding's positives "
            "weighted by negatives/positives in the training split, capped at --max_pos_weight).",
            "choices": CLASS_WEIGHTINGS,
        },
    )
    max_pos_weight: float = field(
        default=50.0, metadata={"help": "Cap on a finding's positive weight with --class_weighting balanced."}
    )
    ipu_config_name: Optional[str] = field(
        default=None,
        metadata={
            "help": "Train on Graphcore IPUs with this IPUConfig (Hub id such as Graphcore/vit-base-ipu, or a local "
            "path). Needs optimum-graphcore and the Poplar SDK's poptorch. It is also written to ipu_config.json."
        },
    )
    # ---- fine-tuning options (training/layer_decay.py, drop_path.py, ema.py, learning_rate.py) ----
    base_learning_rate: Optional[float] = field(
        default=None,
        metadata={
            "help": "Peak learning rate per 256 images of global batch: the run's rate is this × "
            "per_device_train_batch_size × gradient_accumulation_steps × processes / 256 (logged). Replaces "
            "--learning_rate, which can't be given with it."
        },
    )
    layer_decay: Optional[float] = field(
        default=None,
        metadata={
            "help": "Layer-wise learning-rate decay d in (0, 1]: block i of L trains at d**(L-i) times the rate, the "
            "embeddings at d**(L+1), the head at 1. Unset: one rate for all."
        },
    )
    drop_path_rate: Optional[float] = field(
        default=None,
        metadata={"help": "Drop path (stochastic depth) rate of the last block, in [0, 1); linear in depth from 0."},
    )
    ema_decay: Optional[float] = field(
        default=None,
        metadata={
            "help": "Keep an exponential moving average of the weights with this decay in (0, 1), evaluate it beside "
            "the trained weights and keep it as the checkpoint's model when it scores better."
        },
    )
    # ---- end of fine-tuning options ----
    overwrite_output_dir: bool = field(
        default=False,
        metadata={
            "help": "Start afresh: don't resume from the last checkpoint in --output_dir, and delete that folder's "
            "checkpoint-* subfolders. Without it, a rerun with the same --output_dir resumes."
        },
    )

    def __post_init__(self) -> None:
        if self.model_name_or_path is None and self.model_type is None:
            raise ValueError(
                "give --model_name_or_path (a checkpoint to fine-tune) or --model_type (a model built from scratch, "
                "e.g. --model_type vit --config_overrides 'hidden_size=64,num_hidden_layers=2')"
            )
        if self.model_name_or_path is not None and self.config_overrides is not None:
            raise ValueError(
                "--config_overrides only applies with --model_type (a model built from scratch); it can't be "
                f"combined with --model_name_or_path {self.model_name_or_path!r}"
            )
        if self.model_name_or_path is None:
            from transformers import CONFIG_MAPPING

            if self.model_type not in CONFIG_MAPPING:
                raise ValueError(f"--model_type {self.model_type!r} is not a transformers model type (e.g. 'vit', 'deit')")
        if self.config_overrides is not None:
            parse_config_overrides(self.config_overrides)
        if self.max_pos_weight < 1:
            raise ValueError(f"--max_pos_weight must be >= 1, got {self.max_pos_weight}")
        if self.ipu_config_name is not None and self.class_weighting != "none":
            raise ValueError("--class_weighting is not supported with --ipu_config_name: IPUTrainer uses the model's loss")
        _check_fine_tuning_options(self)


def _check_fine_tuning_options(model_args: "ModelArguments") -> None:
    """Ranges of the fine-tuning options; none of them runs on IPUs, whose trainer is optimum-graphcore's."""
    ranges = {
        "base_learning_rate": (lambda value: value > 0, "> 0"),
        "layer_decay": (lambda value: 0 < value <= 1, "in (0, 1]"),
        "drop_path_rate": (lambda value: 0 <= value < 1, "in [0, 1)"),
        "ema_decay": (lambda value: 0 < value < 1, "in (0, 1)"),
    }
    for name, (test, requirement) in ranges.items():
        value = getattr(model_args, name)
        if value is None:
            continue
        if model_args.ipu_config_name is not None:
            raise ValueError(f"--{name} is not supported with --ipu_config_name")
        if not (math.isfinite(value) and test(value)):
            raise ValueError(f"--{name} must be {requirement}, got {value}")


@dataclass
class DataTrainingArguments:
    """Which data to train on, and how images are preprocessed and augmented."""

    dataset_name: str = field(
        default=BUILDER_DATASET,
        metadata={
            "help": f"'{BUILDER_DATASET}' to build the dataset from a raw NIH release in --data_dir, or a Hub id / "
            "local folder holding the exported Parquet dataset."
        },
    )
    dataset_config_name: Optional[str] = field(
        default=None,
        metadata={
            "help": "Builder config: 'default' (original PNGs), 'resized-224', 'resized-256' or 'resized-512'. The "
            "pre-resized configs decode far faster; pick the one just above the model's input size. For a Parquet "
            "dataset: its config name, if it has several."
        },
    )
    data_dir: Optional[str] = field(
        default=None,
        metadata={"help": f"Folder of the raw NIH release (archives or extracted images) for '{BUILDER_DATASET}'."},
    )
    validation_fraction: Optional[float] = field(
        default=None,
        metadata={
            "help": "Share of the official train_val patients held out for validation (builder only; the builder's "
            "default, 0.1, when unset). Patients never straddle splits."
        },
    )
    allow_missing_images: bool = field(
        default=False,
        metadata={"help": "Build from a partial download, skipping listed images whose file is missing (builder only)."},
    )
    split_lists: Optional[List[str]] = field(
        default=None,
        metadata={
            "help": "Your own split lists instead of NIH's official split (builder only), as split=FILE: e.g. "
            "train=train_list.txt validation=val_list.txt test=test_list.txt (CheXNet's lists). One image name per "
            "line; checked disjoint and patient-wise. Reports and the card name the lists used."
        },
    )
    allow_split_overlap: bool = field(
        default=False,
        metadata={"help": "With --split_lists, build even when the lists share images or patients (counted in a "
                          "warning and in the recorded split)."},
    )
    make_sample_release: bool = field(
        default=False,
        metadata={
            "help": "Write a synthetic release (X-ray-like PNGs with a learnable pattern per finding) into --data_dir "
            "first, unless that folder already holds one. For demos and tests; needs no download."
        },
    )
    sample_num_patients: int = field(default=60, metadata={"help": "Patients in the synthetic release."})
    sample_images_per_patient: int = field(default=3, metadata={"help": "Images per patient in the synthetic release."})
    sample_image_size: int = field(default=64, metadata={"help": "Side of the synthetic release's PNGs, in pixels."})
    sample_seed: int = field(default=0, metadata={"help": "Seed of the synthetic release."})
    sample_prevalence: Optional[float] = field(
        default=None,
        metadata={
            "help": "Probability of each finding per synthetic image. Default: NIH's own prevalences (0.002 for Hernia "
            "to 0.18 for Infiltration), which leave rare findings with one or two positives in a small release."
        },
    )
    sample_signal_strength: float = field(
        default=1.0, metadata={"help": "Contrast of the synthetic release's planted patterns (higher learns faster)."}
    )
    sample_bbox_fraction: float = field(
        default=0.05,
        metadata={
            "help": "Share of the synthetic release's images that get a box row in BBox_List_2017.csv, at a planted "
            "finding's place (about a fifth of them in the test split, whose boxes --do_predict scores). Raise it for "
            "localization figures on more than a handful of boxes."
        },
    )
    preprocessing_num_workers: Optional[int] = field(
        default=None, metadata={"help": "Processes for preparing the dataset (builder's num_proc)."}
    )
    max_train_samples: Optional[int] = field(
        default=None, metadata={"help": "Train on the first N training images only (debugging, quick runs)."}
    )
    max_eval_samples: Optional[int] = field(
        default=None, metadata={"help": "Evaluate on the first N validation images only."}
    )
    max_predict_samples: Optional[int] = field(
        default=None, metadata={"help": "Score the first N test images only."}
    )
    augment: bool = field(
        default=True,
        metadata={"help": "Augment training images (random resized crop, small rotation, brightness/contrast jitter)."},
    )
    crop_scale_min: float = field(
        default=0.75, metadata={"help": "Smallest crop area, as a fraction of the image, of the random resized crop."}
    )
    crop_scale_max: float = field(default=1.0, metadata={"help": "Largest crop area fraction of the random resized crop."})
    rotation_degrees: float = field(default=7.0, metadata={"help": "Largest rotation, in degrees, either way."})
    brightness: float = field(default=0.1, metadata={"help": "Brightness jitter: factor drawn from [1-x, 1+x]."})
    contrast: float = field(default=0.1, metadata={"help": "Contrast jitter: factor drawn from [1-x, 1+x]."})
    horizontal_flip: bool = field(
        default=False,
        metadata={
            "help": "Flip training images left-right at random. Off by default: a flip puts the heart on the right, "
            "which no real chest film shows (and Cardiomegaly is a label)."
        },
    )

    def __post_init__(self) -> None:
        if not self.dataset_name:
            raise ValueError(f"--dataset_name is empty: give '{BUILDER_DATASET}', a Hub id or a local folder")
        is_builder = self.dataset_name == BUILDER_DATASET
        if is_builder and self.data_dir is None:
            raise ValueError(
                f"--dataset_name {BUILDER_DATASET} builds the dataset from a raw NIH release: give its folder with "
                "--data_dir (or add --make_sample_release to write a synthetic one there)"
            )
        if not is_builder:
            for flag in ("make_sample_release", "allow_missing_images", "split_lists", "allow_split_overlap"):
                if getattr(self, flag):
                    raise ValueError(f"--{flag} only applies with --dataset_name {BUILDER_DATASET}")
            if self.validation_fraction is not None:
                raise ValueError(
                    f"--validation_fraction only applies with --dataset_name {BUILDER_DATASET}: an exported dataset "
                    "already has its validation split"
                )
        self.split_list_files()  # raises ValueError naming a malformed item
        if self.allow_split_overlap and not self.split_lists:
            raise ValueError("--allow_split_overlap only applies with --split_lists")
        if self.validation_fraction is not None and not 0 < self.validation_fraction < 1:
            raise ValueError(f"--validation_fraction must be in (0, 1), got {self.validation_fraction}")
        for name in ("sample_num_patients", "sample_images_per_patient"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be >= 1, got {getattr(self, name)}")
        if self.sample_prevalence is not None and not 0 < self.sample_prevalence < 1:
            raise ValueError(f"--sample_prevalence must be in (0, 1), got {self.sample_prevalence}")
        if self.sample_signal_strength <= 0:
            raise ValueError(f"--sample_signal_strength must be > 0, got {self.sample_signal_strength}")
        if not 0 < self.sample_bbox_fraction <= 1:
            raise ValueError(f"--sample_bbox_fraction must be in (0, 1], got {self.sample_bbox_fraction}")
        if self.sample_image_size < 8:
            raise ValueError(f"--sample_image_size must be >= 8, got {self.sample_image_size}")
        for name in ("max_train_samples", "max_eval_samples", "max_predict_samples"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"--{name} must be >= 1, got {value}")
        self.augmentation()  # raises ValueError naming the bad setting

    def split_list_files(self) -> Optional[Dict[str, str]]:
        """``--split_lists`` as the builder's ``split_lists`` parameter (``{"train": path, ...}``), or None.

        Raises:
            ValueError: for an item that is not split=FILE, an unknown or repeated split, or no train or test list.
        """
        if not self.split_lists:
            return None
        files: Dict[str, str] = {}
        for item in self.split_lists:
            split, sep, path = item.partition("=")
            if not sep or split not in ("train", "validation", "test") or not path or split in files:
                raise ValueError(f"--split_lists item {item!r}: give each of train=FILE, test=FILE and optionally "
                                 "validation=FILE once")
            files[split] = str(Path(path).expanduser())
        if "train" not in files or "test" not in files:
            raise ValueError("--split_lists needs at least train=FILE and test=FILE (validation is carved out of "
                             "train by patient when not given)")
        return files

    def augmentation(self) -> AugmentationConfig:
        """The training augmentation these flags describe.

        Raises:
            ValueError: for an out-of-range setting (e.g. crop_scale_min > crop_scale_max, rotation > 45 degrees).
        """
        try:
            return AugmentationConfig(
                crop_scale=(self.crop_scale_min, self.crop_scale_max),
                rotation_degrees=self.rotation_degrees,
                brightness=self.brightness,
                contrast=self.contrast,
                horizontal_flip=self.horizontal_flip,
            )
        except ValueError as error:
            raise ValueError(f"bad augmentation setting: {error} (see --crop_scale_min/--crop_scale_max, "
                             "--rotation_degrees, --brightness, --contrast)") from None


# ---- evaluation: operating points and calibration (used by --do_predict and training/evaluate.py) ----------------
THRESHOLD_RULES = ("youden", "max_f1", "sensitivity")
CALIBRATION_METHODS = ("none", "temperature", "platt")


@dataclass
class EvaluationArguments:
    """How the evaluation written with ``--do_predict`` (and by ``training/evaluate.py``) chooses its operating points
    and calibration, on the validation split, before applying them unchanged to test."""

    threshold_rule: Optional[str] = field(
        default=None,
        metadata={
            "help": "How each finding's threshold is chosen on validation (written to thresholds.json): 'youden' "
            "(the default: largest sensitivity + specificity - 1), 'max_f1', or 'sensitivity' (the default when "
            "--target_sensitivity is given).",
            "choices": THRESHOLD_RULES,
        },
    )
    target_sensitivity: Optional[float] = field(
        default=None,
        metadata={"help": "With the 'sensitivity' rule: the sensitivity each threshold must reach, e.g. 0.9."},
    )
    calibration: str = field(
        default="none",
        metadata={
            "help": "Calibration scaling fitted per finding on validation and saved as calibration.json: 'none', "
            "'temperature' or 'platt'. Reports show calibration on test before and after it.",
            "choices": CALIBRATION_METHODS,
        },
    )
    ece_bins: int = field(
        default=10, metadata={"help": "Equal-width probability bins of the expected calibration error."}
    )
    confidence_level: float = field(
        default=0.95, metadata={"help": "Level of every interval in the evaluation (AUCs, rates, differences)."}
    )
    expert_labels: Optional[List[str]] = field(
        default=None,
        metadata={
            "help": "Google's expert-label files (four_findings_expert_labels/test_labels.csv and "
            "validation_labels.csv, or torchxrayvision's google2019_nih-chest-xray-labels.csv.gz) to score the "
            "expert-labelled images against too. Default: those found in --data_dir, if any."
        },
    )

    def __post_init__(self) -> None:
        for path in self.expert_labels or ():
            if not Path(path).expanduser().is_file():
                raise ValueError(f"--expert_labels {path}: no such file")
        if self.threshold_rule is None:
            self.threshold_rule = "sensitivity" if self.target_sensitivity is not None else "youden"
        if self.threshold_rule == "sensitivity":
            if self.target_sensitivity is None:
                raise ValueError("--threshold_rule sensitivity needs --target_sensitivity, e.g. 0.9")
            if not 0.0 < self.target_sensitivity <= 1.0:
                raise ValueError(f"--target_sensitivity must be in (0, 1], got {self.target_sensitivity}")
        elif self.target_sensitivity is not None:
            raise ValueError(f"--target_sensitivity only applies with --threshold_rule sensitivity, not "
                             f"{self.threshold_rule}")
        if self.ece_bins < 2:
            raise ValueError(f"--ece_bins must be >= 2, got {self.ece_bins}")
        if not 0.0 < self.confidence_level < 1.0:
            raise ValueError(f"--confidence_level must be in (0, 1), got {self.confidence_level}")


RECIPE_ARGUMENTS: Tuple[type, ...] = (ModelArguments, DataTrainingArguments, EvaluationArguments)
"""The recipe's own argument dataclasses, parsed with ``TrainingArguments`` (in this order, before it)."""


def parse_config_overrides(overrides: str) -> Dict[str, str]:
    """Split ``"hidden_size=64,num_hidden_layers=2"`` into ``{"hidden_size": "64", ...}``.

    Raises:
        ValueError: naming the item that is not ``key=value``.
    """
    settings: Dict[str, str] = {}
    for item in overrides.split(","):
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ValueError(
                f"--config_overrides item {item!r} is not key=value (expected e.g. 'hidden_size=64,num_hidden_layers=2')"
            )
        settings[key.strip()] = value.strip()
    return settings


class RecipeArgumentParser(HfArgumentParser):
    """``HfArgumentParser`` whose errors raise ``ValueError`` instead of printing usage and exiting.

    argparse's report of a bad value (``argument --per_device_train_batch_size: invalid int value: '2.5'``) comes after
    hundreds of lines of ``TrainingArguments`` usage; the recipe's command line prints the error alone, in one line.
    """

    def error(self, message: str) -> typing.NoReturn:
        raise ValueError(message)


def recipe_defaults(cuda_available: bool, bf16_supported: bool, cpus_per_process: int) -> Dict[str, Any]:
    """``TrainingArguments`` defaults of this recipe, for the hardware at hand.

    On CUDA: bf16 and TF32 where the GPU has them (fp16 otherwise), several data-loader workers with pinned memory
    kept alive between epochs, and batches copied to the GPU without waiting for it. On CPU the data loader stays in
    the main process and precision stays fp32. Everywhere: NaN and infinite losses are logged as they are.
    """
    defaults: Dict[str, Any] = {
        "eval_strategy": "epoch",
        "save_strategy": "epoch",
        "logging_strategy": "steps",
        "logging_steps": 50,
        "load_best_model_at_end": True,
        "metric_for_best_model": "roc_auc",
        "greater_is_better": True,
        "save_total_limit": 2,
        "remove_unused_columns": False,
        "report_to": "none",
        "optim": "adamw_torch_fused",
        # Every parameter of an image classifier takes part in each step; the search for unused ones costs a pass.
        "ddp_find_unused_parameters": False,
        # A NaN or infinite loss is logged as it is, not replaced by the running mean, which would hide a diverging
        # run; the filter's check also made the host wait for the device at every step.
        "logging_nan_inf_filter": False,
    }
    if cuda_available:
        if bf16_supported:
            defaults.update(bf16=True, tf32=True)
        else:
            defaults.update(fp16=True)
        workers = max(1, min(8, cpus_per_process))
        defaults.update(
            dataloader_num_workers=workers,
            dataloader_pin_memory=True,
            dataloader_persistent_workers=True,
            dataloader_prefetch_factor=4,
            # batches from pinned memory are copied while the previous step still runs, instead of after it
            accelerator_config={"non_blocking": True},
        )
    else:
        defaults.update(dataloader_pin_memory=False)  # pinned memory only helps host-to-GPU copies
    return defaults


def hardware_defaults() -> Dict[str, Any]:
    """:func:`recipe_defaults` for this machine and this process's share of its CPUs."""
    import torch

    cuda = torch.cuda.is_available()
    bf16 = bool(cuda and torch.cuda.is_bf16_supported())
    local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return recipe_defaults(cuda, bf16, max(1, cpus // max(1, local_processes)) - 1)


def precision(training_args: Any) -> str:
    """``"bf16"``, ``"fp16"`` or ``"fp32"``: the mixed precision ``training_args`` ask for.

    optimum-graphcore's ``IPUTrainingArguments`` have no ``bf16``/``fp16``: ``IPUTrainer`` halves the whole model to
    fp16 unless ``--fp32`` is given.
    """
    if hasattr(training_args, "fp32") and not hasattr(training_args, "fp16"):
        return "fp32" if training_args.fp32 else "fp16"
    return "bf16" if training_args.bf16 else "fp16" if training_args.fp16 else "fp32"


def ipu_config_name_from_argv(argv: Sequence[str]) -> Optional[str]:
    """Find ``--ipu_config_name`` before parsing, since it decides which ``TrainingArguments`` class to parse into."""
    if argv and str(argv[0]).endswith(".json"):
        value = _read_json_arguments(Path(argv[0])).get("ipu_config_name")
        argv = argv[1:]
    else:
        value = None
    for index, item in enumerate(argv):
        if item == "--ipu_config_name" and index + 1 < len(argv):
            value = argv[index + 1]
        elif item.startswith("--ipu_config_name="):
            value = item.split("=", 1)[1]
    return value


def parse_arguments(
    argv: Sequence[str], training_arguments_class: type, defaults: Optional[Mapping[str, Any]] = None,
    argument_classes: Sequence[type] = RECIPE_ARGUMENTS,
) -> Tuple[Any, ...]:
    """Parse flags, a ``.json`` file, or a ``.json`` file followed by overriding flags.

    Args:
        defaults: parser defaults that replace :func:`hardware_defaults` where both set a field (the IPU settings of
            :func:`training.ipu.ipu_defaults`; no evaluation schedule for a script that only predicts); a flag or JSON
            key still wins.
        argument_classes: the dataclasses parsed before ``training_arguments_class``: the recipe's
            (``ModelArguments``, ``DataTrainingArguments``, ``EvaluationArguments``) by default.

    Returns:
        One instance of each of ``argument_classes``, then the ``training_arguments_class`` instance.

    A field of :class:`ModelArguments` that ``training_arguments_class`` declares too (``IPUTrainingArguments`` has
    ``overwrite_output_dir`` and ``ipu_config_name``) is parsed once, by that class, and copied into ``ModelArguments``.

    Raises:
        ValueError: for a bad or inconsistent argument (the message names it), an unreadable JSON file, or a JSON key
            that no dataclass knows.
    """
    with_model = ModelArguments in argument_classes
    shared = [f.name for f in fields(ModelArguments) if with_model and _has_field(training_arguments_class, f.name)]
    parser = _parser(training_arguments_class, shared, argument_classes)
    respell = _respelling(training_arguments_class)
    defaults = {respell(key): value for key, value in {**hardware_defaults(), **(defaults or {})}.items()}
    defaults = {key: value for key, value in defaults.items() if _has_field(training_arguments_class, key)}
    argv = [_respelled_flag(item, respell) for item in argv]
    from_file: Dict[str, Any] = {}
    if argv and argv[0].endswith(".json"):
        from_file = {respell(key): value for key, value in _read_json_arguments(Path(argv[0])).items()}
        known = {f.name for dtype in parser.dataclass_types for f in fields(dtype)}
        unknown = sorted(set(from_file) - known)
        if unknown:
            raise ValueError(f"{argv[0]}: unknown argument(s) {', '.join(unknown)}")
        defaults.update(_checked_json_types(from_file, parser.dataclass_types, argv[0]))
        argv = argv[1:] + _required_flags(from_file, parser.dataclass_types, argv[1:])
    parser.set_defaults(**defaults)
    *parsed, training_args = parser.parse_args_into_dataclasses(args=argv, look_for_args_file=False)
    if with_model:
        index = list(argument_classes).index(ModelArguments)
        model_args = parsed[index]
        if shared:
            model_args = parsed[index] = ModelArguments(
                **{f.name: getattr(model_args, f.name) for f in fields(model_args)},
                **{name: getattr(training_args, name) for name in shared})
        if model_args.base_learning_rate is not None and _is_given("learning_rate", argv, from_file):
            raise ValueError("give --base_learning_rate (scaled by the global batch) or --learning_rate (used as it "
                             "is), not both")
    check_numbers(*parsed, training_args)
    check_output_dir(training_args.output_dir)
    return (*parsed, training_args)


def check_output_dir(output_dir: str) -> None:
    """Check that ``--output_dir`` is a folder, or can be made one, without creating it.

    Raises:
        ValueError: if it is a file, or its nearest existing parent is not a writable folder.
    """
    path = Path(output_dir).expanduser()
    if path.exists() and not path.is_dir():
        raise ValueError(f"--output_dir {output_dir} is a file, not a folder: give a folder for the model and results")
    parent = path
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"--output_dir {output_dir}: {parent} is not a folder this process can write to")


def check_numbers(*argument_objects: Any) -> None:
    """Check every float is finite and each argument of :data:`NUMBER_RULES` is in its range.

    Also checks that a training run has epochs to train: ``--num_train_epochs`` > 0 unless ``--max_steps`` is set.

    Raises:
        ValueError: naming the first bad argument, e.g. ``--learning_rate must be >= 0, got -0.001``.
    """
    values = {f.name: getattr(arguments, f.name) for arguments in argument_objects for f in fields(arguments)}
    for name, value in values.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"--{name} must be a finite number, got {value}")
    for name, test, requirement in NUMBER_RULES:
        value = values.get(name)
        if value is not None and not test(value):
            raise ValueError(f"--{name} must be {requirement}, got {value}")
    if values.get("do_train") and values.get("max_steps", -1) <= 0 and values.get("num_train_epochs", 1) <= 0:
        raise ValueError(
            f"--num_train_epochs is {values['num_train_epochs']}, so --do_train would train nothing: give a number of "
            "epochs > 0 or --max_steps"
        )


def _parser(training_arguments_class: type, shared: Sequence[str] = (),
            argument_classes: Sequence[type] = RECIPE_ARGUMENTS) -> "RecipeArgumentParser":
    classes = [_without_fields(dtype, shared) if dtype is ModelArguments and shared else dtype
               for dtype in argument_classes]
    return RecipeArgumentParser((*classes, training_arguments_class))


def _without_fields(dtype: type, names: Sequence[str]) -> type:
    """A copy of dataclass ``dtype`` without the fields ``names`` and without its checks (``__post_init__``); the
    parsed values go back into ``dtype`` itself, which checks them."""
    hints = typing.get_type_hints(dtype)
    kept = [(f.name, hints[f.name], field(default=f.default, default_factory=f.default_factory, metadata=f.metadata))
            for f in fields(dtype) if f.name not in names]
    return make_dataclass(dtype.__name__, kept)


def _required_flags(from_file: Dict[str, Any], dataclass_types: Sequence[type], argv: Sequence[str]) -> List[str]:
    """Flags for the JSON file's values of fields without a default, which argparse requires on the command line
    whatever the parser's defaults (``IPUTrainingArguments.output_dir``); a flag in ``argv`` still wins."""
    required = [f.name for dtype in dataclass_types for f in fields(dtype)
                if f.default is MISSING and f.default_factory is MISSING and f.name in from_file]
    given = {item[2:].partition("=")[0] for item in argv if item.startswith("--")}
    return [item for name in required if name not in given for item in (f"--{name}", str(from_file[name]))]


def _respelling(training_arguments_class: type) -> Callable[[str], str]:
    """Map a field name to the spelling ``training_arguments_class`` has (:data:`OLDER_SPELLINGS`)."""
    older = {new: old for new, old in OLDER_SPELLINGS.items()
             if not _has_field(training_arguments_class, new) and _has_field(training_arguments_class, old)}
    return lambda name: older.get(name, name)


def _respelled_flag(item: str, respell: Callable[[str], str]) -> str:
    """``--eval_strategy`` (or ``--eval_strategy=epoch``) in the spelling of the parser's training arguments."""
    if not item.startswith("--"):
        return item
    name, sep, value = item[2:].partition("=")
    return f"--{respell(name)}{sep}{value}"


def _checked_json_types(values: Dict[str, Any], dataclass_types: Sequence[type], source: str) -> Dict[str, Any]:
    """``values`` from a JSON file, with each int, float or bool argument checked to hold that type.

    A whole float (``8.0``) for an int argument becomes an int. The command line gets the same checks from argparse.

    Raises:
        ValueError: naming the file and the argument, e.g. ``per_device_train_batch_size must be a whole number``.
    """
    checked = dict(values)
    for dtype in dataclass_types:
        hints = typing.get_type_hints(dtype)
        for f in fields(dtype):
            if f.name not in values or values[f.name] is None:
                continue
            value, expected = values[f.name], _plain_type(hints.get(f.name))
            if expected is int and isinstance(value, float) and value.is_integer():
                checked[f.name] = int(value)
            elif expected is int and (isinstance(value, bool) or not isinstance(value, int)):
                raise ValueError(f"{source}: {f.name} must be a whole number, got {value!r}")
            elif expected is float and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise ValueError(f"{source}: {f.name} must be a number, got {value!r}")
            elif expected is bool and not isinstance(value, bool):
                raise ValueError(f"{source}: {f.name} must be true or false, got {value!r}")
    return checked


def _plain_type(hint: Any) -> Optional[type]:
    """``int``, ``float`` or ``bool`` for a field typed so (or ``Optional`` of it); ``None`` for any other type."""
    options = [option for option in typing.get_args(hint) if option is not type(None)] or [hint]
    return options[0] if len(options) == 1 and options[0] in (int, float, bool) else None


def _read_json_arguments(path: Path) -> Dict[str, Any]:
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"argument file {path} does not exist") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"argument file {path} is not valid JSON: {error}") from None
    if not isinstance(values, dict):
        raise ValueError(f"argument file {path} must hold one JSON object of argument names to values")
    return values


def _is_given(name: str, argv: Sequence[str], from_file: Dict[str, Any]) -> bool:
    """Whether ``--name`` is on the command line or a key of the JSON file (``from_file`` holds the file's values)."""
    return name in from_file or any(item == f"--{name}" or item.startswith(f"--{name}=") for item in argv)


def _has_field(dtype: type, name: str) -> bool:
    return any(f.name == name for f in fields(dtype))


__all__: List[str] = [
    "EvaluationArguments",
    "RECIPE_ARGUMENTS",
    "BUILDER_DATASET",
    "NUMBER_RULES",
    "ModelArguments",
    "DataTrainingArguments",
    "check_numbers",
    "check_output_dir",
    "parse_arguments",
    "parse_config_overrides",
    "precision",
    "recipe_defaults",
    "ipu_config_name_from_argv",
]
