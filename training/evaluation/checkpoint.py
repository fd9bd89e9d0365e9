"""Load any image-classification checkpoint to score on the 14 findings, without training, and find its operating
points and calibration beside it.

Unlike the recipe's ``model.py``, which gives a checkpoint a fresh 14-finding head to fine-tune, this loads the
checkpoint as it is: its config untouched, its head never replaced (``ignore_mismatched_sizes=False``), weights from
safetensors only and never with ``trust_remote_code``. Its outputs are matched to the findings by name
(``scoring.finding_columns``), so a checkpoint that orders them differently, or has more outputs, is scored right,
and one that lacks a finding is refused with the names.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, List, Optional, Tuple

from training.evaluation.calibration import CALIBRATION_FILE, CalibrationScaling, read_scaling
from training.evaluation.operating_points import THRESHOLDS_FILE, OperatingPoints, read_thresholds
from training.evaluation.scoring import finding_columns
from training.model import build_image_processor

logger = logging.getLogger(__name__)

__all__ = ["load_checkpoint", "model_file", "saved_operating_points"]


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def load_checkpoint(arguments: Any) -> Tuple[Any, Any, List[int]]:
    """The model, its image processor, and the output column of each finding (in ``nih_chestxray14.LABELS`` order).

    Args:
        arguments: with ``model_name_or_path`` (a Hub id or a folder), ``model_revision``, ``cache_dir`` and
            ``image_processor_name`` (None for the checkpoint's own).

    Raises:
        ValueError: naming ``--model_name_or_path`` if the checkpoint can't be found, is not an image classifier, has
            no safetensors weights, or lacks a finding (naming the findings missing).
    """
    from transformers import AutoConfig, AutoModelForImageClassification

    name = arguments.model_name_or_path
    common = dict(revision=arguments.model_revision, cache_dir=arguments.cache_dir)
    try:
        config = AutoConfig.from_pretrained(name, **common)
    except (OSError, ValueError) as error:
        raise ValueError(f"--model_name_or_path {name!r}: {_first_line(error)}") from None
    try:
        columns = finding_columns(getattr(config, "id2label", None) or {})
    except ValueError as error:
        raise ValueError(f"--model_name_or_path {name!r}: {error}") from None
    if getattr(config, "problem_type", None) not in (None, "multi_label_classification"):
        logger.warning("%s was trained as %s; each finding is scored with the sigmoid of its own output", name,
                       config.problem_type)
    image_processor = build_image_processor(arguments, config)
    try:
        model = AutoModelForImageClassification.from_pretrained(
            name, config=config, use_safetensors=True, ignore_mismatched_sizes=False, **common)
    except (OSError, ValueError) as error:
        if "Unrecognized configuration class" in str(error):
            raise ValueError(f"--model_name_or_path {name!r} is a {config.model_type} model, which has no "
                             "image-classification head in transformers") from None
        raise ValueError(f"--model_name_or_path {name!r}: {_first_line(error)}") from None
    return model, image_processor, columns


def model_file(model_name_or_path: str, file_name: str, revision: str = "main",
               cache_dir: Optional[str] = None) -> Optional[Path]:
    """``file_name`` beside a model's weights (a local folder, or the Hub repo), or None when the model has none.

    Raises:
        ValueError: if the Hub can't be asked (offline, no access), naming the model and the file.
    """
    folder = Path(model_name_or_path).expanduser()
    if folder.is_dir():
        candidate = folder / file_name
        return candidate if candidate.is_file() else None
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    try:
        return Path(hf_hub_download(model_name_or_path, file_name, revision=revision, cache_dir=cache_dir))
    except EntryNotFoundError:
        return None
    except Exception as error:  # noqa: BLE001 - offline, gated, missing repo: all mean "cannot tell"
        raise ValueError(f"cannot tell whether {model_name_or_path!r} has a {file_name} ({_first_line(error)}); score "
                         "the validation split too, so that operating points are chosen on it") from None


def saved_operating_points(arguments: Any, label_names) -> Tuple[Optional[OperatingPoints],
                                                                  Optional[CalibrationScaling]]:
    """The checkpoint's own ``thresholds.json`` and ``calibration.json``, for an evaluation without validation.

    Raises:
        ValueError: if a file is there but malformed (naming it).
    """
    found = []
    for file_name, read in ((THRESHOLDS_FILE, read_thresholds), (CALIBRATION_FILE, read_scaling)):
        path = model_file(arguments.model_name_or_path, file_name, arguments.model_revision, arguments.cache_dir)
        found.append(None if path is None else read(path, label_names))
        logger.info("%s: %s", file_name, f"using {path}" if path else "none beside the model")
    return found[0], found[1]
