"""The ``datasets`` builder for NIH ChestX-ray14: configs, features, the patient-wise splits, and examples.

The splits are NIH's official ones (:mod:`.splits`) or the user's own lists (``split_lists``, :mod:`.split_lists`);
either way the split is recorded in ``DatasetInfo.description`` (:mod:`.split_record`).

``_split_generators`` checks everything that can be checked before anything is written, so that those errors reach
``load_dataset`` callers as themselves: the metadata (:mod:`.metadata`), the split lists and patients
(:mod:`.splits`), where the images are (:mod:`.sources`) and that every listed image is there (for archives, by
reading their member headers once). Only the PNGs' own bytes are checked while examples are generated
(:mod:`.pixels`): a damaged PNG is reported by ``load_dataset`` as ``DatasetGenerationError`` with this package's
error as its cause (``nih_chestxray14.load()`` and the command line raise it as itself), and so is an archive that
changes between the check and the read. Streaming reads the archives once, so it checks for missing images at the
end of each split instead.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence

import datasets

from .archives import NIH_ARCHIVE_URLS
from .datasets_compat import discard_stale_build, remove_lock_folders
from .labels import multi_hot
from .metadata import NIH_RELEASE_PAGE, read_release_metadata
from .pixels import check_png, resize_png
from .schema import FEATURES, make_example
from .sources import (
    ImageSource,
    index_archives,
    locate_images,
    present_images,
    read_archives,
    read_files,
    release_fingerprint,
)
from .split_lists import assign_listed_splits, count_label_mismatches, list_overlaps, read_split_lists
from .split_lists import split_lists_fingerprint
from .split_record import describe_split, split_line
from .splits import SPLITS, SplitAssignment, assign_splits, check_validation_fraction
from .workers import children_end_with_this_process, end_with_parent

logger = logging.getLogger(__name__)

DATASET_NAME = "nih_chestxray14"
BUILDER_MODULE = __name__

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
mined from the radiology reports. Labels are multi-hot in the order of NIH's paper and CheXNet; "No Finding" is the
all-zero vector. No patient is in two splits unless the line below says so; it names the split this copy was built on.
"""

CITATION = _CITATION
"""The BibTeX entry to cite with this dataset (Wang et al., CVPR 2017), for cards and documentation."""

_VERSION = datasets.Version("1.0.0")

_CONFIG_PARAMETERS = ("image_size", "validation_fraction", "allow_missing_images", "split_lists", "allow_split_overlap")

_SOURCE_MODULES = (
    "archives", "builder", "errors", "labels", "metadata", "pixels", "schema", "sources", "split_lists",
    "split_record", "splits",
)


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
        split_lists: ``None`` for NIH's official split; else your own lists, ``{"train": path, "validation": path,
            "test": path}`` (validation optional), e.g. CheXNet's (format and checks: :mod:`.split_lists`).
        allow_split_overlap: with ``split_lists``, build even when the lists share images or patients (logging the
            counts); by default that is an error.
    """

    image_size: Optional[int] = None
    validation_fraction: float = 0.1
    allow_missing_images: bool = False
    split_lists: Optional[Dict[str, str]] = None
    allow_split_overlap: bool = False

    def create_config_id(self, config_kwargs: Dict[str, Any], custom_features=None) -> str:
        """The name of this config's cache folder, as ``datasets`` makes it, from what decides the data: the
        parameters that differ from the named config's defaults (so ``validation_fraction=0.1`` passed explicitly
        reuses a plain load's cache), ``data_dir`` (resolved by the builder), the release's fingerprint
        (:func:`~.sources.release_fingerprint`), so that a changed release is built again, and the split lists by
        resolved path and content (:func:`~.split_lists.split_lists_fingerprint`), so that an edited list is too.

        Raises:
            ValueError, MissingMetadataError: for a ``split_lists`` that is not a mapping of train/validation/test to
                existing files.
        """
        defaults = _CONFIGS_BY_NAME.get(self.name)
        kwargs = {
            key: value for key, value in config_kwargs.items()
            if not (defaults is not None and key in _CONFIG_PARAMETERS and value == getattr(defaults, key))
        }
        if self.split_lists is not None:
            kwargs["split_lists"] = split_lists_fingerprint(self.split_lists)
        if self.data_dir is not None:
            kwargs["release"] = release_fingerprint(self.data_dir)
        return super().create_config_id(kwargs, custom_features=custom_features)


_CONFIGS = [
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
_CONFIGS_BY_NAME = {config.name: config for config in _CONFIGS}


class NIHChestXray14(datasets.GeneratorBasedBuilder):
    """NIH ChestX-ray14 on its official patient-wise split (or on ``split_lists``), with multi-hot labels in
    :data:`~.labels.LABELS` order.

    ``data_dir`` is a folder with NIH's metadata (``Data_Entry_2017_v2020.csv`` or ``Data_Entry_2017.csv``,
    ``train_val_list.txt``, ``test_list.txt``, optionally ``BBox_List_2017.csv``) and, if already downloaded, the
    images in any layout of :mod:`.sources`; without images, NIH's 12 archives are downloaded. It is resolved (``~``
    expanded, links and ``..`` followed) before it keys the cache, so every spelling of one folder shares one cache.
    """

    VERSION = _VERSION
    BUILDER_CONFIG_CLASS = NIHChestXray14Config
    BUILDER_CONFIGS = _CONFIGS
    DEFAULT_CONFIG_NAME = "default"
    DEFAULT_WRITER_BATCH_SIZE = 100  # ~45 MB of original PNGs per Arrow record batch

    def __init__(self, *args, data_dir=None, data_files=None, hash: Optional[str] = None, **kwargs):
        if data_files:
            raise ValueError(DATA_FILES_REFUSED)
        if data_dir is not None:
            data_dir = os.path.realpath(os.path.expanduser(os.fspath(data_dir)))
        # The same cache path whether reached through load_dataset or built directly.
        kwargs["dataset_name"] = kwargs.get("dataset_name") or DATASET_NAME
        super().__init__(*args, data_dir=data_dir, hash=hash or code_hash(), **kwargs)

    def download_and_prepare(self, output_dir: Optional[str] = None, *args, **kwargs) -> None:
        """``datasets``' own, after removing the half-written build a killed run left behind, with the processes it
        starts ending with this one (:mod:`.workers`), and removing the empty lock folders a failed build leaves
        (:mod:`.datasets_compat`)."""
        local = output_dir is None or "://" not in os.fspath(output_dir)
        if local:
            discard_stale_build(os.fspath(output_dir or self.cache_dir))
        try:
            with children_end_with_this_process():
                super().download_and_prepare(output_dir, *args, **kwargs)
        except BaseException:
            if local and output_dir is None:
                remove_lock_folders(self.cache_dir)
            raise

    def _info(self) -> datasets.DatasetInfo:
        config = self.config
        split = describe_split(config.split_lists, check_validation_fraction(config.validation_fraction))
        return datasets.DatasetInfo(
            description=_DESCRIPTION + split_line(split) + "\n",
            features=FEATURES,
            homepage=_HOMEPAGE,
            license=_LICENSE,
            citation=_CITATION,
        )

    def _split_generators(self, dl_manager: datasets.DownloadManager) -> List[datasets.SplitGenerator]:
        config = self.config
        fraction = check_validation_fraction(config.validation_fraction)
        if config.image_size is not None and (not isinstance(config.image_size, int) or config.image_size < 1):
            raise ValueError(f"image_size must be a positive number of pixels or None, got {config.image_size!r}")
        release = read_release_metadata(config.data_dir)
        assignment, describe = self._assign_splits(release, fraction)
        source = locate_images(config.data_dir) or self._download_archives(dl_manager)
        index = self._index(source, dl_manager)

        generators = []
        counts = {}
        for split in SPLITS:
            names = assignment.images(split)
            if index is not None:
                names = present_images(split, names, index, source.describe(), config.allow_missing_images)
            if not names:  # e.g. validation_fraction=0: datasets cannot read back an empty split
                logger.info("the %s split is empty and is left out", split)
                continue
            counts[split] = (len(names), len({release.entries[name].patient_id for name in names}))
            gen_kwargs = {
                "split": split,
                "entries": {name: release.entries[name] for name in names},
                "boxes": {name: release.boxes[name] for name in names if name in release.boxes},
            }
            if source.layout == "extracted":
                gen_kwargs.update(self._file_shards(names, source))
            else:
                gen_kwargs.update(self._archive_shards(names, source, index, dl_manager))
            generators.append(datasets.SplitGenerator(name=split, gen_kwargs=gen_kwargs))
        # Saved with the dataset (datasets writes self.info once the splits are generated).
        self.info.description = _DESCRIPTION + split_line(describe(counts)) + "\n"
        return generators

    def _assign_splits(self, release, fraction: float):
        """The split assignment (official or from ``split_lists``), checked before anything is generated, and a
        function of the built sizes that describes it (:func:`~.split_record.describe_split`).

        Raises:
            SplitError: lists that place an image in neither or both official lists, a patient in two splits, or
                (custom lists) a listed image without an entry CSV row or lists that share images or patients.
            ValueError: ``allow_split_overlap`` without ``split_lists``, or a validation list beside a
                ``validation_fraction`` other than 0.1.
        """
        config = self.config
        patient_of_image = {name: entry.patient_id for name, entry in release.entries.items()}
        if config.split_lists is None and config.allow_split_overlap:
            raise ValueError("allow_split_overlap applies only with split_lists; NIH's own lists never overlap")
        if config.split_lists is None:
            assignment = assign_splits(
                patient_of_image, release.train_val, release.test, fraction,
                train_val_source=release.train_val_list, test_source=release.test_list,
            )
            return assignment, lambda counts: describe_split(None, fraction, counts)
        lists = read_split_lists(config.split_lists)
        assignment: SplitAssignment = assign_listed_splits(
            patient_of_image, lists, fraction, allow_overlap=config.allow_split_overlap
        )
        mismatches = count_label_mismatches(
            lists, {name: multi_hot(entry.findings) for name, entry in release.entries.items()}
        )
        if mismatches:
            logger.warning("%d lines of the split lists carry labels that differ from %s; the dataset uses the "
                           "entry CSV's labels", mismatches, os.path.basename(release.entry_csv))
        shared = "; ".join(overlap.describe() for overlap in list_overlaps(lists))
        return assignment, lambda counts: describe_split(lists, fraction, counts, unlisted=assignment.unlisted,
                                                         shared=shared)

    def _generate_examples(self, split, entries, boxes, files=(), archives=(), num_archives=0) -> Iterator:
        end_with_parent()
        images = itertools.chain(
            read_files(files),
            read_archives(archives, entries, split, num_archives, self.config.allow_missing_images),
        )
        for name, png, where in images:
            yield name, make_example(entries[name], self._stored_png(png, where), boxes.get(name, ()))

    def _stored_png(self, png: bytes, where: str) -> bytes:
        """The PNG as this config stores it: checked and untouched, or resized once."""
        if self.config.image_size is None:
            check_png(png, where)
            return png
        return resize_png(png, self.config.image_size, where)

    def _download_archives(self, dl_manager) -> ImageSource:
        logger.info("%s has no images: downloading NIH's %d archives", self.config.data_dir, len(NIH_ARCHIVE_URLS))
        return ImageSource("download", archives=tuple(dl_manager.download(list(NIH_ARCHIVE_URLS))))

    @staticmethod
    def _index(source: ImageSource, dl_manager) -> Optional[Dict[str, str]]:
        """Image name → file or archive; ``None`` when streaming archives, which are then read only once."""
        if source.layout == "extracted":
            return source.files
        if isinstance(dl_manager, datasets.StreamingDownloadManager):
            return None
        return index_archives(source.archives, dl_manager.iter_archive, dl_manager.download_config.num_proc or 1)

    @staticmethod
    def _file_shards(names: Sequence[str], source: ImageSource) -> Dict[str, Any]:
        """``gen_kwargs`` for extracted PNGs: a shard is one file."""
        return {"files": [source.files[name] for name in names]}

    @staticmethod
    def _archive_shards(names: Sequence[str], source: ImageSource, index, dl_manager) -> Dict[str, Any]:
        """``gen_kwargs`` for archives, read in place: a shard is one archive holding any of ``names``. Without an
        index (streaming), every archive, as a tuple, which ``datasets`` does not shard: one pass reads them all and
        so can tell which images are missing."""
        holding = None if index is None else {index[name] for name in names}
        archives = [
            (path, dl_manager.iter_archive(path)) for path in source.archives if holding is None or path in holding
        ]
        return {"archives": archives if index is not None else tuple(archives), "num_archives": len(archives)}
