"""The classifier trained by the recipe, its label names, its saved operating point, and one image's 14 probabilities.

:meth:`FindingsModel.load` takes a folder written by ``training/run.py`` or the Hub id of one. Label names come from
the model's ``config.id2label``; the operating point from ``thresholds.json`` beside the weights when there is one
(written by the evaluation step):

.. code-block:: json

    {"rule": "youden", "target_sensitivity": null, "chosen_on": "validation", "num_images": 1234,
     "thresholds": {"Atelectasis": 0.31, "...": 0.0}}

A finding is called positive when its sigmoid probability is at least its threshold. Keys this module does not
know are ignored.

The model sees the image the way the recipe evaluates it: the central square of a non-square image (the recipe
resizes the shorter side and centre-crops), as three equal channels, through the checkpoint's own image processor.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

from PIL import Image

logger = logging.getLogger(__name__)

THRESHOLDS_FILE = "thresholds.json"

RULES: Dict[str, str] = {
    "youden": "Youden's J (sensitivity + specificity − 1) at its maximum",
    "max_f1": "the F1 score at its maximum",
    "sensitivity": "sensitivity of at least {target:g}",
}
"""Rules that may have chosen the thresholds, as the page describes them."""


class ModelLoadError(RuntimeError):
    """The model, its image processor or its ``thresholds.json`` could not be loaded; the message says why."""


@dataclass(frozen=True)
class OperatingPoint:
    """Per-finding thresholds on the sigmoid probability, and how they were chosen.

    Attributes:
        thresholds: label name → threshold in [0, 1], for the labels of the model that have one (``training/
            evaluate.py`` chooses thresholds for the 14 findings only, so a checkpoint with more outputs has some
            labels without).
        rule: ``"youden"``, ``"max_f1"``, ``"sensitivity"`` or another name a later version may write.
        target_sensitivity: the sensitivity asked for under the ``"sensitivity"`` rule.
        chosen_on: the split the thresholds were chosen on (``"validation"``).
        num_images: how many images that split held.
    """

    thresholds: Mapping[str, float]
    rule: str = "youden"
    target_sensitivity: Optional[float] = None
    chosen_on: Optional[str] = None
    num_images: Optional[int] = None

    def is_positive(self, label: str, probability: float) -> Optional[bool]:
        """Whether ``probability`` calls ``label`` positive (``probability >= threshold``); None for a label without
        a threshold, which gets no call."""
        threshold = self.thresholds.get(label)
        return None if threshold is None else probability >= threshold

    def describe(self) -> str:
        """One sentence on how the thresholds were chosen, for the page."""
        rule = RULES.get(self.rule, f"the rule {self.rule!r}")
        if self.rule == "sensitivity":
            rule = rule.format(target=self.target_sensitivity) if self.target_sensitivity is not None else "a target sensitivity"
        where = f" on the {self.chosen_on} split" if self.chosen_on else ""
        if self.num_images is not None:
            where += f" ({self.num_images:,} images)"
        return f"Thresholds chosen per finding by {rule}{where}."


def read_operating_point(path: Path, labels: Sequence[str]) -> OperatingPoint:
    """Read and check ``thresholds.json`` for a model with ``labels``.

    Raises:
        ModelLoadError: if the file is not JSON, has no ``thresholds`` mapping, covers none of ``labels``, names a
            label the model doesn't have, or holds a threshold that is not a number in [0, 1]. The message names the
            file. Labels it leaves out get no call.
    """
    try:
        content = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelLoadError(f"{path} cannot be read as JSON ({error}); write it again with the evaluation step") from None
    thresholds = content.get("thresholds") if isinstance(content, dict) else None
    if not isinstance(thresholds, dict):
        raise ModelLoadError(f"{path} has no 'thresholds' mapping of label name to threshold")
    unknown = sorted(set(thresholds) - set(labels))
    if unknown or not thresholds:
        raise ModelLoadError(
            f"{path} does not match the model's labels (config.id2label): "
            + (f"unknown {unknown}" if unknown else "it has no threshold for any of them")
        )
    checked: Dict[str, float] = {}
    for label in (label for label in labels if label in thresholds):
        value = thresholds[label]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0 or math.isnan(value):
            raise ModelLoadError(f"{path}: the threshold of {label!r} is {value!r}, not a probability in [0, 1]")
        checked[label] = float(value)
    target = content.get("target_sensitivity")
    num_images = content.get("num_images")
    return OperatingPoint(
        thresholds=checked,
        rule=str(content.get("rule") or "youden"),
        target_sensitivity=float(target) if isinstance(target, (int, float)) else None,
        chosen_on=str(content["chosen_on"]) if content.get("chosen_on") else None,
        num_images=int(num_images) if isinstance(num_images, int) else None,
    )


@dataclass
class FindingsModel:
    """A loaded classifier: call :meth:`probabilities` on a grayscale image.

    Attributes:
        name: the folder or Hub id it was loaded from.
        model: a transformers image-classification model, in eval mode.
        image_processor: the checkpoint's image processor.
        labels: label names in ``config.id2label`` order.
        operating_point: the thresholds of ``thresholds.json``, or None when the model has none.
    """

    name: str
    model: Any
    image_processor: Any
    labels: Tuple[str, ...]
    operating_point: Optional[OperatingPoint]

    @classmethod
    def load(cls, name: str) -> "FindingsModel":
        """Load a folder or Hub id written by the recipe (safetensors weights only, no remote code).

        Raises:
            ModelLoadError: if the model or its image processor can't be loaded (not found, offline, not an
                image-classification model, no safetensors weights) or its ``thresholds.json`` is malformed.
        """
        from transformers import AutoImageProcessor, AutoModelForImageClassification

        try:
            model = AutoModelForImageClassification.from_pretrained(name, use_safetensors=True)
            image_processor = AutoImageProcessor.from_pretrained(name)
        except (OSError, ValueError, KeyError) as error:
            raise ModelLoadError(
                f"cannot load the model {name!r} ({_first_line(error)}); give a folder written by training/run.py or "
                "the Hub id of a model trained by it"
            ) from None
        model.eval()
        id2label = model.config.id2label
        labels = tuple(str(id2label[index]) for index in sorted(id2label, key=int))
        if getattr(model.config, "problem_type", None) != "multi_label_classification":
            logger.warning("%s has problem_type %r, not multi_label_classification: its sigmoid scores may not be "
                           "independent probabilities", name, getattr(model.config, "problem_type", None))
        thresholds_path = _find_thresholds(name)
        operating_point = read_operating_point(thresholds_path, labels) if thresholds_path is not None else None
        if operating_point is None:
            logger.info("%s has no %s: the page shows probabilities only", name, THRESHOLDS_FILE)
        return cls(name, model, image_processor, labels, operating_point)

    def probabilities(self, image: Image.Image) -> Dict[str, float]:
        """Sigmoid probability of each label, in :attr:`labels` order, for one image (any size; see the module doc)."""
        import torch

        inputs = self.image_processor(images=model_view(image).convert("RGB"), return_tensors="pt")
        with torch.no_grad():
            logits = self.model(**inputs).logits[0]
        return {label: float(p) for label, p in zip(self.labels, torch.sigmoid(logits).tolist())}


def model_view(image: Image.Image) -> Image.Image:
    """The part of ``image`` the model looks at: its central square (the whole image when it is square)."""
    width, height = image.size
    side = min(width, height)
    if width == height:
        return image
    left, top = (width - side) // 2, (height - side) // 2
    return image.crop((left, top, left + side, top + side))


def _find_thresholds(name: str) -> Optional[Path]:
    """``thresholds.json`` of a model folder or Hub repo, or None when the model has none.

    Raises:
        ModelLoadError: if the Hub can't say whether the file exists (offline with an incomplete cache).
    """
    folder = Path(name).expanduser()
    if folder.is_dir():
        candidate = folder / THRESHOLDS_FILE
        return candidate if candidate.is_file() else None
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import RemoteEntryNotFoundError

    try:
        return Path(hf_hub_download(name, THRESHOLDS_FILE))
    except RemoteEntryNotFoundError:
        return None
    except Exception as error:  # noqa: BLE001 - offline, no cache: say so rather than hide the operating point
        raise ModelLoadError(
            f"cannot tell whether {name!r} has a {THRESHOLDS_FILE} ({_first_line(error)}); connect to the Hub or "
            "download the model folder and give its path"
        ) from None


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]
