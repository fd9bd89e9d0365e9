"""Build the 14-finding multi-label classifier and its image processor, from a checkpoint or from scratch.

Either way the model has ``problem_type="multi_label_classification"``, 14 outputs and ``id2label``/``label2id``
from :data:`nih_chestxray14.LABELS`, so a ``pipeline("image-classification", function_to_apply="sigmoid")`` on the
saved folder names each score. Weights load from safetensors only, and never with ``trust_remote_code``.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Dict

from PIL import Image

from nih_chestxray14.labels import LABEL_TO_INDEX, LABELS, NUM_LABELS
from training.arguments import ModelArguments, parse_config_overrides
from training.augment import ImageGeometry
from training.drop_path import add_drop_path, drop_path_config_settings

logger = logging.getLogger(__name__)

ATTENTION_CHOICE_SINCE = "4.36"
"""The transformers release whose models first take ``attn_implementation=``. The IPU environment's 4.29 has one
attention (eager), so ``--attn_implementation`` is not passed there."""

TIMM_ADVICE = ("checkpoints in timm's format load through transformers' TimmWrapperForImageClassification, which "
               "needs `pip install timm` and a torchvision built for the installed torch")


def label_settings() -> Dict[str, Any]:
    """Config settings shared by every model of the recipe: the multi-label head over the 14 findings."""
    return {
        "num_labels": NUM_LABELS,
        "id2label": dict(enumerate(LABELS)),
        "label2id": dict(LABEL_TO_INDEX),
        "problem_type": "multi_label_classification",
    }


def build_config(model_args: ModelArguments):
    """The model config: the checkpoint's, or ``--model_type``'s defaults with ``--config_overrides`` applied.

    Raises:
        ValueError: if the checkpoint can't be found, or if an override names a setting the config doesn't have or
            has a value of the wrong type.
    """
    from transformers import CONFIG_MAPPING, AutoConfig

    if model_args.model_name_or_path is not None:
        try:
            config = AutoConfig.from_pretrained(
                model_args.model_name_or_path,
                revision=model_args.model_revision,
                cache_dir=model_args.cache_dir,
                **label_settings(),
            )
        except OSError as error:
            raise ValueError(f"--model_name_or_path {model_args.model_name_or_path!r}: {_first_line(error)}") from None
        return _with_drop_path(_without_timm_head_size(config), model_args)
    config = CONFIG_MAPPING[model_args.model_type]()
    if model_args.config_overrides:
        for key, value in parse_config_overrides(model_args.config_overrides).items():
            try:
                config.update_from_string(f"{key}={value}")
            except ValueError as error:
                raise ValueError(f"--config_overrides {key}={value}: {error}") from None
        logger.info("built a %s config with overrides %s", model_args.model_type, model_args.config_overrides)
    for key, value in label_settings().items():
        setattr(config, key, value)
    return _with_drop_path(config, model_args)


def _without_timm_head_size(config):
    """``config`` without the head size a timm checkpoint's ``model_args`` may carry.

    timm writes ``num_classes`` (0 for a headless encoder) into the ``model_args`` it saves, and transformers' timm
    wrapper passes both those and ``num_classes=num_labels`` to ``timm.create_model``, which refuses the repeat. The
    recipe's head has 14 outputs, so the checkpoint's own count is dropped.
    """
    model_args = getattr(config, "model_args", None)
    if config.model_type == "timm_wrapper" and isinstance(model_args, dict) and "num_classes" in model_args:
        config.model_args = {key: value for key, value in model_args.items() if key != "num_classes"}
    return config


def _with_drop_path(config, model_args: ModelArguments):
    """``config`` with ``--drop_path_rate`` set where the model has its own setting (see training/drop_path.py)."""
    if model_args.drop_path_rate is not None:
        for key, value in drop_path_config_settings(config, model_args.drop_path_rate).items():
            setattr(config, key, value)
    return config


def build_image_processor(model_args: ModelArguments, config):
    """The image processor whose size, mean and std the transforms use and which is saved beside the model.

    With ``--model_type`` and no ``--image_processor_name``: a ViT image processor (resize, rescale to [0, 1],
    normalise with mean = std = 0.5) at the config's ``image_size``.

    Raises:
        ValueError: if the named image processor can't be loaded, or, with ``--model_type``, if the config has no
            ``image_size`` and no ``--image_processor_name`` was given.
    """
    from transformers import AutoImageProcessor

    name = model_args.image_processor_name or model_args.model_name_or_path
    if name is not None:
        option = "--image_processor_name" if model_args.image_processor_name else "--model_name_or_path"
        try:
            return AutoImageProcessor.from_pretrained(name, revision=model_args.model_revision,
                                                      cache_dir=model_args.cache_dir)
        except OSError as error:  # a missing folder, or a Hub repo that can't be reached or has no processor
            raise ValueError(f"{option} {name!r}: no image processor there ({_first_line(error)})") from None
        except ImportError as error:  # a timm checkpoint's processor needs timm and torchvision
            raise ValueError(f"{option} {name!r}: {_first_line(error)} ({TIMM_ADVICE})") from None
    image_size = getattr(config, "image_size", None)
    if not isinstance(image_size, int):
        raise ValueError(
            f"--model_type {model_args.model_type} has no integer image_size in its config: give --image_processor_name"
        )
    try:
        from transformers.models.vit.image_processing_pil_vit import ViTImageProcessorPil as ViTImageProcessor
    except ImportError:  # transformers 4.x (the IPU environment): one ViT image processor, on PIL and NumPy
        from transformers import ViTImageProcessor

    return ViTImageProcessor(size={"height": image_size, "width": image_size})


def build_model(model_args: ModelArguments, config):
    """The classifier: the checkpoint's weights with a fresh 14-way head, or a randomly initialised model.

    Raises:
        ValueError: if ``--model_name_or_path`` is not an image-classification model or has no safetensors weights,
            or is a timm checkpoint and timm is not installed.
    """
    model = _load_model(model_args, config)
    if model_args.drop_path_rate is not None and not drop_path_config_settings(config, model_args.drop_path_rate):
        add_drop_path(model, model_args.drop_path_rate)  # ViT and DeiT: no setting of their own
    return model


def _load_model(model_args: ModelArguments, config):
    from transformers import AutoModelForImageClassification

    attention = _attention_kwargs(model_args)
    if model_args.model_name_or_path is None:
        return AutoModelForImageClassification.from_config(config, **attention)
    try:
        return AutoModelForImageClassification.from_pretrained(
            model_args.model_name_or_path,
            config=config,
            revision=model_args.model_revision,
            cache_dir=model_args.cache_dir,
            ignore_mismatched_sizes=model_args.ignore_mismatched_sizes,
            use_safetensors=True,
            **attention,
        )
    except OSError as error:  # e.g. a checkpoint without model.safetensors
        raise ValueError(f"--model_name_or_path {model_args.model_name_or_path!r}: {_first_line(error)}") from None
    except ImportError as error:  # a timm checkpoint without timm (TimmWrapperForImageClassification needs it)
        raise ValueError(f"--model_name_or_path {model_args.model_name_or_path!r}: {_first_line(error)} "
                         f"({TIMM_ADVICE})") from None
    except ValueError as error:
        if "Unrecognized configuration class" in str(error):
            raise ValueError(
                f"--model_name_or_path {model_args.model_name_or_path!r} is a {config.model_type} model, which has no "
                "image-classification head in transformers"
            ) from None
        raise


def _attention_kwargs(model_args: ModelArguments) -> Dict[str, Any]:
    """``{"attn_implementation": ...}`` where this transformers takes it; ``{}`` (with a note) where it doesn't."""
    import transformers
    from packaging.version import Version

    if Version(transformers.__version__) >= Version(ATTENTION_CHOICE_SINCE):
        return {"attn_implementation": model_args.attn_implementation}
    logger.info("transformers %s has one attention implementation (eager); --attn_implementation %s is not used",
                transformers.__version__, model_args.attn_implementation)
    return {}

def image_geometry(image_processor) -> ImageGeometry:
    """The input geometry the transforms use: :meth:`ImageGeometry.from_image_processor`, or for a timm checkpoint's
    processor its ``data_config`` (input size, ``crop_pct``, mean, std, interpolation).

    Raises:
        ValueError: if the processor gives no usable size.
    """
    data_config = getattr(image_processor, "data_config", None)
    if not isinstance(data_config, dict) or "input_size" not in data_config:
        return ImageGeometry.from_image_processor(image_processor)
    crop = int(min(data_config["input_size"][-2:]))
    crop_pct = float(data_config.get("crop_pct") or 1.0)
    smooth = str(data_config.get("interpolation", "bilinear")) in ("bicubic", "lanczos")
    return ImageGeometry(
        resize_size=max(crop, int(math.floor(crop / crop_pct))),  # timm: Resize(floor(size / crop_pct)), CenterCrop
        crop_size=crop,
        image_mean=tuple(float(v) for v in data_config["mean"]),
        image_std=tuple(float(v) for v in data_config["std"]),
        resample=int(Image.Resampling.BICUBIC if smooth else Image.Resampling.BILINEAR),
    )


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]
