"""NIH ChestX-ray14 for the Hugging Face ecosystem.

Importing this package makes the builder reachable from ``datasets`` (5.0 to 5.2; see :mod:`.datasets_compat`)::

    import nih_chestxray14
    from datasets import load_dataset
    ds = load_dataset("nih_chestxray14", data_dir="/data/nih")                  # NIH's 1024 x 1024 PNGs
    ds = load_dataset("nih_chestxray14", "resized-256", data_dir="/data/nih")  # resized once, for fast training
    ds = load_dataset("nih_chestxray14", data_dir="/data/nih", streaming=True)

``nih_chestxray14.load(name, data_dir, split, streaming, num_proc, cache_dir, **config_kwargs)`` does the same
without the registry, and ``nih_chestxray14.NIHChestXray14`` is the ``datasets.GeneratorBasedBuilder`` itself.

``data_dir`` holds NIH's metadata (``Data_Entry_2017_v2020.csv`` or Kaggle's ``Data_Entry_2017.csv``,
``train_val_list.txt``, ``test_list.txt``, optionally ``BBox_List_2017.csv``) and the images as NIH's archives
``images_001.tar.gz`` … (or ``images_01.tar.gz`` …), read in place, or extracted as ``images/*.png`` or Kaggle's
``images_0NN/images/*.png``. With no image anywhere in it, NIH's 12 archives are downloaded through the download
manager; images in any other place are an error that lists these layouts.

The build is cached by ``datasets``. The cache key holds ``data_dir`` resolved (``~``, ``..`` and links, so every
spelling of one folder shares one cache) and a fingerprint of the release: size, modification and inode-change time of
each metadata file, archive and extracted PNG (:func:`~nih_chestxray14.sources.release_fingerprint` says what it
does not see), so a release that changes, even one PNG overwritten in place, is built again.

Configs
    ``default``: NIH's PNG bytes, untouched, after a check that each decodes (signature, chunk CRCs, a header of at
    most 8192 pixels a side, image data that inflates to exactly the declared rows; :mod:`.pixels`).
    ``resized-224`` / ``resized-256`` / ``resized-512``: shorter side resized once at build time by area averaging,
    stored as lossless 8-bit grayscale PNG with uncompressed deflate blocks, fast to decode on every epoch (the
    ``export`` and ``push`` commands zstd-compress those image columns in Parquet). Every PNG becomes 8-bit grey:
    16-bit grey by its bit depth (``value * 255 / 65535``), colour and palette by ITU-R 601-2 luma, alpha dropped
    (:func:`~nih_chestxray14.pixels.gray_pixels`); ``default`` keeps such PNGs as they are.
    Parameters: ``validation_fraction`` (default 0.1), ``allow_missing_images`` (default False), ``split_lists``
    (default None: NIH's split) and ``allow_split_overlap`` (default False).

Splits
    ``test``: NIH's ``test_list.txt`` (25,596 images). ``train`` + ``validation``: ``train_val_list.txt`` (86,524).
    ``validation`` holds the train_val *patients* whose salted SHA-256 bucket is below ``validation_fraction``
    (rule in :mod:`nih_chestxray14.splits`): 2,752 patients and 8,569 images by default. No patient is in two splits.
    ``split_lists={"train": path, "validation": path, "test": path}`` builds on your own lists instead, e.g.
    CheXNet's, after checking that they are disjoint and patient-wise (:mod:`nih_chestxray14.split_lists`).
    Either way the split is recorded in ``DatasetInfo.description``; ``split_description(ds)`` reads it back
    (:mod:`nih_chestxray14.split_record`).

Expert labels
    Google's radiologist-adjudicated labels of four findings on 4,374 images are read from ``data_dir`` and matched
    to ``image_id`` by :mod:`nih_chestxray14.expert_labels`; :mod:`nih_chestxray14.expert_findings` maps NIH's 14
    findings onto three of them.

Schema (every config; in this order)
    ``image`` (``datasets.Image``): the PNG.
    ``image_id`` (string): ``"00000001_000.png"``.
    ``patient_id``, ``follow_up``, ``age`` (int32): from the entry CSV. ``patient_id`` always equals the file name's
    first 8 digits (a release where it does not is refused). ``follow_up`` is the CSV's ``Follow-up #``, which in
    24,106 of NIH's rows differs from the file name's 3-digit suffix (``00000003_001.png`` has follow-up 0).
    ``sex`` (string): ``"M"`` or ``"F"``. ``view_position`` (string): ``"PA"`` or ``"AP"``.
    ``original_width``, ``original_height`` (int32): the detector image's size before NIH resized it to 1024.
    ``pixel_spacing_x``, ``pixel_spacing_y`` (float32): the detector's pixel spacing in mm.
    ``labels`` (``List(int8, length=14)``): multi-hot in :data:`LABELS` order; "No Finding" is all zeros.
    ``findings`` (``List(ClassLabel(LABELS))``): the same labels as names.
    ``bboxes`` (``List({finding: ClassLabel, x, y, w, h: float32})``): the expert boxes of ``BBox_List_2017.csv``
    ("Infiltrate" there is Infiltration), empty for images without boxes. They keep NIH's coordinates, in pixels of
    the 1024 x 1024 image, in every config: scale them by ``image.width / 1024`` for a resized config.
    Streaming and the prepared dataset give the same values (``float32`` columns are rounded to ``float32`` in both).

Bad input raises a subclass of :class:`nih_chestxray14.errors.NIHChestXray14Error` (or
:class:`nih_chestxray14.labels.UnknownFindingError`) that names the file, row or archive member and the rule broken.
Everything but the PNGs' own bytes is checked before generation, so those errors reach ``load_dataset`` callers as
themselves; a damaged PNG is found while generating, and ``load_dataset`` reports it as ``DatasetGenerationError``
with this package's error as its cause (:mod:`.builder` lists both kinds).
"""

from .builder import BUILDER_MODULE, DATA_FILES_REFUSED, DATASET_NAME, NIHChestXray14, NIHChestXray14Config, code_hash
from .datasets_compat import register
from .labels import LABELS, NO_FINDING, NUM_LABELS
from .loading import load
from .schema import FEATURES
from .split_record import describe_split, split_description

register(DATASET_NAME, BUILDER_MODULE, code_hash(), DATA_FILES_REFUSED)

__all__ = [
    "FEATURES", "LABELS", "NO_FINDING", "NUM_LABELS", "NIHChestXray14", "NIHChestXray14Config", "describe_split",
    "load", "split_description",
]
