"""Synthetic ChestX-ray14 releases: X-ray-like PNGs in NIH's own file layouts, for demos, tests and benchmarks.

:func:`make_release` writes a folder that the builder reads exactly as it reads NIH's release:

- grayscale 8-bit PNGs of ``image_size`` × ``image_size`` pixels that look like frontal chest X-rays (soft tissue,
  two lungs with vessel texture, heart and mediastinum, spine, ribs, clavicles, film grain). At 1024 × 1024 a PNG
  weighs about 400–500 KB, like NIH's.
- ``Data_Entry_2017_v2020.csv`` (or one of the other header variants in the wild, see :data:`CSV_VARIANTS`),
  ``train_val_list.txt`` and ``test_list.txt`` (patient-wise), and ``BBox_List_2017.csv`` for a few images,
  spelling Infiltration ``Infiltrate`` as NIH's box file does.
- the pixels in one of NIH's layouts (see :data:`LAYOUTS`).
- optionally, expert labels for some test and train_val images in Google's format or torchxrayvision's (see
  :data:`EXPERT_LABEL_FORMATS`), derived from the planted findings by the documented 14 → 4 rule
  (:data:`~nih_chestxray14.expert_findings.NIH_TO_EXPERT`), with Fracture, which NIH's findings lack, drawn at random.

With ``signal=True`` every finding plants its own visual pattern (see :data:`FINDING_PATTERNS`), large and strong
enough that a small ViT at 32–64 px learns it within a few hundred CPU steps; boxes in ``BBox_List_2017.csv`` then
frame the planted pattern. Every finding appears in each of train, validation and test whenever each split holds at
least one image, which :func:`make_release` ensures from ``num_patients >= 3``.

Everything is deterministic in ``seed``.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import logging
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
from PIL import Image

from .archives import archive_name
from .expert_findings import EXPERT_FINDINGS, NIH_TO_EXPERT
from .expert_labels import GOOGLE_FILES, GOOGLE_TEST, GOOGLE_VALIDATION, TORCHXRAYVISION_FILES
from .labels import LABELS, NO_FINDING
from .metadata import BBOX_CSV_NAMES, TEST_LIST, TRAIN_VAL_LIST
from .pixels import encode_gray_png
from .splits import SPLITS, is_validation_patient

logger = logging.getLogger(__name__)

LAYOUTS: Tuple[str, ...] = ("archives", "images", "kaggle")
"""``archives``: NIH's ``images_001.tar.gz`` … (members ``images/NNNNNNNN_NNN.png``, cut by sorted file name);
``images``: extracted ``images/*.png``; ``kaggle``: Kaggle's ``images_001/images/*.png`` …"""

CSV_VARIANTS: Tuple[str, ...] = ("v2020", "patient-sex", "trailing-comma", "2017")
"""``v2020``: ``Data_Entry_2017_v2020.csv`` with NIH's header (``Patient Gender``);
``patient-sex``: the same file with a ``Patient Sex`` column;
``trailing-comma``: every line ends with a comma, giving an empty 12th column;
``2017``: Kaggle's older ``Data_Entry_2017.csv``, with the trailing comma and an implausible age (as in the real
file, whose ages reach 414)."""

EXPERT_LABEL_FORMATS: Tuple[str, ...] = ("google", "torchxrayvision")
"""``google``: ``four_findings_expert_labels/test_labels.csv`` and ``validation_labels.csv``, the entry CSV's columns
followed by the four findings (YES/NO), as Google describes its files; ``torchxrayvision``:
``google2019_nih-chest-xray-labels.csv.gz``, the same columns plus ``Set Id`` (``test`` or ``val``)."""

FRACTURE_PREVALENCE = 0.05
"""Share of expert-labelled images with a Fracture (Google's sets have 4.2%; no NIH finding plants one)."""

NIH_PREVALENCE: Mapping[str, float] = {
    "Atelectasis": 0.103,
    "Cardiomegaly": 0.025,
    "Effusion": 0.119,
    "Infiltration": 0.177,
    "Mass": 0.052,
    "Nodule": 0.056,
    "Pneumonia": 0.013,
    "Pneumothorax": 0.047,
    "Consolidation": 0.042,
    "Edema": 0.021,
    "Emphysema": 0.022,
    "Fibrosis": 0.015,
    "Pleural_Thickening": 0.030,
    "Hernia": 0.002,
}
"""Share of NIH's 112,120 images that carry each finding (from Data_Entry_2017_v2020.csv)."""

BOX_FINDINGS: Tuple[str, ...] = (
    "Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia", "Pneumothorax",
)
"""The eight findings that NIH's ``BBox_List_2017.csv`` has boxes for."""


@dataclass(frozen=True)
class FindingPattern:
    """Where and how a finding is drawn, in coordinates where the image spans ``[-1, 1]`` (x right, y down).

    ``kind``: ``blob`` (smooth round opacity), ``ring``, ``stripes`` (reticular lines), ``band`` (wide, flat
    opacity) or ``lucent`` (darker, markings removed). ``amplitude`` is in grey levels (negative: darker).
    """

    x: float
    y: float
    radius_x: float
    radius_y: float
    kind: str
    amplitude: float


FINDING_PATTERNS: Mapping[str, FindingPattern] = {
    "Atelectasis": FindingPattern(-0.45, 0.30, 0.20, 0.07, "band", 60),
    "Cardiomegaly": FindingPattern(0.12, 0.32, 0.40, 0.30, "blob", 45),
    "Effusion": FindingPattern(0.52, 0.32, 0.20, 0.10, "band", 70),
    "Infiltration": FindingPattern(0.45, -0.05, 0.16, 0.16, "stripes", 55),
    "Mass": FindingPattern(-0.40, -0.30, 0.13, 0.13, "blob", 75),
    "Nodule": FindingPattern(0.32, -0.45, 0.07, 0.07, "blob", 85),
    "Pneumonia": FindingPattern(-0.35, 0.08, 0.20, 0.20, "blob", 40),
    "Pneumothorax": FindingPattern(0.52, -0.42, 0.17, 0.17, "lucent", -55),
    "Consolidation": FindingPattern(0.28, 0.18, 0.12, 0.10, "ring", 70),
    "Edema": FindingPattern(-0.18, -0.05, 0.10, 0.22, "stripes", 50),
    "Emphysema": FindingPattern(-0.48, -0.55, 0.18, 0.12, "lucent", -50),
    "Fibrosis": FindingPattern(-0.55, -0.05, 0.10, 0.25, "stripes", 60),
    "Pleural_Thickening": FindingPattern(0.72, 0.05, 0.06, 0.30, "band", 65),
    "Hernia": FindingPattern(0.00, 0.62, 0.14, 0.10, "ring", 80),
}
"""The planted pattern of each finding under ``signal=True``. Positions follow the anatomy loosely (effusion at a
costophrenic angle, hernia above the diaphragm, pneumothorax at an apex) and are distinct, so a model can tell the
14 findings apart even at 32 px."""

# (width, height, pixel spacing in mm) of the detector images NIH down-sampled to 1024 × 1024.
_ORIGINAL_GEOMETRIES = (
    (2500, 2048, 0.168),
    (2048, 2500, 0.171),
    (2992, 2991, 0.143),
    (3056, 2544, 0.139),
    (2544, 3056, 0.139),
    (2021, 2021, 0.194336),
    (2682, 2749, 0.143),
)

_HEADER_V2020 = [
    "Image Index", "Finding Labels", "Follow-up #", "Patient ID", "Patient Age", "Patient Gender", "View Position",
    "OriginalImage[Width", "Height]", "OriginalImagePixelSpacing[x", "y]",
]
_BBOX_HEADER = ["Image Index", "Finding Label", "Bbox [x", "y", "w", "h]", "", "", ""]


# --------------------------------------------------------------------------------------------------------------
# Pixels


def _soft_inside(distance: np.ndarray, softness: float) -> np.ndarray:
    """1 inside (distance < 0), 0 outside, with a smooth edge ``softness`` wide (normalised units)."""
    return 0.5 - 0.5 * np.tanh(distance / softness)


def _ellipse_distance(u, v, cx, cy, rx, ry) -> np.ndarray:
    return np.sqrt(((u - cx) / rx) ** 2 + ((v - cy) / ry) ** 2) - 1.0


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Low-frequency texture in about ``[-1, 1]``: a ``cells`` × ``cells`` random grid upsampled bicubically."""
    grid = rng.standard_normal((cells, cells)).astype(np.float32)
    image = Image.fromarray(grid, mode="F").resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(image, dtype=np.float32)


def _draw_pattern(canvas: np.ndarray, u, v, pattern: FindingPattern, rng: np.random.Generator,
                  strength: float) -> Tuple[float, float, float, float]:
    """Add one finding's pattern to ``canvas`` in place; return its box (x, y, w, h) in normalised units."""
    cx = pattern.x + rng.uniform(-0.04, 0.04)
    cy = pattern.y + rng.uniform(-0.04, 0.04)
    scale = rng.uniform(0.85, 1.15)
    rx, ry = pattern.radius_x * scale, pattern.radius_y * scale
    amplitude = pattern.amplitude * strength * rng.uniform(0.85, 1.15)
    r2 = ((u - cx) / rx) ** 2 + ((v - cy) / ry) ** 2
    if pattern.kind == "blob":
        shape = np.exp(-2.0 * r2)
    elif pattern.kind == "ring":
        shape = np.exp(-8.0 * (np.sqrt(r2) - 0.7) ** 2)
    elif pattern.kind == "stripes":
        phase = rng.uniform(0, 2 * np.pi)
        shape = np.exp(-1.5 * r2) * (0.5 + 0.5 * np.cos((u + v) * (np.pi / (0.25 * rx)) + phase))
    elif pattern.kind == "band":
        shape = _soft_inside(np.sqrt(r2) - 1.0, 0.15)
    elif pattern.kind == "lucent":
        shape = _soft_inside(np.sqrt(r2) - 1.0, 0.2)
    else:  # pragma: no cover - the table above only uses the kinds listed
        raise ValueError(f"unknown pattern kind {pattern.kind!r}")
    canvas += amplitude * shape
    return (cx - rx, cy - ry, 2 * rx, 2 * ry)


def synthetic_xray(
    image_size: int,
    *,
    seed: Union[int, Sequence[int]] = 0,
    anatomy_seed: Union[int, Sequence[int], None] = None,
    findings: Sequence[str] = (),
    signal: bool = True,
    signal_strength: float = 1.0,
    noise: float = 2.0,
) -> Tuple[np.ndarray, Dict[str, Tuple[float, float, float, float]]]:
    """Draw one frontal chest X-ray-like image.

    Args:
        image_size: side in pixels.
        seed: randomness of this image (pose, exposure, grain, pattern jitter).
        anatomy_seed: randomness of the body (lung and heart shape); give all images of one patient the same value.
            Defaults to ``seed``.
        findings: canonical finding names (:data:`~nih_chestxray14.labels.LABELS`) to plant when ``signal``.
        signal: plant :data:`FINDING_PATTERNS` for ``findings``.
        signal_strength: multiplies every pattern's contrast.
        noise: standard deviation of the film grain in grey levels; 2.0 gives NIH-like PNG sizes (about 475 KB) at 1024 px.

    Returns:
        ``(pixels, boxes)``: ``pixels`` is a ``(image_size, image_size)`` ``uint8`` array; ``boxes`` maps each planted
        finding to its box ``(x, y, w, h)`` in pixels (empty without ``signal``).
    """
    body_rng = np.random.default_rng(seed if anatomy_seed is None else anatomy_seed)
    rng = np.random.default_rng(seed)
    # Patterns draw from their own stream, so an image with and without a finding differ only by its pattern.
    pattern_rng = rng.spawn(1)[0]
    n = int(image_size)
    axis = (np.arange(n, dtype=np.float32) + 0.5) * (2.0 / n) - 1.0
    # Each image of a patient is posed a little differently.
    shift_x, shift_y = rng.uniform(-0.04, 0.04, size=2)
    zoom = rng.uniform(0.95, 1.05)
    u = ((axis[None, :] - shift_x) / zoom).astype(np.float32)
    v = ((axis[:, None] - shift_y) / zoom).astype(np.float32)
    soft = 0.04

    lung_w, lung_h, heart_w = body_rng.uniform(0.9, 1.1, size=3)
    canvas = np.full((n, n), 14.0, dtype=np.float32)  # air around the body
    # Thorax: a boxy superellipse, with the neck above it.
    thorax = (np.abs(u) / 0.93) ** 3 + (np.abs(v - 0.2) / 1.15) ** 3 - 1.0
    neck = np.abs(u) - 0.22 + 0.5 * np.clip(v + 0.75, 0, None)
    body = _soft_inside(np.minimum(thorax, neck), soft)
    canvas += 108.0 * body
    diaphragm = 0.40 + 0.30 * (np.abs(u) - 0.42) ** 2 + 0.04 * (u < 0)  # domed lung bases, the right one higher
    below = _soft_inside(diaphragm - v, soft)  # 1 under the diaphragm
    heart = _soft_inside(_ellipse_distance(u, v, 0.12, 0.25, 0.33 * heart_w, 0.23), soft)
    lungs = np.zeros_like(canvas)
    for side, width in ((-1.0, 0.31), (1.0, 0.29)):
        taper = 0.62 + 0.38 * np.clip((v + 0.55) / 0.7, 0.0, 1.0)  # narrow apex, wide base
        lung = _soft_inside(
            _ellipse_distance((u - side * 0.43) / taper, v, 0.0, -0.02, width * lung_w, 0.58 * lung_h), soft
        )
        lungs = np.maximum(lungs, lung)
    lungs = lungs * (1.0 - below) * (1.0 - heart)
    texture = _smooth_noise(rng, n, 28)
    canvas -= lungs * (60.0 - 9.0 * texture)  # dark lungs with vessel markings
    mediastinum = _soft_inside(np.abs(u - 0.02) - 0.10 - 0.05 * np.clip(v, 0, None), soft)
    canvas += 40.0 * np.maximum(heart, mediastinum)
    spine = _soft_inside(np.abs(u) - 0.065, 0.02)
    canvas += 20.0 * spine * (1.0 - 0.4 * heart)
    ribs = np.zeros_like(canvas)
    lateral = np.abs(u) - 0.08
    for k in range(10):
        centre = -0.66 + 0.118 * k - 0.28 * lateral + 0.48 * lateral**2
        ribs = np.maximum(ribs, np.exp(-(((v - centre) / 0.026) ** 2)))
    canvas += 24.0 * ribs * body * (1.0 - below) * (lateral > 0)
    clavicles = np.exp(-(((v + 0.70 - 0.22 * np.abs(u)) / 0.03) ** 2)) * (np.abs(u) < 0.62) * (np.abs(u) > 0.06)
    canvas += 32.0 * clavicles
    canvas += 30.0 * below * body  # abdomen under the diaphragm

    boxes: Dict[str, Tuple[float, float, float, float]] = {}
    if signal:
        for name in findings:
            x, y, w, h = _draw_pattern(canvas, u, v, FINDING_PATTERNS[name], pattern_rng, signal_strength)
            # back from the posed coordinates to pixels
            left = ((x * zoom + shift_x) + 1.0) * n / 2.0
            top = ((y * zoom + shift_y) + 1.0) * n / 2.0
            boxes[name] = (left, top, w * zoom * n / 2.0, h * zoom * n / 2.0)

    exposure = rng.uniform(0.9, 1.1)
    canvas = canvas * exposure + rng.uniform(-8.0, 8.0)
    canvas += rng.standard_normal((n, n), dtype=np.float32) * noise
    pixels = np.clip(canvas, 0, 255).astype(np.uint8)
    return pixels, boxes


def encode_png(pixels: np.ndarray, compress_level: int = 6) -> bytes:
    """Encode an ``(H, W)`` ``uint8`` array as an 8-bit grayscale PNG at NIH-like zlib level 6
    (:func:`nih_chestxray14.pixels.encode_gray_png`)."""
    return encode_gray_png(pixels, compress_level)


# --------------------------------------------------------------------------------------------------------------
# Rows


@dataclass
class _SampleImage:
    name: str
    patient_id: int
    follow_up: int
    split: str  # "train", "validation" or "test", as the builder's default rule will place it
    findings: List[str]
    age: int
    sex: str
    view: str
    geometry: Tuple[int, int, float]


def _stable_seed(*parts: object) -> int:
    digest = hashlib.sha256("/".join(str(part) for part in parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big")


def _choose_patients(num_patients: int, test_fraction: float, validation_fraction: float) -> List[Tuple[int, str]]:
    """Pick patient ids and splits so that each split gets its share (at least one patient from 3 patients)."""
    num_test = max(1, round(num_patients * test_fraction)) if num_patients >= 2 else 0
    num_train_val = num_patients - num_test
    num_validation = max(1, round(num_train_val * validation_fraction)) if num_train_val >= 2 else 0
    num_train = num_train_val - num_validation
    wanted = {"train": num_train, "validation": num_validation, "test": num_test}
    chosen: List[Tuple[int, str]] = []
    candidate = 0
    # Walk the ids upwards; validation membership is fixed by the builder's hash rule, test is ours to choose.
    test_every = max(1, round(1 / test_fraction)) if test_fraction > 0 else 0
    while any(wanted.values()):
        candidate += 1
        if is_validation_patient(candidate, validation_fraction):
            split = "validation"
        elif test_every and candidate % test_every == 0 and wanted["test"]:
            split = "test"
        elif wanted["train"]:
            split = "train"
        else:
            split = "test"
        if wanted[split]:
            wanted[split] -= 1
            chosen.append((candidate, split))
    return chosen


def _plan_images(
    num_patients: int,
    images_per_patient: int,
    rng: np.random.Generator,
    prevalence: Mapping[str, float],
    test_fraction: float,
    validation_fraction: float,
) -> List[_SampleImage]:
    images: List[_SampleImage] = []
    for patient_id, split in _choose_patients(num_patients, test_fraction, validation_fraction):
        sex = "M" if rng.random() < 0.565 else "F"
        first_age = int(rng.integers(8, 88))
        view_pa = rng.random() < 0.6
        geometry = _ORIGINAL_GEOMETRIES[int(rng.integers(len(_ORIGINAL_GEOMETRIES)))]
        age = first_age
        for follow_up in range(images_per_patient):
            findings = [name for name in LABELS if rng.random() < prevalence.get(name, 0.0)]
            images.append(
                _SampleImage(
                    name=f"{patient_id:08d}_{follow_up:03d}.png",
                    patient_id=patient_id,
                    follow_up=follow_up,
                    split=split,
                    findings=findings,
                    age=min(age, 95),
                    sex=sex,
                    view="PA" if (view_pa if rng.random() < 0.8 else not view_pa) else "AP",
                    geometry=geometry,
                )
            )
            age += int(rng.random() < 0.3)
    # Every finding in every split: deal the 14 findings round-robin over each split's images.
    for split in SPLITS:
        members = [image for image in images if image.split == split]
        order = rng.permutation(len(members))
        for index, name in enumerate(LABELS):
            if members:
                image = members[order[index % len(members)]]
                if name not in image.findings:
                    image.findings.append(name)
    for image in images:
        image.findings = [name for name in LABELS if name in image.findings]
    return images


# --------------------------------------------------------------------------------------------------------------
# Files


def _entry_csv_name(csv_variant: str) -> str:
    return "Data_Entry_2017.csv" if csv_variant == "2017" else "Data_Entry_2017_v2020.csv"


def _entry_row(image: _SampleImage) -> list:
    width, height, spacing = image.geometry
    return [
        image.name, "|".join(image.findings) or NO_FINDING, image.follow_up, image.patient_id, image.age,
        image.sex, image.view, width, height, spacing, spacing,
    ]


def _write_entry_csv(root: Path, images: Sequence[_SampleImage], csv_variant: str) -> None:
    header = list(_HEADER_V2020)
    if csv_variant == "patient-sex":
        header[5] = "Patient Sex"
    trailing = csv_variant in ("trailing-comma", "2017")
    rows = []
    for index, image in enumerate(sorted(images, key=lambda item: item.name)):
        row = _entry_row(image)
        if csv_variant == "2017" and index == 1:
            row[4] = 400 + image.age % 20  # the older file's ages reach 414
        rows.append(row)
    with open(root / _entry_csv_name(csv_variant), "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        for row in [header] + rows:
            writer.writerow(row + [""] if trailing else row)


def _write_split_lists(root: Path, images: Sequence[_SampleImage]) -> None:
    train_val = sorted(image.name for image in images if image.split != "test")
    test = sorted(image.name for image in images if image.split == "test")
    (root / TRAIN_VAL_LIST).write_text("".join(name + "\n" for name in train_val), encoding="utf-8")
    (root / TEST_LIST).write_text("".join(name + "\n" for name in test), encoding="utf-8")


def _write_bbox_csv(
    root: Path,
    images: Sequence[_SampleImage],
    boxes: Mapping[str, Mapping[str, Tuple[float, float, float, float]]],
    image_size: int,
    bbox_fraction: float,
    rng: np.random.Generator,
) -> None:
    candidates = [(image.name, name) for image in images for name in image.findings if name in BOX_FINDINGS]
    wanted = max(1, round(bbox_fraction * len(images))) if candidates else 0
    order = rng.permutation(len(candidates))
    picked = [candidates[i] for i in order[:wanted]]
    # Always show NIH's "Infiltrate" spelling when the release has an infiltration at all.
    if not any(name == "Infiltration" for _, name in picked):
        infiltrations = [pair for pair in candidates if pair[1] == "Infiltration"]
        if infiltrations:
            picked.append(infiltrations[0])
    rows = []
    for image_name, name in sorted(picked):
        if name in boxes.get(image_name, {}):
            x, y, w, h = boxes[image_name][name]
        else:
            x, y = rng.uniform(0.1, 0.6, size=2) * image_size
            w, h = rng.uniform(0.05, 0.3, size=2) * image_size
        spelled = "Infiltrate" if name == "Infiltration" else name
        rows.append([image_name, spelled, repr(float(x)), repr(float(y)), repr(float(w)), repr(float(h))])
    with open(root / BBOX_CSV_NAMES[0], "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(_BBOX_HEADER)
        writer.writerows(rows)


def expert_labels_of(findings: Sequence[str], fracture: bool = False) -> Tuple[int, int, int, int]:
    """The synthetic expert labels of an image with these planted findings, in
    :data:`~nih_chestxray14.expert_findings.EXPERT_FINDINGS` order: each mapped finding is positive when any of its
    NIH findings is planted (:data:`~nih_chestxray14.expert_findings.NIH_TO_EXPERT`); Fracture is ``fracture``."""
    planted = set(findings)
    return tuple(
        int(fracture) if name not in NIH_TO_EXPERT else int(bool(planted & set(NIH_TO_EXPERT[name])))
        for name in EXPERT_FINDINGS
    )


def _write_expert_labels(root: Path, images: Sequence[_SampleImage], expert_format: str, fraction: float,
                         seed: int) -> None:
    """Expert labels for ``fraction`` of the test-list images (Google's test set) and of the train_val-list images
    (Google's validation set), in ``expert_format``."""
    rng = np.random.default_rng(_stable_seed(seed, "expert-labels"))  # its own stream: the rest stays as it was
    chosen = {}
    for google_split, members in ((GOOGLE_TEST, [i for i in images if i.split == "test"]),
                                  (GOOGLE_VALIDATION, [i for i in images if i.split != "test"])):
        members = sorted(members, key=lambda image: image.name)
        wanted = max(1, round(fraction * len(members))) if members and fraction > 0 else 0
        picked = sorted(rng.permutation(len(members))[:wanted])
        chosen[google_split] = [
            (members[i], expert_labels_of(members[i].findings, rng.random() < FRACTURE_PREVALENCE)) for i in picked
        ]
    yes_no = ("NO", "YES")
    header = _HEADER_V2020 + list(EXPERT_FINDINGS)
    if expert_format == "google":
        for google_split, rows in chosen.items():
            path = root / GOOGLE_FILES[google_split][0]
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "w", newline="", encoding="utf-8") as handle:
                writer = csv.writer(handle, lineterminator="\n")
                writer.writerow(header)
                writer.writerows(_entry_row(image) + [yes_no[v] for v in labels] for image, labels in rows)
    else:
        set_ids = {GOOGLE_TEST: "test", GOOGLE_VALIDATION: "val"}
        with gzip.open(root / TORCHXRAYVISION_FILES[0], "wt", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(header + ["Set Id"])
            for google_split, rows in chosen.items():
                writer.writerows(_entry_row(image) + [yes_no[v] for v in labels] + [set_ids[google_split]]
                                 for image, labels in rows)


def _chunks(names: Sequence[str], parts: int) -> List[List[str]]:
    """Cut sorted names into ``parts`` contiguous pieces as equal as possible (as NIH cut its archives)."""
    parts = max(1, min(parts, len(names)))
    bounds = np.linspace(0, len(names), parts + 1).round().astype(int)
    return [list(names[start:stop]) for start, stop in zip(bounds[:-1], bounds[1:])]


def make_release(
    root: Union[str, Path],
    *,
    num_patients: int = 40,
    images_per_patient: int = 3,
    image_size: int = 1024,
    layout: str = "archives",
    csv_variant: str = "v2020",
    signal: bool = True,
    seed: int = 0,
    num_archives: int = 3,
    archive_digits: int = 3,
    test_fraction: float = 0.2,
    validation_fraction: float = 0.1,
    bbox_fraction: float = 0.05,
    prevalence: Optional[Mapping[str, float]] = None,
    signal_strength: float = 1.0,
    noise: float = 2.0,
    compress_level: int = 6,
    expert_labels: Optional[str] = None,
    expert_label_fraction: float = 0.5,
) -> Path:
    """Write a synthetic ChestX-ray14 release into ``root`` (created if needed) and return ``root`` as a ``Path``.

    Args:
        num_patients: patients in the release; each gets ``images_per_patient`` follow-ups ``_000``, ``_001``, …
        image_size: side of the square PNGs (NIH's are 1024; tests use 32–64).
        layout: one of :data:`LAYOUTS`.
        csv_variant: one of :data:`CSV_VARIANTS`; sets the entry CSV's file name and header.
        signal: plant each finding's pattern (:data:`FINDING_PATTERNS`) so that the labels are learnable.
        seed: all randomness (patients, labels, pixels) follows from it.
        num_archives: number of archives (``archives``) or ``images_0NN`` folders (``kaggle``), cut by sorted name.
        archive_digits: 3 for ``images_001.tar.gz`` (NIH's Box names), 2 for ``images_01.tar.gz`` (its script's).
        test_fraction: share of patients listed in ``test_list.txt``.
        validation_fraction: the builder's validation fraction this release is balanced for; validation patients are
            picked among ids that the builder's rule sends to validation.
        bbox_fraction: about this share of images gets a row in ``BBox_List_2017.csv`` (at least one).
        prevalence: finding name → probability per image; defaults to :data:`NIH_PREVALENCE`. On top of it every
            finding is dealt into each split at least once.
        signal_strength, noise: contrast of planted patterns, and film grain in grey levels.
        compress_level: zlib level of the PNGs (NIH-like sizes at 6).
        expert_labels: ``None`` (no expert labels) or one of :data:`EXPERT_LABEL_FORMATS`: write expert labels for
            some test-list images (Google's test set) and train_val-list images (Google's validation set), derived
            from the planted findings (:func:`expert_labels_of`).
        expert_label_fraction: share of each list's images that get expert labels (at least one each).

    Raises:
        ValueError: for an unknown ``layout``, ``csv_variant`` or ``expert_labels``, a prevalence of an unknown
            finding, an ``expert_label_fraction`` outside ``[0, 1]``, or sizes < 1.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    if csv_variant not in CSV_VARIANTS:
        raise ValueError(f"csv_variant must be one of {', '.join(CSV_VARIANTS)}, got {csv_variant!r}")
    if num_patients < 1 or images_per_patient < 1 or image_size < 8:
        raise ValueError("num_patients and images_per_patient must be >= 1 and image_size >= 8")
    if expert_labels is not None and expert_labels not in EXPERT_LABEL_FORMATS:
        raise ValueError(f"expert_labels must be None or one of {', '.join(EXPERT_LABEL_FORMATS)}, got "
                         f"{expert_labels!r}")
    if not 0.0 <= expert_label_fraction <= 1.0:
        raise ValueError(f"expert_label_fraction must be in [0, 1], got {expert_label_fraction!r}")
    prevalence = dict(NIH_PREVALENCE if prevalence is None else prevalence)
    unknown = sorted(set(prevalence) - set(LABELS))
    if unknown:
        raise ValueError(f"prevalence names unknown findings {unknown}; use names from nih_chestxray14.LABELS")

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    images = _plan_images(num_patients, images_per_patient, rng, prevalence, test_fraction, validation_fraction)

    boxes: Dict[str, Dict[str, Tuple[float, float, float, float]]] = {}

    def render(image: _SampleImage) -> bytes:
        pixels, planted = synthetic_xray(
            image_size,
            seed=_stable_seed(seed, image.name),
            anatomy_seed=_stable_seed(seed, image.patient_id),
            findings=image.findings,
            signal=signal,
            signal_strength=signal_strength,
            noise=noise,
        )
        boxes[image.name] = planted
        return encode_png(pixels, compress_level)

    names = sorted(image.name for image in images)
    by_name = {image.name: image for image in images}
    if layout == "archives":
        for index, chunk in enumerate(_chunks(names, num_archives), start=1):
            with tarfile.open(root / archive_name(index, archive_digits), "w:gz", compresslevel=1) as archive:
                for name in chunk:
                    data = render(by_name[name])
                    info = tarfile.TarInfo(f"images/{name}")
                    info.size = len(data)
                    info.mode = 0o644
                    archive.addfile(info, io.BytesIO(data))
    else:
        for index, chunk in enumerate(_chunks(names, num_archives), start=1):
            folder = root / (f"images_{index:03d}" if layout == "kaggle" else "") / "images"
            folder.mkdir(parents=True, exist_ok=True)
            for name in chunk:
                (folder / name).write_bytes(render(by_name[name]))

    _write_entry_csv(root, images, csv_variant)
    _write_split_lists(root, images)
    _write_bbox_csv(root, images, boxes, image_size, bbox_fraction, rng)
    if expert_labels is not None:
        _write_expert_labels(root, images, expert_labels, expert_label_fraction, seed)
    logger.info("wrote a synthetic release of %d images (%s layout) to %s", len(images), layout, root)
    return root
