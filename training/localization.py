"""Score heatmaps against expert boxes the way ChestX-ray8 did: heatmap → boxes, IoBB, accuracy, false positives.

The definitions follow Wang et al., "ChestX-ray8: Hospital-scale Chest X-ray Database and Benchmarks on
Weakly-Supervised Classification and Localization of Common Thorax Diseases", CVPR 2017 (arXiv:1705.02315v5,
section 3.2 "Bounding Box Generation" and section 4 "Disease Localization", Table 4):

- **Heatmap → boxes.** The heatmap is normalised to [0, 255] and thresholded at 60 and at 180, separately; every
  isolated region (connected component) of either binary map gives one box, the smallest box that covers it.
  Connectivity is not stated in the paper; here it is 8-connectivity (pixels touching at a corner are one region).
- **IoBB.** Intersection over the *detected* box's area: ``area(detected ∩ truth) / area(detected)``. The paper uses
  it because its heatmaps (32 × 32 for 1024-px images) give boxes larger than the expert ones.
- **Correct localization.** A detected box localizes an expert box when ``IoBB > T(IoBB)``. The paper accepts
  ``IoU > T(IoU)`` *or* ``IoBB > T(IoBB)``; with one threshold for both the first adds nothing, since
  ``IoU <= IoBB`` always. Table 4 reports ``T(IoBB)`` in {0.1, 0.25, 0.5, 0.75, 0.9}.
- **Accuracy** of a finding: the share of its expert boxes localized by at least one box from the heatmap of that
  finding on that image.
- **Average false positives** (the paper names the figure but does not spell out how it counts; this is our reading):
  boxes from the finding's heatmap that localize none of the expert boxes of that finding on that image, averaged
  over the images that carry a box of the finding.

All coordinates are pixels of one frame (NIH's 1024 × 1024), boxes are ``(x, y, w, h)`` as in ``BBox_List_2017.csv``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
from scipy import ndimage

Box = Tuple[float, float, float, float]
"""``(x, y, w, h)`` in pixels: left, top, width, height."""

IOBB_THRESHOLDS: Tuple[float, ...] = (0.1, 0.25, 0.5, 0.75, 0.9)
"""The ``T(IoBB)`` values of Wang et al.'s Table 4."""

HEATMAP_LEVELS: Tuple[int, ...] = (60, 180)
"""Wang et al.'s two thresholds, on the heatmap normalised to [0, 255]."""

LUNG_FIELDS: Tuple[Tuple[float, float, float, float], ...] = ((-0.42, -0.05, 0.27, 0.5), (0.42, -0.05, 0.27, 0.5))
"""Two ellipses ``(centre x, centre y, radius x, radius y)`` in coordinates where the frame spans ``[-1, 1]`` (x to
the image's right, y down): a fixed, rough outline of the lung fields on a frontal film, not a segmentation. Used only
to place the random baseline's heatmaps."""

_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def heatmap_boxes(heatmap: np.ndarray, levels: Sequence[int] = HEATMAP_LEVELS) -> List[Box]:
    """The boxes Wang et al. draw from a heatmap: one per connected region above each level.

    Args:
        heatmap: ``(H, W)`` array of any real dtype; normalised here to [0, 255] by its own minimum and maximum.
        levels: thresholds on the normalised map; a pixel is in a region when its value is ``>= level``.

    Returns:
        ``(x, y, w, h)`` boxes in pixels of ``heatmap``, covering whole pixels (a one-pixel region at column 3, row 5
        is ``(3, 5, 1, 1)``); level by level, regions in raster order. A constant map gives no box.

    Raises:
        ValueError: if ``heatmap`` is not two-dimensional or holds NaN.
    """
    heatmap = np.asarray(heatmap, dtype=np.float32)
    if heatmap.ndim != 2:
        raise ValueError(f"a heatmap is a 2-D (height, width) array, got shape {heatmap.shape}")
    if np.isnan(heatmap).any():
        raise ValueError("the heatmap holds NaN values")
    low, high = float(heatmap.min()), float(heatmap.max())
    if high <= low:
        return []
    scaled = (heatmap - low) * (255.0 / (high - low))
    boxes: List[Box] = []
    for level in levels:
        regions, count = ndimage.label(scaled >= level, structure=_EIGHT_CONNECTED)
        for rows, columns in ndimage.find_objects(regions)[:count]:
            boxes.append((float(columns.start), float(rows.start),
                          float(columns.stop - columns.start), float(rows.stop - rows.start)))
    return boxes


def iobb(detected: Box, truth: Box) -> float:
    """Intersection over the detected box's area, in [0, 1]; 0 for a detected box of no area."""
    area = detected[2] * detected[3]
    if area <= 0:
        return 0.0
    width = min(detected[0] + detected[2], truth[0] + truth[2]) - max(detected[0], truth[0])
    height = min(detected[1] + detected[3], truth[1] + truth[3]) - max(detected[1], truth[1])
    return max(0.0, width) * max(0.0, height) / area


def iou(detected: Box, truth: Box) -> float:
    """Intersection over union, in [0, 1]; never larger than :func:`iobb`."""
    width = min(detected[0] + detected[2], truth[0] + truth[2]) - max(detected[0], truth[0])
    height = min(detected[1] + detected[3], truth[1] + truth[3]) - max(detected[1], truth[1])
    intersection = max(0.0, width) * max(0.0, height)
    union = detected[2] * detected[3] + truth[2] * truth[3] - intersection
    return intersection / union if union > 0 else 0.0


@dataclass
class FindingTally:
    """What one finding's heatmaps achieved, kept as overlaps so every ``T(IoBB)`` is counted from one pass.

    Attributes:
        best_per_truth: for each expert box, the largest IoBB of a box from the heatmap of its image.
        best_per_detection: for each box from a heatmap, its largest IoBB with an expert box of that image.
        num_images: heatmaps (images carrying a box of the finding) seen.
    """

    best_per_truth: List[float] = field(default_factory=list)
    best_per_detection: List[float] = field(default_factory=list)
    num_images: int = 0

    def add(self, detected: Sequence[Box], truths: Sequence[Box]) -> None:
        """Add one image's boxes from the heatmap and its expert boxes (at least one) of this finding."""
        if not truths:
            raise ValueError("an image scored for a finding needs at least one expert box of it")
        overlaps = np.array([[iobb(box, truth) for truth in truths] for box in detected]).reshape(len(detected),
                                                                                                  len(truths))
        self.best_per_truth.extend(overlaps.max(axis=0, initial=0.0).tolist())
        self.best_per_detection.extend(overlaps.max(axis=1, initial=0.0).tolist())
        self.num_images += 1

    def summary(self, thresholds: Sequence[float] = IOBB_THRESHOLDS) -> Dict[str, object]:
        """``{"num_boxes", "num_images", "by_threshold": {"0.1": {"accuracy", "average_false_positives"}, ...}}``.

        Plain floats and ints, ready for JSON; accuracy and false positives are ``None`` when no box was added.
        """
        truths = np.asarray(self.best_per_truth, dtype=np.float64)
        detections = np.asarray(self.best_per_detection, dtype=np.float64)
        by_threshold = {}
        for threshold in thresholds:
            if truths.size:
                accuracy = float(np.mean(truths > threshold))
                false_positives = float(np.sum(detections <= threshold)) / self.num_images
            else:
                accuracy = false_positives = None
            by_threshold[f"{threshold:g}"] = {"accuracy": accuracy, "average_false_positives": false_positives}
        return {"num_boxes": int(truths.size), "num_images": self.num_images, "by_threshold": by_threshold}


@dataclass
class LocalizationTally:
    """:class:`FindingTally` per finding, in the order findings were first added."""

    findings: Dict[str, FindingTally] = field(default_factory=dict)

    def add(self, finding: str, heatmap: np.ndarray, truths: Sequence[Box]) -> List[Box]:
        """Score one heatmap of ``finding`` against the image's expert boxes of it; return the boxes drawn from it."""
        detected = heatmap_boxes(heatmap)
        self.findings.setdefault(finding, FindingTally()).add(detected, truths)
        return detected

    def summary(self, thresholds: Sequence[float] = IOBB_THRESHOLDS) -> Dict[str, Dict[str, object]]:
        return {name: tally.summary(thresholds) for name, tally in self.findings.items()}


def lung_field_mask(height: int, width: int) -> np.ndarray:
    """``(height, width)`` bool mask of :data:`LUNG_FIELDS`, pixel centres tested."""
    x = (np.arange(width) + 0.5) * (2.0 / width) - 1.0
    y = (np.arange(height) + 0.5) * (2.0 / height) - 1.0
    mask = np.zeros((height, width), dtype=bool)
    for cx, cy, rx, ry in LUNG_FIELDS:
        mask |= ((x[None, :] - cx) / rx) ** 2 + ((y[:, None] - cy) / ry) ** 2 <= 1.0
    return mask


def moved_to_random_lung_point(heatmap: np.ndarray, rng: np.random.Generator,
                               mask: Optional[np.ndarray] = None) -> np.ndarray:
    """The random baseline: ``heatmap`` shifted (zeros shifted in) so that its peak lands on a random lung-field pixel.

    The shifted map keeps the method's own shape and spread, so a comparison with it isolates *where* the map points.

    Args:
        heatmap: ``(H, W)``.
        rng: the source of the random point.
        mask: the allowed peak positions, ``(H, W)`` bool; defaults to :func:`lung_field_mask`.
    """
    heatmap = np.asarray(heatmap)
    height, width = heatmap.shape
    mask = lung_field_mask(height, width) if mask is None else mask
    rows, columns = np.nonzero(mask)
    pick = int(rng.integers(rows.size))
    peak_row, peak_column = np.unravel_index(int(np.argmax(heatmap)), heatmap.shape)
    return _shifted(heatmap, int(rows[pick]) - int(peak_row), int(columns[pick]) - int(peak_column))


def _shifted(array: np.ndarray, down: int, right: int) -> np.ndarray:
    """``array`` moved ``down`` rows and ``right`` columns, zeros where nothing moved in."""
    out = np.zeros_like(array)
    height, width = array.shape
    if abs(down) >= height or abs(right) >= width:
        return out
    out[max(down, 0):height + min(down, 0), max(right, 0):width + min(right, 0)] = \
        array[max(-down, 0):height + min(-down, 0), max(-right, 0):width + min(-right, 0)]
    return out


def wang_2017_table4() -> Mapping[str, Mapping[str, Mapping[str, float]]]:
    """Wang et al.'s published localization (ResNet-50, Table 4 of arXiv:1705.02315v5): finding → ``T(IoBB)`` →
    ``{"accuracy", "average_false_positives"}``, for comparison tables.

    The paper counts 1,600 boxes on 983 images; NIH's released ``BBox_List_2017.csv`` holds 984 boxes on 880 images.
    """
    accuracy = {
        "0.1": (0.7277, 0.9931, 0.7124, 0.7886, 0.4352, 0.1645, 0.7500, 0.4591),
        "0.25": (0.5500, 0.9794, 0.5424, 0.5772, 0.2823, 0.0506, 0.5583, 0.3469),
        "0.5": (0.2833, 0.8767, 0.3333, 0.4227, 0.1411, 0.0126, 0.3833, 0.1836),
        "0.75": (0.1666, 0.7260, 0.2418, 0.3252, 0.1176, 0.0126, 0.2583, 0.1020),
        "0.9": (0.1333, 0.6849, 0.2091, 0.2520, 0.0588, 0.0126, 0.2416, 0.0816),
    }
    false_positives = {
        "0.1": (0.8323, 0.3506, 0.7998, 0.5589, 0.6423, 0.6047, 0.9055, 0.4776),
        "0.25": (0.9167, 0.4553, 0.8598, 0.6077, 0.6707, 0.6158, 0.9614, 0.5000),
        "0.5": (1.0203, 0.5630, 0.9268, 0.6585, 0.6941, 0.6189, 1.0132, 0.5285),
        "0.75": (1.0619, 0.6616, 0.9603, 0.6921, 0.7043, 0.6199, 1.0569, 0.5396),
        "0.9": (1.0752, 0.7226, 0.9797, 0.7124, 0.7144, 0.6199, 1.0732, 0.5437),
    }
    findings = ("Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia",
                "Pneumothorax")
    return {
        name: {threshold: {"accuracy": accuracy[threshold][index],
                           "average_false_positives": false_positives[threshold][index]}
               for threshold in accuracy}
        for index, name in enumerate(findings)
    }
