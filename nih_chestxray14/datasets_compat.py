"""Everything this package relies on in ``datasets`` beyond its public API, in one place.

Written against ``datasets`` 5.2.0. The parts used are identical in 5.0.0, 5.0.1, 5.1.0 and 5.2.0, the versions
``setup.cfg`` allows (``datasets>=5.0,<5.3``); :func:`internals_problems` checks them, on import and in
``tests/test_datasets_compat.py``, so that a new release that changes them fails loudly instead of quietly.

1. **The name** ``load_dataset("nih_chestxray14", ...)``. ``datasets`` 5 has no public registry for builders that
   live in an installed package: a name without a slash is looked up in ``datasets.packaged_modules.
   _PACKAGED_DATASETS_MODULES`` and otherwise sent to the Hub. :func:`register` adds the builder's module there.
   Its packaged route would then glob ``data_dir`` (or the current directory) for data files before the builder
   runs: in an empty directory that fails with ``datasets``' "doesn't contain any data files" instead of this
   package's advice, and elsewhere it globs a user's folder for nothing. So, for this one name,
   ``datasets.load.PackagedDatasetModuleFactory`` (which ``dataset_module_factory`` looks up by name in
   ``datasets.load``) is replaced by a subclass that returns the module without globbing and hands every other name
   to the original class unchanged. The builder class and :func:`nih_chestxray14.load` need none of this.
2. **The cache's layout**, for two clean-ups around a build (:func:`discard_stale_build`,
   :func:`remove_lock_folders`): ``download_and_prepare`` writes into ``<cache_dir>.incomplete`` and renames it to
   ``<cache_dir>`` when done, under the lock ``<cache_dir>_builder.lock``, and ``cache_dir`` is
   ``<root>/<dataset name>/<config id>/<version>/<hash>``.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import os
import shutil
from pathlib import Path
from typing import List

import datasets
import datasets.load
import datasets.packaged_modules
import filelock
from datasets.data_files import DataFilesDict

logger = logging.getLogger(__name__)

WRITTEN_AGAINST = "5.2.0"
SUPPORTED = "datasets>=5.0,<5.3"

_FACTORY_PARAMETERS = ["self", "name", "data_dir", "data_files", "download_config", "download_mode"]
_PACKAGED_DATASETS_MODULES = getattr(datasets.packaged_modules, "_PACKAGED_DATASETS_MODULES", None)


def internals_problems() -> List[str]:
    """What no longer matches the ``datasets`` internals this module relies on (empty when all is well)."""
    problems = []
    if not isinstance(_PACKAGED_DATASETS_MODULES, dict):
        problems.append("datasets.packaged_modules._PACKAGED_DATASETS_MODULES is no longer a dict")
    factory = getattr(datasets.load, "PackagedDatasetModuleFactory", None)
    factory = getattr(factory, "wraps", factory)
    if factory is None or not callable(getattr(factory, "get_module", None)):
        problems.append("datasets.load.PackagedDatasetModuleFactory with a get_module() method is gone")
    elif list(inspect.signature(factory.__init__).parameters) != _FACTORY_PARAMETERS:
        problems.append(f"PackagedDatasetModuleFactory.__init__ now takes {inspect.signature(factory.__init__)}")
    names = datasets.load.dataset_module_factory.__code__.co_names
    if "PackagedDatasetModuleFactory" not in names or "_PACKAGED_DATASETS_MODULES" not in names:
        problems.append("dataset_module_factory no longer looks up PackagedDatasetModuleFactory and "
                        "_PACKAGED_DATASETS_MODULES by name")
    if getattr(datasets.load, "_PACKAGED_DATASETS_MODULES", None) is not _PACKAGED_DATASETS_MODULES:
        problems.append("datasets.load no longer shares datasets.packaged_modules._PACKAGED_DATASETS_MODULES")
    fields = [field.name for field in dataclasses.fields(datasets.load.DatasetModule)][:3]
    if fields != ["module_path", "hash", "builder_kwargs"]:
        problems.append(f"datasets.load.DatasetModule's first fields are now {fields}")
    return problems


def _factory_for(original: type, dataset_name: str, module_path: str, refusal: str) -> type:
    class NIHChestXray14ModuleFactory(original):
        """``PackagedDatasetModuleFactory`` that answers one name without globbing for data files."""

        def __init__(self, name, *args, **kwargs):
            if name != dataset_name:
                super().__init__(name, *args, **kwargs)
                return
            self.name = name
            self.data_files = kwargs.get("data_files", args[1] if len(args) > 1 else None)

        def get_module(self) -> datasets.load.DatasetModule:
            if self.name != dataset_name:
                return super().get_module()
            if self.data_files is not None:
                raise ValueError(refusal)
            module_hash = _PACKAGED_DATASETS_MODULES[dataset_name][1]
            # An empty DataFilesDict tells load_dataset_builder that no data files are needed; the builder drops it.
            return datasets.load.DatasetModule(
                module_path, module_hash, {"dataset_name": dataset_name, "data_files": DataFilesDict()}
            )

    NIHChestXray14ModuleFactory.wraps = original
    return NIHChestXray14ModuleFactory


def register(dataset_name: str, module_path: str, module_hash: str, refusal: str) -> bool:
    """Make ``load_dataset(dataset_name, ...)`` build with the builder in ``module_path`` (idempotent).

    Args:
        module_hash: part of the cache path (the builder's code hash).
        refusal: the ``ValueError`` message for ``data_files=``, which this builder does not read.

    Returns:
        Whether the name is registered; ``False`` (with a warning) when ``datasets`` has changed underneath.
    """
    problems = internals_problems()
    if problems:
        logger.warning(
            "datasets %s is not one this package supports (%s): load_dataset('%s') is not available, use "
            "nih_chestxray14.load() instead. Changed: %s",
            datasets.__version__, SUPPORTED, dataset_name, "; ".join(problems),
        )
        return False
    _PACKAGED_DATASETS_MODULES[dataset_name] = (module_path, module_hash)
    current = datasets.load.PackagedDatasetModuleFactory
    if getattr(current, "wraps", None) is None:
        datasets.load.PackagedDatasetModuleFactory = _factory_for(current, dataset_name, module_path, refusal)
    return True


def _lock_is_free(lock_path: str) -> bool:
    try:
        with filelock.FileLock(lock_path, timeout=0):
            return True
    except filelock.Timeout:
        return False


def discard_stale_build(output_dir: str) -> None:
    """Remove ``<output_dir>.incomplete`` left by a build that was killed, unless a build holds its lock now.

    ``datasets`` would otherwise reuse that folder, and its stale shards would end up in the finished cache.
    """
    stale = output_dir + ".incomplete"
    if os.path.isdir(stale) and _lock_is_free(output_dir + "_builder.lock"):
        logger.warning("removing %s, left by a build that did not finish", stale)
        shutil.rmtree(stale, ignore_errors=True)


def remove_lock_folders(cache_dir: str) -> None:
    """After a failed build, remove the folders ``datasets`` made for it that hold nothing but free lock files:
    ``<version>``, then ``<config id>`` and ``<dataset name>`` while they are empty. Never touches data."""
    if os.path.exists(cache_dir):
        return
    for folder in Path(cache_dir).parents[:3]:
        try:
            entries = list(folder.iterdir())
        except OSError:
            return
        if any(not entry.is_file() or not entry.name.endswith(".lock") for entry in entries):
            return
        if not all(_lock_is_free(str(entry)) for entry in entries):
            return
        for entry in entries:
            entry.unlink(missing_ok=True)
        try:
            folder.rmdir()
        except OSError:
            return
