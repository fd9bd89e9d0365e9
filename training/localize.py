#!/usr/bin/env python
"""Where a trained classifier looks: a heatmap for each expert box's finding, scored against NIH's boxes.

Examples::

    python training/localize.py --model_name_or_path demo-output --dataset_name nih_chestxray14 \\
        --dataset_config_name resized-224 --data_dir /data/nih --output_dir loc-out [--method gradcam]

Every image of ``--split`` (default: test, which holds all of NIH's 880 boxed images) that has boxes gets, for each
finding it has a box of, a heatmap at the model's input resolution, mapped back onto the box file's 1024-pixel frame.
``--output_dir`` then holds:

- ``heatmaps.npz``: ``<image_id>/<Finding>`` → float16 ``(1024, 1024)`` in [0, 1] (``numpy.load`` reads it);
- ``localization.json``: per finding and ``T(IoBB)``, accuracy, average false positives and the number of boxes, as
  Wang et al. (CVPR 2017) define them (see ``training/localization.py``), beside the same figures for heatmaps moved to
  random places in the lung fields;
- ``localization.png``: a grid of images with heatmap, expert boxes and the boxes drawn from the heatmap.

The recipe (``training/run.py --do_predict``) calls :func:`localize_test_split` for its model card.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

# Run from a clone, as training/run.py is: the repository root on the path in place of this folder.
_REPO_ROOT = Path(__file__).resolve().parents[1]
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(_REPO_ROOT)
elif str(_REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(_REPO_ROOT))

import datasets  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
from transformers import HfArgumentParser  # noqa: E402

from nih_chestxray14.errors import NIHChestXray14Error  # noqa: E402
from nih_chestxray14.files import atomic_path, atomic_write_json  # noqa: E402
from nih_chestxray14.metadata import BOX_FRAME  # noqa: E402
from training.arguments import BUILDER_DATASET, DataTrainingArguments  # noqa: E402
from training.augment import AugmentAndNormalise, ImageGeometry  # noqa: E402
from training.data import collate_xrays, to_grayscale  # noqa: E402
from training.model import image_geometry  # noqa: E402
from training.dataset import load_chestxray14  # noqa: E402
from training.heatmaps import METHODS, class_heatmaps, heatmap_in_frame, resolve_method  # noqa: E402
from training.localization import (  # noqa: E402
    HEATMAP_LEVELS,
    IOBB_THRESHOLDS,
    Box,
    LocalizationTally,
    lung_field_mask,
    moved_to_random_lung_point,
)
from training.overlays import Overlay, draw_overlays  # noqa: E402

logger = logging.getLogger(__name__)

HEATMAPS_FILE = "heatmaps.npz"
SUMMARY_FILE = "localization.json"
FIGURE_FILE = "localization.png"
SPLIT_CHOICES = ("test", "validation", "train")
_FIGURE_PIXELS = 256  # resolution of each cell's image and heatmap in the figure


@dataclass
class LocalizationArguments:
    """The model to explain, the method, and where the results go."""

    model_name_or_path: Optional[str] = field(
        default=None, metadata={"help": "Folder (or Hub id) of a trained 14-finding classifier, e.g. demo-output."}
    )
    output_dir: Optional[str] = field(
        default=None, metadata={"help": f"Folder for {HEATMAPS_FILE}, {SUMMARY_FILE} and {FIGURE_FILE}."}
    )
    method: str = field(
        default="auto",
        metadata={"help": "Heatmap method: 'auto' (gradient_rollout for ViTs, gradcam for CNNs and Swin), "
                          "'attention_rollout', 'gradient_rollout' or 'gradcam'.", "choices": ("auto", *METHODS)},
    )
    split: str = field(default="test", metadata={"help": "Split whose boxed images are scored.",
                                                 "choices": SPLIT_CHOICES})
    batch_size: int = field(default=16, metadata={"help": "Images per forward pass."})
    figure_images: int = field(default=16, metadata={"help": f"Heatmaps drawn in {FIGURE_FILE} (the first ones)."})
    seed: int = field(default=0, metadata={"help": "Seed of the random lung-field baseline."})
    cache_dir: Optional[str] = field(default=None, metadata={"help": "Cache of the prepared dataset and the model."})

    def __post_init__(self) -> None:
        if not self.model_name_or_path:
            raise ValueError("give --model_name_or_path: the folder of a trained classifier (e.g. demo-output)")
        if not self.output_dir:
            raise ValueError(f"give --output_dir: the folder for {HEATMAPS_FILE}, {SUMMARY_FILE} and {FIGURE_FILE}")
        for name in ("batch_size", "figure_images"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be >= 1, got {getattr(self, name)}")


@dataclass
class LocalizationDataArguments:
    """The dataset, named as the recipe names it (``training/run.py``'s data flags)."""

    dataset_name: str = field(
        default=BUILDER_DATASET,
        metadata={"help": f"'{BUILDER_DATASET}' (the builder, with --data_dir) or the exported Parquet dataset."},
    )
    dataset_config_name: Optional[str] = field(
        default=None, metadata={"help": "Builder config, e.g. 'resized-224', or the Parquet dataset's config."}
    )
    data_dir: Optional[str] = field(default=None, metadata={"help": "Folder of the NIH release (builder only)."})
    validation_fraction: Optional[float] = field(
        default=None, metadata={"help": "The validation fraction the model was trained with (builder only)."}
    )
    allow_missing_images: bool = field(
        default=False, metadata={"help": "Build from a partial download (builder only)."}
    )

    def recipe_arguments(self) -> DataTrainingArguments:
        """The recipe's data arguments for :func:`training.dataset.load_chestxray14` (checks them, naming flags)."""
        return DataTrainingArguments(**asdict(self))


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """Run the command with ``argv`` (default ``sys.argv[1:]``); return what it wrote to ``localization.json``.

    Raises:
        ValueError: for bad arguments, a model that can't be loaded or lacks a boxed finding, or a split without boxes.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = HfArgumentParser((LocalizationArguments, LocalizationDataArguments))
    if len(argv) == 1 and argv[0].endswith(".json"):
        args, data_args = parser.parse_json_file(json_file=argv[0])
    else:
        args, data_args = parser.parse_args_into_dataclasses(args=argv)
    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", level=logging.INFO,
                        handlers=[logging.StreamHandler(sys.stdout)])

    method = args.method
    model, image_processor = load_classifier(args.model_name_or_path, method, args.cache_dir)
    dataset = load_chestxray14(data_args.recipe_arguments(), cache_dir=args.cache_dir)
    split = dataset[args.split]
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    summary = localize(
        model, image_processor, split, output_dir, method=method, batch_size=args.batch_size,
        figure_images=args.figure_images, seed=args.seed, write_heatmaps=True,
        description={"model": args.model_name_or_path, "dataset_name": data_args.dataset_name,
                     "dataset_config_name": data_args.dataset_config_name, "split": args.split},
    )
    if summary is None:
        raise ValueError(f"the {args.split} split of {data_args.dataset_name!r} has no bounding boxes "
                         "(NIH's are all in the test split; a synthetic release has them in BBox_List_2017.csv)")
    logger.info("wrote %s, %s and %s to %s", HEATMAPS_FILE, SUMMARY_FILE, FIGURE_FILE, output_dir)
    return summary


def load_classifier(name: str, method: str = "auto", cache_dir: Optional[str] = None):
    """The model, in eval mode, and its image processor.

    Raises:
        ValueError: naming ``name`` if it can't be loaded, has no safetensors weights, or is no image classifier.
    """
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    try:
        model = AutoModelForImageClassification.from_pretrained(name, use_safetensors=True, cache_dir=cache_dir)
        image_processor = AutoImageProcessor.from_pretrained(name, cache_dir=cache_dir)
    except (OSError, ValueError) as error:
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ValueError(f"--model_name_or_path {name!r}: {first_line}") from None
    resolve_method(model, method)  # a bad method fails before the dataset is prepared
    return model.eval(), image_processor


def localize_test_split(model, image_processor, test_dataset: datasets.Dataset, output_dir: Path,
                        method: str = "auto") -> Dict[str, Any]:
    """The recipe's step: score the test split's boxed images and return the model card's inputs.

    Writes ``localization.json`` and ``localization.png`` into ``output_dir`` (not the heatmaps, which would bloat a
    published model folder). Returns ``{"localization": <what localization.json holds>}``, or ``{}`` when the split
    has no boxes, its boxes name no label of the model, or the heatmaps can't be made (logged as a warning).
    """
    names = _box_finding_names(test_dataset)
    labels = set(model.config.label2id)
    if not any(name in labels for name in names):
        return {}
    try:
        summary = localize(model, image_processor, test_dataset, Path(output_dir), method=method,
                           write_heatmaps=False, description={"split": "test"})
    except Exception as error:  # noqa: BLE001 - the model is saved already; a card without this section beats no card
        first_line = (str(error).strip().splitlines() or [""])[0]
        logger.warning("the model card gets no localization section (%s: %s)", type(error).__name__, first_line)
        logger.debug("localization of the test split failed", exc_info=True)
        return {}
    return {} if summary is None else {"localization": summary}


def localize(model, image_processor, split: datasets.Dataset, output_dir: Path, *, method: str = "auto",
             batch_size: int = 16, figure_images: int = 16, seed: int = 0, write_heatmaps: bool = True,
             description: Optional[Mapping[str, Any]] = None) -> Optional[Dict[str, Any]]:
    """Heatmaps for the boxed findings of every boxed image of ``split``, scored; ``None`` if it has no boxes.

    Writes ``heatmaps.npz`` (with ``write_heatmaps``), ``localization.json`` and ``localization.png`` into
    ``output_dir`` (created if needed), each atomically, and returns the content of ``localization.json``. The
    attention methods switch ``model`` to eager attention (see ``training/heatmaps.py``).

    Raises:
        ValueError: if a boxed finding is not a label of the model.
    """
    method = resolve_method(model, method)
    boxed = _boxed_images(split)
    if boxed is None:
        return None
    if method in ("attention_rollout", "gradient_rollout"):
        model.set_attn_implementation("eager")  # the one attention kernel that returns its weights
    names = _box_finding_names(split)
    missing = sorted(set(names) - set(model.config.label2id))
    if missing:
        raise ValueError(f"the model has no label {', '.join(missing)}, which the boxes name; its labels are "
                         f"{', '.join(model.config.label2id)}")
    geometry = image_geometry(image_processor)  # the recipe's own reading of the processor (timm's included)
    evaluation_view = AugmentAndNormalise(geometry)
    tally, baseline = LocalizationTally(), LocalizationTally()
    rng = np.random.default_rng(seed)
    overlays: List[Overlay] = []
    output_dir.mkdir(parents=True, exist_ok=True)
    heatmaps_path = output_dir / HEATMAPS_FILE
    logger.info("%s heatmaps for %d images with boxes", method, len(boxed))
    with _heatmap_archive(heatmaps_path if write_heatmaps else None) as archive:
        for start in range(0, len(boxed), batch_size):
            batch = boxed[start:start + batch_size]
            images = [to_grayscale(image) for image in batch["image"]]
            targets = [_findings_of(boxes, names) for boxes in batch["bboxes"]]
            result = class_heatmaps(model, _pixel_values(evaluation_view, images),
                                    [[model.config.label2id[name] for name in findings] for findings in targets],
                                    method)
            for index, (image, image_id, boxes, findings) in enumerate(zip(images, batch["image_id"], batch["bboxes"],
                                                                           targets)):
                frame_size, window = _frame_of(image.size, geometry)
                mask = lung_field_mask(frame_size[1], frame_size[0])
                for position, finding in enumerate(findings):
                    heatmap = heatmap_in_frame(result.heatmaps[index][position], window, frame_size)
                    truths = [_box(box) for box in boxes if names[box["finding"]] == finding]
                    detected = tally.add(finding, heatmap, truths)
                    baseline.add(finding, moved_to_random_lung_point(heatmap, rng, mask), truths)
                    if archive is not None:
                        _write_array(archive, f"{image_id}/{finding}", heatmap.astype(np.float16))
                    if len(overlays) < figure_images:
                        probability = result.probabilities[index][model.config.label2id[finding]]
                        overlays.append(_overlay(image, heatmap, frame_size, truths, detected,
                                                 f"{image_id}\n{finding} (p={probability:.2f})"))

    summary = {
        **dict(description or {}),
        "method": method,
        "num_images": len(boxed),
        "num_boxes": sum(len(boxes) for boxes in boxed["bboxes"]),
        "box_frame": BOX_FRAME,
        "heatmap_levels": list(HEATMAP_LEVELS),
        "connectivity": 8,
        "iobb_thresholds": list(IOBB_THRESHOLDS),
        "findings": _in_order(tally.summary(), names),
        "random_lung_field_baseline": {"seed": seed, "findings": _in_order(baseline.summary(), names)},
    }
    atomic_write_json(output_dir / SUMMARY_FILE, summary)
    draw_overlays(overlays, output_dir / FIGURE_FILE)
    summary["figure"] = FIGURE_FILE
    return summary


def _pixel_values(evaluation_view: AugmentAndNormalise, images: Sequence[Image.Image]):
    """The model's input for 8-bit grey ``images``, exactly as the recipe evaluates them: float32 ``(N, 3, H, W)``
    (collated as the data loader does, then resized, centre-cropped and normalised as the Trainer does)."""
    batch = collate_xrays([{"pixel_values": np.asarray(image)} for image in images])
    return evaluation_view.evaluation(batch["pixel_values"], batch["image_sizes"])


def _in_order(per_finding: Dict[str, Any], names: Sequence[str]) -> Dict[str, Any]:
    return {name: per_finding[name] for name in names if name in per_finding}


def _boxed_images(split: datasets.Dataset) -> Optional[datasets.Dataset]:
    """The rows of ``split`` with at least one box (only the ``bboxes`` column is read to find them)."""
    if "bboxes" not in split.column_names:
        return None
    counts = [len(boxes) for boxes in split.select_columns(["bboxes"])["bboxes"]]
    rows = [index for index, count in enumerate(counts) if count]
    if not rows:
        return None
    return split.select(rows).select_columns(["image", "image_id", "bboxes"])


def _box_finding_names(split: datasets.Dataset) -> List[str]:
    """The names of the ``bboxes.finding`` class label (the 14 findings in ``LABELS`` order); ``[]`` without boxes."""
    feature = split.features.get("bboxes")
    inner = getattr(feature, "feature", feature)
    finding = inner.get("finding") if isinstance(inner, dict) else None
    return list(getattr(finding, "names", []))


def _findings_of(boxes: Sequence[Mapping[str, Any]], names: Sequence[str]) -> List[str]:
    """The distinct findings an image has boxes of, in the order of its boxes."""
    return list(dict.fromkeys(names[box["finding"]] for box in boxes))


def _box(box: Mapping[str, Any]) -> Box:
    return (float(box["x"]), float(box["y"]), float(box["w"]), float(box["h"]))


def _frame_of(image_size: Tuple[int, int], geometry: ImageGeometry):
    """The box file's frame for an image of this size (``BOX_FRAME`` wide, the image's aspect ratio), and the window
    of it that the model saw: the evaluation crop (:meth:`ImageGeometry.evaluation_crop_box`), scaled to the frame."""
    width, height = image_size
    scale = BOX_FRAME / width
    frame_size = (BOX_FRAME, round(height * scale))
    left, top, right, bottom = geometry.evaluation_crop_box(height, width)
    return frame_size, (left * scale, top * scale, right * scale, bottom * scale)


def _overlay(image: Image.Image, heatmap: np.ndarray, frame_size, truths, detected, title: str) -> Overlay:
    """A figure cell at :data:`_FIGURE_PIXELS` wide, so the figure holds no 1024-pixel arrays."""
    small = (_FIGURE_PIXELS, max(1, round(_FIGURE_PIXELS * frame_size[1] / frame_size[0])))
    pixels = np.asarray(image.resize(small, Image.Resampling.BILINEAR), dtype=np.uint8)
    coarse = np.asarray(Image.fromarray(heatmap, mode="F").resize(small, Image.Resampling.BILINEAR))
    return Overlay(image=pixels, heatmap=coarse, frame_size=frame_size, truths=truths, detected=detected, title=title)


@contextlib.contextmanager
def _heatmap_archive(path: Optional[Path]) -> Iterator[Optional[zipfile.ZipFile]]:
    """``heatmaps.npz`` written one array at a time (an ``.npz`` is a zip of ``.npy`` files) and renamed into place
    only when complete; with no path, nothing is written and the context value is ``None``."""
    if path is None:
        yield None
        return
    with atomic_path(path) as partial, zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED,
                                                             compresslevel=1) as archive:
        yield archive


def _write_array(archive: zipfile.ZipFile, key: str, array: np.ndarray) -> None:
    with archive.open(f"{key}.npy", "w", force_zip64=True) as member:
        np.lib.format.write_array(member, array, allow_pickle=False)


if __name__ == "__main__":
    try:
        main()
    except (ValueError, FileNotFoundError, NIHChestXray14Error) as error:
        logger.debug("the command stopped", exc_info=True)
        sys.exit(f"{Path(sys.argv[0]).name}: error: {error}")
