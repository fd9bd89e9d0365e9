"""Benchmark: training images per second that one CPU core delivers to the model, recipe vs the 2022 tutorial.

Both pipelines read the same synthetic release (full-size 1024 x 1024 PNGs written by
``nih_chestxray14.sample.make_release``), in the same process, through a ``torch.utils.data.DataLoader`` with
``num_workers=0``, batch 32 and one torch thread, so the figure is per core:

- **tutorial (2022)** -- ``datasets``' ``imagefolder`` over the full-size PNGs, then per image: convert to RGB,
  ``Resize(224)``, ``ToTensor``, ``Normalize(0.5, 0.5)``. torchvision is not installed beside this torch, so those
  three transforms are re-implemented with PIL, NumPy and torch exactly as torchvision applies them to PIL images
  (``Resize`` with an int resizes the shorter edge with PIL's antialiased bilinear filter).
- **recipe** -- the builder's ``resized-256`` config (PNGs already shrunk to a 256-pixel shorter edge, in Arrow),
  then the recipe's transforms and ``collate_multilabel``: per image only the decode and the geometry that needs PIL,
  on 8-bit grayscale; per batch the augmented crop resampling, brightness/contrast jitter, normalisation from the
  checkpoint's image processor and the three channels the model wants (float32 (N, 3, 224, 224)).

Each epoch is timed by the CPU time of this process (``time.process_time``: images per CPU-second, which stays
meaningful when other work shares the machine) and by the wall clock; the pipelines run interleaved, epoch by epoch,
and the table gives the median epoch of each. One-time costs (writing the Arrow cache of each) are timed separately
and not counted in images/s. The recipe's prepare step is paid once per machine; the tutorial decodes full-size PNGs
on every epoch.

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
from transformers import ViTImageProcessor  # noqa: E402

from nih_chestxray14.labels import LABELS, multi_hot  # noqa: E402
from nih_chestxray14.metadata import read_release_metadata  # noqa: E402
from nih_chestxray14.sample import make_release  # noqa: E402
from training.data import ImageGeometry, XrayEvalTransform, XrayTrainTransform, collate_multilabel  # noqa: E402

TARGET_RATIO = 20.0
TUTORIAL = "tutorial (2022): imagefolder over full-size PNGs, Resize(224) + ToTensor + Normalize"
RECIPE_TRAIN = "recipe, training: resized-256, XrayTrainTransform (augmentation) + collate_multilabel"
RECIPE_EVAL = "recipe, evaluation: resized-256, XrayEvalTransform (resize + centre crop) + collate_multilabel"
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


def write_imagefolder_metadata(release: Path) -> Path:
    """Add ``metadata.jsonl`` (file name → multi-hot labels) beside the PNGs, as the tutorial attached labels."""
    images = release / "images"
    with open(images / "metadata.jsonl", "w") as metadata:
        for row in read_release_metadata(str(release)).entries.values():
            metadata.write(json.dumps({"file_name": row.image_id, "labels": multi_hot(row.findings)}) + "\n")
    return images


def epoch_rates(dataset, batch_size: int, epochs: int) -> List[Tuple[float, float]]:
    """(images per CPU-second, images per wall-clock second) of each full pass through a shuffled ``DataLoader``.

    The loader runs in this process (``num_workers=0``) with the recipe's collator; every batch is checked to be what
    the model takes: float32 pixel values (N, 3, 224, 224) and float32 labels (N, 14).
    """
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=0,
                                         collate_fn=collate_multilabel, generator=torch.Generator().manual_seed(0))
    rates = []
    for _ in range(epochs):
        count, cpu, wall = 0, time.process_time(), time.perf_counter()
        for batch in loader:
            pixel_values, labels = batch["pixel_values"], batch["labels"]
            assert pixel_values.shape[1:] == (3, 224, 224) and pixel_values.dtype == torch.float32
            assert labels.shape[1] == len(LABELS) and labels.dtype == torch.float32
            count += pixel_values.shape[0]
        rates.append((count / (time.process_time() - cpu), count / (time.perf_counter() - wall)))
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
    torch.set_num_threads(1)  # per core: PIL is single-threaded; keep torch's normalisation on one thread too

    from nih_chestxray14 import load

    with tempfile.TemporaryDirectory() as scratch:
        work = Path(args.workdir or scratch)
        release, _ = timed("writing the synthetic release (1024 px PNGs)", lambda: make_release(
            work / "release", num_patients=args.num_patients, images_per_patient=args.images_per_patient,
            image_size=1024, layout="images", signal=True, seed=0))
        num_images = len(list((release / "images").glob("*.png")))

        # Recipe: prepare resized-256 once, then the training transform on every epoch.
        splits, recipe_prepare_s = timed("recipe: preparing resized-256 (once per machine)", lambda: load(
            "resized-256", data_dir=str(release), cache_dir=str(work / "cache-recipe")))
        recipe_data = datasets.concatenate_datasets([splits[name] for name in ("train", "validation", "test")])
        recipe_data = recipe_data.select_columns(["image", "labels"])
        geometry = ImageGeometry.from_image_processor(ViTImageProcessor())  # ViT-B/16's: 224 px, mean = std = 0.5

        # Tutorial: imagefolder over the full-size PNGs, then its transforms on every epoch.
        images = write_imagefolder_metadata(release)
        tutorial_data, tutorial_prepare_s = timed("tutorial: imagefolder over the 1024 px PNGs", lambda: (
            datasets.load_dataset("imagefolder", data_dir=str(images), split="train",
                                  cache_dir=str(work / "cache-tutorial"))))
        assert len(recipe_data) == len(tutorial_data) == num_images

        pipelines = {
            TUTORIAL: tutorial_data.with_transform(TutorialTransform()),
            RECIPE_TRAIN: recipe_data.with_transform(XrayTrainTransform(geometry)),
            RECIPE_EVAL: recipe_data.with_transform(XrayEvalTransform(geometry)),
        }
        rates: Dict[str, List[Tuple[float, float]]] = {name: [] for name in pipelines}
        for epoch in range(args.epochs):  # interleaved, so drift in clock speed or load hits all alike
            for name, dataset in pipelines.items():
                rates[name] += epoch_rates(dataset, args.batch_size, 1)
            logger.info("epoch %d (images/CPU-s): %s", epoch,
                        ", ".join(f"{rates[name][-1][0]:.1f}" for name in pipelines))

    cpu = {name: statistics.median(rate for rate, _ in values) for name, values in rates.items()}
    wall = {name: statistics.median(rate for _, rate in values) for name, values in rates.items()}
    ratio = {name: cpu[name] / cpu[TUTORIAL] for name in cpu}
    prepare = {
        TUTORIAL: f"{tutorial_prepare_s:.1f} s (imagefolder index)",
        RECIPE_TRAIN: f"{recipe_prepare_s:.1f} s (resized-256 build: {num_images / recipe_prepare_s:.1f} images/s)",
        RECIPE_EVAL: "(the same build)",
    }
    lines = [
        f"## Input pipeline: images/s per core ({num_images} synthetic 1024 px images, batch {args.batch_size}, "
        f"median of {args.epochs} epochs, DataLoader num_workers=0, 1 torch thread, "
        f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores)",
        "",
        "| pipeline | images/CPU-s | ratio to tutorial | images/s (wall) | ratio (wall) | one-time prepare |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    lines += [f"| {name} | {cpu[name]:,.1f} | {ratio[name]:.1f}x | {wall[name]:,.1f} | "
              f"{wall[name] / wall[TUTORIAL]:.1f}x | {prepare[name]} |" for name in pipelines]
    met = "met" if ratio[RECIPE_TRAIN] >= TARGET_RATIO else "NOT met"
    lines += ["", f"Target: the recipe's training pipeline at least {TARGET_RATIO:.0f}x the tutorial's per core "
              f"(images/CPU-s): {met}."]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
