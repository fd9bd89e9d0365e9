"""The ChestX-ray14 taxonomy: the 14 findings, their order, and how a ``Finding Labels`` cell maps to a multi-hot row.

The order is that of Wang et al. (CVPR 2017, Table 1) and of CheXNet (Rajpurkar et al. 2017), so per-class tables
line up with the literature. "No Finding" is not a class: it is the all-zero row.

This module is the only place that knows the label order and the spelling fixes of NIH's files.
"""

from __future__ import annotations

from typing import Iterable, List, Sequence, Tuple

LABELS: Tuple[str, ...] = (
    "Atelectasis",
    "Cardiomegaly",
    "Effusion",
    "Infiltration",
    "Mass",
    "Nodule",
    "Pneumonia",
    "Pneumothorax",
    "Consolidation",
    "Edema",
    "Emphysema",
    "Fibrosis",
    "Pleural_Thickening",
    "Hernia",
)
"""The 14 findings, in NIH's and CheXNet's order. Index ``i`` of a ``labels`` vector is ``LABELS[i]``."""

NUM_LABELS = len(LABELS)

NO_FINDING = "No Finding"
"""The entry CSV's name for an image with none of the 14 findings; it maps to the all-zero row."""

LABEL_TO_INDEX = {name: index for index, name in enumerate(LABELS)}

# Other spellings found in NIH's files: BBox_List_2017.csv says "Infiltrate" where the entry CSV says "Infiltration";
# some re-distributions write "Pleural Thickening" with a space.
_ALIASES = {
    "Infiltrate": "Infiltration",
    "Pleural Thickening": "Pleural_Thickening",
}


class UnknownFindingError(ValueError):
    """A finding name that is neither one of the 14 labels, a known alias of one, nor "No Finding"."""


def canonical_finding(name: str) -> str:
    """Return the canonical spelling of one finding name, e.g. ``"Infiltrate"`` → ``"Infiltration"``.

    Raises:
        UnknownFindingError: if ``name`` is not one of :data:`LABELS` or a known alias. Matching is exact (after
            stripping spaces at the ends), never by substring.
    """
    stripped = name.strip()
    stripped = _ALIASES.get(stripped, stripped)
    if stripped not in LABEL_TO_INDEX:
        raise UnknownFindingError(
            f"unknown finding {name!r}: expected one of {', '.join(LABELS)} or {NO_FINDING!r}"
        )
    return stripped


def parse_findings(cell: str) -> List[str]:
    """Split a ``Finding Labels`` cell such as ``"Cardiomegaly|Effusion"`` into canonical names, in :data:`LABELS` order.

    ``"No Finding"`` gives ``[]``. Duplicates are dropped.

    Raises:
        UnknownFindingError: if a name is unknown, if the cell is empty, or if "No Finding" is combined with a finding.
    """
    parts = [part.strip() for part in cell.split("|")]
    if not cell.strip() or any(not part for part in parts):
        raise UnknownFindingError(f"empty finding in {cell!r}: write {NO_FINDING!r} for an image with no finding")
    if NO_FINDING in parts:
        if len(parts) > 1:
            raise UnknownFindingError(f"{cell!r} combines {NO_FINDING!r} with a finding")
        return []
    names = {canonical_finding(part) for part in parts}
    return [name for name in LABELS if name in names]


def multi_hot(findings: Iterable[str]) -> List[int]:
    """Return the 0/1 vector of length 14 for canonical finding names, in :data:`LABELS` order.

    Raises:
        UnknownFindingError: if a name is not canonical (pass names through :func:`canonical_finding` first).
    """
    row = [0] * NUM_LABELS
    for name in findings:
        if name not in LABEL_TO_INDEX:
            raise UnknownFindingError(f"unknown finding {name!r}: expected one of {', '.join(LABELS)}")
        row[LABEL_TO_INDEX[name]] = 1
    return row


def findings_from_multi_hot(row: Sequence[int]) -> List[str]:
    """Inverse of :func:`multi_hot`: the names whose entry is non-zero. Raises ``ValueError`` unless ``len(row) == 14``."""
    if len(row) != NUM_LABELS:
        raise ValueError(f"expected a multi-hot row of length {NUM_LABELS}, got length {len(row)}")
    return [name for name, value in zip(LABELS, row) if value]
