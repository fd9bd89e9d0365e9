"""The builder through ``datasets.load_dataset("nih_chestxray14", ...)``: layouts, configs, splits, streaming, download."""

from __future__ import annotations

import io
import os
import shutil
import tarfile

import datasets
import numpy as np
import pytest
from PIL import Image

import nih_chestxray14
from nih_chestxray14 import LABELS, NIHChestXray14
from nih_chestxray14.archives import NIH_ARCHIVE_URLS, archive_name
from nih_chestxray14.errors import MissingMetadataError
from nih_chestxray14.sample import make_release
from nih_chestxray14.splits import is_validation_patient
from release_fixtures import (  # noqa: F401  (fixtures)
    archives_release,
    build,
    copy_release,
    images_release,
    kaggle_release,
    raw_entries,
    raw_list,
)

FEATURE_ORDER = [
    "image", "image_id", "patient_id", "follow_up", "age", "sex", "view_position", "original_width",
    "original_height", "pixel_spacing_x", "pixel_spacing_y", "labels", "findings", "bboxes",
]


def archive_pngs(release):
    """Image name → PNG bytes, straight from the release's tar.gz files."""
    pngs = {}
    for path in sorted(release.glob("images_*.tar.gz")):
        with tarfile.open(path) as archive:
            for member in archive.getmembers():
                pngs[os.path.basename(member.name)] = archive.extractfile(member).read()
    return pngs


def expected_split(test_names, name, patient):
    if name in test_names:
        return "test"
    return "validation" if is_validation_patient(patient, 0.1) else "train"


def test_default_config_reads_archives_in_place_with_labels_splits_and_untouched_bytes(archives_release, tmp_path):
    ds = build(archives_release, tmp_path / "cache")
    entries = raw_entries(archives_release)
    pngs = archive_pngs(archives_release)
    test_names = set(raw_list(archives_release, "test_list.txt"))

    assert set(ds) == {"train", "validation", "test"}
    assert sum(len(split) for split in ds.values()) == len(entries)
    assert list(ds["train"].features) == FEATURE_ORDER
    raw = ds.cast_column("image", datasets.Image(decode=False))
    for split, dataset in raw.items():
        for example in dataset:
            name = example["image_id"]
            entry = entries[name]
            assert expected_split(test_names, name, entry["patient"]) == split
            assert example["patient_id"] == entry["patient"]
            assert [LABELS[i] for i, hot in enumerate(example["labels"]) if hot] == sorted(
                entry["findings"], key=LABELS.index
            )
            assert [LABELS[i] for i in example["findings"]] == [LABELS[i] for i, hot in enumerate(example["labels"]) if hot]
            assert example["image"]["bytes"] == pngs[name]  # no decode, no re-encode


def test_no_patient_is_in_two_splits_and_validation_holds_about_a_tenth_of_train_val(archives_release, tmp_path):
    ds = build(archives_release, tmp_path / "cache")
    patients = {split: set(list(dataset["patient_id"])) for split, dataset in ds.items()}
    assert not patients["train"] & patients["validation"]
    assert not patients["train"] & patients["test"]
    assert not patients["validation"] & patients["test"]
    assert sorted(list(ds["train"]["image_id"]) + list(ds["validation"]["image_id"])) == raw_list(archives_release, "train_val_list.txt")
    assert sorted(list(ds["test"]["image_id"])) == raw_list(archives_release, "test_list.txt")
    assert len(patients["validation"]) >= 1


def test_every_finding_is_in_every_split_of_the_sample(archives_release, tmp_path):
    ds = build(archives_release, tmp_path / "cache")
    for split, dataset in ds.items():
        counts = np.asarray(list(dataset["labels"])).sum(axis=0)
        assert (counts > 0).all(), split


def test_bboxes_come_from_the_box_csv_with_infiltrate_read_as_infiltration(archives_release, tmp_path):
    ds = datasets.concatenate_datasets(list(build(archives_release, tmp_path / "cache").values()))
    lines = (archives_release / "BBox_List_2017.csv").read_text().splitlines()[1:]
    expected = sorted(
        (cells[0], "Infiltration" if cells[1] == "Infiltrate" else cells[1], round(float(cells[2]), 3))
        for cells in (line.split(",") for line in lines)
    )
    assert any("Infiltrate," in line for line in lines)
    found = sorted(
        (example["image_id"], LABELS[box["finding"]], round(box["x"], 3))
        for example in ds.select_columns(["image_id", "bboxes"])
        for box in example["bboxes"]
    )
    assert found == expected


@pytest.mark.parametrize("layout_fixture", ["images_release", "kaggle_release"])
def test_extracted_layouts_give_the_same_dataset_as_the_archives(layout_fixture, archives_release, tmp_path, request):
    release = request.getfixturevalue(layout_fixture)
    from_archives = build(archives_release, tmp_path / "a").cast_column("image", datasets.Image(decode=False))
    extracted = build(release, tmp_path / "b").cast_column("image", datasets.Image(decode=False))
    for split in ("train", "validation", "test"):
        left = sorted((row["image_id"], row["image"]["bytes"], tuple(row["labels"])) for row in from_archives[split])
        right = sorted((row["image_id"], row["image"]["bytes"], tuple(row["labels"])) for row in extracted[split])
        assert left == right


def test_download_script_archive_names_are_read(archives_release, tmp_path):
    release = copy_release(archives_release, tmp_path)
    for index in (1, 2, 3):
        os.rename(release / archive_name(index, 3), release / archive_name(index, 2))
    ds = build(release, tmp_path / "cache")
    assert sum(len(split) for split in ds.values()) == len(raw_entries(release))


def test_resized_config_reduces_the_shorter_side_by_area_averaging(tmp_path):
    release = make_release(tmp_path / "release", num_patients=3, images_per_patient=1, image_size=448, num_archives=1)
    ds = build(release, tmp_path / "cache", "resized-224")
    pngs = archive_pngs(release)
    examples = [example for split in ("train", "validation", "test") for example in ds[split]]
    assert len(examples) == 3
    for example in examples:
        image = example["image"]
        assert image.size == (224, 224) and image.mode == "L"
        original = np.asarray(Image.open(io.BytesIO(pngs[example["image_id"]])), dtype=np.float64)
        block_means = original.reshape(224, 2, 224, 2).mean(axis=(1, 3))
        assert np.abs(np.asarray(image, dtype=np.float64) - block_means).max() <= 1.0


def test_resized_config_keeps_aspect_ratio_and_does_not_upscale(tmp_path):
    release = make_release(tmp_path / "release", num_patients=3, images_per_patient=1, image_size=48, layout="images")
    wide = release / "images" / "00000001_000.png"
    Image.new("L", (600, 300), 90).save(wide)
    ds = build(release, tmp_path / "cache", "resized-256")
    sizes = {row["image_id"]: row["image"].size for split in ds.values() for row in split}
    assert sizes["00000001_000.png"] == (512, 256)
    assert {size for name, size in sizes.items() if name != "00000001_000.png"} == {(48, 48)}


def test_streaming_yields_the_same_examples_as_the_prepared_dataset(archives_release, images_release, tmp_path):
    for release in (archives_release, images_release):
        prepared = build(release, tmp_path / release.name).cast_column("image", datasets.Image(decode=False))
        streamed = datasets.load_dataset("nih_chestxray14", data_dir=str(release), streaming=True)
        assert isinstance(streamed["test"], datasets.IterableDataset)
        for split in ("train", "validation", "test"):
            rows = sorted(streamed[split].cast_column("image", datasets.Image(decode=False)), key=lambda row: row["image_id"])
            assert rows == sorted(prepared[split], key=lambda row: row["image_id"])  # every column, every value


def test_float32_columns_give_the_same_value_streamed_or_prepared(archives_release, tmp_path):
    # 0.171 mm stored as float32 reads back as 0.17100000381469727: streaming must not yield the float64 0.171.
    prepared = build(archives_release, tmp_path / "cache")["test"]
    streamed = {row["image_id"]: row for row in datasets.load_dataset(
        "nih_chestxray14", data_dir=str(archives_release), split="test", streaming=True)}
    boxes_seen = 0
    for row in prepared.remove_columns("image"):
        other = streamed[row["image_id"]]
        assert other["pixel_spacing_x"] == row["pixel_spacing_x"] == float(np.float32(row["pixel_spacing_x"]))
        assert other["bboxes"] == row["bboxes"]
        boxes_seen += len(row["bboxes"])
    assert boxes_seen > 0


@pytest.mark.slow
@pytest.mark.parametrize("num_archives", [1, 3])
def test_two_processes_build_the_same_dataset_as_one(num_archives, tmp_path):
    release = make_release(tmp_path / "release", num_patients=12, images_per_patient=2, image_size=40,
                           num_archives=num_archives)
    one = build(release, tmp_path / "one", "resized-224").cast_column("image", datasets.Image(decode=False))
    two = build(release, tmp_path / "two", "resized-224", num_proc=2).cast_column("image", datasets.Image(decode=False))
    for split in one:
        assert sorted((row["image_id"], row["image"]["bytes"]) for row in one[split]) == sorted(
            (row["image_id"], row["image"]["bytes"]) for row in two[split]
        )
    if num_archives == 3:  # a shard is one archive: two processes shared the three, each writing its own file
        assert len(two["train"].cache_files) == 2


def test_load_without_data_dir_in_an_empty_directory_reaches_the_builder(tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.chdir(empty)
    monkeypatch.setattr(datasets.DownloadManager, "download", lambda *args: pytest.fail("must not download"))
    with pytest.raises(MissingMetadataError, match="no data_dir given.*Data_Entry_2017_v2020.csv"):
        datasets.load_dataset("nih_chestxray14", cache_dir=str(tmp_path / "cache"))


def test_metadata_without_images_downloads_nih_archives_through_the_download_manager(tmp_path, monkeypatch):
    release = make_release(tmp_path / "mirror", num_patients=12, images_per_patient=2, image_size=32,
                           num_archives=len(NIH_ARCHIVE_URLS))
    data_dir = tmp_path / "metadata-only"
    data_dir.mkdir()
    for path in release.iterdir():
        if not path.name.endswith(".tar.gz"):
            shutil.copy(path, data_dir)
    requested = []

    def download(self, url_or_urls):
        requested.append(list(url_or_urls))
        return [str(release / archive_name(index + 1)) for index, _ in enumerate(url_or_urls)]

    monkeypatch.setattr(datasets.DownloadManager, "download", download)
    ds = build(data_dir, tmp_path / "cache")
    assert requested == [list(NIH_ARCHIVE_URLS)]
    assert len(NIH_ARCHIVE_URLS) == 12 and all(url.startswith("https://nihcc.box.com/shared/static/") for url in NIH_ARCHIVE_URLS)
    assert sum(len(split) for split in ds.values()) == 24


def test_data_files_are_refused_with_advice(archives_release, tmp_path):
    with pytest.raises(ValueError, match="data_dir, not data_files"):
        datasets.load_dataset("nih_chestxray14", data_files={"train": str(archives_release / "test_list.txt")})


def test_load_function_and_builder_class_work_without_the_registry(archives_release, tmp_path):
    test = nih_chestxray14.load(data_dir=str(archives_release), split="test", cache_dir=str(tmp_path / "cache"))
    assert sorted(list(test["image_id"])) == raw_list(archives_release, "test_list.txt")
    streamed = nih_chestxray14.load("resized-224", data_dir=str(archives_release), split="validation", streaming=True)
    assert isinstance(streamed, datasets.IterableDataset)

    builder = NIHChestXray14(config_name="default", data_dir=str(archives_release), cache_dir=str(tmp_path / "cache"))
    builder.download_and_prepare()
    assert list(builder.as_dataset(split="test")["image_id"]) == list(test["image_id"])
    assert next(iter(builder.as_streaming_dataset(split="test")))["image_id"] in set(list(test["image_id"]))


def test_validation_fraction_is_a_config_parameter(archives_release, tmp_path):
    default = build(archives_release, tmp_path / "cache")
    none = build(archives_release, tmp_path / "cache", validation_fraction=0.0)
    larger = build(archives_release, tmp_path / "cache", validation_fraction=0.5)
    assert set(none) == {"train", "test"}
    assert len(none["train"]) == len(default["train"]) + len(default["validation"])
    assert set(list(default["validation"]["patient_id"])) <= set(list(larger["validation"]["patient_id"]))
    assert len(larger["validation"]) > len(default["validation"])
    with pytest.raises(ValueError, match="validation_fraction"):
        build(archives_release, tmp_path / "cache", validation_fraction=1.5)


def test_registry_answers_config_names_and_builder_and_leaves_other_builders_alone(tmp_path):
    assert datasets.get_dataset_config_names("nih_chestxray14") == ["default", "resized-224", "resized-256", "resized-512"]
    builder = datasets.load_dataset_builder("nih_chestxray14", "resized-256")
    assert isinstance(builder, NIHChestXray14) and builder.config.image_size == 256
    table = tmp_path / "table.csv"
    table.write_text("a,b\n1,2\n")
    assert datasets.load_dataset("csv", data_files=str(table), cache_dir=str(tmp_path / "cache"))["train"][0] == {"a": 1, "b": 2}


def test_a_build_leaves_only_the_finished_dataset_in_its_cache_folder(archives_release, tmp_path):
    ds = build(archives_release, tmp_path / "cache", "resized-224")
    (folder,) = {os.path.dirname(file["filename"]) for split in ds.values() for file in split.cache_files}
    data_files = {os.path.basename(file["filename"]) for split in ds.values() for file in split.cache_files}
    assert set(os.listdir(folder)) == data_files | {"dataset_info.json", "LICENSE"}
    assert not [name for name in os.listdir(os.path.dirname(folder)) if name.endswith(".incomplete")]


def test_a_changed_release_is_built_again_instead_of_served_from_the_cache(images_release, tmp_path):
    release = copy_release(images_release, tmp_path)
    held_back = release / "images" / raw_list(release, "test_list.txt")[0]
    stash = tmp_path / held_back.name
    held_back.rename(stash)
    partial = build(release, tmp_path / "cache", allow_missing_images=True)
    assert build(release, tmp_path / "cache", allow_missing_images=True)["test"].cache_files == partial["test"].cache_files
    stash.rename(held_back)  # the download completes
    complete = build(release, tmp_path / "cache", allow_missing_images=True)
    assert len(complete["test"]) == len(partial["test"]) + 1


def test_parameters_passed_at_their_defaults_reuse_the_cache_of_a_plain_load(archives_release, tmp_path):
    # The command line passes every parameter; a later load() or load_dataset() in Python must not build again.
    kwargs = {"data_dir": str(archives_release), "cache_dir": str(tmp_path / "cache")}
    plain = NIHChestXray14(config_name="resized-224", **kwargs)
    explicit = NIHChestXray14(config_name="resized-224", image_size=224, validation_fraction=0.1,
                              allow_missing_images=False, **kwargs)
    other = NIHChestXray14(config_name="resized-224", validation_fraction=0.2, **kwargs)
    assert explicit.cache_dir == plain.cache_dir
    assert other.cache_dir != plain.cache_dir and other.config.validation_fraction == 0.2


def test_a_cache_kept_inside_data_dir_is_reused(archives_release, tmp_path):
    release = copy_release(archives_release, tmp_path)
    first = build(release, release / "cache")
    assert build(release, release / "cache")["train"].cache_files == first["train"].cache_files
