"""Bad input reaches the user as a clear, typed error naming the file, row or member, and leaves no cache behind."""

from __future__ import annotations

import io
import logging
import os
import shutil
import tarfile

import datasets
import pytest

import nih_chestxray14
from nih_chestxray14.errors import (
    CorruptImageError,
    ImageSourceError,
    MetadataError,
    MissingImagesError,
    MissingMetadataError,
    SplitError,
)
from nih_chestxray14.labels import UnknownFindingError
from release_fixtures import (  # noqa: F401  (fixtures)
    archives_release,
    build,
    copy_release,
    entry_csv,
    images_release,
    kaggle_release,
    raw_list,
)


@pytest.fixture
def release(archives_release, tmp_path):
    """A private copy of the archives release, to damage."""
    return copy_release(archives_release, tmp_path)


@pytest.fixture
def extracted(images_release, tmp_path):
    return copy_release(images_release, tmp_path)


def rewrite_line(path, line_number, transform):
    lines = path.read_text().splitlines(keepends=True)
    lines[line_number - 1] = transform(lines[line_number - 1])
    path.write_text("".join(lines))


def rewrite_archive(path, transform):
    """Rewrite a tar.gz member by member: ``transform(name, data)`` returns [(name, data), ...] to write instead."""
    with tarfile.open(path) as archive:
        members = [(member.name, archive.extractfile(member).read()) for member in archive.getmembers()]
    with tarfile.open(path, "w:gz") as archive:
        for name, data in members:
            for new_name, new_data in transform(name, data):
                info = tarfile.TarInfo(new_name)
                info.size = len(new_data)
                archive.addfile(info, io.BytesIO(new_data))


def no_finished_dataset(cache_dir):
    """True when the cache holds neither a finished dataset nor a leftover .incomplete folder."""
    for folder, subfolders, files in os.walk(cache_dir):
        if "dataset_info.json" in files or any(name.endswith(".incomplete") for name in subfolders):
            return False
    return True


def test_missing_entry_csv_names_the_files_to_fetch(release, tmp_path):
    entry_csv(release).unlink()
    with pytest.raises(MissingMetadataError, match=r"has no Data_Entry_2017_v2020\.csv or Data_Entry_2017\.csv"):
        build(release, tmp_path / "cache")


def test_missing_split_list_is_named(release, tmp_path):
    (release / "test_list.txt").unlink()
    with pytest.raises(MissingMetadataError, match=r"test_list\.txt not found"):
        build(release, tmp_path / "cache")


def test_malformed_header_names_file_and_line(release, tmp_path):
    rewrite_line(entry_csv(release), 1, lambda line: line.replace("Patient ID", "Patient"))
    with pytest.raises(MetadataError, match=r"Data_Entry_2017_v2020\.csv, line 1: the header lacks patient_id"):
        build(release, tmp_path / "cache")


def test_malformed_value_names_file_and_line(release, tmp_path):
    rewrite_line(entry_csv(release), 4, lambda line: line.replace(",PA,", ",LL,").replace(",AP,", ",LL,"))
    with pytest.raises(MetadataError, match=r"Data_Entry_2017_v2020\.csv, line 4: view position must be PA or AP"):
        build(release, tmp_path / "cache")


def test_unknown_finding_names_file_line_and_image(release, tmp_path):
    rewrite_line(entry_csv(release), 3, lambda line: line.split(",", 2)[0] + ",Tumour," + line.split(",", 2)[2])
    with pytest.raises(UnknownFindingError, match=r"Data_Entry_2017_v2020\.csv, line 3 \(\d{8}_\d{3}\.png\): unknown finding 'Tumour'"):
        build(release, tmp_path / "cache")


def test_image_in_neither_list_is_named(release, tmp_path):
    test_list = release / "test_list.txt"
    names = test_list.read_text().split()
    test_list.write_text("\n".join(names[1:]) + "\n")
    with pytest.raises(SplitError, match=rf"{names[0]} is in the entry CSV but in neither .*train_val_list\.txt nor .*test_list\.txt"):
        build(release, tmp_path / "cache")


def test_image_in_both_lists_is_named(release, tmp_path):
    name = raw_list(release, "test_list.txt")[0]
    with open(release / "train_val_list.txt", "a") as handle:
        handle.write(name + "\n")
    with pytest.raises(SplitError, match=rf"{name} is listed in both"):
        build(release, tmp_path / "cache")


def test_patient_split_across_lists_is_refused(release, tmp_path):
    train_val = raw_list(release, "train_val_list.txt")
    test = raw_list(release, "test_list.txt")
    moved = train_val[0]  # the first follow-up of a train_val patient moves to test, the others stay
    (release / "train_val_list.txt").write_text("\n".join(train_val[1:]) + "\n")
    (release / "test_list.txt").write_text("\n".join(sorted(test + [moved])) + "\n")
    with pytest.raises(SplitError, match=r"patient \d+ would be in both"):
        build(release, tmp_path / "cache")


def test_listed_image_missing_from_the_archives_is_named_and_no_cache_is_left(release, tmp_path):
    missing = raw_list(release, "test_list.txt")[-1]
    for archive in release.glob("images_*.tar.gz"):
        rewrite_archive(archive, lambda name, data: [] if name.endswith(missing) else [(name, data)])
    with pytest.raises(MissingImagesError, match=rf"1 of the \d+ images of the test split .*{missing}.*allow_missing_images=True"):
        nih_chestxray14.load(data_dir=str(release), cache_dir=str(tmp_path / "cache"))
    assert no_finished_dataset(tmp_path / "cache")


def test_listed_image_missing_from_extracted_folder_is_named(extracted, tmp_path):
    missing = raw_list(extracted, "train_val_list.txt")[0]
    (extracted / "images" / missing).unlink()
    with pytest.raises(MissingImagesError, match=rf"{missing}"):
        build(extracted, tmp_path / "cache")
    assert no_finished_dataset(tmp_path / "cache")


@pytest.mark.parametrize("layout", ["archives", "extracted"])
def test_allow_missing_images_builds_from_a_partial_download_and_logs_the_count(layout, release, extracted, tmp_path, caplog):
    data_dir = release if layout == "archives" else extracted
    gone = raw_list(data_dir, "test_list.txt")[:2]
    if layout == "archives":
        for archive in data_dir.glob("images_*.tar.gz"):
            rewrite_archive(archive, lambda name, data: [] if os.path.basename(name) in gone else [(name, data)])
    else:
        for name in gone:
            (data_dir / "images" / name).unlink()
    with caplog.at_level(logging.WARNING):
        ds = build(data_dir, tmp_path / "cache", allow_missing_images=True)
    assert len(ds["test"]) == len(raw_list(data_dir, "test_list.txt")) - 2
    assert not set(gone) & set(list(ds["test"]["image_id"]))
    assert "skipped 2 of the" in caplog.text


@pytest.mark.parametrize("config", ["default", "resized-224"])
def test_truncated_png_in_an_archive_names_archive_and_member(config, release, tmp_path):
    victim = raw_list(release, "train_val_list.txt")[5]
    for archive in release.glob("images_*.tar.gz"):
        rewrite_archive(archive, lambda name, data: [(name, data[: len(data) // 2] if name.endswith(victim) else data)])
    with pytest.raises(datasets.exceptions.DatasetGenerationError) as caught:
        build(release, tmp_path / "cache", config)
    cause = caught.value.__cause__
    assert isinstance(cause, CorruptImageError)
    assert "images_00" in str(cause) and f"images/{victim}" in str(cause)
    assert no_finished_dataset(tmp_path / "cache")


def test_corrupt_byte_in_a_png_is_caught_by_its_crc(extracted, tmp_path):
    victim = extracted / "images" / raw_list(extracted, "test_list.txt")[0]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    with pytest.raises(CorruptImageError, match=rf"{victim.name} is corrupt: the CRC of its 'IDAT' chunk"):
        nih_chestxray14.load(data_dir=str(extracted), cache_dir=str(tmp_path / "cache"))


def test_a_failed_build_leaves_no_dataset_and_a_retry_after_the_fix_succeeds(extracted, tmp_path):
    victim = extracted / "images" / raw_list(extracted, "test_list.txt")[-1]
    good = victim.read_bytes()
    victim.write_bytes(good[:100])
    with pytest.raises(CorruptImageError):
        nih_chestxray14.load(data_dir=str(extracted), cache_dir=str(tmp_path / "cache"))
    assert no_finished_dataset(tmp_path / "cache")
    victim.write_bytes(good)
    ds = nih_chestxray14.load(data_dir=str(extracted), cache_dir=str(tmp_path / "cache"))
    assert victim.name in set(list(ds["test"]["image_id"]))


def test_archive_members_that_escape_are_ignored_and_never_read(release, tmp_path, caplog):
    name = raw_list(release, "test_list.txt")[0]

    def add_escapers(member, data):
        if not member.endswith(name):
            return [(member, data)]
        # Same image name, garbage bytes: reading either would fail the PNG check or count the image twice.
        return [(member, data), (f"../{name}", b"garbage"), (f"/tmp/{name}", b"garbage")]

    for archive in release.glob("images_*.tar.gz"):
        rewrite_archive(archive, add_escapers)
    with caplog.at_level(logging.WARNING):
        ds = build(release, tmp_path / "cache")
    assert list(ds["test"]["image_id"]).count(name) == 1
    assert "'../" in caplog.text and "'/tmp/" in caplog.text and "escapes the archive" in caplog.text


def test_bad_config_values_are_refused_before_any_work(archives_release, tmp_path):
    with pytest.raises(ValueError, match="image_size must be a positive number of pixels"):
        build(archives_release, tmp_path / "cache", "resized-224", image_size=0)
    with pytest.raises(ValueError, match=r"BuilderConfig 'resized-100' not found"):
        build(archives_release, tmp_path / "cache", "resized-100")


def test_one_archive_under_both_names_is_refused(release, tmp_path):
    shutil.copy(release / "images_001.tar.gz", release / "images_01.tar.gz")
    with pytest.raises(ImageSourceError, match=r"holds archive 1 twice \(images_001\.tar\.gz and images_01\.tar\.gz\)"):
        build(release, tmp_path / "cache")


def test_one_png_in_two_folders_is_refused(kaggle_release, tmp_path):
    release = copy_release(kaggle_release, tmp_path)
    first = sorted((release / "images_001" / "images").iterdir())[0]
    shutil.copy(first, release / "images_002" / "images" / first.name)
    with pytest.raises(ImageSourceError, match=rf"{first.name} is in two folders"):
        build(release, tmp_path / "cache")


def test_archives_take_precedence_over_extracted_pngs(release, tmp_path):
    (release / "images").mkdir()
    (release / "images" / raw_list(release, "test_list.txt")[0]).write_bytes(b"not a png")
    ds = build(release, tmp_path / "cache")
    assert sum(len(split) for split in ds.values()) == len(raw_list(release, "train_val_list.txt")) + len(
        raw_list(release, "test_list.txt")
    )
