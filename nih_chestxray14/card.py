"""The dataset card of an exported copy: YAML metadata from ``datasets``' own classes, text from a Jinja2 template.

The YAML is what ``datasets.load_dataset`` and the Hub read: ``configs`` (which Parquet files form which split of
which config) and ``dataset_info`` (features, split sizes), written by ``datasets``' ``MetadataConfigs`` and
``DatasetInfosDict`` exactly as ``push_to_hub`` writes them, plus the Hub's tags. Cards merge: rendering into a card
that already declares other configs keeps them, so several configs can share one folder or repo.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Mapping, Optional, Sequence

import numpy as np
import pyarrow.parquet as pq
from datasets import DatasetInfo, Features
from datasets.info import DatasetInfosDict
from datasets.utils.metadata import MetadataConfigs
from huggingface_hub import DatasetCard, DatasetCardData

from .labels import LABELS, NO_FINDING
from .metadata import NIH_RELEASE_PAGE

CARD = "README.md"
PRETTY_NAME = "NIH ChestX-ray14"
HOMEPAGE = NIH_RELEASE_PAGE
LICENSE_NAME = "nih-chestxray14-terms-of-use"

FIELD_MEANINGS: Mapping[str, str] = {
    "image": "the X-ray, a grayscale PNG",
    "image_id": "NIH's file name, e.g. `00000001_000.png` (patient 1, follow-up 0)",
    "patient_id": "NIH's patient number",
    "follow_up": "the patient's visit number, from 0: the entry CSV's `Follow-up #`, kept as NIH gives it (see "
                 "[Follow-up numbers](#follow-up-numbers))",
    "age": "patient age in years, as in the entry CSV",
    "sex": "`M` or `F`",
    "view_position": "`PA` (posterior-anterior) or `AP` (anterior-posterior)",
    "original_width": "width of the detector image before NIH resized it to 1024 px",
    "original_height": "height of the detector image before NIH resized it to 1024 px",
    "pixel_spacing_x": "the detector's horizontal pixel spacing, in mm",
    "pixel_spacing_y": "the detector's vertical pixel spacing, in mm",
    "labels": "multi-hot 0/1 vector of length 14, in the label order above",
    "findings": "the same findings as names",
    "bboxes": "expert boxes (finding, x, y, w, h in pixels of the 1024 px image); empty for images without boxes",
}

_SIZE_CATEGORIES = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                    (10_000_000, "1M<n<10M"))


@dataclass(frozen=True)
class ExportedConfig:
    """What the card needs to know about one exported config."""

    name: str
    data_dir: str
    info: DatasetInfo  # features, split sizes and the citation
    description: str
    validation_fraction: float


def size_category(num_examples: int) -> str:
    """The Hub's ``size_categories`` bucket for a number of rows, e.g. ``"100K<n<1M"``."""
    for bound, name in _SIZE_CATEGORIES:
        if num_examples < bound:
            return name
    return "n>10M"


def label_counts(parquet_files: Sequence[Path]) -> np.ndarray:
    """Per-finding image counts over Parquet files holding a ``labels`` column: shape (16,) int64, holding the 14
    findings in LABELS order, then "No Finding" (all-zero rows), then the number of images. Reads only that column."""
    counts = np.zeros(len(LABELS) + 2, dtype=np.int64)
    for path in parquet_files:
        column = pq.read_table(path, columns=["labels"]).column("labels").combine_chunks()
        matrix = column.flatten().to_numpy(zero_copy_only=False).reshape(len(column), len(LABELS))
        counts[: len(LABELS)] += matrix.sum(axis=0, dtype=np.int64)
        counts[len(LABELS)] += int((matrix.sum(axis=1) == 0).sum())
        counts[-1] += len(column)
    return counts


def feature_type(feature) -> str:
    """A short, readable type for a feature, e.g. ``list<ClassLabel(14)>``."""
    name = type(feature).__name__
    if name == "Value":
        return feature.dtype
    if name == "ClassLabel":
        return f"ClassLabel({feature.num_classes})"
    if name in ("List", "LargeList", "Sequence"):
        inner = feature_type(feature.feature)
        length = getattr(feature, "length", -1)
        return f"list<{inner}>[{length}]" if length not in (None, -1) else f"list<{inner}>"
    if isinstance(feature, dict):
        return "{" + ", ".join(f"{k}: {feature_type(v)}" for k, v in feature.items()) + "}"
    return name


def field_rows(features: Features) -> list[dict]:
    return [{"name": name, "type": feature_type(feature), "meaning": FIELD_MEANINGS.get(name, "")}
            for name, feature in features.items()]


def render_card(out_dir: Path, exported: Sequence[ExportedConfig], repo_id: str,
                existing: Optional[DatasetCard] = None, staged_dir: Optional[Path] = None) -> DatasetCard:
    """Build the card for ``out_dir``: the configs in ``existing`` (if any) plus ``exported``, which win on a clash.

    Label counts are read from the Parquet files of every config whose files are there: those of ``exported`` under
    ``staged_dir`` (default ``out_dir``), the others under ``out_dir``. The citation is the exported data's own.
    """
    exported_names = {config.name for config in exported}
    card_data = DatasetCardData(**existing.data.to_dict()) if existing is not None else DatasetCardData()
    MetadataConfigs({
        config.name: {"data_files": [{"split": split, "path": f"{config.data_dir}/{split}-*"}
                                     for split in config.info.splits]}
        for config in exported
    }).to_dataset_card_data(card_data)
    DatasetInfosDict({config.name: config.info for config in exported}).to_dataset_card_data(card_data)

    all_configs = MetadataConfigs.from_dataset_card_data(card_data)
    all_infos = DatasetInfosDict.from_dataset_card_data(card_data)
    previous = _previous_config_notes(existing)
    notes = {**previous, **{c.name: (c.description, c.validation_fraction) for c in exported}}

    configs, tables = [], []
    for name in all_configs:
        info = all_infos.get(name)
        split_infos = (info.splits or {}).values() if info else []
        splits = [{"name": s.name, "num_examples": s.num_examples} for s in split_infos]
        description, fraction = notes.get(name, ("", None))
        configs.append({"name": name, "description": description, "validation_fraction": fraction,
                        "splits": splits})
        root = staged_dir if staged_dir is not None and name in exported_names else out_dir
        data_dir = _data_dir_of(all_configs[name])
        per_split = {s["name"]: sorted((root / data_dir).glob(f"{s['name']}-*.parquet")) for s in splits}
        if per_split and all(per_split.values()):
            tables.append((name, {split: label_counts(files) for split, files in per_split.items()}))

    largest = max((sum(s["num_examples"] for s in c["splits"]) for c in configs), default=0)
    for key, value in {
        "pretty_name": PRETTY_NAME,
        "license": "other",
        "license_name": LICENSE_NAME,
        "license_link": HOMEPAGE,
        "task_categories": ["image-classification"],
        "task_ids": ["multi-label-image-classification"],
        "size_categories": [size_category(largest)],
        "tags": ["medical", "chest-x-ray", "radiology", "multi-label"],
        "nih_chestxray14_configs": {c["name"]: {"description": c["description"],
                                                "validation_fraction": c["validation_fraction"]} for c in configs},
    }.items():
        card_data[key] = value
    return DatasetCard.from_template(
        card_data,
        template_path=str(resources.files(__package__) / "templates" / "dataset_card.md"),
        pretty_name=PRETTY_NAME,
        repo_id=repo_id,
        homepage=HOMEPAGE,
        configs=configs,
        labels=list(LABELS),
        fields=field_rows(next(iter(all_infos.values())).features) if all_infos else [],
        label_counts=_count_tables(tables),
        citation_bibtex=next((c.info.citation.strip() for c in exported if c.info.citation), ""),
    )


def _data_dir_of(config_metadata: Mapping) -> str:
    return config_metadata["data_files"][0]["path"].split("/")[0]


def _previous_config_notes(existing: Optional[DatasetCard]) -> dict:
    if existing is None:
        return {}
    notes = existing.data.to_dict().get("nih_chestxray14_configs") or {}
    return {name: (note.get("description", ""), note.get("validation_fraction")) for name, note in notes.items()}


def _count_tables(tables: Sequence[tuple[str, Mapping[str, np.ndarray]]]) -> list[dict]:
    """One table per distinct set of counts; configs with identical counts (same rows, other pixels) share one."""
    grouped: list[tuple[list[str], Mapping[str, np.ndarray]]] = []
    for name, counts in tables:
        for names, other in grouped:
            if other.keys() == counts.keys() and all(np.array_equal(other[s], counts[s]) for s in counts):
                names.append(name)
                break
        else:
            grouped.append(([name], counts))
    row_names = [*LABELS, NO_FINDING, "Images"]
    return [{
        "title": "Configs " + ", ".join(f"`{n}`" for n in names) + ":",
        "splits": list(counts),
        "rows": [{"name": row, "counts": [int(counts[s][i]) for s in counts]} for i, row in enumerate(row_names)],
    } for names, counts in grouped]
