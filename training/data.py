"""Picklable image transforms for chest X-rays and the collator that batches them for the Trainer.

Every number that depends on the model (resize edge, crop size, mean, std) comes from the checkpoint's image
processor through :meth:`ImageGeometry.from_image_processor`; nothing here hard-codes ImageNet statistics.

The transforms are classes, not closures, because data-loader workers (and optimum-graphcore's loader) pickle them.
They use PIL, NumPy and torch only. Randomness comes from torch's global generator, which the Trainer seeds and
which every data-loader worker re-seeds on start, so augmentations differ between workers and repeat between runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image

from nih_chestxray14.labels import NUM_LABELS

__all__ = [
    "ImageGeometry",
    "AugmentationConfig",
    "to_grayscale",
    "XrayEvalTransform",
    "XrayTrainTransform",
    "collate_multilabel",
]


@dataclass(frozen=True)
class ImageGeometry:
    """What the model expects: a ``crop_size`` square, normalised per channel.

    Attributes:
        resize_size: the shorter image edge, in pixels, before the evaluation centre crop.
        crop_size: the side of the square the model sees, in pixels.
        image_mean, image_std: per-channel (R, G, B) statistics of pixel values scaled to [0, 1].
        resample: PIL resampling filter for resizing.
    """

    resize_size: int
    crop_size: int
    image_mean: Tuple[float, float, float] = (0.5, 0.5, 0.5)
    image_std: Tuple[float, float, float] = (0.5, 0.5, 0.5)
    resample: int = int(Image.Resampling.BILINEAR)

    def __post_init__(self) -> None:
        if self.crop_size <= 0 or self.resize_size < self.crop_size:
            raise ValueError(
                f"image geometry needs 0 < crop_size <= resize_size, got crop_size={self.crop_size}, "
                f"resize_size={self.resize_size}"
            )
        if len(self.image_mean) != 3 or len(self.image_std) != 3 or min(self.image_std) <= 0:
            raise ValueError(f"image_mean and image_std need 3 channels and std > 0, got {self.image_mean}, {self.image_std}")

    @classmethod
    def from_image_processor(cls, image_processor: Any) -> "ImageGeometry":
        """Read size, crop size, mean and std from a transformers image processor (ViT, BEiT, ConvNeXt, DeiT, ...).

        Raises:
            ValueError: if the processor's ``size`` has neither ``height``/``width`` nor ``shortest_edge``.
        """
        size = _as_size_dict(getattr(image_processor, "size", None))
        if "shortest_edge" in size:
            resize_size = int(size["shortest_edge"])
        elif "height" in size and "width" in size:
            resize_size = int(min(size["height"], size["width"]))
        else:
            raise ValueError(
                f"cannot read an image size from {type(image_processor).__name__}.size={size!r}: expected "
                "'height'/'width' or 'shortest_edge'"
            )
        crop = _as_size_dict(getattr(image_processor, "crop_size", None))
        if getattr(image_processor, "do_center_crop", False) and crop:
            crop_size = int(min(crop.get("height", resize_size), crop.get("width", resize_size)))
        else:
            crop_size = resize_size
        # ConvNeXt-style processors give a crop_pct instead of a crop size: resize to size / crop_pct, then crop.
        crop_pct = getattr(image_processor, "crop_pct", None)
        if crop_pct and "shortest_edge" in size and crop_size == resize_size and resize_size < 384:
            resize_size = int(round(resize_size / crop_pct))
        if getattr(image_processor, "do_normalize", True):
            mean = tuple(float(v) for v in _three_channels(image_processor.image_mean))
            std = tuple(float(v) for v in _three_channels(image_processor.image_std))
        else:
            mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
        resample = getattr(image_processor, "resample", None)
        resample = int(resample) if resample is not None else int(Image.Resampling.BILINEAR)
        return cls(resize_size=max(resize_size, crop_size), crop_size=crop_size, image_mean=mean, image_std=std,
                   resample=resample)


@dataclass(frozen=True)
class AugmentationConfig:
    """Training augmentation, mild on purpose: a chest X-ray's anatomy has a fixed orientation.

    Attributes:
        crop_scale: range of the crop's area as a fraction of the image (random resized crop).
        crop_ratio: range of the crop's aspect ratio (width / height).
        rotation_degrees: the rotation is drawn from ``[-rotation_degrees, rotation_degrees]``.
        brightness, contrast: factors drawn from ``[1 - x, 1 + x]``.
        horizontal_flip: flip left-right with probability 0.5. Off by default: it moves the heart to the right
            side of the image (dextrocardia), which no real PA/AP film shows, and Cardiomegaly is one of the labels.
    """

    crop_scale: Tuple[float, float] = (0.75, 1.0)
    crop_ratio: Tuple[float, float] = (0.9, 1.1)
    rotation_degrees: float = 7.0
    brightness: float = 0.1
    contrast: float = 0.1
    horizontal_flip: bool = False

    def __post_init__(self) -> None:
        low, high = self.crop_scale
        if not 0 < low <= high <= 1:
            raise ValueError(f"crop_scale needs 0 < low <= high <= 1, got {self.crop_scale}")
        low, high = self.crop_ratio
        if not 0 < low <= high:
            raise ValueError(f"crop_ratio needs 0 < low <= high, got {self.crop_ratio}")
        if not 0 <= self.rotation_degrees <= 45:
            raise ValueError(f"rotation_degrees must be in [0, 45], got {self.rotation_degrees}")
        for name in ("brightness", "contrast"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")


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


class _XrayTransform:
    """Shared part of both transforms: grayscale → float [0, 1] → 3 channels → normalised tensor."""

    def __init__(self, geometry: ImageGeometry):
        self.geometry = geometry
        self._mean = torch.tensor(geometry.image_mean, dtype=torch.float32).view(3, 1, 1)
        self._std = torch.tensor(geometry.image_std, dtype=torch.float32).view(3, 1, 1)

    def __call__(self, batch: Mapping[str, Sequence[Any]]) -> Dict[str, List[Any]]:
        """Transform a batch from ``Dataset.with_transform``: ``{"image": [PIL], "labels": [[0/1] * 14]}``.

        Returns ``{"pixel_values": [float32 tensor (3, crop, crop)], "labels": [...]}``; labels pass through.
        """
        output: Dict[str, List[Any]] = {"pixel_values": [self.transform_image(image) for image in batch["image"]]}
        if "labels" in batch:
            output["labels"] = list(batch["labels"])
        return output

    def transform_image(self, image: Image.Image) -> torch.Tensor:
        """Return one image as a float32 tensor of shape (3, crop_size, crop_size), normalised per channel."""
        square = self._square(to_grayscale(image))
        return self._normalise(np.asarray(square, dtype=np.float32) / 255.0)

    def _square(self, image: Image.Image) -> Image.Image:
        raise NotImplementedError

    def _normalise(self, gray: np.ndarray) -> torch.Tensor:
        # Broadcasting (1, H, W) against (3, 1, 1) gives the three identical channels a 3-channel model expects.
        return (torch.from_numpy(gray)[None] - self._mean) / self._std

    # The cached tensors are rebuilt on unpickling so the pickle stays small and readable.
    def __getstate__(self) -> Dict[str, Any]:
        return {key: value for key, value in self.__dict__.items() if not key.startswith("_")}

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self.__init__(**state)  # type: ignore[misc]

    def __repr__(self) -> str:
        fields = ", ".join(f"{key}={value!r}" for key, value in self.__getstate__().items())
        return f"{type(self).__name__}({fields})"


class XrayEvalTransform(_XrayTransform):
    """Evaluation: resize the shorter edge to ``resize_size``, then centre-crop ``crop_size``. Deterministic."""

    def _square(self, image: Image.Image) -> Image.Image:
        width, height = image.size
        scale = self.geometry.resize_size / min(width, height)
        side = self.geometry.crop_size / scale  # the crop's side in source pixels
        left, top = (width - side) / 2, (height - side) / 2
        size = (self.geometry.crop_size, self.geometry.crop_size)
        # One resize of the crop box: antialiased, and with reducing_gap it shrinks 1024-px PNGs fast.
        return image.resize(size, resample=self.geometry.resample, box=(left, top, left + side, top + side),
                            reducing_gap=3.0)


class XrayTrainTransform(_XrayTransform):
    """Training: random resized crop with a small rotation, then brightness/contrast jitter, then normalisation.

    The crop and rotation are one affine resampling of the source, so rotated corners are filled from the image around
    the crop rather than left black where the image has room. No horizontal flip unless ``augmentation`` asks for one.
    """

    def __init__(self, geometry: ImageGeometry, augmentation: Optional[AugmentationConfig] = None):
        super().__init__(geometry)
        self.augmentation = augmentation if augmentation is not None else AugmentationConfig()

    def _square(self, image: Image.Image) -> Image.Image:
        aug, out = self.augmentation, self.geometry.crop_size
        left, top, box_w, box_h = _random_crop_box(image.size, aug.crop_scale, aug.crop_ratio)
        # Shrink large sources by an integer factor first (box average, antialiased); the affine step below is
        # bilinear and would alias if it had to shrink by more than about 2x.
        factor = int(min(box_w, box_h) // (2 * out))
        if factor > 1:
            image = image.reduce(factor)
            left, top, box_w, box_h = left / factor, top / factor, box_w / factor, box_h / factor
        angle = math.radians(_uniform(-aug.rotation_degrees, aug.rotation_degrees))
        if aug.horizontal_flip and _uniform(0.0, 1.0) < 0.5:
            flip = -1.0
        else:
            flip = 1.0
        # Affine map from output coordinates to source coordinates: scale the unit square to the crop box, rotate
        # about the crop's centre. PIL applies it to continuous coordinates (pixel centres at +0.5).
        cos, sin = math.cos(angle), math.sin(angle)
        sx, sy = flip * box_w / out, box_h / out
        a, b, d, e = cos * sx, -sin * sy, sin * sx, cos * sy
        cx, cy = left + box_w / 2, top + box_h / 2
        coefficients = (a, b, cx - (a + b) * out / 2, d, e, cy - (d + e) * out / 2)
        return image.transform((out, out), Image.Transform.AFFINE, coefficients, resample=Image.Resampling.BILINEAR)

    def transform_image(self, image: Image.Image) -> torch.Tensor:
        aug = self.augmentation
        gray = np.asarray(self._square(to_grayscale(image)), dtype=np.float32) / 255.0
        if aug.brightness or aug.contrast:
            brightness = _uniform(1 - aug.brightness, 1 + aug.brightness)
            contrast = _uniform(1 - aug.contrast, 1 + aug.contrast)
            mean = float(gray.mean())
            gray = np.clip((gray * brightness - mean * brightness) * contrast + mean * brightness, 0.0, 1.0)
        return self._normalise(np.ascontiguousarray(gray, dtype=np.float32))


def collate_multilabel(examples: Sequence[Mapping[str, Any]]) -> Dict[str, torch.Tensor]:
    """Stack transformed examples into ``pixel_values`` (N, 3, H, W) float32 and ``labels`` (N, 14) float32.

    Labels are float because ``BCEWithLogitsLoss`` (multi-label classification) wants float targets.

    Raises:
        ValueError: if an example's labels are not a vector of length 14.
    """
    pixel_values = torch.stack([example["pixel_values"] for example in examples])
    batch = {"pixel_values": pixel_values}
    if examples and "labels" in examples[0]:
        labels = torch.as_tensor(np.asarray([example["labels"] for example in examples], dtype=np.float32))
        if labels.ndim != 2 or labels.shape[1] != NUM_LABELS:
            raise ValueError(
                f"expected multi-hot labels of length {NUM_LABELS} per example, got a batch of shape {tuple(labels.shape)}"
            )
        batch["labels"] = labels
    return batch


def _random_crop_box(
    image_size: Tuple[int, int], scale: Tuple[float, float], ratio: Tuple[float, float]
) -> Tuple[float, float, float, float]:
    """(left, top, width, height) of a random crop covering ``scale`` of the area with aspect ``ratio``."""
    width, height = image_size
    area = width * height
    log_low, log_high = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        target_area = area * _uniform(*scale)
        aspect = math.exp(_uniform(log_low, log_high))
        box_w = math.sqrt(target_area * aspect)
        box_h = math.sqrt(target_area / aspect)
        if box_w <= width and box_h <= height:
            return _uniform(0.0, width - box_w), _uniform(0.0, height - box_h), box_w, box_h
    side = float(min(width, height))  # fall back to the central square
    return (width - side) / 2, (height - side) / 2, side, side


def _uniform(low: float, high: float) -> float:
    if high <= low:
        return float(low)
    return float(torch.empty(()).uniform_(low, high))


def _as_size_dict(size: Any) -> Dict[str, int]:
    if size is None:
        return {}
    if isinstance(size, int):
        return {"height": size, "width": size}
    if isinstance(size, (tuple, list)):
        return {"height": int(size[0]), "width": int(size[-1])}
    return {key: value for key, value in dict(size).items() if value is not None}


def _three_channels(values: Any) -> Sequence[float]:
    if isinstance(values, (int, float)):
        return (values,) * 3
    values = list(values)
    return values * 3 if len(values) == 1 else values
