"""The taxonomy: the 14 findings in NIH/CheXNet order, exact name matching, and the multi-hot mapping."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nih_chestxray14 import LABELS, NUM_LABELS
from nih_chestxray14.labels import (
    NO_FINDING,
    UnknownFindingError,
    canonical_finding,
    findings_from_multi_hot,
    multi_hot,
    parse_findings,
)


def test_labels_follow_the_papers_order():
    # Wang et al. 2017, Table 1, and CheXNet's per-class table list the findings in this order.
    assert LABELS[:8] == ("Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia",
                          "Pneumothorax")
    assert LABELS[8:] == ("Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia")
    assert NUM_LABELS == 14 and NO_FINDING not in LABELS


def test_no_finding_is_the_all_zero_row_not_a_class():
    assert parse_findings("No Finding") == []
    assert multi_hot(parse_findings("No Finding")) == [0] * 14


def test_cells_parse_in_label_order_without_duplicates():
    assert parse_findings("Hernia|Cardiomegaly|Hernia") == ["Cardiomegaly", "Hernia"]
    assert multi_hot(parse_findings("Effusion|Atelectasis")) == [1, 0, 1] + [0] * 11


def test_box_file_spellings_are_canonicalised():
    assert canonical_finding("Infiltrate") == "Infiltration"
    assert canonical_finding(" Pleural Thickening ") == "Pleural_Thickening"


@pytest.mark.parametrize("cell", ["Masses", "mass", "Mass|", "", "No Finding|Mass", "Infiltr"])
def test_names_match_exactly_never_by_substring(cell):
    with pytest.raises(UnknownFindingError):
        parse_findings(cell)


@given(st.sets(st.sampled_from(LABELS)))
def test_multi_hot_round_trips(names):
    row = multi_hot(names)
    assert len(row) == 14 and sum(row) == len(names)
    assert findings_from_multi_hot(row) == [name for name in LABELS if name in names]
    assert parse_findings("|".join(sorted(names)) or NO_FINDING) == findings_from_multi_hot(row)


def test_wrong_length_rows_are_refused():
    with pytest.raises(ValueError, match="length 14"):
        findings_from_multi_hot([1, 0])
