"""Build throughput of the NIH ChestX-ray14 builder, as ratios to decoding the same PNGs with Pillow.

Writes a synthetic release of 1024 x 1024 X-ray-like PNGs (about 475 KB each, like NIH's) in NIH's archive layout,
then measures, in one run on one machine:

- the bound: decoding every PNG with Pillow from memory, in one process;
- ``default`` and ``resized-256`` builds with ``num_proc=1``, and the ratio of each to the bound;
- the same builds with ``num_proc=2``, and their speed-up over one process (wall clock);
- the cost of the PNG integrity check of ``default`` (CRC of every chunk) next to a full decode.

Per-core throughput is images per CPU-second (this process and its children, from ``resource.getrusage``), so it
stays meaningful when other work shares the machine; wall-clock images/s are printed beside it. The speed-up of
``num_proc=2`` can only be measured by the wall clock, so run the benchmark on an otherwise idle machine (the load
average is printed).

Targets: each build >= 0.8x the decode bound per core; ``num_proc=2`` >= 1.7x one process.

    python benchmarks/build_throughput.py [--images 600] [--unique 16] [--archives 4] [--repeats 2]
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import shutil
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Dict, List

import datasets
from PIL import Image

import nih_chestxray14
from nih_chestxray14.pixels import check_png
from nih_chestxray14.archives import archive_name
from nih_chestxray14.sample import encode_png, make_release, synthetic_xray

CONFIGS = ("default", "resized-256")


class Timer:
    """Wall-clock and CPU seconds (this process plus finished children) of a block."""

    @staticmethod
    def _cpu() -> float:
        own = resource.getrusage(resource.RUSAGE_SELF)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime

    def __enter__(self) -> "Timer":
        self.wall, self.cpu = time.perf_counter(), self._cpu()
        return self

    def __exit__(self, *exc) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, self._cpu() - self.cpu


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=600, help="images in the release")
    parser.add_argument("--unique", type=int, default=16, help="distinct synthetic PNGs, repeated under all names")
    parser.add_argument("--archives", type=int, default=4, help="number of images_0NN.tar.gz archives")
    parser.add_argument("--repeats", type=int, default=2, help="timed repetitions; the best is reported")
    parser.add_argument("--workdir", type=Path, default=None, help="scratch folder (default: a temporary one)")
    return parser.parse_args()


def write_release(root: Path, images: int, unique: int, archives: int) -> List[bytes]:
    """A release whose metadata comes from make_release and whose pixels are full-size synthetic X-rays."""
    patients = max(3, images // 3)
    make_release(root, num_patients=patients, images_per_patient=3, image_size=16, layout="images")
    pngs = [encode_png(synthetic_xray(1024, seed=index, findings=())[0]) for index in range(unique)]
    names = sorted(path.name for path in (root / "images").iterdir())
    shutil.rmtree(root / "images")
    per_archive = -(-len(names) // archives)
    payloads = []
    for number in range(archives):
        chunk = names[number * per_archive:(number + 1) * per_archive]
        with tarfile.open(root / archive_name(number + 1), "w:gz", compresslevel=1) as archive:
            for offset, name in enumerate(chunk):
                data = pngs[(number * per_archive + offset) % unique]
                info = tarfile.TarInfo(f"images/{name}")
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
                payloads.append(data)
    return payloads


def decode_bound(payloads: List[bytes], repeats: int) -> Timer:
    """Timer of Image.open(...).load() on every PNG, one process; the best of ``repeats``."""
    best = None
    for _ in range(repeats):
        with Timer() as timer:
            for data in payloads:
                with Image.open(io.BytesIO(data)) as image:
                    image.load()
        best = timer if best is None or timer.cpu < best.cpu else best
    return best


def check_cost(payloads: List[bytes]) -> float:
    """CPU seconds per image of the default config's PNG integrity check."""
    with Timer() as timer:
        for data in payloads:
            check_png(data, "benchmark")
    return timer.cpu / len(payloads)


def build(data_dir: Path, scratch: Path, config: str, num_proc: int, repeats: int) -> Timer:
    """Timer of a full build (metadata, archives, Arrow cache) into a fresh cache; the best of ``repeats``."""
    best = None
    for attempt in range(repeats):
        cache = scratch / f"cache-{config}-{num_proc}-{attempt}"
        with Timer() as timer:
            dataset = nih_chestxray14.load(config, data_dir=str(data_dir), cache_dir=str(cache), num_proc=num_proc)
        del dataset
        shutil.rmtree(cache)
        best = timer if best is None or timer.wall < best.wall else best
    return best


def main() -> None:
    args = parse_args()
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    with tempfile.TemporaryDirectory(dir=args.workdir) as scratch_name:
        scratch = Path(scratch_name)
        data_dir = scratch / "nih"
        payloads = write_release(data_dir, args.images, args.unique, args.archives)
        mean_kb = sum(map(len, payloads)) / len(payloads) / 1024

        bound = decode_bound(payloads, args.repeats)
        crc_seconds = check_cost(payloads)
        timers: Dict[tuple, Timer] = {}
        for config in CONFIGS:
            for num_proc in (1, 2):
                timers[config, num_proc] = build(data_dir, scratch, config, num_proc, args.repeats)

    count = len(payloads)
    decode_per_cpu = count / bound.cpu
    print(f"release: {count} PNGs of 1024 x 1024, {mean_kb:.0f} KB on average, in {args.archives} archives; "
          f"{os.cpu_count()} CPU cores; load average {os.getloadavg()[0]:.1f}")
    print(f"decode bound (Pillow, 1 process): {decode_per_cpu:.1f} images/CPU-s ({count / bound.wall:.1f} images/s)")
    print(f"PNG check of default: {crc_seconds * 1e3:.2f} ms/image = {crc_seconds * decode_per_cpu:.3f} of a decode")
    print(f"{'config':<12} {'images/CPU-s':>12} {'x bound':>8} {'images/s, 1 proc':>17} {'images/s, 2 procs':>18} "
          f"{'speed-up':>9} {'CPU-s 2 procs / 1':>18}")
    for config in CONFIGS:
        one, two = timers[config, 1], timers[config, 2]
        per_core = count / one.cpu
        print(f"{config:<12} {per_core:>12.1f} {per_core / decode_per_cpu:>8.2f} {count / one.wall:>17.1f} "
              f"{count / two.wall:>18.1f} {one.wall / two.wall:>9.2f} {two.cpu / one.cpu:>18.2f}")


if __name__ == "__main__":
    main()
