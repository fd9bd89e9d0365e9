"""NIH's 14 findings → Google's three mappable findings, checked against a column-by-column computation."""

from __future__ import annotations

import numpy as np
import pytest

from nih_chestxray14.expert_findings import (
    EXPERT_FINDINGS,
    MAPPED_FINDINGS,
    NIH_TO_EXPERT,
    UNMAPPED_FINDINGS,
    to_expert_findings,
)
from nih_chestxray14.labels import LABELS


def test_the_documented_rule():
    assert EXPERT_FINDINGS == ("Fracture", "Pneumothorax", "Airspace opacity", "Nodule or mass")
    assert MAPPED_FINDINGS == ("Pneumothorax", "Airspace opacity", "Nodule or mass")
    assert UNMAPPED_FINDINGS == ("Fracture",)
    assert dict(NIH_TO_EXPERT) == {
        "Pneumothorax": ("Pneumothorax",),
        "Airspace opacity": ("Atelectasis", "Consolidation", "Edema", "Infiltration", "Pneumonia"),
        "Nodule or mass": ("Mass", "Nodule"),
    }


def test_scores_map_to_the_maximum_of_their_findings():
    rng = np.random.default_rng(0)
    scores = rng.random((50, 14)).astype(np.float32)
    mapped = to_expert_findings(scores)
    assert mapped.shape == (50, 3) and mapped.dtype == np.float32
    column = {name: scores[:, LABELS.index(name)] for name in LABELS}
    np.testing.assert_array_equal(mapped[:, 0], column["Pneumothorax"])
    np.testing.assert_array_equal(mapped[:, 1], np.maximum.reduce([column[name] for name in (
        "Atelectasis", "Consolidation", "Edema", "Infiltration", "Pneumonia")]))
    np.testing.assert_array_equal(mapped[:, 2], np.maximum(column["Mass"], column["Nodule"]))


def test_labels_map_to_any_of_their_findings_and_other_findings_do_not_count():
    rows = np.zeros((4, 14), dtype=np.int8)
    rows[0, LABELS.index("Nodule")] = 1
    rows[1, LABELS.index("Edema")] = 1
    rows[2, [LABELS.index(name) for name in ("Cardiomegaly", "Effusion", "Emphysema", "Fibrosis",
                                             "Pleural_Thickening", "Hernia")]] = 1
    rows[3, LABELS.index("Pneumothorax")] = 1
    assert to_expert_findings(rows).tolist() == [[0, 0, 1], [0, 1, 0], [0, 0, 0], [1, 0, 0]]
    assert to_expert_findings(rows[3]).tolist() == [1, 0, 0]  # one image


def test_a_narrower_rule_can_be_passed():
    rows = np.zeros((1, 14))
    rows[0, LABELS.index("Atelectasis")] = 1
    narrow = {**NIH_TO_EXPERT, "Airspace opacity": ("Consolidation", "Pneumonia")}
    assert to_expert_findings(rows).tolist() == [[0, 1, 0]]
    assert to_expert_findings(rows, narrow).tolist() == [[0, 0, 0]]


@pytest.mark.parametrize("values, mapping, message", [
    (np.zeros((3, 13)), NIH_TO_EXPERT, r"shape \(N, 14\)"),
    (np.zeros((2, 3, 14)), NIH_TO_EXPERT, r"shape \(N, 14\)"),
    (np.zeros((3, 14)), {"Pneumothorax": ("Pneumothorax",)}, "must cover exactly"),
    (np.zeros((3, 14)), {**NIH_TO_EXPERT, "Nodule or mass": ("Nodules",)}, r"mapping\['Nodule or mass'\]"),
    (np.zeros((3, 14)), {**NIH_TO_EXPERT, "Pneumothorax": ()}, r"mapping\['Pneumothorax'\]"),
])
def test_bad_input_is_refused(values, mapping, message):
    with pytest.raises(ValueError, match=message):
        to_expert_findings(values, mapping)
