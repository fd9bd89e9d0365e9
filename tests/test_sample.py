"""Synthetic releases: NIH's file layouts, X-ray-like PNGs of realistic size, and a learnable signal per finding."""

from __future__ import annotations

import csv
import io
import tarfile

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import roc_auc_score

from nih_chestxray14.labels import LABELS
from nih_chestxray14.sample import (
    FINDING_PATTERNS,
    encode_png,
    make_release,
    synthetic_xray,
)
from nih_chestxray14.splits import is_validation_patient


def read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.reader(handle))


def test_archives_layout_cuts_sorted_names_into_nih_style_archives(tmp_path):
    release = make_release(tmp_path, num_patients=10, images_per_patient=2, image_size=16, num_archives=3)
    archives = sorted(release.glob("images_*.tar.gz"))
    assert [path.name for path in archives] == ["images_001.tar.gz", "images_002.tar.gz", "images_003.tar.gz"]
    members = []
    for path in archives:
        with tarfile.open(path) as archive:
            members += archive.getnames()
    names = [row[0] for row in read_csv(release / "Data_Entry_2017_v2020.csv")[1:]]
    assert members == [f"images/{name}" for name in sorted(names)]
    assert sorted((release / "train_val_list.txt").read_text().split() + (release / "test_list.txt").read_text().split()) == sorted(names)


@pytest.mark.parametrize("layout, folder", [("images", "images"), ("kaggle", "images_002/images")])
def test_extracted_layouts_write_pngs_where_people_have_them(layout, folder, tmp_path):
    release = make_release(tmp_path, num_patients=6, images_per_patient=2, image_size=16, layout=layout)
    pngs = sorted(release.glob("**/*.png"))
    assert len(pngs) == 12 and not list(release.glob("*.tar.gz"))
    assert list((release / folder).glob("*.png"))


def test_download_script_names_and_csv_variants(tmp_path):
    release = make_release(tmp_path, num_patients=4, images_per_patient=1, image_size=16, archive_digits=2,
                           csv_variant="2017", num_archives=2)
    assert sorted(path.name for path in release.glob("*.tar.gz")) == ["images_01.tar.gz", "images_02.tar.gz"]
    header, *rows = read_csv(release / "Data_Entry_2017.csv")
    assert header[-1] == "" and all(row[-1] == "" for row in rows)  # Kaggle's empty 12th column
    sex = make_release(tmp_path / "sex", num_patients=2, images_per_patient=1, image_size=16, csv_variant="patient-sex")
    assert read_csv(sex / "Data_Entry_2017_v2020.csv")[0][5] == "Patient Sex"


def test_box_csv_has_nih_header_and_infiltrate_spelling(tmp_path):
    release = make_release(tmp_path, num_patients=20, images_per_patient=2, image_size=16)
    header, *rows = read_csv(release / "BBox_List_2017.csv")
    assert ",".join(header) == "Image Index,Finding Label,Bbox [x,y,w,h],,,"
    assert rows and any(row[1] == "Infiltrate" for row in rows)
    assert not any(row[1] == "Infiltration" for row in rows)


def test_every_finding_is_in_every_split_and_patients_never_span_splits(tmp_path):
    for num_patients in (3, 20):
        release = make_release(tmp_path / str(num_patients), num_patients=num_patients, images_per_patient=2,
                               image_size=16)
        test = set((release / "test_list.txt").read_text().split())
        findings = {"train": set(), "validation": set(), "test": set()}
        patients = {"train": set(), "validation": set(), "test": set()}
        for row in read_csv(release / "Data_Entry_2017_v2020.csv")[1:]:
            patient = int(row[3])
            split = "test" if row[0] in test else ("validation" if is_validation_patient(patient) else "train")
            patients[split].add(patient)
            findings[split].update([] if row[1] == "No Finding" else row[1].split("|"))
        assert all(found == set(LABELS) for found in findings.values()), num_patients
        assert not (patients["train"] & patients["test"]) and not (patients["validation"] & patients["test"])


def test_release_is_deterministic_in_its_seed(tmp_path):
    first = make_release(tmp_path / "a", num_patients=3, images_per_patient=1, image_size=32, layout="images", seed=3)
    again = make_release(tmp_path / "b", num_patients=3, images_per_patient=1, image_size=32, layout="images", seed=3)
    other = make_release(tmp_path / "c", num_patients=3, images_per_patient=1, image_size=32, layout="images", seed=4)
    for path in sorted((first / "images").iterdir()):
        assert path.read_bytes() == (again / "images" / path.name).read_bytes()
        assert path.read_bytes() != (other / "images" / path.name).read_bytes()
    assert (first / "Data_Entry_2017_v2020.csv").read_text() == (again / "Data_Entry_2017_v2020.csv").read_text()


def test_expert_labels_leave_the_rest_of_the_release_as_it_was(tmp_path):
    kwargs = dict(num_patients=6, images_per_patient=2, image_size=32, layout="images", seed=5)
    plain = make_release(tmp_path / "plain", **kwargs)
    labelled = make_release(tmp_path / "labelled", expert_labels="google", **kwargs)
    files = sorted(path.relative_to(plain) for path in plain.rglob("*") if path.is_file())
    assert files == sorted(path.relative_to(labelled) for path in labelled.rglob("*") if path.is_file()
                           and "four_findings_expert_labels" not in path.parts)
    assert all((plain / path).read_bytes() == (labelled / path).read_bytes() for path in files)
    assert sorted(path.name for path in (labelled / "four_findings_expert_labels").iterdir()) == [
        "test_labels.csv", "validation_labels.csv"]


def test_full_size_png_is_grayscale_1024_and_weighs_like_nih(tmp_path):
    pixels, _ = synthetic_xray(1024, seed=7, findings=("Effusion",))
    png = encode_png(pixels)
    image = Image.open(io.BytesIO(png))
    assert image.size == (1024, 1024) and image.mode == "L"
    assert 400_000 <= len(png) <= 500_000


def test_image_has_smooth_anatomy_not_noise():
    pixels, _ = synthetic_xray(256, seed=1, signal=False)
    pixels = pixels.astype(np.float64)

    def mean_at(x, y, radius=0.05):  # normalised coordinates, x right, y down, in [-1, 1]
        axis = (np.arange(256) + 0.5) / 128 - 1
        mask = (np.abs(axis[None, :] - x) < radius) & (np.abs(axis[:, None] - y) < radius)
        return pixels[mask].mean()

    neighbour_step = np.abs(np.diff(pixels, axis=1)).mean()
    shuffled_step = np.abs(np.diff(np.random.default_rng(0).permutation(pixels.ravel()))).mean()
    assert neighbour_step < shuffled_step / 5  # neighbouring pixels are alike: structure, not noise
    assert mean_at(-0.42, -0.1) + 30 < mean_at(0.0, -0.5)  # lungs darker than the mediastinum
    assert mean_at(0.45, -0.1) + 30 < mean_at(0.0, 0.8)  # ... and than the abdomen below the diaphragm
    assert mean_at(-0.97, -0.97, 0.02) + 50 < mean_at(0.0, -0.5)  # air outside the body is dark


def test_box_frames_the_planted_pattern():
    for name in ("Mass", "Nodule", "Effusion", "Pneumothorax"):
        with_finding, boxes = synthetic_xray(128, seed=5, findings=(name,))
        without, _ = synthetic_xray(128, seed=5, findings=(name,), signal=False)
        change = np.abs(with_finding.astype(np.float64) - without)
        x, y, w, h = boxes[name]
        inside = change[int(y):int(np.ceil(y + h)), int(x):int(np.ceil(x + w))].sum()
        assert inside > 0.7 * change.sum(), name


def linear_probe_aucs(signal: bool, count: int = 320, size: int = 64, thumbnail: int = 16) -> np.ndarray:
    """Per-finding held-out AUC of a ridge-regression probe on ``thumbnail``-px versions of ``count`` images."""
    rng = np.random.default_rng(0)
    labels = rng.random((count, len(LABELS))) < 0.25
    thumbnails = []
    for index, row in enumerate(labels):
        findings = [name for name, hot in zip(LABELS, row) if hot]
        pixels, _ = synthetic_xray(size, seed=index, anatomy_seed=index // 3, findings=findings, signal=signal)
        thumbnails.append(np.asarray(Image.fromarray(pixels).reduce(size // thumbnail), dtype=np.float64).ravel() / 255)
    x = np.asarray(thumbnails)
    train, test = slice(0, count * 3 // 4), slice(count * 3 // 4, count)
    mean = x[train].mean(axis=0)
    centred = x[train] - mean
    weights = np.linalg.solve(centred.T @ centred + np.eye(x.shape[1]), centred.T @ (labels[train] - 0.5))
    scores = (x[test] - mean) @ weights
    return np.asarray([roc_auc_score(labels[test, k], scores[:, k]) for k in range(len(LABELS))])


@pytest.mark.slow
def test_signal_makes_every_finding_learnable_and_no_signal_does_not():
    with_signal = linear_probe_aucs(True)
    without = linear_probe_aucs(False)
    assert with_signal.min() > 0.8 and with_signal.mean() > 0.9, dict(zip(LABELS, with_signal.round(2)))
    assert abs(without.mean() - 0.5) < 0.1


def test_every_finding_has_its_own_pattern_place():
    assert set(FINDING_PATTERNS) == set(LABELS)
    places = {(pattern.x, pattern.y) for pattern in FINDING_PATTERNS.values()}
    assert len(places) == len(LABELS)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"layout": "zip"}, "layout must be one of"),
        ({"csv_variant": "v1999"}, "csv_variant must be one of"),
        ({"prevalence": {"Tumour": 0.1}}, "unknown findings"),
        ({"num_patients": 0}, "must be >= 1"),
        ({"expert_labels": "chexpert"}, "expert_labels must be None or one of google, torchxrayvision"),
        ({"expert_labels": "google", "expert_label_fraction": 1.5}, r"expert_label_fraction must be in \[0, 1\]"),
    ],
)
def test_bad_arguments_are_refused(kwargs, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        make_release(tmp_path, **{"image_size": 16, **kwargs})
