"""Benchmark: ``export`` of a prepared config runs at disk speed, not image speed.

Builds the ``default`` config of a synthetic release of 1024 x 1024 X-ray-like PNGs (about 490 KB each, as NIH's),
and the ``resized-256`` config of a release whose images are all drawn apart (so that zstd cannot find one image
again in another), then times for each config, interleaved in the same run (the order rotates each round) and on
the same disk:

- **copy**: ``shutil.copyfile`` of the prepared Arrow cache files: the same bytes moved, nothing else (the bound);
- **export**: ``nih_chestxray14.publish.export_dataset_dict`` as ``export`` runs it: Arrow → Parquet shards, one
  writer thread per core, no content-defined chunking (CDC);
- **export with CDC**: the same with ``content_defined_chunking=True``, as ``push`` writes its shards;
- **1 thread**: each of those on one thread, to show what the threads add;
- **datasets to_parquet**: ``Dataset.to_parquet`` of each split, the writer ``push_to_hub`` uses, for reference;
- **images uncompressed** (``resized-256`` only): the export with zstd off, as it wrote before image columns got zstd;
- **decode** (for scale): Pillow decoding the same PNGs, which an export that re-encoded images would pay first.

For ``resized-256`` it then gives the size of the Parquet files against the Arrow cache, with and without zstd, and
the reader's side, interleaved over the same rounds: ``load_dataset("parquet", ...)`` into a fresh cache (what a
user of the published copy runs once), and reading the Parquet files with pyarrow and decoding every image (what a
streaming reader pays per pass).

Every contender fsyncs what it writes (``--no-sync``: page cache only). MB = 10^6 bytes of the prepared Arrow
files, the same count for every contender. Prints best, median and worst MB/s over ``--repeats`` rounds, the range
of the ratio to the copy of the same round, and the load average (the machine may be shared).

Then, unless ``--no-dedup``, what CDC buys: the train split with every image made unique is written once, then
again after an edit (a row deleted, rows inserted, rows appended); both files are cut into ~64 KB chunks by a
byte-level content-defined chunker like the one the Hub's Xet storage uses, and the table gives the share of the
edited file's bytes in chunks the first file lacks: what a re-upload would send.

Run: ``python benchmarks/export_speed.py [--images N] [--configs default resized-256] [--max-shard-size 50MB]
[--no-sync] [--no-dedup]``.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

import nih_chestxray14
import nih_chestxray14.parquet as parquet
from nih_chestxray14.parquet import compressible_columns, plan_shards, write_parquet, write_shards
from nih_chestxray14.publish import data_dir_for, export_dataset_dict, parse_shard_size
from nih_chestxray14.sample import encode_png, make_release, synthetic_xray

DISTINCT_IMAGES = 12  # drawing a 1024 px X-ray takes ~0.3 s: for `default`, draw a pool and reuse its bytes


def make_large_release(root: Path, num_images: int, *, distinct: bool = False) -> Path:
    """A release in the extracted ``images/`` layout whose PNGs are 1024 x 1024 X-ray-like images.

    ``distinct``: every image is drawn on its own (saved at zlib level 1 to save time); else a pool of
    ``DISTINCT_IMAGES`` is drawn and its bytes repeat across image ids."""
    make_release(root, num_patients=max(3, num_images // 2), images_per_patient=2, image_size=32, layout="images",
                 seed=1)
    pool = [] if distinct else [encode_png(synthetic_xray(1024, seed=i)[0]) for i in range(DISTINCT_IMAGES)]
    for index, png in enumerate(sorted((root / "images").glob("*.png"))):
        if distinct:
            png.write_bytes(encode_png(synthetic_xray(1024, seed=1000 + index)[0], compress_level=1))
        else:
            png.write_bytes(pool[index % len(pool)])
    return root


def sync_folder(folder: Path) -> None:
    """Flush the files under ``folder`` to the disk, so every contender pays for the disk, not the page cache."""
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb+") as handle:
                os.fsync(handle.fileno())


def timed(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def export_uncompressed(dataset_dict, out: Path, config: str, max_shard_bytes: int) -> None:
    """Export's shards with every image column left uncompressed, as export wrote them before zstd (no card)."""
    folder = out / data_dir_for(config)
    folder.mkdir(parents=True, exist_ok=True)
    write_shards([shard for split, dataset in dataset_dict.items()
                  for shard in plan_shards(dataset, folder, split, max_shard_bytes)])


def export_at_zstd_level(level: int, dataset_dict, out: Path, config: str, max_shard_bytes: int) -> None:
    """Export as ``export`` does, but compressing image columns at zstd ``level`` instead of IMAGE_ZSTD_LEVEL."""
    default_level = parquet.IMAGE_ZSTD_LEVEL
    parquet.IMAGE_ZSTD_LEVEL = level
    try:
        export_dataset_dict(dataset_dict, out, config, max_shard_bytes=max_shard_bytes)
    finally:
        parquet.IMAGE_ZSTD_LEVEL = default_level


def contenders(dataset_dict, config: str, arrow_files: list[Path], work: Path, max_shard_bytes: int,
               sync: bool) -> dict:
    """name → a function that writes into a fresh folder under ``work`` and returns the seconds it took."""

    def copy(out: Path) -> None:
        for source in arrow_files:
            shutil.copyfile(source, out / source.name)

    def export(**options):
        return lambda out: export_dataset_dict(dataset_dict, out, config, max_shard_bytes=max_shard_bytes,
                                               **options)

    def to_parquet(out: Path) -> None:
        for split, dataset in dataset_dict.items():
            dataset.to_parquet(str(out / f"{split}.parquet"))

    writers = {
        "copy (shutil.copyfile of the Arrow cache files)": copy,
        "**export** (default: no CDC, one thread per core)": export(),
        "export, content_defined_chunking=True (as push writes)": export(content_defined_chunking=True),
        "export, no CDC, num_threads=1": export(num_threads=1),
        "export, CDC, num_threads=1": export(content_defined_chunking=True, num_threads=1),
        "datasets Dataset.to_parquet (push_to_hub's writer; CDC, 1 thread)": to_parquet,
    }
    if compressible_columns(dataset_dict):
        writers["export, images uncompressed (before zstd; no CDC, one thread per core)"] = (
            lambda out: export_uncompressed(dataset_dict, out, config, max_shard_bytes))
        writers["export, zstd level 1 instead of 3 (no CDC, one thread per core)"] = (
            lambda out: export_at_zstd_level(1, dataset_dict, out, config, max_shard_bytes))

    def timed_writer(out: Path, write):
        def run() -> float:
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()
            start = time.perf_counter()
            write(out)
            if sync:
                sync_folder(out)
            return time.perf_counter() - start
        return run

    return {name: timed_writer(work / f"out{index}", write) for index, (name, write) in enumerate(writers.items())}


def arrow_files_of(dataset_dict) -> list[Path]:
    return sorted({Path(f["filename"]) for ds in dataset_dict.values() for f in ds.cache_files})


def speed_table(dataset_dict, config: str, work: Path, args) -> list[str]:
    """Time every contender, interleaved; return the Markdown lines of the speed table."""
    arrow_files = arrow_files_of(dataset_dict)
    file_bytes = sum(f.stat().st_size for f in arrow_files)
    runs = contenders(dataset_dict, config, arrow_files, work, parse_shard_size(args.max_shard_size), args.sync)
    names = list(runs)
    load_before = os.getloadavg()
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(args.repeats):
        shift = round_index % len(names)  # rotate the order: no contender always runs after the same one
        for name in names[shift:] + names[:shift]:
            times[name].append(runs[name]())
    load_after = os.getloadavg()
    shards = list((work / "out1").rglob("*.parquet"))

    sample = dataset_dict["train"].with_format("arrow")[:50]["image"].to_pylist()
    png_bytes = sum(len(image["bytes"]) for image in sample)
    decode_time = timed(lambda: [np.asarray(Image.open(io.BytesIO(image["bytes"]))) for image in sample])

    copy_times = times[names[0]]
    lines = [f"`{config}`: {sum(len(ds) for ds in dataset_dict.values())} images, {file_bytes / 1e6:.0f} MB of "
             f"Arrow files → "
             f"{len(shards)} Parquet shards ({sum(p.stat().st_size for p in shards) / 1e6:.0f} MB); "
             f"{args.repeats} interleaved rounds, "
             f"{'outputs fsynced to disk' if args.sync else 'page cache only (no fsync)'}; {os.cpu_count()} cores, "
             f"load average {load_before[0]:.2f} before, {load_after[0]:.2f} after",
             "",
             "| contender | best MB/s | median MB/s | worst MB/s | ratio to copy (same round) |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for name in names:
        rates = sorted(file_bytes / seconds / 1e6 for seconds in times[name])
        ratios = sorted(copy / seconds for copy, seconds in zip(copy_times, times[name]))
        lines.append(f"| {name} | {rates[-1]:,.0f} | {statistics.median(rates):,.0f} | {rates[0]:,.0f} "
                     f"| {ratios[0]:.2f}–{ratios[-1]:.2f} |")
    copy_median = file_bytes / statistics.median(copy_times) / 1e6
    decode_mbs = png_bytes / decode_time / 1e6
    lines.append(f"| decode with Pillow (MB of PNG; what re-encoding would pay first) | {decode_mbs:,.0f} | | "
                 f"| {decode_mbs / copy_median:.2f} (to the median copy) |")
    return lines


def parquet_files(folder: Path) -> dict[str, list[str]]:
    """split → its shards under ``folder``."""
    files: dict[str, list[str]] = {}
    for path in sorted(folder.rglob("*.parquet")):
        files.setdefault(path.name.split("-")[0], []).append(str(path))
    return files


def reader_table(dataset_dict, config: str, work: Path, args) -> list[str]:
    """Sizes of the Parquet export with and without zstd against the Arrow cache, and what reading them costs."""
    max_shard_bytes = parse_shard_size(args.max_shard_size)
    arrow_bytes = sum(f.stat().st_size for f in arrow_files_of(dataset_dict))
    exports = {f"zstd level {parquet.IMAGE_ZSTD_LEVEL} (export now)": work / "read-zstd",
               "zstd level 1": work / "read-zstd-1", "uncompressed (before)": work / "read-stored"}
    for folder in exports.values():
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
    export_dataset_dict(dataset_dict, work / "read-zstd", config, max_shard_bytes=max_shard_bytes)
    export_at_zstd_level(1, dataset_dict, work / "read-zstd-1", config, max_shard_bytes)
    export_uncompressed(dataset_dict, work / "read-stored", config, max_shard_bytes)
    num_images = sum(len(ds) for ds in dataset_dict.values())

    def load(folder: Path) -> float:
        cache = work / "read-cache"
        shutil.rmtree(cache, ignore_errors=True)
        start = time.perf_counter()
        datasets.load_dataset("parquet", data_files=parquet_files(folder), cache_dir=str(cache))
        return time.perf_counter() - start

    def read_and_decode(folder: Path) -> float:
        start = time.perf_counter()
        for files in parquet_files(folder).values():
            for file in files:
                for png in pq.read_table(file, columns=["image"])["image"].combine_chunks().field("bytes"):
                    Image.open(io.BytesIO(png.as_buffer())).load()
        return time.perf_counter() - start

    times = {(name, kind): [] for name in exports for kind in ("load", "read")}
    for round_index in range(args.repeats):
        shift = round_index % len(exports)
        order = list(exports)[shift:] + list(exports)[:shift]
        for name in order:
            times[name, "load"].append(load(exports[name]))
            times[name, "read"].append(read_and_decode(exports[name]))
    lines = [f"`{config}`: {num_images} images, Arrow cache {arrow_bytes / 1e6:.1f} MB; reader timings are "
             f"medians of {args.repeats} interleaved rounds",
             "",
             "| Parquet images | size MB | size / Arrow cache | load_dataset into a fresh cache, s | "
             "read Parquet + decode every image, images/s |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for name, folder in exports.items():
        size = sum(p.stat().st_size for p in folder.rglob("*.parquet"))
        lines.append(f"| {name} | {size / 1e6:.1f} | {size / arrow_bytes:.2f} | "
                     f"{statistics.median(times[name, 'load']):.2f} | "
                     f"{num_images / statistics.median(times[name, 'read']):,.0f} |")
    return lines


_GEAR = np.random.default_rng(0).integers(0, 2**32, 256, dtype=np.uint64).astype(np.uint32)


def chunk_digests(data: bytes, mask_bits: int = 16, min_size: int = 8 << 10,
                  max_size: int = 128 << 10) -> list[tuple[bytes, int]]:
    """Cut ``data`` where a rolling gear hash's low ``mask_bits`` bits are zero (64 KB chunks on average, 8 KB to
    128 KB): a byte-level content-defined chunker of the kind Xet storage deduplicates with. Returns
    (SHA-1, length) per chunk. The low k bits of a gear hash depend on the last k bytes only, hence the k shifts."""
    values = _GEAR[np.frombuffer(data, dtype=np.uint8)]
    rolling = np.zeros(len(values), dtype=np.uint32)
    for shift in range(mask_bits):
        rolling[shift:] += values[:len(values) - shift] << np.uint32(shift)
    candidates = np.flatnonzero((rolling & np.uint32((1 << mask_bits) - 1)) == 0) + 1
    chunks, start = [], 0
    while start < len(data):
        index = np.searchsorted(candidates, start + min_size)
        end = min(int(candidates[index]) if index < len(candidates) else len(data), start + max_size, len(data))
        chunks.append((hashlib.sha1(data[start:end]).digest(), end - start))
        start = end
    return chunks


def dedup_table(dataset_dict, work: Path) -> list[str]:
    """Share of a re-upload's bytes that a chunk store holding the first upload lacks, with and without CDC."""
    train = dataset_dict["train"]
    table = train.with_format("arrow")[:]
    rng = np.random.default_rng(0)  # unique image bytes: the synthetic release reuses a small pool of PNGs
    images = table["image"].combine_chunks()
    unique = pa.array([rng.bytes(len(png)) for png in images.field("bytes").to_pylist()], pa.binary())
    table = table.set_column(0, "image", pa.StructArray.from_arrays([unique, images.field("path")],
                                                                    fields=list(images.type)))
    n = table.num_rows
    edits = {
        "delete 1 row near the start": pa.concat_tables([table.slice(0, 10), table.slice(11)]),
        f"insert 5 rows (copies) at row {n // 5}": pa.concat_tables(
            [table.slice(0, n // 5), table.slice(n // 2, 5), table.slice(n // 5)]),
        "append 20 rows (copies)": pa.concat_tables([table, table.slice(0, 20)]),
    }
    row_group_size = plan_shards(train, work, "train", 10**12)[0].row_group_size
    lines = [f"train split, {n} rows with unique image bytes, {table.nbytes / 1e6:.0f} MB, one shard",
             "",
             "| edit, then re-upload | new bytes, no CDC (export) | new bytes, CDC (push) |",
             "| --- | ---: | ---: |"]
    results: dict[str, list[str]] = {edit: [] for edit in edits}
    for chunking in (False, True):
        def parquet_bytes(edited: pa.Table) -> bytes:
            path = work / "dedup.parquet"
            write_parquet(path, edited, train.features, row_group_size=row_group_size,
                          content_defined_chunking=chunking)
            return path.read_bytes()

        stored = {digest for digest, _ in chunk_digests(parquet_bytes(table))}
        for edit, edited in edits.items():
            data = parquet_bytes(edited)
            new = sum(size for digest, size in chunk_digests(data) if digest not in stored)
            results[edit].append(f"{new / 1e6:.1f} MB ({new / len(data):.1%})")
    lines += [f"| {edit} | {' | '.join(cells)} |" for edit, cells in results.items()]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=400, help="images in the synthetic release (default: 400)")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds of every contender (default: 5)")
    parser.add_argument("--max-shard-size", default="50MB",
                        help="export's shard size (default: 50MB, so this small release has several shards as "
                             "the full 45 GB default config has at 500MB)")
    parser.add_argument("--configs", nargs="+", default=["default", "resized-256"],
                        choices=tuple(nih_chestxray14.NIHChestXray14.builder_configs),
                        help="configs to export (default: default resized-256)")
    parser.add_argument("--no-sync", dest="sync", action="store_false",
                        help="do not fsync the outputs (then every contender only reaches the page cache)")
    parser.add_argument("--no-dedup", dest="dedup", action="store_false",
                        help="skip the estimate of what content-defined chunking saves on a re-upload")
    args = parser.parse_args()
    parse_shard_size(args.max_shard_size)
    datasets.disable_progress_bars()

    with tempfile.TemporaryDirectory(prefix="export-speed-") as work:
        work = Path(work)
        for config in args.configs:
            distinct = config != "default"  # resized images must differ, or zstd finds repeats across rows
            release = work / ("release-distinct" if distinct else "release")
            if not release.exists():
                make_large_release(release, args.images, distinct=distinct)
            dataset_dict = nih_chestxray14.load(config, data_dir=str(release), cache_dir=str(work / "cache"))
            print("\n".join(speed_table(dataset_dict, config, work, args)), end="\n\n")
            if compressible_columns(dataset_dict):
                print("\n".join(reader_table(dataset_dict, config, work, args)), end="\n\n")
            if args.dedup and config == "default":
                print("\n".join(dedup_table(dataset_dict, work)), end="\n\n")


if __name__ == "__main__":
    main()
