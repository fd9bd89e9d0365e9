"""Picklable image transforms for chest X-rays and the collator that batches them for the Trainer.

Every number that depends on the model (resize edge, crop size, mean, std) comes from the checkpoint's image
processor through :meth:`ImageGeometry.from_image_processor`; nothing here hard-codes ImageNet statistics.

Work is split for speed: per image, a transform only decodes and does the geometry that needs PIL, and hands on 8-bit
grayscale pixels with a :class:`PixelPlan`; :func:`collate_multilabel` then does all float work once per batch
(augmented crop resampling, brightness/contrast jitter, scaling, normalisation, one channel to three).

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
    "PixelPlan",
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


@dataclass(frozen=True)
class PixelPlan:
    """What is left to do to one example's 8-bit pixels; :func:`collate_multilabel` does it once per batch.

    The transforms keep each image as ``uint8`` (1, h, w) and leave all float work to the collator, which does it for
    the whole batch in a few vectorised torch operations (and, with data-loader workers, inside the worker).

    Attributes:
        size: (height, width) of the image the model sees.
        image_mean, image_std: per-channel (R, G, B) statistics of pixel values scaled to [0, 1].
        affine: ``None`` when the pixels already have ``size``; otherwise the coefficients ``(a, b, c, d, e, f)`` that
            map a point ``(x, y)`` of the output to ``(a*x + b*y + c, d*x + e*y + f)`` in the pixels, both in
            continuous coordinates (pixel centres at +0.5), sampled bilinearly, black outside the image.
        brightness, contrast: jitter factors (1.0 leaves the image alone). The contrast pivots on the image's mean,
            and the result is clipped to [0, 1], as torchvision's ``ColorJitter`` does.
    """

    size: Tuple[int, int]
    image_mean: Tuple[float, float, float]
    image_std: Tuple[float, float, float]
    affine: Optional[Tuple[float, float, float, float, float, float]] = None
    brightness: float = 1.0
    contrast: float = 1.0


class _XrayTransform:
    """Shared part of both transforms: grayscale ``uint8`` (1, h, w) per image, with a :class:`PixelPlan` beside it."""

    def __init__(self, geometry: ImageGeometry):
        self.geometry = geometry
        self._size = (geometry.crop_size, geometry.crop_size)

    def __call__(self, batch: Mapping[str, Sequence[Any]]) -> Dict[str, List[Any]]:
        """Transform a batch from ``Dataset.with_transform``: ``{"image": [PIL], "labels": [[0/1] * 14]}``.

        Returns ``{"pixel_values": [uint8 tensor (1, h, w)], "pixel_plan": [PixelPlan], "labels": [...]}``; labels
        pass through. :func:`collate_multilabel` turns the pixels and plans into the model's float32 (N, 3, H, W).
        """
        prepared = [self.prepare(image) for image in batch["image"]]
        output: Dict[str, List[Any]] = {
            "pixel_values": [pixels for pixels, _ in prepared],
            "pixel_plan": [plan for _, plan in prepared],
        }
        if "labels" in batch:
            output["labels"] = list(batch["labels"])
        return output

    def prepare(self, image: Image.Image) -> Tuple[torch.Tensor, PixelPlan]:
        """One image as ``uint8`` pixels of shape (1, h, w) and the plan that finishes it in the collator."""
        raise NotImplementedError

    def transform_image(self, image: Image.Image) -> torch.Tensor:
        """One image all the way: a float32 tensor of shape (3, crop_size, crop_size), normalised per channel.

        The same result as the transform followed by :func:`collate_multilabel`, for one image.
        """
        pixels, plan = self.prepare(image)
        return collate_multilabel([{"pixel_values": pixels, "pixel_plan": plan}])["pixel_values"][0]

    def _plan(self, **kwargs: Any) -> PixelPlan:
        return PixelPlan(size=self._size, image_mean=self.geometry.image_mean, image_std=self.geometry.image_std,
                         **kwargs)

    # Cached values are rebuilt on unpickling so the pickle stays small and readable.
    def __getstate__(self) -> Dict[str, Any]:
        return {key: value for key, value in self.__dict__.items() if not key.startswith("_")}

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self.__init__(**state)  # type: ignore[misc]

    def __repr__(self) -> str:
        fields = ", ".join(f"{key}={value!r}" for key, value in self.__getstate__().items())
        return f"{type(self).__name__}({fields})"


class XrayEvalTransform(_XrayTransform):
    """Evaluation: resize the shorter edge to ``resize_size``, then centre-crop ``crop_size``. Deterministic."""

    def prepare(self, image: Image.Image) -> Tuple[torch.Tensor, PixelPlan]:
        image = to_grayscale(image)
        # One resize of the crop box: antialiased, and with reducing_gap it shrinks 1024-px PNGs fast.
        square = image.resize(self._size, resample=self.geometry.resample, box=self.crop_box(*image.size),
                              reducing_gap=3.0)
        return _uint8_tensor(square), self._plan()

    def crop_box(self, width: int, height: int) -> Tuple[float, float, float, float]:
        """``(left, top, right, bottom)`` of the square of a ``width`` x ``height`` image that the model sees, in the
        image's pixels: the centre crop after resizing the shorter edge to ``resize_size``."""
        side = self.geometry.crop_size * min(width, height) / self.geometry.resize_size  # in source pixels
        left, top = (width - side) / 2, (height - side) / 2
        return (left, top, left + side, top + side)


class XrayTrainTransform(_XrayTransform):
    """Training: random resized crop with a small rotation, then brightness/contrast jitter, then normalisation.

    The crop and rotation are one affine resampling of the source (bilinear, done for the whole batch in the
    collator), so rotated corners are filled from the image around the crop rather than left black where the image has
    room. No horizontal flip unless ``augmentation`` asks for one. Per image, only the random draws and (for sources
    at least twice the crop size) an integer-factor box shrink happen here.
    """

    def __init__(self, geometry: ImageGeometry, augmentation: Optional[AugmentationConfig] = None):
        super().__init__(geometry)
        self.augmentation = augmentation if augmentation is not None else AugmentationConfig()

    def prepare(self, image: Image.Image) -> Tuple[torch.Tensor, PixelPlan]:
        aug, out = self.augmentation, self.geometry.crop_size
        image = to_grayscale(image)
        left, top, box_w, box_h = _random_crop_box(image.size, aug.crop_scale, aug.crop_ratio)
        # Shrink large sources by an integer factor first (box average, antialiased), so that the bilinear affine
        # step shrinks by less than 2x and does not alias.
        factor = int(min(box_w, box_h) // out)
        if factor > 1:
            image = image.reduce(factor)
            left, top, box_w, box_h = left / factor, top / factor, box_w / factor, box_h / factor
        angle = math.radians(_uniform(-aug.rotation_degrees, aug.rotation_degrees))
        flip = -1.0 if aug.horizontal_flip and _uniform(0.0, 1.0) < 0.5 else 1.0
        # Affine map from output coordinates to source coordinates: scale the unit square to the crop box, rotate
        # about the crop's centre.
        cos, sin = math.cos(angle), math.sin(angle)
        sx, sy = flip * box_w / out, box_h / out
        a, b, d, e = cos * sx, -sin * sy, sin * sx, cos * sy
        cx, cy = left + box_w / 2, top + box_h / 2
        affine = (a, b, cx - (a + b) * out / 2, d, e, cy - (d + e) * out / 2)
        brightness = _uniform(1 - aug.brightness, 1 + aug.brightness)
        contrast = _uniform(1 - aug.contrast, 1 + aug.contrast)
        return _uint8_tensor(image), self._plan(affine=affine, brightness=brightness, contrast=contrast)


def collate_multilabel(examples: Sequence[Mapping[str, Any]]) -> Dict[str, torch.Tensor]:
    """Batch examples into ``pixel_values`` (N, 3, H, W) float32 and ``labels`` (N, 14) float32.

    Examples from the recipe's transforms carry ``uint8`` pixels (1, h, w) and a :class:`PixelPlan`; for the whole
    batch at once this resamples the augmented crops (bilinear), applies each example's brightness and contrast,
    scales to [0, 1], normalises with the processor's mean and std and broadcasts the grey channel to three. Examples
    whose ``pixel_values`` are already float tensors (3, H, W) are stacked as they are. Labels are float because
    ``BCEWithLogitsLoss`` (multi-label classification) wants float targets.

    Raises:
        ValueError: if an example's labels are not a vector of length 14, ``uint8`` pixels come without a
            ``pixel_plan``, or the plans of one batch disagree on the output size or the normalisation.
    """
    if not examples:
        raise ValueError("cannot collate an empty batch of examples")
    pixels = [example["pixel_values"] for example in examples]
    if pixels[0].dtype == torch.uint8:
        plans = [example.get("pixel_plan") for example in examples]
        if any(plan is None for plan in plans):
            raise ValueError("uint8 pixel_values need a 'pixel_plan' beside them (from XrayTrainTransform or "
                             "XrayEvalTransform); pass float32 (3, H, W) tensors otherwise")
        pixel_values = _finish(pixels, plans)
    else:
        pixel_values = torch.stack(pixels)
    batch = {"pixel_values": pixel_values}
    if "labels" in examples[0]:
        labels = torch.as_tensor(np.asarray([example["labels"] for example in examples], dtype=np.float32))
        if labels.ndim != 2 or labels.shape[1] != NUM_LABELS:
            raise ValueError(
                f"expected multi-hot labels of length {NUM_LABELS} per example, got a batch of shape {tuple(labels.shape)}"
            )
        batch["labels"] = labels
    return batch


_CHUNK_PIXELS = 1 << 18
"""Pixels finished together: a chunk's float32 planes (1 MiB each) stay in a core's cache between steps, which made
the batch work a third faster than whole batches of 32 at 256 px."""


def _finish(pixels: Sequence[torch.Tensor], plans: Sequence[PixelPlan]) -> torch.Tensor:
    """uint8 (1, h, w) images and their plans → float32 (N, 3, H, W), normalised (see :func:`collate_multilabel`)."""
    first = plans[0]
    if any((plan.size, plan.image_mean, plan.image_std) != (first.size, first.image_mean, first.image_std)
           for plan in plans):
        raise ValueError("the examples of one batch need the same output size, image_mean and image_std; got "
                         f"{sorted({(plan.size, plan.image_mean, plan.image_std) for plan in plans})}")
    resample = any(plan.affine is not None for plan in plans)
    if not resample and any(tuple(image.shape[-2:]) != first.size for image in pixels):
        raise ValueError(f"pixels without an affine plan must already be {first.size}, got "
                         f"{sorted({tuple(image.shape) for image in pixels})}")
    mean = torch.tensor(first.image_mean, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(first.image_std, dtype=torch.float32).view(1, 3, 1, 1)
    same_channels = len(set(first.image_mean)) == 1 and len(set(first.image_std)) == 1
    output = torch.empty((len(pixels), 3) + tuple(first.size), dtype=torch.float32)
    largest = max(max(image.shape[-2] * image.shape[-1] for image in pixels), first.size[0] * first.size[1])
    step = max(1, _CHUNK_PIXELS // largest)
    for start in range(0, len(pixels), step):
        chunk = slice(start, start + step)
        grey = _resample(pixels[chunk], plans[chunk]) if resample else torch.stack(pixels[chunk]).float()
        grey, scale = _jitter(grey, plans[chunk])
        if same_channels:
            # One normalisation for all three channels: normalise the grey channel in place, copy it three times.
            grey = grey.mul_(scale / std[:, :1]).sub_(mean[:, :1] / std[:, :1])
            output[chunk] = grey.expand(-1, 3, -1, -1)
        else:
            torch.addcmul(-mean / std, grey, scale / std, out=output[chunk])  # broadcasts grey to three channels
    return output


def _jitter(grey: torch.Tensor, plans: Sequence[PixelPlan]) -> Tuple[torch.Tensor, float]:
    """Brightness and contrast per example on grey (N, 1, H, W) in [0, 255]; returns the result and its scale.

    Without jitter the pixels are returned as they are, with scale 1/255; with it they come back in [0, 1].
    """
    brightness = torch.tensor([plan.brightness for plan in plans], dtype=torch.float32).view(-1, 1, 1, 1)
    contrast = torch.tensor([plan.contrast for plan in plans], dtype=torch.float32).view(-1, 1, 1, 1)
    if not bool((brightness != 1).any() or (contrast != 1).any()):
        return grey, 1.0 / 255.0
    # (x - m) * b * c + m * b for x, m in [0, 1], folded into one multiply and add per pixel
    mean = grey.mean(dim=(2, 3), keepdim=True)
    gain = brightness * contrast / 255.0
    return grey.mul_(gain).add_(mean * (brightness / 255.0 - gain)).clamp_(0.0, 1.0), 1.0


def _resample(pixels: Sequence[torch.Tensor], plans: Sequence[PixelPlan]) -> torch.Tensor:
    """Bilinear affine resampling of each example to its plan's size; (N, 1, H, W) float32 in [0, 255]."""
    height = max(int(image.shape[-2]) for image in pixels)
    width = max(int(image.shape[-1]) for image in pixels)
    if all(tuple(image.shape[-2:]) == (height, width) for image in pixels):
        source = torch.stack(pixels)
    else:  # black padding beyond each image: the same as sampling outside it
        source = torch.zeros((len(pixels), 1, height, width), dtype=torch.uint8)
        for index, image in enumerate(pixels):
            source[index, :, : image.shape[-2], : image.shape[-1]] = image
    identity = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
    coefficients = torch.tensor([plan.affine or identity for plan in plans], dtype=torch.float64)
    # grid_sample (align_corners=False) wants source coordinates scaled to [-1, 1]: u -> 2u / width - 1.
    coefficients[:, :3] *= 2.0 / width
    coefficients[:, 3:] *= 2.0 / height
    coefficients[:, 2] -= 1.0
    coefficients[:, 5] -= 1.0
    coefficients = coefficients.float()
    out_h, out_w = plans[0].size
    xs = torch.arange(out_w, dtype=torch.float32).add_(0.5).view(1, 1, 1, out_w)
    ys = torch.arange(out_h, dtype=torch.float32).add_(0.5).view(1, 1, out_h, 1)
    # Source (u, v) of every output pixel as two planes (N, 2, H, W): per row a*x + c, plus b*y per column. The
    # permuted view is the (N, H, W, 2) grid grid_sample wants; planes are several times faster to build and read
    # than interleaved pairs.
    rows = torch.addcmul(coefficients[:, [2, 5]].view(-1, 2, 1, 1), xs, coefficients[:, [0, 3]].view(-1, 2, 1, 1))
    grid = (rows + coefficients[:, [1, 4]].view(-1, 2, 1, 1) * ys).permute(0, 2, 3, 1)
    return torch.nn.functional.grid_sample(source.float(), grid, mode="bilinear", padding_mode="zeros",
                                           align_corners=False)


def _uint8_tensor(image: Image.Image) -> torch.Tensor:
    """An "L" image as a writable uint8 tensor of shape (1, h, w)."""
    return torch.from_numpy(np.array(image, dtype=np.uint8))[None]


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
