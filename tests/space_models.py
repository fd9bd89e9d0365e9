"""Model folders for the Space's tests: a tiny random ViT saved as the recipe saves one, and its own probabilities."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Mapping

import numpy as np
from PIL import Image

TINY_VIT = dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, image_size=32,
                patch_size=8)


def save_tiny_model(folder: Path, seed: int = 0) -> Path:
    """Save a random 14-label ViT (32 px) with its image processor into ``folder``, as ``training/run.py`` does."""
    import torch
    from transformers import ViTConfig, ViTForImageClassification
    from transformers.models.vit.image_processing_pil_vit import ViTImageProcessorPil

    from nih_chestxray14 import LABELS

    torch.manual_seed(seed)
    config = ViTConfig(**TINY_VIT, num_labels=len(LABELS), id2label=dict(enumerate(LABELS)),
                       label2id={label: index for index, label in enumerate(LABELS)},
                       problem_type="multi_label_classification")
    model = ViTForImageClassification(config)
    with torch.no_grad():  # spread the logits so that the findings' probabilities differ clearly
        model.classifier.weight.mul_(40.0)
    model.save_pretrained(folder)
    ViTImageProcessorPil(size={"height": 32, "width": 32}).save_pretrained(folder)
    return Path(folder)


def write_thresholds(folder: Path, thresholds: Mapping[str, float], rule: str = "youden", **extra) -> Path:
    """Write ``thresholds.json`` in the agreed format (see findings.py) and return its path."""
    content = {"rule": rule, "target_sensitivity": None, "chosen_on": "validation", "num_images": 1234,
               "thresholds": dict(thresholds), **extra}
    path = Path(folder) / "thresholds.json"
    path.write_text(json.dumps(content, indent=2))
    return path


def reference_probabilities(folder: Path, image: Image.Image) -> Dict[str, float]:
    """The saved model's sigmoid scores for a square grayscale ``image``, computed without the Space's code."""
    import torch
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    model = AutoModelForImageClassification.from_pretrained(folder).eval()
    processor = AutoImageProcessor.from_pretrained(folder)
    with torch.no_grad():
        logits = model(**processor(images=image.convert("RGB"), return_tensors="pt")).logits[0]
    return {model.config.id2label[i]: float(p) for i, p in enumerate(torch.sigmoid(logits))}


def synthetic_image(seed: int, size: int = 96, findings=("Cardiomegaly",)) -> np.ndarray:
    """An X-ray-like (size, size) uint8 image from nih_chestxray14.sample that uses every grey level 0 and 255."""
    from nih_chestxray14.sample import synthetic_xray

    pixels, _ = synthetic_xray(size, seed=seed, findings=findings)
    pixels = pixels.copy()
    pixels[0, 0], pixels[0, 1] = 0, 255  # so that a full-range scaling of it is the identity
    return pixels


def thresholds_around(probabilities: Mapping[str, float], positives: int = 5, margin: float = 0.01) -> Dict[str, float]:
    """Per-finding thresholds that call the ``positives`` most probable findings positive, ``margin`` from each score."""
    ranked = sorted(probabilities, key=probabilities.get, reverse=True)
    return {label: min(1.0, max(0.0, probabilities[label] + (-margin if rank < positives else margin)))
            for rank, label in enumerate(ranked)}
