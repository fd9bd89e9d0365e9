"""Faults around a build: killed and failed builds, releases that change, damaged archives, misplaced images, and
errors that must reach ``load_dataset`` callers as themselves. Releases are the issue's
``make_release(rel, num_patients=12, images_per_patient=2, image_size=64, layout=...)``."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import tarfile
import textwrap
import time
import zlib
from pathlib import Path

import datasets
import numpy as np
import pytest

import nih_chestxray14
from nih_chestxray14 import NIHChestXray14
from nih_chestxray14.errors import (
    CorruptArchiveError,
    CorruptImageError,
    ImageSourceError,
    MetadataError,
    MissingImagesError,
    MissingMetadataError,
    SplitError,
)
from nih_chestxray14.labels import UnknownFindingError
from nih_chestxray14.pixels import encode_gray_png
from nih_chestxray14.sample import make_release
from release_fixtures import build, raw_list

REL = {"num_patients": 12, "images_per_patient": 2, "image_size": 64}


@pytest.fixture
def archives(tmp_path):
    return make_release(tmp_path / "rel", layout="archives", **REL)


@pytest.fixture
def extracted(tmp_path):
    return make_release(tmp_path / "rel-extracted", layout="images", **REL)


def members(archive: Path):
    with tarfile.open(archive) as handle:
        return [(member.name, handle.extractfile(member).read()) for member in handle.getmembers()]


def write_archive(archive: Path, contents):
    with tarfile.open(archive, "w:gz") as handle:
        for name, data in contents:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            handle.addfile(info, io.BytesIO(data))


def no_generation(monkeypatch):
    monkeypatch.setattr(NIHChestXray14, "_generate_examples",
                        lambda *args, **kwargs: pytest.fail("generation started before the error was found"))


# ---------------------------------------------------------------------------------------------------------------
# Errors found before generation reach load_dataset as themselves


def drop_member(release, name):
    for archive in release.glob("images_*.tar.gz"):
        write_archive(archive, [(member, data) for member, data in members(archive) if not member.endswith(name)])


def cut_archive(release):
    archive = release / "images_002.tar.gz"
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])


def copy_member_to_another_archive(release):
    first = members(release / "images_001.tar.gz")[0]
    write_archive(release / "images_002.tar.gz", members(release / "images_002.tar.gz") + [first])


def truncate_csv(release):
    csv_path = release / "Data_Entry_2017_v2020.csv"
    lines = csv_path.read_text().splitlines(keepends=True)
    csv_path.write_text("".join(lines[:-2]))


def set_patient_id(release, value):
    csv_path = release / "Data_Entry_2017_v2020.csv"
    lines = csv_path.read_text().splitlines(keepends=True)
    cells = lines[1].split(",")
    cells[3] = value(int(cells[3]))
    lines[1] = ",".join(cells)
    csv_path.write_text("".join(lines))


PRE_GENERATION_FAULTS = {
    "image missing from the archives": (lambda rel: drop_member(rel, raw_list(rel, "test_list.txt")[0]),
                                        MissingImagesError, r"1 of the \d+ images of the test split are not in"),
    "archive cut in half": (cut_archive, CorruptArchiveError, r"images_002\.tar\.gz is damaged after its member"),
    "archive that is not gzip": (lambda rel: (rel / "images_003.tar.gz").write_bytes(b"<html>Not found</html>"),
                                 CorruptArchiveError, r"images_003\.tar\.gz is damaged at its start"),
    "empty archive file": (lambda rel: (rel / "images_003.tar.gz").write_bytes(b""),
                           CorruptArchiveError, r"images_003\.tar\.gz is damaged at its start"),
    "one image in two archives": (copy_member_to_another_archive, ImageSourceError, r"occurs twice"),
    "CSV cut at a line boundary": (truncate_csv, MetadataError, r"has no row for 2 of the"),
    "patient id unlike the file name": (lambda rel: set_patient_id(rel, lambda patient: str(patient + 1)),
                                        MetadataError, r"Data_Entry_2017_v2020\.csv, line 2: Patient ID \d+ differs"),
    "patient id out of range": (lambda rel: set_patient_id(rel, lambda patient: "99999999999"), MetadataError,
                                r"Data_Entry_2017_v2020\.csv, line 2: patient_id 99999999999 is out of range"),
    "entry CSV missing": (lambda rel: (rel / "Data_Entry_2017_v2020.csv").unlink(), MissingMetadataError,
                          r"has no Data_Entry_2017_v2020\.csv"),
    "unknown finding": (lambda rel: (rel / "Data_Entry_2017_v2020.csv").write_text(
        (rel / "Data_Entry_2017_v2020.csv").read_text().replace("Effusion", "Efusion", 1)),
        UnknownFindingError, r"unknown finding 'Efusion'"),
    "image in no list": (lambda rel: (rel / "test_list.txt").write_text(
        "\n".join(raw_list(rel, "test_list.txt")[1:]) + "\n"), SplitError, r"in neither"),
}


@pytest.mark.parametrize("fault", sorted(PRE_GENERATION_FAULTS))
def test_errors_found_before_generation_reach_load_dataset_as_themselves(fault, archives, tmp_path, monkeypatch):
    damage, error, message = PRE_GENERATION_FAULTS[fault]
    damage(archives)
    no_generation(monkeypatch)
    with pytest.raises(error, match=message) as caught:
        build(archives, tmp_path / "cache")
    assert not isinstance(caught.value, datasets.exceptions.DatasetGenerationError)


def test_a_truncated_archive_is_named_with_its_last_good_member_and_the_advice(archives, tmp_path):
    names = [member for member, _ in members(archives / "images_002.tar.gz")]
    cut_archive(archives)
    with pytest.raises(CorruptArchiveError) as caught:
        nih_chestxray14.load(data_dir=str(archives), cache_dir=str(tmp_path / "cache"))
    message = str(caught.value)
    assert str(archives / "images_002.tar.gz") in message and "download that archive again" in message
    last_good = message.split("after its member ")[1].split(":")[0]
    assert last_good in names[: len(names) // 2 + 1]


def test_a_damaged_png_inside_an_archive_is_found_during_generation_and_named(archives, tmp_path):
    # PNG contents are checked while generating: load_dataset wraps the error, load() raises it as itself.
    victim = raw_list(archives, "test_list.txt")[0]
    for archive in archives.glob("images_*.tar.gz"):
        write_archive(archive, [(member, b"" if member.endswith(victim) else data) for member, data in members(archive)])
    with pytest.raises(datasets.exceptions.DatasetGenerationError) as caught:
        build(archives, tmp_path / "a")
    assert isinstance(caught.value.__cause__, CorruptImageError)
    with pytest.raises(CorruptImageError, match=rf"images_00\d\.tar\.gz:images/{victim} is not a PNG file"):
        nih_chestxray14.load(data_dir=str(archives), cache_dir=str(tmp_path / "b"))


@pytest.mark.parametrize("config", ["default", "resized-224"])
def test_a_zero_byte_png_is_refused_and_named(config, extracted, tmp_path):
    victim = extracted / "images" / raw_list(extracted, "train_val_list.txt")[3]
    victim.write_bytes(b"")
    with pytest.raises(CorruptImageError, match=rf"{victim.name} is not a PNG file"):
        nih_chestxray14.load(config, data_dir=str(extracted), cache_dir=str(tmp_path / "cache"))


@pytest.mark.parametrize("config", ["default", "resized-224"])
def test_a_decompression_bomb_is_refused_at_build_time(config, extracted, tmp_path):
    victim = extracted / "images" / raw_list(extracted, "test_list.txt")[1]
    png = bytearray(encode_gray_png(np.zeros((64, 64), dtype=np.uint8), 9))
    png[16:24] = (100_000).to_bytes(4, "big") * 2  # IHDR width and height
    png[29:33] = zlib.crc32(bytes(png[12:29])).to_bytes(4, "big")
    victim.write_bytes(bytes(png))
    with pytest.raises(CorruptImageError, match=rf"{victim.name} declares 100000 x 100000 pixels"):
        nih_chestxray14.load(config, data_dir=str(extracted), cache_dir=str(tmp_path / "cache"))


def test_a_crc_valid_png_whose_image_data_does_not_decode_is_refused_by_default(extracted, tmp_path):
    victim = extracted / "images" / raw_list(extracted, "train_val_list.txt")[0]
    png = victim.read_bytes()
    start = png.index(b"IDAT") - 4
    length = int.from_bytes(png[start:start + 4], "big")
    garbage = np.random.default_rng(1).bytes(length)
    idat = b"IDAT" + garbage
    victim.write_bytes(png[:start + 4] + idat + zlib.crc32(idat).to_bytes(4, "big") + png[start + 12 + length:])
    with pytest.raises(CorruptImageError, match=rf"{victim.name} is corrupt: its image data does not inflate"):
        nih_chestxray14.load(data_dir=str(extracted), cache_dir=str(tmp_path / "cache"))


def test_streaming_reports_an_image_missing_from_the_archives(archives):
    missing = raw_list(archives, "test_list.txt")[-1]
    drop_member(archives, missing)
    streamed = datasets.load_dataset("nih_chestxray14", data_dir=str(archives), split="test", streaming=True)
    with pytest.raises(MissingImagesError, match=rf"1 of the \d+ images of the test split .*{missing}"):
        list(streamed)


# ---------------------------------------------------------------------------------------------------------------
# Images in no known layout: an error naming the layouts, never a download


@pytest.mark.parametrize("misplace", ["imgs folder", "images in data_dir", "archive misnamed"])
def test_images_in_no_known_layout_are_refused_and_nothing_is_downloaded(misplace, tmp_path, monkeypatch):
    release = make_release(tmp_path / "rel", layout="archives" if misplace == "archive misnamed" else "images", **REL)
    if misplace == "imgs folder":
        (release / "images").rename(release / "imgs")
    elif misplace == "images in data_dir":
        for png in (release / "images").iterdir():
            png.rename(release / png.name)
        (release / "images").rmdir()
    else:
        for archive in release.glob("images_*.tar.gz"):
            archive.rename(archive.with_name(archive.name.replace("images_00", "images_")))  # images_1.tar.gz
    monkeypatch.setattr(datasets.DownloadManager, "download", lambda *args: pytest.fail("must not download"))
    with pytest.raises(ImageSourceError, match=r"holds images in no layout this builder reads .*; accepted: "
                                               r"images_001\.tar\.gz .* images/\*\.png"):
        build(release, tmp_path / "cache")


# ---------------------------------------------------------------------------------------------------------------
# The cache: one per release however it is spelled, rebuilt when the release changes, clean after faults


def test_every_spelling_of_data_dir_shares_one_cache(tmp_path, monkeypatch):
    release = make_release(tmp_path / "syn", layout="images", **REL)
    (tmp_path / "dir").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    cache = tmp_path / "cache"
    spellings = ["syn", "./syn", "dir/../syn", str(release), "~/syn", Path("syn")]
    files = {str(spelling): build(spelling, cache)["test"].cache_files for spelling in spellings}
    assert len({repr(value) for value in files.values()}) == 1, files
    assert len(list((cache / "nih_chestxray14").iterdir())) == 1


def test_an_image_overwritten_in_place_is_built_again(extracted, tmp_path):
    victim = extracted / "images" / raw_list(extracted, "test_list.txt")[0]
    before, after = (encode_gray_png(np.full((64, 64), value, dtype=np.uint8), 0) for value in (10, 200))
    assert len(before) == len(after)
    victim.write_bytes(before)
    first = build(extracted, tmp_path / "cache").cast_column("image", datasets.Image(decode=False))["test"]
    assert {row["image_id"]: row["image"]["bytes"] for row in first}[victim.name] == before
    status = victim.stat()
    time.sleep(0.05)
    with open(victim, "r+b") as handle:  # in place: same inode, same size
        handle.write(after)
    os.utime(victim, ns=(status.st_atime_ns, status.st_mtime_ns))  # even with its old modification time
    second = build(extracted, tmp_path / "cache").cast_column("image", datasets.Image(decode=False))["test"]
    assert {row["image_id"]: row["image"]["bytes"] for row in second}[victim.name] == after


@pytest.mark.parametrize("fault", ["metadata (before generation)", "a PNG (during generation)"])
def test_a_failed_load_leaves_no_lock_folders(fault, archives, extracted, tmp_path):
    if fault.startswith("metadata"):
        release, error = archives, MissingMetadataError
        (release / "test_list.txt").unlink()
    else:
        release, error = extracted, (CorruptImageError, datasets.exceptions.DatasetGenerationError)
        (release / "images" / raw_list(release, "test_list.txt")[0]).write_bytes(b"")
    cache = tmp_path / "cache"
    with pytest.raises(error):
        build(release, cache)
    with pytest.raises(error):
        nih_chestxray14.load("resized-224", data_dir=str(release), cache_dir=str(cache))
    assert [path for path in cache.rglob("*") if path.is_dir()] == []


def test_a_failed_load_keeps_the_folders_of_finished_builds(archives, tmp_path):
    cache = tmp_path / "cache"
    finished = build(archives, cache)["test"].cache_files
    (archives / "test_list.txt").unlink()
    with pytest.raises(MissingMetadataError):
        build(archives, cache, validation_fraction=0.2)
    assert all(os.path.isfile(file["filename"]) for file in finished)
    assert len(list((cache / "nih_chestxray14").iterdir())) == 1


KILLED_BUILD = textwrap.dedent(
    """
    import os, sys, time
    import nih_chestxray14
    import nih_chestxray14.builder as builder

    data_dir, cache_dir, markers = sys.argv[1:4]
    resize = builder.resize_png

    def stuck(png, size, where):
        # Each worker announces itself on its first image, then stays busy until it is killed.
        open(os.path.join(markers, str(os.getpid())), "w").close()
        time.sleep(600)

    builder.resize_png = stuck
    nih_chestxray14.load("resized-224", data_dir=data_dir, cache_dir=cache_dir, num_proc=2)
    """
)


def descendants(pid: int):
    """Every process below ``pid``, read from /proc."""
    children = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int(entry.joinpath("stat").read_text().rsplit(")", 1)[1].split()[1])
        except OSError:
            continue
        children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        below = children.get(todo.pop(), [])
        found += below
        todo += below
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"  # an orphaned zombie has ended; only its exit status is left


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads worker states from /proc (Linux)")
def test_a_killed_two_process_build_takes_its_workers_along_and_the_rebuild_holds_only_itself(archives, tmp_path):
    cache, markers = tmp_path / "cache", tmp_path / "markers"
    markers.mkdir()
    parent = subprocess.Popen([sys.executable, "-c", KILLED_BUILD, str(archives), str(cache), str(markers)],
                              cwd=Path(__file__).parent, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while len(os.listdir(markers)) < 2:
            assert parent.poll() is None and time.monotonic() < deadline, "the workers never started"
            time.sleep(0.1)
        workers = [int(name) for name in os.listdir(markers)]
        processes = descendants(parent.pid)  # the workers and datasets' queue manager
        assert set(workers) <= set(processes)
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=30)
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in processes) and time.monotonic() < deadline:
        time.sleep(0.1)
    survivors = [pid for pid in processes if alive(pid)]
    for pid in survivors:
        os.kill(pid, signal.SIGKILL)
    assert not survivors, f"{len(survivors)} of the {len(processes)} processes of the build outlived it"
    assert list(cache.rglob("*.incomplete")), "the killed build left no half-written folder to clean up"

    ds = nih_chestxray14.load("resized-224", data_dir=str(archives), cache_dir=str(cache), num_proc=1)
    (folder,) = {os.path.dirname(file["filename"]) for split in ds.values() for file in split.cache_files}
    data_files = {os.path.basename(file["filename"]) for split in ds.values() for file in split.cache_files}
    assert set(os.listdir(folder)) == data_files | {"dataset_info.json", "LICENSE"}
    assert not list(cache.rglob("*.incomplete"))
    assert sum(len(split) for split in ds.values()) == 24
