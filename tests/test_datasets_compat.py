"""The guard on the ``datasets`` internals that ``nih_chestxray14.datasets_compat`` relies on (offline).

If one of these fails after a ``datasets`` upgrade, read the module docstring of ``nih_chestxray14/datasets_compat.py``:
it lists each internal, why it is used, and the versions it was checked against; adapt it, then widen the
``datasets`` bound in ``setup.cfg``.
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path

import datasets
import datasets.builder
import datasets.load
import pytest
from packaging.specifiers import SpecifierSet

import nih_chestxray14
from nih_chestxray14 import NIHChestXray14
from nih_chestxray14.builder import DATA_FILES_REFUSED
from nih_chestxray14.datasets_compat import (
    SUPPORTED,
    WRITTEN_AGAINST,
    discard_stale_build,
    internals_problems,
    register,
    remove_lock_folders,
)

CHANGED = (
    f"datasets {datasets.__version__} changed what nih_chestxray14/datasets_compat.py relies on (written against "
    f"{WRITTEN_AGAINST}); adapt that module and the bound in setup.cfg"
)


def test_the_installed_datasets_is_one_the_package_declares_and_supports():
    assert datasets.__version__ in SpecifierSet(SUPPORTED.removeprefix("datasets")), CHANGED
    setup_cfg = (Path(__file__).resolve().parents[1] / "setup.cfg").read_text()
    assert f"    {SUPPORTED}\n" in setup_cfg, "setup.cfg must declare the datasets versions datasets_compat supports"


def test_the_registry_internals_are_as_written_against():
    assert internals_problems() == [], f"{CHANGED}: {internals_problems()}"


def test_the_cache_layout_is_as_written_against(tmp_path):
    builder = NIHChestXray14(config_name="resized-224", cache_dir=str(tmp_path))
    parts = Path(builder.cache_dir).relative_to(tmp_path).parts
    assert parts == ("nih_chestxray14", builder.config_id, "1.0.0", builder.hash), CHANGED
    source = inspect.getsource(datasets.builder.DatasetBuilder.download_and_prepare)
    assert '"_builder.lock"' in source and '".incomplete"' in source, CHANGED


def test_registration_is_idempotent_and_reaches_the_builder_without_globbing(tmp_path, monkeypatch):
    assert register("nih_chestxray14", "nih_chestxray14.builder", nih_chestxray14.code_hash(), DATA_FILES_REFUSED)
    assert register("nih_chestxray14", "nih_chestxray14.builder", nih_chestxray14.code_hash(), DATA_FILES_REFUSED)
    factory = datasets.load.PackagedDatasetModuleFactory
    assert factory.wraps.__name__ == "PackagedDatasetModuleFactory" and not hasattr(factory.wraps, "wraps")
    monkeypatch.setattr(datasets.load, "get_data_patterns", lambda *args, **kwargs: pytest.fail("globbed"))
    monkeypatch.chdir(tmp_path)
    assert isinstance(datasets.load_dataset_builder("nih_chestxray14", "resized-256"), NIHChestXray14)


def test_a_changed_datasets_leaves_load_dataset_unregistered_with_a_warning_and_load_working(monkeypatch, caplog):
    import nih_chestxray14.datasets_compat as compat

    monkeypatch.setattr(compat, "_PACKAGED_DATASETS_MODULES", None)
    assert not register("nih_chestxray14_other", "nih_chestxray14.builder", "0", DATA_FILES_REFUSED)
    assert "load_dataset('nih_chestxray14_other') is not available, use nih_chestxray14.load()" in caplog.text


def test_a_stale_half_written_build_is_removed_unless_a_build_holds_its_lock(tmp_path):
    import filelock

    output = tmp_path / "nih_chestxray14" / "default" / "1.0.0" / "abc"
    stale = Path(str(output) + ".incomplete")
    stale.mkdir(parents=True)
    (stale / "nih_chestxray14-train-00001-00000-of-NNNNN.arrow").write_bytes(b"")
    with filelock.FileLock(str(output) + "_builder.lock"):
        discard_stale_build(str(output))  # a build in progress: left alone
        assert stale.exists()
    discard_stale_build(str(output))
    assert not stale.exists()


def test_lock_folders_go_but_data_and_held_locks_stay(tmp_path):
    import filelock

    version = tmp_path / "nih_chestxray14" / "default-1" / "1.0.0"
    version.mkdir(parents=True)
    lock = version / "abc_builder.lock"
    lock.write_text("")
    (tmp_path / "nih_chestxray14" / "default-2" / "1.0.0" / "def").mkdir(parents=True)  # a finished build
    with filelock.FileLock(str(lock)):
        remove_lock_folders(str(version / "abc"))
        assert lock.exists()
    remove_lock_folders(str(version / "abc"))
    assert not (tmp_path / "nih_chestxray14" / "default-1").exists()
    assert (tmp_path / "nih_chestxray14" / "default-2" / "1.0.0" / "def").is_dir()
    assert os.listdir(tmp_path) == ["nih_chestxray14"]
