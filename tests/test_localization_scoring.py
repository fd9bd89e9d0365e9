"""Wang et al.'s localization scoring (training/localization.py) on cases worked out by hand."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from training.localization import (
    FindingTally,
    LocalizationTally,
    heatmap_boxes,
    iobb,
    iou,
    lung_field_mask,
    moved_to_random_lung_point,
    wang_2017_table4,
)


def test_boxes_cover_each_region_above_60_and_above_180_of_the_map_scaled_to_255():
    heatmap = np.zeros((10, 12), dtype=np.float32)
    heatmap[1:3, 1:4] = 2.0  # the maximum: 255 after scaling, a region at both levels
    heatmap[6:9, 6] = 1.0  # 127.5: only above 60
    heatmap[0, 10] = 0.2  # 25.5: below both
    assert heatmap_boxes(heatmap) == [
        (1.0, 1.0, 3.0, 2.0), (6.0, 6.0, 1.0, 3.0),  # level 60, in raster order
        (1.0, 1.0, 3.0, 2.0),  # level 180
    ]


def test_pixels_touching_at_a_corner_are_one_region():
    heatmap = np.zeros((5, 5))
    heatmap[1, 1] = heatmap[2, 2] = heatmap[3, 3] = 1.0
    assert heatmap_boxes(heatmap, levels=(128,)) == [(1.0, 1.0, 3.0, 3.0)]


def test_scaling_uses_the_maps_own_range():
    heatmap = np.full((4, 4), 0.5)
    heatmap[0, 0] = 0.6  # after scaling: 255 here, 0 elsewhere
    assert heatmap_boxes(heatmap) == [(0.0, 0.0, 1.0, 1.0)] * 2
    assert heatmap_boxes(np.full((4, 4), 0.7)) == []  # a constant map points nowhere


def test_bad_heatmaps_are_refused():
    with pytest.raises(ValueError, match="2-D"):
        heatmap_boxes(np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match="NaN"):
        heatmap_boxes(np.array([[0.0, np.nan]]))


def test_iobb_divides_by_the_detected_box_and_iou_by_the_union():
    detected, truth = (0.0, 0.0, 10.0, 10.0), (5.0, 5.0, 10.0, 10.0)
    assert iobb(detected, truth) == pytest.approx(25 / 100)
    assert iou(detected, truth) == pytest.approx(25 / 175)
    assert iobb((6.0, 6.0, 2.0, 2.0), truth) == 1.0  # a small box inside a large finding
    assert iobb((20.0, 0.0, 5.0, 5.0), truth) == 0.0
    assert iobb((0.0, 0.0, 0.0, 5.0), truth) == 0.0


@given(st.lists(st.floats(0, 100), min_size=8, max_size=8), st.floats(0.1, 50), st.floats(0.1, 50))
def test_iou_never_exceeds_iobb_so_either_test_at_one_threshold_is_the_iobb_test(corners, width, height):
    detected = (corners[0], corners[1], width, height)
    truth = (corners[2], corners[3], corners[4] + 0.1, corners[5] + 0.1)
    assert iou(detected, truth) <= iobb(detected, truth) + 1e-12


def test_accuracy_counts_localized_boxes_and_false_positives_count_boxes_that_localize_nothing():
    tally = FindingTally()
    truth = (0.0, 0.0, 10.0, 10.0)
    # image 1: one box 30% inside the truth, one far away
    tally.add([(7.0, 0.0, 10.0, 10.0), (50.0, 50.0, 5.0, 5.0)], [truth])
    # image 2: two expert boxes; one detected box wholly inside the first
    tally.add([(2.0, 2.0, 4.0, 4.0)], [truth, (40.0, 40.0, 5.0, 5.0)])
    # image 3: nothing detected (a constant heatmap)
    tally.add([], [truth])
    summary = tally.summary(thresholds=(0.1, 0.5))
    assert summary["num_boxes"] == 4 and summary["num_images"] == 3
    # T = 0.1: image 1's first box (IoBB 0.3) and image 2's box (1.0) localize; 1 of image 1's boxes is false
    assert summary["by_threshold"]["0.1"] == {"accuracy": 2 / 4, "average_false_positives": 1 / 3}
    # T = 0.5: image 1's first box no longer localizes, so it is a false positive too
    assert summary["by_threshold"]["0.5"] == {"accuracy": 1 / 4, "average_false_positives": 2 / 3}


def test_an_image_is_scored_against_at_least_one_box():
    with pytest.raises(ValueError, match="at least one expert box"):
        FindingTally().add([(0.0, 0.0, 1.0, 1.0)], [])


def test_the_tally_keeps_findings_apart_and_returns_the_boxes_it_drew():
    tally = LocalizationTally()
    heatmap = np.zeros((8, 8))
    heatmap[2:4, 2:4] = 1.0
    assert tally.add("Mass", heatmap, [(2.0, 2.0, 2.0, 2.0)]) == [(2.0, 2.0, 2.0, 2.0)] * 2
    tally.add("Nodule", heatmap, [(6.0, 6.0, 1.0, 1.0)])
    summary = tally.summary()
    assert summary["Mass"]["by_threshold"]["0.9"]["accuracy"] == 1.0
    assert summary["Nodule"]["by_threshold"]["0.1"] == {"accuracy": 0.0, "average_false_positives": 2.0}
    assert FindingTally().summary()["by_threshold"]["0.1"] == {"accuracy": None, "average_false_positives": None}


def test_the_random_baseline_moves_the_peak_into_the_lung_fields_and_keeps_the_shape():
    heatmap = np.zeros((64, 64), dtype=np.float32)
    heatmap[30:35, 28:33] = np.outer(np.hanning(5), np.hanning(5))
    mask = lung_field_mask(64, 64)
    assert mask[32, 16] and mask[32, 48] and not mask[32, 32] and not mask[2, 2]  # two lungs, mediastinum between
    rng = np.random.default_rng(0)
    for _ in range(20):
        moved = moved_to_random_lung_point(heatmap, rng, mask)
        assert mask[np.unravel_index(np.argmax(moved), moved.shape)]
        assert moved.sum() == pytest.approx(heatmap.sum())  # the lungs lie inside the frame: nothing is cut off
        assert sorted(moved[moved > 0]) == sorted(heatmap[heatmap > 0])


def test_wangs_published_table_is_complete():
    table = wang_2017_table4()
    assert len(table) == 8 and all(set(rows) == {"0.1", "0.25", "0.5", "0.75", "0.9"} for rows in table.values())
    assert table["Cardiomegaly"]["0.1"]["accuracy"] == 0.9931 and table["Nodule"]["0.1"]["accuracy"] == 0.1645
    for rows in table.values():  # a stricter threshold never localizes more
        accuracies = [rows[t]["accuracy"] for t in ("0.1", "0.25", "0.5", "0.75", "0.9")]
        assert accuracies == sorted(accuracies, reverse=True)
