"""Benchmark: images per second that one CPU core feeds the model, against a memcpy of the same pixels (the physical
bound) and against the 2022 tutorial's pipeline.

All pipelines read the same synthetic release (full-size 1024 x 1024 PNGs written by
``nih_chestxray14.sample.make_release``), in the same process, through a ``torch.utils.data.DataLoader`` with
``num_workers=0``, batch 32 and one torch thread, so each figure is per core:

- **tutorial (2022)** -- ``datasets``' ``imagefolder`` over the full-size PNGs, then per image: convert to RGB,
  ``Resize(224)``, ``ToTensor``, ``Normalize(0.5, 0.5)``. torchvision is not installed beside this torch, so those
  three transforms are re-implemented with PIL, NumPy and torch exactly as torchvision applies them to PIL images
  (``Resize`` with an int resizes the shorter edge with PIL's antialiased bilinear filter).
- **recipe, loader** -- the CPU side of the recipe's training and evaluation pipelines, which is the same for both:
  the builder's ``resized-256`` config read through ``xray_view`` (the PNG bytes, decoded by ``decode_xrays``'s fast
  path for the resized configs' unfiltered 8-bit grey PNGs: ``zlib`` and NumPy) and ``collate_xrays`` (a ``uint8``
  batch). Augmentation, resizing, scaling, normalisation and the three channels run batch-wise on the model's device
  (``training.augment``), so they are not CPU work in a GPU run.
- **recipe, loader, Pillow decode** -- the loader as it was before the fast path: the ``Image`` feature decodes each
  PNG with Pillow, then ``decode_xrays`` and ``collate_xrays``. The same pixels (checked).
- **recipe, host path** -- the same loader followed by ``AugmentingCollator``: the batch-wise augmentation (training)
  or resize and crop (evaluation) and normalisation done on this core, as on IPUs or in a CPU-only run.
- **storage alternative** -- the same pixels stored as raw ``uint8`` bytes in Arrow (``Value("binary")`` plus height
  and width) instead of PNGs; not a builder config, measured to see what storage could still buy.
- **memcpy bound** -- ``np.copyto`` of the pixels the loader delivers (``uint8``, 256 x 256 each), tiled to a
  256 MB working set: an epoch of NIH at 256 px is 7 GB, so the bound is a copy through main memory, not the cache.

Each epoch is timed by the CPU time of this process (``time.process_time``: images per CPU-second, which stays
meaningful when other work shares the machine) and by the wall clock; the pipelines run interleaved, epoch by epoch,
and the table gives the median epoch of each. One-time costs (writing the Arrow cache of each) are timed separately.
With CUDA present, the batch-wise step is also timed on the GPU (batch 256).

    python benchmarks/input_pipeline.py                      # 120 images, 5 epochs
    python benchmarks/input_pipeline.py --num-patients 100   # more images
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # the recipe's modules live in the clone, as in transformers' examples
    sys.path.insert(0, str(REPO_ROOT))

import datasets  # noqa: E402
from transformers.models.vit.image_processing_pil_vit import ViTImageProcessorPil  # noqa: E402

from nih_chestxray14.labels import LABELS, multi_hot  # noqa: E402
from nih_chestxray14.metadata import read_release_metadata  # noqa: E402
from nih_chestxray14.sample import make_release  # noqa: E402
from training.augment import AugmentAndNormalise, AugmentationConfig, ImageGeometry  # noqa: E402
from training.data import AugmentingCollator, collate_xrays, decode_xrays, xray_view  # noqa: E402

TARGET_PER_CORE = 2000.0
TARGET_MEMCPY_RATIO = 0.05
MEMCPY_WORKING_SET = 256 * 2**20
TUTORIAL = "tutorial (2022): imagefolder over full-size PNGs, Resize(224) + ToTensor + Normalize, per image"
LOADER = "recipe, loader (training and evaluation): resized-256 PNG bytes, decode_xrays fast path + collate_xrays"
PILLOW_LOADER = "recipe, loader with Pillow decode (before the fast path): Image feature + decode_xrays + collate_xrays"
HOST_TRAIN = "recipe, host path, training: the loader + AugmentingCollator (augment and normalise on this core)"
HOST_EVAL = "recipe, host path, evaluation: the loader + AugmentingCollator (resize, crop, normalise on this core)"
RAW = "storage alternative: the same pixels as raw uint8 bytes in Arrow + collate_xrays"
MEMCPY = "memcpy bound: np.copyto of the loader's uint8 pixels, 256 MB working set"
logger = logging.getLogger("benchmarks.input_pipeline")


class TutorialTransform:
    """The tutorial's per-image ``Compose([Resize(224), ToTensor(), Normalize(mean, std)])`` on RGB PIL images."""

    def __init__(self, size: int = 224, mean: Sequence[float] = (0.5,) * 3, std: Sequence[float] = (0.5,) * 3):
        self.size = size
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)

    def resize(self, image: Image.Image) -> Image.Image:
        # torchvision's Resize(int) on a PIL image: shorter edge to `size`, aspect kept, PIL bilinear (antialiased).
        width, height = image.size
        if width <= height:
            new_size = (self.size, int(self.size * height / width))
        else:
            new_size = (int(self.size * width / height), self.size)
        return image.resize(new_size, Image.Resampling.BILINEAR)

    def __call__(self, batch: Dict[str, list]) -> Dict[str, list]:
        pixel_values = []
        for image in batch["image"]:
            resized = self.resize(image.convert("RGB"))
            tensor = torch.from_numpy(np.asarray(resized, dtype=np.uint8).copy()).permute(2, 0, 1).float() / 255.0
            pixel_values.append((tensor - self.mean) / self.std)  # ToTensor, then Normalize
        return {"pixel_values": pixel_values, "labels": batch["labels"]}


def collate_tutorial(examples: List[Dict]) -> Dict[str, torch.Tensor]:
    return {"pixel_values": torch.stack([example["pixel_values"] for example in examples]),
            "labels": torch.tensor([example["labels"] for example in examples], dtype=torch.float32)}


def decode_raw_pixels(batch: Dict[str, list]) -> Dict[str, list]:
    """The storage alternative's decode: raw bytes to a (height, width) view, no copy."""
    pixels = [np.frombuffer(data, dtype=np.uint8).reshape(height, width)
              for data, height, width in zip(batch["pixels"], batch["height"], batch["width"])]
    return {"pixel_values": pixels, "labels": batch["labels"]}


def write_imagefolder_metadata(release: Path) -> Path:
    """Add ``metadata.jsonl`` (file name → multi-hot labels) beside the PNGs, as the tutorial attached labels."""
    images = release / "images"
    with open(images / "metadata.jsonl", "w") as metadata:
        for row in read_release_metadata(str(release)).entries.values():
            metadata.write(json.dumps({"file_name": row.image_id, "labels": multi_hot(row.findings)}) + "\n")
    return images


def raw_pixel_dataset(resized: datasets.Dataset) -> datasets.Dataset:
    """``resized``'s images decoded once and stored as raw bytes with their height and width."""
    arrays = [np.asarray(image) for image in resized.with_transform(decode_xrays)[:]["pixel_values"]]
    return datasets.Dataset.from_dict({
        "pixels": [array.tobytes() for array in arrays],
        "height": [array.shape[0] for array in arrays],
        "width": [array.shape[1] for array in arrays],
        "labels": resized["labels"],
    })


def epoch_rate(dataset, collate: Callable, batch_size: int, seed: int,
               expected: Tuple[int, ...]) -> Tuple[float, float]:
    """(images per CPU-second, images per wall-clock second) of one full pass through a shuffled ``DataLoader``.

    The loader runs in this process (``num_workers=0``); every batch is checked to have the pixel shape ``expected``
    (after the batch dimension) and float32 labels (N, 14).
    """
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=0,
                                         collate_fn=collate, generator=torch.Generator().manual_seed(seed))
    count, cpu, wall = 0, time.process_time(), time.perf_counter()
    for batch in loader:
        pixel_values, labels = batch["pixel_values"], batch["labels"]
        assert tuple(pixel_values.shape[1:]) == expected, pixel_values.shape
        assert labels.shape[1] == len(LABELS) and labels.dtype == torch.float32
        count += pixel_values.shape[0]
    return count / (time.process_time() - cpu), count / (time.perf_counter() - wall)


def memcpy_rate(image_bytes: int, working_set: int = MEMCPY_WORKING_SET) -> Tuple[float, float]:
    """(images per CPU-second, per wall-clock second) that ``np.copyto`` moves through a working set in memory."""
    count = max(1, working_set // image_bytes)
    source = np.random.default_rng(0).integers(0, 256, size=count * image_bytes, dtype=np.uint8)
    target = np.empty_like(source)
    np.copyto(target, source)  # fault the pages in first
    cpu, wall = time.process_time(), time.perf_counter()
    np.copyto(target, source)
    return count / max(time.process_time() - cpu, 1e-9), count / (time.perf_counter() - wall)


def device_step_rates(transform: AugmentAndNormalise, batch_size: int = 256,
                      repeats: int = 20) -> Optional[Dict[str, float]]:
    """Images/s of the batch-wise step on the GPU (uint8 256 px in, float (N, 3, 224, 224) out); ``None`` without
    CUDA."""
    if not torch.cuda.is_available():
        return None
    pixels = torch.randint(0, 256, (batch_size, 1, 256, 256), dtype=torch.uint8, device="cuda")
    sizes = torch.full((batch_size, 2), 256, dtype=torch.int64)
    steps = {
        "training": lambda seed: transform.training(pixels, sizes, torch.Generator().manual_seed(seed)),
        "evaluation": lambda seed: transform.evaluation(pixels, sizes),
    }
    rates = {}
    for name, step in steps.items():
        step(0)
        torch.cuda.synchronize()
        start = time.perf_counter()
        for seed in range(repeats):
            step(seed)
        torch.cuda.synchronize()
        rates[name] = batch_size * repeats / (time.perf_counter() - start)
    return rates


def timed(what: str, function: Callable):
    start = time.perf_counter()
    result = function()
    seconds = time.perf_counter() - start
    logger.info("%s: %.1f s", what, seconds)
    return result, seconds


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-patients", type=int, default=40)
    parser.add_argument("--images-per-patient", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=5, help="timed passes per pipeline; the median is reported")
    parser.add_argument("--workdir", default=None, help="folder for the release and caches (default: a temp dir)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    datasets.disable_progress_bars()
    torch.set_num_threads(1)  # per core: PIL is single-threaded; keep torch's batch work on one thread too

    from nih_chestxray14 import load

    with tempfile.TemporaryDirectory() as scratch:
        work = Path(args.workdir or scratch)
        release, _ = timed("writing the synthetic release (1024 px PNGs)", lambda: make_release(
            work / "release", num_patients=args.num_patients, images_per_patient=args.images_per_patient,
            image_size=1024, layout="images", signal=True, seed=0))
        num_images = len(list((release / "images").glob("*.png")))

        # Recipe: prepare resized-256 once; every epoch decodes its PNGs.
        splits, recipe_prepare_s = timed("recipe: preparing resized-256 (once per machine)", lambda: load(
            "resized-256", data_dir=str(release), cache_dir=str(work / "cache-recipe")))
        recipe_data = datasets.concatenate_datasets([splits[name] for name in ("train", "validation", "test")])
        recipe_data = recipe_data.select_columns(["image", "labels"])
        raw_data, raw_prepare_s = timed("storage alternative: raw uint8 bytes in Arrow", lambda: raw_pixel_dataset(
            recipe_data))
        geometry = ImageGeometry.from_image_processor(ViTImageProcessorPil())  # ViT-B/16's: 224 px, mean = std = 0.5
        transform = AugmentAndNormalise(geometry, AugmentationConfig())

        # Tutorial: imagefolder over the full-size PNGs, then its transforms on every epoch.
        images = write_imagefolder_metadata(release)
        tutorial_data, tutorial_prepare_s = timed("tutorial: imagefolder over the 1024 px PNGs", lambda: (
            datasets.load_dataset("imagefolder", data_dir=str(images), split="train",
                                  cache_dir=str(work / "cache-tutorial"))))
        assert len(recipe_data) == len(tutorial_data) == len(raw_data) == num_images

        model_input = (3, geometry.crop_size, geometry.crop_size)
        loaded = (1, 256, 256)
        recipe = xray_view(recipe_data)
        pillow = recipe_data.with_transform(decode_xrays)
        first = collate_xrays([recipe[index] for index in range(min(8, len(recipe)))])["pixel_values"]
        assert torch.equal(first, collate_xrays([pillow[index] for index in range(len(first))])["pixel_values"])
        pipelines = {
            TUTORIAL: (tutorial_data.with_transform(TutorialTransform()), collate_tutorial, model_input),
            LOADER: (recipe, collate_xrays, loaded),
            PILLOW_LOADER: (pillow, collate_xrays, loaded),
            HOST_TRAIN: (recipe, AugmentingCollator(transform, training=True), model_input),
            HOST_EVAL: (recipe, AugmentingCollator(transform, training=False), model_input),
            RAW: (raw_data.with_transform(decode_raw_pixels), collate_xrays, loaded),
        }
        rates: Dict[str, List[Tuple[float, float]]] = {name: [] for name in [*pipelines, MEMCPY]}
        for epoch in range(args.epochs):  # interleaved, so drift in clock speed or load hits all alike
            torch.manual_seed(epoch)
            for name, (dataset, collate, expected) in pipelines.items():
                rates[name].append(epoch_rate(dataset, collate, args.batch_size, epoch, expected))
            rates[MEMCPY].append(memcpy_rate(int(np.prod(loaded))))
            logger.info("epoch %d (images/CPU-s): %s", epoch,
                        ", ".join(f"{rates[name][-1][0]:,.0f}" for name in rates))
        gpu = device_step_rates(transform)

    cpu = {name: statistics.median(rate for rate, _ in values) for name, values in rates.items()}
    wall = {name: statistics.median(rate for _, rate in values) for name, values in rates.items()}
    prepare = {
        TUTORIAL: f"{tutorial_prepare_s:.1f} s (imagefolder index)",
        LOADER: f"{recipe_prepare_s:.1f} s (resized-256 build: {num_images / recipe_prepare_s:.1f} images/s)",
        PILLOW_LOADER: "(the same build)",
        HOST_TRAIN: "(the same build)",
        HOST_EVAL: "(the same build)",
        RAW: f"+{raw_prepare_s:.1f} s (decode once, store bytes)",
        MEMCPY: "",
    }
    lines = [
        f"## Input pipeline: images/s per core ({num_images} synthetic 1024 px images, batch {args.batch_size}, "
        f"median of {args.epochs} epochs, DataLoader num_workers=0, 1 torch thread, "
        f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores)",
        "",
        "| pipeline | images/CPU-s | x memcpy bound | x tutorial | images/s (wall) | one-time prepare |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    lines += [f"| {name} | {cpu[name]:,.1f} | {cpu[name] / cpu[MEMCPY]:.3f} | {cpu[name] / cpu[TUTORIAL]:.1f}x | "
              f"{wall[name]:,.1f} | {prepare[name]} |" for name in rates]
    if gpu is None:
        lines += ["", "Batch-wise step on the GPU (batch 256, 256 px uint8 in, ViT-B/16 input out): skipped: no CUDA."]
    else:
        lines += ["", f"Batch-wise step on {torch.cuda.get_device_name()} (batch 256): " + ", ".join(
            f"{name} {rate:,.0f} images/s" for name, rate in gpu.items()) + "."]
    per_core = cpu[LOADER] >= TARGET_PER_CORE
    bound = cpu[LOADER] / cpu[MEMCPY] >= TARGET_MEMCPY_RATIO
    lines += ["", f"Target: the recipe's training pipeline (CPU side) at least {TARGET_PER_CORE:,.0f} images/s per "
              f"core: {'met' if per_core else 'NOT met'}; at least {TARGET_MEMCPY_RATIO}x the memcpy bound: "
              f"{'met' if bound else 'NOT met'}. The fast path against Pillow's decode: "
              f"{cpu[LOADER] / cpu[PILLOW_LOADER]:.2f}x."]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
