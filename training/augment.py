"""Augment and normalise a batch of 8-bit grey chest X-rays, batch-wise, on the device the batch is on.

The data loader only decodes and stacks (:mod:`training.data`): it hands on ``uint8`` pixels (N, 1, H, W), zero-padded
to the batch's largest image, and each image's own (height, width). :class:`AugmentAndNormalise` turns such a batch
into what the model takes, float (N, 3, crop, crop) normalised with the checkpoint's mean and std:

- for training (:meth:`AugmentAndNormalise.training`): a random resized crop with a small rotation, as one bilinear
  resampling (``torch.nn.functional.affine_grid`` and ``grid_sample``), then brightness/contrast jitter;
- for evaluation (:meth:`AugmentAndNormalise.evaluation`): the shorter edge resized (antialiased) and a centre crop,
  which is what the checkpoint's image processor does to a square image. Deterministic.

In the recipe this runs inside the Trainer's step on the model's device (:class:`AugmentOnDeviceMixin`), so a GPU does
it for the whole batch and the CPU only decodes. Accelerators that run nothing but their compiled model (IPUs) call
the same functions on the host, in the collator (:class:`training.data.AugmentingCollator`).

Randomness comes only from the ``torch.Generator`` passed in: the draws are made on the CPU from it, so a batch's
augmentation depends on the generator's seed alone, not on the device, the data-loader workers or the process.
:func:`augmentation_seed` derives that seed from (seed, optimizer step, micro-batch, process), which is what lets a
resumed run repeat an uninterrupted one bit for bit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

__all__ = [
    "ImageGeometry",
    "AugmentationConfig",
    "AugmentationDraws",
    "AugmentAndNormalise",
    "AugmentOnDeviceMixin",
    "augmentation_seed",
    "draw_augmentations",
]

_CROP_TRIES = 10
"""Random resized crop: attempts at a box inside the image before falling back to the central square."""

_CPU_CHUNK = 4
"""Training images augmented together on a CPU: their float planes (about 1 MiB) stay in a core's cache from one
operation to the next. A GPU takes the whole batch at once."""


@dataclass(frozen=True)
class ImageGeometry:
    """What the model expects: a ``crop_size`` square, normalised per channel.

    Attributes:
        resize_size: the shorter image edge, in pixels, before the evaluation centre crop.
        crop_size: the side of the square the model sees, in pixels.
        image_mean, image_std: per-channel (R, G, B) statistics of pixel values scaled to [0, 1].
        resample: the image processor's PIL resampling filter; bicubic and Lanczos resize bicubically here, every
            other filter bilinearly (both antialiased when shrinking).
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
            raise ValueError(f"image_mean and image_std need 3 channels and std > 0, got {self.image_mean}, "
                             f"{self.image_std}")

    def evaluation_crop(self, height: int, width: int) -> Tuple[int, int, int, int]:
        """The evaluation view of a ``height`` x ``width`` image: ``(resized_height, resized_width, top, left)``.

        The image is resized to ``resized_height`` x ``resized_width`` (shorter edge ``resize_size``, never below
        ``crop_size``), then the ``crop_size`` square at ``(top, left)`` of the resized image is kept.
        :meth:`AugmentAndNormalise.evaluation` crops exactly this; :meth:`evaluation_crop_box` gives it in the image's
        own pixels.
        """
        scale = self.resize_size / min(height, width)
        resized_height = max(self.crop_size, round(height * scale))
        resized_width = max(self.crop_size, round(width * scale))
        top = int(round((resized_height - self.crop_size) / 2))
        left = int(round((resized_width - self.crop_size) / 2))
        return resized_height, resized_width, top, left

    def evaluation_crop_box(self, height: int, width: int) -> Tuple[float, float, float, float]:
        """``(left, top, right, bottom)`` of the part of a ``height`` x ``width`` image that the evaluation view
        shows, in the image's pixels (continuous coordinates: pixel edges, the whole image is ``(0, 0, width,
        height)``)."""
        resized_height, resized_width, top, left = self.evaluation_crop(height, width)
        scale_x, scale_y = width / resized_width, height / resized_height
        return (left * scale_x, top * scale_y, (left + self.crop_size) * scale_x, (top + self.crop_size) * scale_y)

    @property
    def interpolation(self) -> str:
        """The ``torch.nn.functional.interpolate`` mode closest to :attr:`resample`."""
        smooth = (int(Image.Resampling.BICUBIC), int(Image.Resampling.LANCZOS))
        return "bicubic" if self.resample in smooth else "bilinear"

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


@dataclass(frozen=True)
class AugmentationDraws:
    """One batch's random augmentation parameters, float64 tensors on the CPU, one row per image.

    Attributes:
        crop_boxes: (N, 4) ``left, top, width, height`` of each crop, in the image's pixels (continuous coordinates).
        angles: (N,) rotation about the crop's centre, in radians.
        flips: (N,) ``1.0`` or ``-1.0`` (flipped left-right).
        brightness, contrast: (N,) jitter factors (1.0 leaves the image alone).
    """

    crop_boxes: torch.Tensor
    angles: torch.Tensor
    flips: torch.Tensor
    brightness: torch.Tensor
    contrast: torch.Tensor

    def rows(self, rows: slice) -> "AugmentationDraws":
        """The draws of the images ``rows``."""
        return AugmentationDraws(self.crop_boxes[rows], self.angles[rows], self.flips[rows], self.brightness[rows],
                                 self.contrast[rows])


def draw_augmentations(image_sizes: torch.Tensor, augmentation: AugmentationConfig,
                       generator: torch.Generator) -> AugmentationDraws:
    """Draw every random parameter of a batch from ``generator``, on the CPU.

    The same number of values is drawn whatever they turn out to be, so the draws of a batch depend only on the
    generator's state and the image sizes.

    Args:
        image_sizes: (N, 2) integer ``height, width`` of each image (NumPy or torch, best on the CPU).
    """
    sizes = host_sizes(image_sizes).to(torch.float64)
    count = sizes.shape[0]

    def uniform(low: float, high: float, *shape: int) -> torch.Tensor:
        return torch.rand(shape or (count,), generator=generator, dtype=torch.float64) * (high - low) + low

    height, width = sizes[:, 0], sizes[:, 1]
    # Random resized crop, as torchvision draws it: an area and a log-uniform aspect ratio, up to 10 tries at a box
    # that fits, else the central square.
    area = (height * width)[:, None] * uniform(*augmentation.crop_scale, count, _CROP_TRIES)
    ratio = torch.exp(uniform(*(math.log(r) for r in augmentation.crop_ratio), count, _CROP_TRIES))
    box_w, box_h = torch.sqrt(area * ratio), torch.sqrt(area / ratio)
    fits = (box_w <= width[:, None]) & (box_h <= height[:, None])
    first = fits.to(torch.uint8).argmax(dim=1, keepdim=True)
    side = torch.minimum(height, width)
    box_w = torch.where(fits.any(dim=1), box_w.gather(1, first)[:, 0], side)
    box_h = torch.where(fits.any(dim=1), box_h.gather(1, first)[:, 0], side)
    left = uniform(0.0, 1.0) * (width - box_w)
    top = uniform(0.0, 1.0) * (height - box_h)
    rotation = math.radians(augmentation.rotation_degrees)
    angles = uniform(-rotation, rotation)
    flips = torch.where(uniform(0.0, 1.0) < 0.5, -1.0, 1.0)
    if not augmentation.horizontal_flip:
        flips = torch.ones_like(flips)
    brightness = uniform(1 - augmentation.brightness, 1 + augmentation.brightness)
    contrast = uniform(1 - augmentation.contrast, 1 + augmentation.contrast)
    return AugmentationDraws(torch.stack([left, top, box_w, box_h], dim=1), angles, flips, brightness, contrast)


class AugmentAndNormalise:
    """Turn decoded ``uint8`` grey batches into the model's normalised float inputs, batch-wise, on their device.

    Args:
        geometry: the model's input size, mean and std (:meth:`ImageGeometry.from_image_processor`).
        augmentation: the training augmentation, or ``None`` to train on the evaluation view of each image.
    """

    def __init__(self, geometry: ImageGeometry, augmentation: Optional[AugmentationConfig] = None):
        self.geometry = geometry
        self.augmentation = augmentation

    def __repr__(self) -> str:
        return f"{type(self).__name__}(geometry={self.geometry!r}, augmentation={self.augmentation!r})"

    def training(self, pixel_values: torch.Tensor, image_sizes: torch.Tensor, generator: torch.Generator,
                 dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Augment and normalise a training batch.

        Args:
            pixel_values: ``uint8`` (N, 1, H, W), each image in its top-left corner, zeros beyond it.
            image_sizes: (N, 2) integer ``height, width`` of each image.
            generator: the CPU generator every random draw comes from.
            dtype: the model's floating dtype.

        Returns:
            (N, 3, crop_size, crop_size) ``dtype`` on ``pixel_values.device``, normalised with the geometry's mean
            and std.

        Raises:
            ValueError: if the shapes disagree or the pixels are not ``uint8``.
        """
        image_sizes = _check_batch(pixel_values, image_sizes)
        if self.augmentation is None:
            return self.evaluation(pixel_values, image_sizes, dtype)
        draws = draw_augmentations(image_sizes, self.augmentation, generator)
        crop, count = self.geometry.crop_size, pixel_values.shape[0]
        shrink = _shrink_factor(draws, crop)
        output = torch.empty((count, 3, crop, crop), dtype=dtype, device=pixel_values.device)
        step = _CPU_CHUNK if pixel_values.device.type == "cpu" else count
        for start in range(0, count, step):
            rows = slice(start, start + step)
            grey = _resample(pixel_values[rows], draws.rows(rows), crop, shrink)
            output[rows] = self._normalise(_jitter(grey, draws.brightness[rows], draws.contrast[rows]), dtype)
        return output

    def evaluation(self, pixel_values: torch.Tensor, image_sizes: torch.Tensor,
                   dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Resize each image's shorter edge to ``resize_size``, crop the centre ``crop_size`` square
        (:meth:`ImageGeometry.evaluation_crop`), normalise.

        Arguments and result as in :meth:`training`; no randomness.
        """
        image_sizes = _check_batch(pixel_values, image_sizes)
        crop, output = self.geometry.crop_size, None
        sizes = [tuple(size) for size in image_sizes.tolist()]
        for height, width in sorted(set(sizes)):  # images of one size are resized together; usually all are
            rows = [index for index, size in enumerate(sizes) if size == (height, width)]
            same = pixel_values[rows] if len(rows) < len(sizes) else pixel_values
            same = same[:, :, :height, :width]
            resized_h, resized_w, top, left = self.geometry.evaluation_crop(height, width)
            resized = F.interpolate(same.float(), size=(resized_h, resized_w), mode=self.geometry.interpolation,
                                    antialias=True, align_corners=False)
            square = resized[:, :, top: top + crop, left: left + crop].clamp_(0, 255).div_(255)
            if len(rows) == len(sizes):
                output = square
            else:
                if output is None:
                    output = square.new_empty((len(sizes), 1, crop, crop))
                output[rows] = square
        return self._normalise(output, dtype)

    def _normalise(self, grey: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """(N, 1, H, W) in [0, 1] → (N, 3, H, W) ``(x - mean) / std`` per channel: grey becomes three channels."""
        mean = _to_device(torch.tensor(self.geometry.image_mean, dtype=grey.dtype).view(1, 3, 1, 1), grey.device)
        std = _to_device(torch.tensor(self.geometry.image_std, dtype=grey.dtype).view(1, 3, 1, 1), grey.device)
        return torch.addcmul(-mean / std, grey, 1 / std).to(dtype)


class AugmentOnDeviceMixin:
    """Put before ``transformers.Trainer`` in a subclass's bases: batches become model inputs on the model's device.

    The Trainer's collator hands on decoded ``uint8`` batches (:func:`training.data.collate_xrays`). In the training
    step, :meth:`compute_loss` (model in training mode) augments and normalises them with a generator seeded by
    :func:`augmentation_seed` from (``data_seed`` or ``seed``, optimizer step, micro-batch within the step, process
    index): every step's augmentation is fixed by the run's seed, whatever the data-loader workers and however often
    the run was stopped and resumed. :meth:`prediction_step` (evaluation, prediction) only resizes, crops and
    normalises. Batches whose ``pixel_values`` are already floats pass through unchanged.

    Args:
        augment_and_normalise: keyword argument, the batch transform to apply; ``None`` for a Trainer fed float
            pixels only.
    """

    def __init__(self, *args: Any, augment_and_normalise: Optional[AugmentAndNormalise] = None, **kwargs: Any):
        self.augment_and_normalise = augment_and_normalise
        self._augmented_step: Optional[int] = None
        self._micro_batch = 0
        super().__init__(*args, **kwargs)

    def compute_loss(self, model, inputs, *args, **kwargs):
        """The Trainer's loss, on inputs made by :meth:`model_inputs` (augmented when ``model`` is training)."""
        return super().compute_loss(model, self.model_inputs(model, inputs, training=model.training), *args, **kwargs)

    def prediction_step(self, model, inputs, *args, **kwargs):
        """The Trainer's evaluation step, on inputs made by :meth:`model_inputs` on ``args.device``, not augmented."""
        return super().prediction_step(model, self.model_inputs(model, inputs, training=False), *args, **kwargs)

    def model_inputs(self, model, inputs: Dict[str, Any], training: bool) -> Dict[str, Any]:
        """``inputs`` with ``uint8`` ``pixel_values`` and ``image_sizes`` replaced by the model's float pixels.

        Raises:
            ValueError: if ``uint8`` pixels come without ``image_sizes``, or the Trainer has no
                ``augment_and_normalise``.
        """
        pixels = inputs.get("pixel_values")
        if pixels is None or pixels.is_floating_point():
            return inputs
        if self.augment_and_normalise is None:
            raise ValueError("uint8 pixel_values need a Trainer built with augment_and_normalise="
                             "training.augment.AugmentAndNormalise(...)")
        if "image_sizes" not in inputs:
            raise ValueError("uint8 pixel_values need 'image_sizes' beside them: collate with "
                             "training.data.collate_xrays")
        inputs = dict(inputs)
        pixels = pixels.to(self.args.device, non_blocking=True)
        sizes = inputs.pop("image_sizes")
        dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
        # Full precision whatever the Trainer's autocast: the model gets its own dtype, rounded once at the end.
        with torch.no_grad(), torch.autocast(pixels.device.type, enabled=False):
            if training:
                inputs["pixel_values"] = self.augment_and_normalise.training(
                    pixels, sizes, self._augmentation_generator(), dtype)
            else:
                inputs["pixel_values"] = self.augment_and_normalise.evaluation(pixels, sizes, dtype)
        return inputs

    def _augmentation_generator(self) -> torch.Generator:
        step = self.state.global_step
        if step != self._augmented_step:  # a resumed run starts at a step boundary, so this count restarts right
            self._augmented_step, self._micro_batch = step, 0
        seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        generator = torch.Generator().manual_seed(
            augmentation_seed(seed, step, self._micro_batch, self.args.process_index))
        self._micro_batch += 1
        return generator


def augmentation_seed(*keys: int) -> int:
    """A 63-bit seed that mixes ``keys`` (e.g. seed, step, micro-batch, process) with NumPy's ``SeedSequence``.

    Neighbouring keys give unrelated seeds, unlike ``seed + step``.
    """
    state = np.random.SeedSequence([int(key) % 2**64 for key in keys]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def host_sizes(image_sizes: Any) -> torch.Tensor:
    """``image_sizes`` (a NumPy array, as :func:`training.data.collate_xrays` gives them, or a tensor) as an int64
    tensor on the CPU. Sizes the Trainer has moved to an accelerator are copied back, which waits for the device."""
    if isinstance(image_sizes, torch.Tensor):
        return image_sizes.detach().to("cpu", torch.int64)
    return torch.as_tensor(np.asarray(image_sizes), dtype=torch.int64)


def _to_device(values: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A small CPU tensor on ``device``. ``non_blocking``: a blocking copy from the host first waits for all the
    work queued on the device, which would stall the training loop once per step."""
    return values.to(device, non_blocking=True)


def _check_batch(pixel_values: torch.Tensor, image_sizes: Any) -> torch.Tensor:
    """The batch's sizes on the CPU (:func:`host_sizes`), after checking them against the pixels."""
    if pixel_values.dtype != torch.uint8 or pixel_values.ndim != 4 or pixel_values.shape[1] != 1:
        raise ValueError(f"pixel_values must be uint8 (N, 1, H, W), got {pixel_values.dtype} "
                         f"{tuple(pixel_values.shape)}")
    sizes = host_sizes(image_sizes)
    if tuple(sizes.shape) != (pixel_values.shape[0], 2):
        raise ValueError(f"image_sizes must be (N, 2) = ({pixel_values.shape[0]}, 2), got {tuple(sizes.shape)}")
    if bool((sizes < 1).any()) or bool((sizes > torch.tensor(pixel_values.shape[-2:])).any()):
        raise ValueError(f"image_sizes must lie within the pixels' {tuple(pixel_values.shape[-2:])}, got "
                         f"{sorted(set(map(tuple, sizes.tolist())))}")
    return sizes


def _shrink_factor(draws: AugmentationDraws, out: int) -> int:
    """The integer factor to shrink a batch by before resampling: with every crop at least twice the output, a box
    average first leaves the bilinear step less than a 2x shrink, so it does not alias. 1 for no shrink."""
    return max(1, int(draws.crop_boxes[:, 2:].min().item() // out))


def _resample(pixel_values: torch.Tensor, draws: AugmentationDraws, out: int, factor: int) -> torch.Tensor:
    """Crop, rotate and resize each image to ``out`` × ``out``: one bilinear resampling, black outside the image.

    ``factor`` (from :func:`_shrink_factor`) shrinks the source by a box average first. Returns (N, 1, out, out)
    float32 in [0, 255].
    """
    left, top, box_w, box_h = draws.crop_boxes.unbind(dim=1)
    source = pixel_values.float()
    if factor > 1:
        source = F.avg_pool2d(source, factor)
        left, top, box_w, box_h = left / factor, top / factor, box_w / factor, box_h / factor
    height, width = source.shape[-2:]
    # Affine map from output pixels to source pixels (continuous coordinates, pixel centres at +0.5): scale the
    # output square to the crop box, rotate about the box's centre.
    cos, sin = torch.cos(draws.angles), torch.sin(draws.angles)
    sx, sy = draws.flips * box_w / out, box_h / out
    a, b, d, e = cos * sx, -sin * sy, sin * sx, cos * sy
    c = left + box_w / 2 - (a + b) * out / 2
    f = top + box_h / 2 - (d + e) * out / 2
    # The same map in grid_sample's coordinates, [-1, 1] across the output and across the source tensor.
    theta = torch.stack([a * out / width, b * out / width, (a * out + b * out + 2 * c) / width - 1,
                         d * out / height, e * out / height, (d * out + e * out + 2 * f) / height - 1], dim=1)
    grid = _affine_grid(_to_device(theta.to(torch.float32), source.device), out)
    return F.grid_sample(source, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _affine_grid(theta: torch.Tensor, out: int) -> torch.Tensor:
    """``F.affine_grid(theta.view(-1, 2, 3), (N, 1, out, out), align_corners=False)``, built from broadcast rows and
    columns written straight into the (N, out, out, 2) grid, which is several times faster on a CPU."""
    centres = (torch.arange(out, dtype=theta.dtype, device=theta.device) * 2 + 1) / out - 1
    xs, ys = centres.view(1, 1, out), centres.view(1, out, 1)
    grid = theta.new_empty((theta.shape[0], out, out, 2))
    for axis in range(2):
        scale_x, scale_y, shift = (theta[:, 3 * axis + k].view(-1, 1, 1) for k in range(3))
        torch.add(shift + scale_x * xs, scale_y * ys, out=grid[..., axis])
    return grid


def _jitter(grey: torch.Tensor, brightness: torch.Tensor, contrast: torch.Tensor) -> torch.Tensor:
    """Brightness, then contrast about the image's mean, per image; (N, 1, H, W) in [0, 255] → [0, 1], clipped."""
    brightness = _to_device(brightness.to(grey.dtype), grey.device).view(-1, 1, 1, 1)
    contrast = _to_device(contrast.to(grey.dtype), grey.device).view(-1, 1, 1, 1)
    mean = grey.mean(dim=(2, 3), keepdim=True)
    # (x - m) * b * c + m * b for x, m in [0, 1], folded into one multiply and one add per pixel
    gain = brightness * contrast / 255.0
    return grey.mul_(gain).add_(mean * (brightness / 255.0 - gain)).clamp_(0.0, 1.0)


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
