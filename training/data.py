"""The recipe's data loading: decode each image to 8-bit grey, and collate a batch of them with its labels.

The input pipeline has three steps, each in one place:

1. **decode**, per image, in the data loader (:func:`decode_xrays`, given to ``Dataset.with_transform``): the PNG
   becomes ``uint8`` grey pixels at their stored size;
2. **collate**, per batch, in the data loader (:func:`collate_xrays`): the pixels are stacked as ``uint8``
   (N, 1, H, W) beside each image's size and the float labels;
3. **augment and normalise**, per batch, on the model's device (:mod:`training.augment`): crop, rotation, jitter,
   resize, scaling, normalisation and three channels.

Only the first two run on the CPU, and they do no float work; a ``uint8`` batch is also a fraction of the bytes of
the float batch the model takes. :class:`AugmentingCollator` joins steps 2 and 3 on the host, for accelerators that
run nothing but their compiled model (IPUs).
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Sequence

import numpy as np
import torch
from PIL import Image

from nih_chestxray14.labels import NUM_LABELS
from training.augment import AugmentAndNormalise

__all__ = ["to_grayscale", "decode_xrays", "collate_xrays", "AugmentingCollator"]


def to_grayscale(image: Image.Image) -> Image.Image:
    """Return ``image`` as 8-bit grayscale ("L"), whatever its mode.

    NIH's PNGs are 8-bit grayscale, a few are RGBA; other releases ship 16-bit PNGs, which are scaled by their bit depth
    (the smallest of 8, 10, 12, 14, 16 bits that holds the image's maximum) rather than clipped at 255.
    """
    if image.mode == "L":
        return image
    if image.mode.startswith("I"):
        values = np.asarray(image, dtype=np.float64)
        top = float(values.max()) if values.size else 0.0
        bits = next((b for b in (8, 10, 12, 14, 16) if top < 2**b), 32)
        scaled = np.clip(values / (2**bits - 1) * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(scaled, mode="L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (0, 0, 0, 255))
        image = Image.alpha_composite(background, image)
    return image.convert("L")


def decode_xrays(batch: Mapping[str, Sequence[Any]]) -> Dict[str, List[Any]]:
    """Decode a batch from ``Dataset.with_transform``: ``{"image": [PIL], "labels": [[0/1] * 14]}``.

    Returns ``{"pixel_values": [uint8 array (h, w)], "labels": [...]}``: each image in 8-bit grey
    (:func:`to_grayscale`) at its stored size; labels pass through. A module-level function, so data-loader workers
    can pickle it.
    """
    output: Dict[str, List[Any]] = {"pixel_values": [np.asarray(to_grayscale(image)) for image in batch["image"]]}
    if "labels" in batch:
        output["labels"] = list(batch["labels"])
    return output


def collate_xrays(examples: Sequence[Mapping[str, Any]]) -> Dict[str, torch.Tensor]:
    """Stack decoded examples: ``pixel_values`` ``uint8`` (N, 1, H, W), ``image_sizes`` (N, 2), ``labels`` (N, 14).

    Images of different sizes share a batch: each sits in the top-left corner of an H × W canvas (the largest height
    and width), zeros elsewhere, and ``image_sizes`` holds its own ``height, width``. Labels are float32, as
    ``BCEWithLogitsLoss`` wants them.

    Raises:
        ValueError: if the batch is empty, an image is not a 2-D ``uint8`` array, or labels are not vectors of 14.
    """
    if not examples:
        raise ValueError("cannot collate an empty batch of examples")
    images = [np.asarray(example["pixel_values"]) for example in examples]
    if any(image.dtype != np.uint8 or image.ndim != 2 for image in images):
        raise ValueError("pixel_values must be uint8 grey images of shape (h, w), as decode_xrays gives; got "
                         f"{sorted({(str(image.dtype), image.shape) for image in images})}")
    sizes = np.array([image.shape for image in images], dtype=np.int64)
    height, width = sizes.max(axis=0)
    if (sizes == (height, width)).all():
        pixels = np.stack(images)
    else:
        pixels = np.zeros((len(images), height, width), dtype=np.uint8)
        for canvas, image in zip(pixels, images):
            canvas[: image.shape[0], : image.shape[1]] = image
    batch = {"pixel_values": torch.from_numpy(pixels)[:, None], "image_sizes": torch.from_numpy(sizes)}
    if "labels" in examples[0]:
        labels = torch.as_tensor(np.asarray([example["labels"] for example in examples], dtype=np.float32))
        if labels.ndim != 2 or labels.shape[1] != NUM_LABELS:
            raise ValueError(
                f"expected multi-hot labels of length {NUM_LABELS} per example, got a batch of shape {tuple(labels.shape)}"
            )
        batch["labels"] = labels
    return batch


class AugmentingCollator:
    """Collate, then augment (``training=True``) or only normalise, on the host: for IPUs, whose step can't.

    The same batch-wise work as on the model's device (:class:`training.augment.AugmentAndNormalise`), done in the
    data loader on the CPU. Each training batch draws its generator's seed from torch's global generator, which every
    data-loader worker seeds on start: runs repeat with the same seed and number of workers, but, unlike the device
    path, a resumed run does not repeat an uninterrupted one exactly.

    Returns ``{"pixel_values": float32 (N, 3, crop, crop), "labels": float32 (N, 14)}``.
    """

    def __init__(self, augment_and_normalise: AugmentAndNormalise, training: bool):
        self.augment_and_normalise = augment_and_normalise
        self.training = training

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.augment_and_normalise!r}, training={self.training})"

    def __call__(self, examples: Sequence[Mapping[str, Any]]) -> Dict[str, torch.Tensor]:
        batch = collate_xrays(examples)
        pixels, sizes = batch.pop("pixel_values"), batch.pop("image_sizes")
        if self.training:
            seed = int(torch.randint(0, 2**62, (), dtype=torch.int64))
            generator = torch.Generator().manual_seed(seed)
            batch["pixel_values"] = self.augment_and_normalise.training(pixels, sizes, generator)
        else:
            batch["pixel_values"] = self.augment_and_normalise.evaluation(pixels, sizes)
        return batch
