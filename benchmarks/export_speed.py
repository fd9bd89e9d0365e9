"""Benchmark: ``export`` of a prepared config runs at disk speed, not image speed.

Builds the ``default`` config of a synthetic release of 1024 x 1024 X-ray-like PNGs (about 450 KB each, as NIH's),
then, side by side in the same run and on the same disk:

- **export**: the prepared Arrow tables → Parquet shards (``nih_chestxray14.publish.export_dataset_dict``);
- **copy**: ``shutil.copyfile`` of the same Arrow cache files (the bound: moving the bytes, nothing else);
- **decode** (for scale): Pillow decoding the same PNGs, which is what an export that re-encoded images would pay.

Both contenders fsync what they write (``--no-sync`` to measure the page cache only). Prints MB/s (MB = 10^6
bytes of Arrow data), best of ``--repeats`` interleaved runs, and the ratios.

Run: ``python benchmarks/export_speed.py [--images N]``.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

import nih_chestxray14
from nih_chestxray14.publish import export_dataset_dict
from nih_chestxray14.sample import encode_png, make_release, synthetic_xray

DISTINCT_IMAGES = 12  # drawing a 1024 px X-ray takes ~0.5 s: draw a pool, reuse its bytes across image ids


def make_large_release(root: Path, num_images: int) -> Path:
    """A release in the extracted ``images/`` layout whose PNGs are 1024 x 1024 X-ray-like images."""
    make_release(root, num_patients=max(3, num_images // 2), images_per_patient=2, image_size=32, layout="images",
                 seed=1)
    pool = [encode_png(synthetic_xray(1024, seed=i)[0]) for i in range(DISTINCT_IMAGES)]
    for index, png in enumerate(sorted((root / "images").glob("*.png"))):
        png.write_bytes(pool[index % len(pool)])
    return root


def sync_folder(folder: Path) -> None:
    """Flush the files written under ``folder`` to the disk, so both contenders pay for the disk, not the page cache."""
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb+") as handle:
                os.fsync(handle.fileno())


def timed(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=400, help="images in the synthetic release (default: 400)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats of each contender (default: 5)")
    parser.add_argument("--no-sync", dest="sync", action="store_false",
                        help="do not fsync the outputs (then both contenders only reach the page cache)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="export-speed-") as work:
        work = Path(work)
        release = make_large_release(work / "release", args.images)
        dataset_dict = nih_chestxray14.load("default", data_dir=str(release), cache_dir=str(work / "cache"))
        arrow_files = sorted({Path(f["filename"]) for ds in dataset_dict.values() for f in ds.cache_files})
        arrow_bytes = sum(ds.data.nbytes for ds in dataset_dict.values())
        file_bytes = sum(f.stat().st_size for f in arrow_files)
        num_images = sum(len(ds) for ds in dataset_dict.values())

        def export_once():
            out = work / "export"
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()
            export_dataset_dict(dataset_dict, out, "default", max_shard_bytes=500 * 10**6)
            if args.sync:
                sync_folder(out)

        def copy_once():
            out = work / "copy"
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()
            for source in arrow_files:
                shutil.copyfile(source, out / source.name)
            if args.sync:
                sync_folder(out)

        export_times, copy_times = [], []
        for _ in range(args.repeats):  # interleaved, so both see the same disk and page-cache state
            export_times.append(timed(export_once))
            copy_times.append(timed(copy_once))
        parquet_bytes = sum(p.stat().st_size for p in (work / "export").rglob("*.parquet"))

        sample = dataset_dict["train"].with_format("arrow")[:50]["image"].to_pylist()
        png_bytes = sum(len(image["bytes"]) for image in sample)
        decode_time = timed(lambda: [np.asarray(Image.open(io.BytesIO(image["bytes"]))) for image in sample])

    export_s, copy_s = min(export_times), min(copy_times)
    export_mbs = arrow_bytes / export_s / 1e6
    copy_mbs = file_bytes / copy_s / 1e6
    decode_mbs = png_bytes / decode_time / 1e6
    print(f"{num_images} images, {arrow_bytes / 1e6:.0f} MB of Arrow data, {parquet_bytes / 1e6:.0f} MB of Parquet; "
          f"best of {args.repeats} runs each, interleaved, "
          f"{'outputs fsynced to disk' if args.sync else 'page cache only (no fsync)'}")
    print("| contender | MB/s | ratio to copy |")
    print("| --- | ---: | ---: |")
    print(f"| copy (shutil.copyfile of the Arrow cache files) | {copy_mbs:,.0f} | 1.00 |")
    print(f"| export (Arrow → Parquet, no decode) | {export_mbs:,.0f} | {export_mbs / copy_mbs:.2f} |")
    print(f"| decode with Pillow (what re-encoding would pay first) | {decode_mbs:,.0f} "
          f"| {decode_mbs / copy_mbs:.2f} |")


if __name__ == "__main__":
    main()
