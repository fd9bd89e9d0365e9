"""Make ``datasets.load_dataset("nih_chestxray14", ...)`` reach :class:`~.builder.NIHChestXray14`.

``datasets`` 5 resolves a name without a slash through its table of packaged modules
(``datasets.packaged_modules._PACKAGED_DATASETS_MODULES``) before it looks on the Hub. Registering the builder's module
there is enough when a ``data_dir`` holds NIH's files, but the packaged route also globs for data files first, in
the current directory when no ``data_dir`` is given, and fails in an empty one. This builder reads its own files, so
for this one name the module factory skips that glob: :func:`register` puts a subclass of
``datasets.load.PackagedDatasetModuleFactory`` in its place that answers ``nih_chestxray14`` directly and hands every
other name to the original class unchanged. It also skips the download-count request the original sends for a name.

Registration is idempotent and happens on ``import nih_chestxray14``.
"""

from __future__ import annotations

import logging

import datasets.load
from datasets.data_files import DataFilesDict
from datasets.packaged_modules import _PACKAGED_DATASETS_MODULES

from .builder import DATA_FILES_REFUSED, DATASET_NAME, code_hash

logger = logging.getLogger(__name__)

BUILDER_MODULE = "nih_chestxray14.builder"


def _factory_for(original: type) -> type:
    class NIHChestXray14ModuleFactory(original):
        """``PackagedDatasetModuleFactory`` that answers ``nih_chestxray14`` without globbing for data files."""

        def __init__(self, name, *args, **kwargs):
            if name != DATASET_NAME:
                super().__init__(name, *args, **kwargs)
                return
            self.name = name
            self.data_files = kwargs.get("data_files", args[1] if len(args) > 1 else None)

        def get_module(self) -> datasets.load.DatasetModule:
            if self.name != DATASET_NAME:
                return super().get_module()
            if self.data_files is not None:
                raise ValueError(DATA_FILES_REFUSED)
            module_path, module_hash = _PACKAGED_DATASETS_MODULES[DATASET_NAME]
            # An empty DataFilesDict tells load_dataset_builder that no data files are needed; the builder drops it.
            return datasets.load.DatasetModule(
                module_path, module_hash, {"dataset_name": DATASET_NAME, "data_files": DataFilesDict()}
            )

    NIHChestXray14ModuleFactory.wraps = original
    return NIHChestXray14ModuleFactory


def register() -> None:
    """Register the builder with ``datasets`` (idempotent)."""
    _PACKAGED_DATASETS_MODULES[DATASET_NAME] = (BUILDER_MODULE, code_hash())
    current = getattr(datasets.load, "PackagedDatasetModuleFactory", None)
    if current is None:
        logger.warning(
            "datasets %s has no PackagedDatasetModuleFactory: load_dataset('%s') will need a data_dir; "
            "nih_chestxray14.load() works regardless", datasets.__version__, DATASET_NAME,
        )
        return
    if getattr(current, "wraps", None) is None:
        datasets.load.PackagedDatasetModuleFactory = _factory_for(current)
