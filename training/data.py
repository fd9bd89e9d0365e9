"""The recipe's data loading: decode each image to 8-bit grey, and collate a batch of them with its labels.

The input pipeline has three steps, each in one place:

1. **decode**, per image, in the data loader (:func:`decode_xrays`, given to ``Dataset.with_transform`` by
   :func:`xray_view`): the PNG becomes ``uint8`` grey pixels at their stored size. The resized configs store 8-bit
   grey PNGs whose rows are unfiltered, which :func:`decode_gray8_png` reads with ``zlib`` and NumPy alone; every
   other image (NIH's own PNGs in ``default``, 16-bit, colour, filtered or interlaced ones) goes through Pillow;
2. **collate**, per batch, in the data loader (:func:`collate_xrays`): the pixels are stacked as ``uint8``
   (N, 1, H, W) beside each image's size and the float labels;
3. **augment and normalise**, per batch, on the model's device (:mod:`training.augment`): crop, rotation, jitter,
   resize, scaling, normalisation and three channels.

Only the first two run on the CPU, and they do no float work; a ``uint8`` batch is also a fraction of the bytes of
the float batch the model takes. :class:`AugmentingCollator` joins steps 2 and 3 on the host, for accelerators that
run nothing but their compiled model (IPUs).
"""

from __future__ import annotations

import io
import struct
import zlib
from typing import Any, Dict, List, Mapping, Optional, Sequence

import datasets
import numpy as np
import torch
from PIL import Image

from nih_chestxray14.labels import NUM_LABELS
from training.augment import AugmentAndNormalise

__all__ = ["to_grayscale", "decode_gray8_png", "decode_xrays", "xray_view", "collate_xrays", "AugmentingCollator"]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
COLUMNS = ["image", "labels"]
"""The columns the transforms read; the others (metadata, boxes) are never decoded during training."""


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


def decode_gray8_png(data: bytes) -> Optional[np.ndarray]:
    """The pixels of an 8-bit grey, non-interlaced PNG whose rows are all unfiltered (filter type 0), as the resized
    configs store them; ``None`` for any other PNG or bytes, which then go to Pillow.

    Reads the chunks, inflates the ``IDAT`` stream with ``zlib`` (which checks its Adler-32 checksum, so a damaged
    stream is refused) and drops each row's filter byte. Ancillary chunks (``gAMA``, ``tRNS``, text) are skipped,
    as Pillow's 8-bit grey decode ignores them too. Returns a read-only ``uint8`` (height, width) view.
    """
    if not data.startswith(PNG_SIGNATURE):
        return None
    view, position, streams, header = memoryview(data), len(PNG_SIGNATURE), [], None
    while position + 12 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, position)
        start, end = position + 8, position + 8 + length
        if end + 4 > len(data):
            return None
        if kind == b"IHDR":
            if header is not None or length != 13:
                return None
            header = struct.unpack_from(">IIBBBBB", data, start)
        elif kind == b"IDAT":
            streams.append(view[start:end])
        elif kind == b"IEND":
            break
        elif not kind[0] & 0x20:  # a critical chunk other than IHDR, IDAT, IEND (e.g. PLTE)
            return None
        position = end + 4
    else:
        return None  # no IEND: truncated
    if header is None or header[2:] != (8, 0, 0, 0, 0) or not streams:
        return None
    width, height = header[0], header[1]
    if not 0 < width * height <= Image.MAX_IMAGE_PIXELS:
        return None  # Pillow's decompression-bomb rules apply
    expected = height * (width + 1)
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(streams[0] if len(streams) == 1 else b"".join(streams), expected)
    except zlib.error:
        return None
    if len(raw) != expected or not inflater.eof or inflater.unconsumed_tail:
        return None
    rows = np.frombuffer(raw, dtype=np.uint8).reshape(height, width + 1)
    if rows[:, 0].any():
        return None  # filtered rows: Pillow undoes the filters
    return rows[:, 1:]


def _gray_pixels(image: Any) -> np.ndarray:
    """One image of a batch as 8-bit grey pixels: a PIL image, or ``{"bytes", "path"}`` from an undecoded column."""
    if not isinstance(image, dict):
        return np.asarray(to_grayscale(image))
    data = image.get("bytes")
    pixels = decode_gray8_png(data) if data else None
    if pixels is not None:
        return pixels
    with Image.open(io.BytesIO(data) if data else image["path"]) as opened:
        opened.load()
        return np.asarray(to_grayscale(opened))


def decode_xrays(batch: Mapping[str, Sequence[Any]]) -> Dict[str, List[Any]]:
    """Decode a batch from ``Dataset.with_transform``: ``{"image": [...], "labels": [[0/1] * 14]}``, where each image
    is a PIL image or, from a column cast to ``datasets.Image(decode=False)`` (:func:`xray_view`), its
    ``{"bytes", "path"}``.

    Returns ``{"pixel_values": [uint8 array (h, w)], "labels": [...]}``: each image in 8-bit grey
    (:func:`to_grayscale`; :func:`decode_gray8_png` where it applies) at its stored size; labels pass through. A
    module-level function, so data-loader workers can pickle it.
    """
    output: Dict[str, List[Any]] = {"pixel_values": [_gray_pixels(image) for image in batch["image"]]}
    if "labels" in batch:
        output["labels"] = list(batch["labels"])
    return output


def xray_view(dataset: datasets.Dataset) -> datasets.Dataset:
    """``dataset`` as the recipe's data loader reads it: the image column undecoded (its PNG bytes, so that
    :func:`decode_xrays` can take the fast path) and decoded by :func:`decode_xrays`, on the fly, with the labels.

    Only the feature changes; the Arrow data is not copied.
    """
    if isinstance(dataset.features.get("image"), datasets.Image):
        dataset = dataset.cast_column("image", datasets.Image(decode=False))
    return dataset.with_transform(decode_xrays, columns=COLUMNS)


def collate_xrays(examples: Sequence[Mapping[str, Any]]) -> Dict[str, Any]:
    """Stack decoded examples: ``pixel_values`` ``uint8`` tensor (N, 1, H, W), ``image_sizes`` int64 NumPy (N, 2),
    ``labels`` float32 tensor (N, 14).

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
    # the sizes stay a NumPy array: the Trainer moves tensors to the accelerator, and the augmentation reads them on
    # the CPU, where a copy back would wait for the device once per step
    batch = {"pixel_values": torch.from_numpy(pixels)[:, None], "image_sizes": sizes}
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
