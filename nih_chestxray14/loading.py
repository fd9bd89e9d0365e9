"""``nih_chestxray14.load``: the builder with ``load_dataset``'s main arguments, without going through the registry."""

from __future__ import annotations

from typing import Optional, Union

import datasets

from .builder import NIHChestXray14
from .errors import NIHChestXray14Error


def load(
    name: str = "default",
    data_dir: Optional[str] = None,
    split: Optional[str] = None,
    streaming: bool = False,
    num_proc: Optional[int] = None,
    cache_dir: Optional[str] = None,
    **config_kwargs,
) -> Union[datasets.DatasetDict, datasets.Dataset, datasets.IterableDatasetDict, datasets.IterableDataset]:
    """Build (or reuse from the cache) and return NIH ChestX-ray14, like ``load_dataset("nih_chestxray14", ...)``.

    Args:
        name: ``"default"``, ``"resized-224"``, ``"resized-256"`` or ``"resized-512"``.
        data_dir: folder with NIH's metadata and, if present, images (any layout; see :mod:`nih_chestxray14.sources`).
        split: ``"train"``, ``"validation"``, ``"test"`` (or a ``datasets`` split expression); ``None`` for all three.
        streaming: return an ``IterableDataset(Dict)`` that reads the release as it goes, with no cache.
        num_proc: processes for building; a shard is one archive (NIH has 12) or one extracted PNG.
        cache_dir: ``datasets`` cache directory.
        **config_kwargs: ``validation_fraction`` (default 0.1), ``allow_missing_images`` (default False),
            ``split_lists`` (default None: NIH's split; else ``{"train": path, "validation": path, "test": path}``,
            see :mod:`nih_chestxray14.split_lists`) and ``allow_split_overlap`` (default False).

    Raises:
        nih_chestxray14.errors.NIHChestXray14Error: a subclass naming the file, row or member, for bad input. Errors
            met while generating are raised as themselves rather than wrapped in ``DatasetGenerationError``.
        ValueError: for an unknown config name or option.
    """
    builder = NIHChestXray14(config_name=name, data_dir=data_dir, cache_dir=cache_dir, **config_kwargs)
    if streaming:
        return builder.as_streaming_dataset(split=split)
    try:
        builder.download_and_prepare(num_proc=num_proc)
    except datasets.exceptions.DatasetGenerationError as error:
        if isinstance(error.__cause__, NIHChestXray14Error):
            raise error.__cause__ from None
        raise
    return builder.as_dataset(split=split)
