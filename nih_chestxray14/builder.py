"""The ``datasets`` builder for NIH ChestX-ray14: configs, features, the official patient-wise splits, and examples."""

from __future__ import annotations

import hashlib
import logging
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import datasets

from .archives import NIH_ARCHIVE_URLS
from .errors import ImageSourceError, MissingImagesError
from .metadata import NIH_RELEASE_PAGE, read_release_metadata
from .pixels import check_png, resize_png
from .schema import FEATURES, make_example
from .sources import ImageSource, iter_archive_images, locate_images, release_fingerprint
from .spill import SpillWriter, read_spill
from .splits import SPLITS, assign_splits, check_validation_fraction

logger = logging.getLogger(__name__)

DATASET_NAME = "nih_chestxray14"

DATA_FILES_REFUSED = (
    "nih_chestxray14 reads NIH's release from data_dir, not data_files: pass data_dir=<folder with "
    "Data_Entry_2017_v2020.csv, train_val_list.txt, test_list.txt and the images>"
)

_HOMEPAGE = NIH_RELEASE_PAGE

_LICENSE = (
    "NIH's terms: the use of the data set is unrestricted, provided you link to NIH's download site, acknowledge the "
    "NIH Clinical Center and cite Wang et al., CVPR 2017."
)

_CITATION = """\
@inproceedings{wang2017chestxray8,
  title     = {ChestX-ray8: Hospital-Scale Chest X-ray Database and Benchmarks on Weakly-Supervised Classification
               and Localization of Common Thorax Diseases},
  author    = {Wang, Xiaosong and Peng, Yifan and Lu, Le and Lu, Zhiyong and Bagheri, Mohammadhadi and
               Summers, Ronald M.},
  booktitle = {IEEE Conference on Computer Vision and Pattern Recognition (CVPR)},
  pages     = {3462--3471},
  year      = {2017}
}
"""

_DESCRIPTION = """\
NIH ChestX-ray14: 112,120 frontal chest X-rays (1024 x 1024, 8-bit PNG) of 30,805 patients, labelled with 14 findings
mined from the radiology reports, on NIH's official patient-wise train_val/test split. Validation is a deterministic
10% of the train_val patients. Labels are multi-hot in the order of NIH's paper and CheXNet; "No Finding" is the
all-zero vector.
"""

_VERSION = datasets.Version("1.0.0")

_CONFIG_PARAMETERS = ("image_size", "validation_fraction", "allow_missing_images")

_SOURCE_MODULES = ("archives", "builder", "errors", "labels", "metadata", "pixels", "schema", "sources", "spill", "splits")


def code_hash() -> str:
    """SHA-256 of the modules that decide the generated data; part of the cache path, so code changes rebuild."""
    digest = hashlib.sha256()
    package = Path(__file__).resolve().parent
    for module in _SOURCE_MODULES:
        digest.update((package / f"{module}.py").read_bytes())
    return digest.hexdigest()


@dataclass
class NIHChestXray14Config(datasets.BuilderConfig):
    """A builder config.

    Attributes:
        image_size: ``None`` passes NIH's PNG bytes through untouched; an integer resizes the shorter side to it once,
            at build time, with area interpolation, and stores it as lossless 8-bit grayscale PNG whose deflate blocks
            are uncompressed, so that every epoch decodes it fast (see :mod:`.pixels`).
        validation_fraction: share of train_val *patients* in validation, in ``[0, 1)`` (rule: :mod:`.splits`); with
            0 there is no validation split.
        allow_missing_images: build from a partial download, skipping (and logging the count of) listed images that
            are not found; by default a missing image is an error.
        release_fingerprint: set by the builder from ``data_dir`` (names, sizes and times of its files and image
            folders) so that the cache key changes when the release does; not meant to be passed.
    """

    image_size: Optional[int] = None
    validation_fraction: float = 0.1
    allow_missing_images: bool = False
    release_fingerprint: Optional[str] = None


class NIHChestXray14(datasets.GeneratorBasedBuilder):
    """NIH ChestX-ray14 on its official patient-wise split, with multi-hot labels in :data:`~.labels.LABELS` order.

    ``data_dir`` is a folder with NIH's metadata (``Data_Entry_2017_v2020.csv`` or ``Data_Entry_2017.csv``,
    ``train_val_list.txt``, ``test_list.txt``, optionally ``BBox_List_2017.csv``) and, if already downloaded, the
    images in any layout of :mod:`.sources`; without images, NIH's 12 archives are downloaded.
    """

    VERSION = _VERSION
    BUILDER_CONFIG_CLASS = NIHChestXray14Config
    BUILDER_CONFIGS = [
        NIHChestXray14Config(name="default", version=_VERSION, description="NIH's 1024 x 1024 PNGs, bytes untouched."),
    ] + [
        NIHChestXray14Config(
            name=f"resized-{size}",
            version=_VERSION,
            image_size=size,
            description=f"Shorter side resized to {size} px once, by area averaging; lossless PNG.",
        )
        for size in (224, 256, 512)
    ]
    DEFAULT_CONFIG_NAME = "default"
    DEFAULT_WRITER_BATCH_SIZE = 100  # ~45 MB of original PNGs per Arrow record batch

    def __init__(self, *args, data_files=None, hash: Optional[str] = None, **kwargs):
        if data_files:
            raise ValueError(DATA_FILES_REFUSED)
        # The same cache path whether reached through load_dataset or built directly, and whether a parameter is
        # left out or passed at its config's value (datasets keys the cache on the keyword arguments given).
        kwargs["dataset_name"] = kwargs.get("dataset_name") or DATASET_NAME
        config = self.builder_configs.get(kwargs.get("config_name") or self.DEFAULT_CONFIG_NAME)
        for parameter in _CONFIG_PARAMETERS:
            if config is not None and parameter in kwargs and kwargs[parameter] == getattr(config, parameter):
                del kwargs[parameter]
        if kwargs.get("data_dir") is not None:
            kwargs.setdefault("release_fingerprint", release_fingerprint(os.fspath(kwargs["data_dir"])))
        super().__init__(*args, hash=hash or code_hash(), **kwargs)
        self._expected_counts: Dict[str, int] = {}
        self._num_proc: Optional[int] = None
        self._spill_dir: Optional[str] = None  # set while a resized config is prepared from archives (not streaming)

    def _info(self) -> datasets.DatasetInfo:
        return datasets.DatasetInfo(
            description=_DESCRIPTION,
            features=FEATURES,
            homepage=_HOMEPAGE,
            license=_LICENSE,
            citation=_CITATION,
        )

    def _make_split_generators_kwargs(self, prepare_split_kwargs):
        # num_proc decides how many ways each archive is shared when there are fewer archives than processes.
        return {"num_proc": prepare_split_kwargs.get("num_proc")}

    def _split_generators(self, dl_manager, num_proc: Optional[int] = None) -> List[datasets.SplitGenerator]:
        config = self.config
        fraction = check_validation_fraction(config.validation_fraction)
        if config.image_size is not None and (not isinstance(config.image_size, int) or config.image_size < 1):
            raise ValueError(f"image_size must be a positive number of pixels or None, got {config.image_size!r}")
        release = read_release_metadata(config.data_dir)
        patient_of_image = {name: entry.patient_id for name, entry in release.entries.items()}
        assignment = assign_splits(
            patient_of_image,
            release.train_val,
            release.test,
            fraction,
            train_val_source=release.train_val_list,
            test_source=release.test_list,
        )  # raises SplitError if a patient would span two splits

        source = locate_images(config.data_dir)
        if source is None:
            logger.info("%s has no images: downloading NIH's %d archives", config.data_dir, len(NIH_ARCHIVE_URLS))
            source = ImageSource("download", archives=tuple(dl_manager.download(list(NIH_ARCHIVE_URLS))))
        self._num_proc = num_proc
        spill_dir = self._spill_dir if source.layout != "extracted" else None
        generators = []
        for split in SPLITS:
            names = assignment.images(split)
            if not names:  # e.g. validation_fraction=0: datasets cannot read back an empty split
                logger.info("the %s split is empty and is left out", split)
                continue
            # The first split's pass over the archives also prepares the later splits' images (see .spill).
            spill_for = {} if generators or spill_dir is None else {
                name: other for other in SPLITS if other != split for name in assignment.images(other)
            }
            if source.layout == "extracted":
                names = self._present(names, source, split)
                shards = [(source.files[name], 0, 1) for name in names]
                archives: Tuple[object, ...] = ()
            else:
                parts = max(1, math.ceil((num_proc or 1) / len(source.archives)))
                shards = [(index, part, parts) for index in range(len(source.archives)) for part in range(parts)]
                archives = tuple((path, dl_manager.iter_archive(path)) for path in source.archives)
            self._expected_counts[split] = len(names)
            generators.append(
                datasets.SplitGenerator(
                    name=split,
                    gen_kwargs={
                        "shards": shards,
                        "archives": archives,
                        "entries": {name: release.entries[name] for name in names},
                        "boxes": {name: release.boxes[name] for name in names if name in release.boxes},
                        "split": split,
                        "num_shards": len(shards),
                        "source": source.describe(),
                        "spill_dir": spill_dir,
                        "spill_for": spill_for,
                    },
                )
            )
        return generators

    def _present(self, names: Sequence[str], source: ImageSource, split: str) -> List[str]:
        """The names whose PNG exists; raise (or log, with ``allow_missing_images``) for the others."""
        missing = [name for name in names if name not in source.files]
        if missing:
            self._report_missing(split, len(missing), len(names), source.describe(), missing)
        return [name for name in names if name in source.files]

    def _report_missing(self, split: str, count: int, listed: int, where: str, names: Sequence[str] = ()) -> None:
        if names:
            shown = ", ".join(sorted(names)[:5]) + (" …" if len(names) > 5 else "")
        else:
            shown = "build with num_proc=1 to list them"
        if not self.config.allow_missing_images:
            raise MissingImagesError(
                f"{count} of the {listed} images of the {split} split are not in {where} ({shown}); "
                "complete the download, or build from what you have with allow_missing_images=True"
            )
        logger.warning("allow_missing_images: skipped %d of the %d images of the %s split (%s)",
                       count, listed, split, shown)

    def _generate_examples(
        self, shards, archives, entries, boxes, split, num_shards, source, spill_dir, spill_for
    ) -> Iterator:
        seen = set()
        for shard in shards:
            for name, png in self._shard_images(shard, archives, entries, split, spill_dir, spill_for):
                if name in seen:
                    raise ImageSourceError(f"{name} occurs twice in {source}; keep one copy")
                seen.add(name)
                yield name, make_example(entries[name], png, boxes.get(name, ()))
        if len(shards) == num_shards and archives:  # this job read every archive: check for missing images here
            missing = sorted(set(entries) - seen)
            if missing:
                self._report_missing(split, len(missing), len(entries), source, missing)

    def _shard_images(self, shard, archives, entries, split, spill_dir, spill_for) -> Iterator[Tuple[str, bytes]]:
        """``(name, PNG as stored)`` for this split's images in one shard, from the spill or the source."""
        spilled = read_spill(spill_dir, split, shard)
        if spilled is not None:
            yield from spilled
            return
        writer = SpillWriter(spill_dir, shard, set(spill_for.values())) if spill_for else None
        complete = False
        try:
            for name, png, where in self._read_shard(shard, archives, entries, spill_for):
                png = self._pixels(png, where)
                if name in entries:
                    yield name, png
                else:
                    writer.write(spill_for[name], name, png)
            complete = True
        finally:
            if writer is not None:
                writer.close(complete)

    def _pixels(self, png: bytes, where: str) -> bytes:
        """The PNG as stored by this config: checked and untouched, or resized once."""
        if self.config.image_size is None:
            check_png(png, where)
            return png
        return resize_png(png, self.config.image_size, where)

    @staticmethod
    def _read_shard(shard, archives, entries, spill_for) -> Iterator[Tuple[str, bytes, str]]:
        location, part, parts = shard
        if not archives:
            with open(location, "rb") as handle:
                yield os.path.basename(location), handle.read(), location
            return
        path, members = archives[location]
        wanted = entries.keys() | spill_for.keys() if spill_for else entries
        yield from iter_archive_images(members, path, wanted, part, parts)

    def _download_and_prepare(self, dl_manager, verification_mode, **prepare_split_kwargs):
        # _output_dir is the build's incomplete directory here; spilled images must not outlive the build.
        if self.config.image_size is not None and os.path.isdir(self._output_dir):
            self._spill_dir = os.path.join(self._output_dir, "spill")
        try:
            super()._download_and_prepare(dl_manager, verification_mode, **prepare_split_kwargs)
        finally:
            if self._spill_dir is not None:
                shutil.rmtree(self._spill_dir, ignore_errors=True)
                self._spill_dir = None
        # With several processes, no single job saw every archive: compare the counts instead.
        for split, expected in self._expected_counts.items():
            found = self.info.splits[split].num_examples
            if found > expected:
                raise ImageSourceError(f"the {split} split got {found} images for {expected} listed: an image occurs "
                                       "in two archives or folders; keep one copy")
            if found < expected and (self._num_proc or 1) > 1:
                self._report_missing(split, expected - found, expected, "the archives")
