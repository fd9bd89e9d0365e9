"""Google's four expert-labelled findings, and how NIH's 14 findings map onto three of them.

Majkowska et al. (Radiology 2020) had radiologists adjudicate four findings on 4,374 images of ChestX-ray14
(:mod:`.expert_labels` reads their labels): **Fracture, Pneumothorax, Airspace opacity, Nodule or mass**, in the
column order of Google's CSVs (:data:`EXPERT_FINDINGS`). A model trained on NIH's 14 findings scores three of them
through :data:`NIH_TO_EXPERT`; a finding maps to the **maximum** of its NIH findings' scores (or 0/1 labels), i.e. it
is positive when any of them is:

- **Pneumothorax** ← Pneumothorax. The same finding.
- **Nodule or mass** ← max(Nodule, Mass). Google's label joins the two NIH findings.
- **Airspace opacity** ← max(Atelectasis, Consolidation, Edema, Infiltration, Pneumonia). The sources behind the
  rule: torchxrayvision reads Google's "Airspace opacity" as its "Lung Opacity" (``NIH_Google_Dataset`` in
  torchxrayvision 1.5.7, ``datasets.py``); CheXpert's label hierarchy (Irvin et al., AAAI 2019) puts Edema,
  Consolidation, Pneumonia and Atelectasis (with Lung Lesion, which is Google's "Nodule or mass" here) under "Lung
  Opacity"; NIH's "Infiltration" is the report term "infiltrate", which the Fleischner Society glossary (Hansell et
  al., Radiology 2008) describes as an ill-defined parenchymal opacity and advises against. On torchxrayvision's copy
  of Google's labels (4,376 images), NIH's labels under this rule agree with the radiologists' "Airspace opacity" with
  sensitivity 0.51, specificity 0.81 and Cohen's kappa 0.32; Consolidation or Pneumonia alone gives kappa 0.10, and
  dropping Atelectasis 0.31. Pass another ``mapping`` to :func:`to_expert_findings` to test a narrower rule.
- **Fracture** has no counterpart among NIH's 14 findings: a model trained on them cannot be scored on it, so it is
  not in :data:`MAPPED_FINDINGS`. Its expert labels are still read and kept.
"""

from __future__ import annotations

from typing import Mapping, Sequence, Tuple

import numpy as np

from .labels import LABEL_TO_INDEX, NUM_LABELS

EXPERT_FINDINGS: Tuple[str, ...] = ("Fracture", "Pneumothorax", "Airspace opacity", "Nodule or mass")
"""Google's four findings, in the column order of its CSVs (and of :attr:`ExpertLabel.labels`)."""

UNMAPPED_FINDINGS: Tuple[str, ...] = ("Fracture",)
"""Google's findings with no counterpart among NIH's 14."""

NIH_TO_EXPERT: Mapping[str, Tuple[str, ...]] = {
    "Pneumothorax": ("Pneumothorax",),
    "Airspace opacity": ("Atelectasis", "Consolidation", "Edema", "Infiltration", "Pneumonia"),
    "Nodule or mass": ("Mass", "Nodule"),
}
"""Each mapped Google finding → the NIH findings whose maximum scores it (rule and sources: module docstring)."""

MAPPED_FINDINGS: Tuple[str, ...] = tuple(name for name in EXPERT_FINDINGS if name in NIH_TO_EXPERT)
"""``("Pneumothorax", "Airspace opacity", "Nodule or mass")``: the columns :func:`to_expert_findings` returns."""


def check_mapping(mapping: Mapping[str, Sequence[str]]) -> None:
    """Raise ``ValueError`` unless ``mapping`` sends each of :data:`MAPPED_FINDINGS` to one or more of NIH's 14."""
    if set(mapping) != set(MAPPED_FINDINGS):
        raise ValueError(f"a mapping must cover exactly {', '.join(MAPPED_FINDINGS)}; got {sorted(mapping)}")
    for expert, findings in mapping.items():
        unknown = [name for name in findings if name not in LABEL_TO_INDEX]
        if not findings or unknown:
            raise ValueError(f"mapping[{expert!r}] must list NIH findings from nih_chestxray14.LABELS; got "
                             f"{list(findings)!r}")


def to_expert_findings(values, mapping: Mapping[str, Sequence[str]] = NIH_TO_EXPERT) -> np.ndarray:
    """Map scores or 0/1 labels over NIH's 14 findings to Google's three mappable ones.

    Args:
        values: shape ``(N, 14)`` (or ``(14,)``), columns in :data:`~nih_chestxray14.labels.LABELS` order:
            probabilities, logits or labels.
        mapping: Google finding → NIH findings (default :data:`NIH_TO_EXPERT`).

    Returns:
        Shape ``(N, 3)`` (or ``(3,)``), columns in :data:`MAPPED_FINDINGS` order, each the maximum over its NIH
        findings, with ``values``' dtype.

    Raises:
        ValueError: if the last axis is not 14 long, or ``mapping`` is not a valid mapping (:func:`check_mapping`).
    """
    check_mapping(mapping)
    array = np.asarray(values)
    if array.ndim not in (1, 2) or array.shape[-1] != NUM_LABELS:
        raise ValueError(f"expected scores of shape (N, {NUM_LABELS}) in LABELS order, got shape {array.shape}")
    columns = [array[..., [LABEL_TO_INDEX[name] for name in mapping[expert]]].max(axis=-1)
               for expert in MAPPED_FINDINGS]
    return np.stack(columns, axis=-1)
