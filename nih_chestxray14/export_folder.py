"""An export's output folder: what an export may replace there, and a staging folder beside it that is swapped in
whole, so that a failed or killed export leaves the folder as it was.

An export replaces only what an earlier export wrote: the card ``README.md`` (if it is this dataset's card) and, for
each config it writes, that config's folder, provided the folder holds nothing but the Parquet shards the card
declares. Anything else there (a file of the user's, a folder the card doesn't know) makes it refuse before any work.

Everything is written first into ``.<OUT>.export-<random>`` beside ``OUT`` (inside it, hidden, when ``OUT`` is a
mount point); until the final renames, ``OUT`` is not touched, so a killed export (even ``kill -9``) leaves it as it
was, and the next export into ``OUT`` removes what the killed one left. The final step is one rename when ``OUT`` is new, else one rename per config folder
and one for the card: a process killed within those few renames can leave some configs new and the card old.
"""

from __future__ import annotations

import glob
import logging
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Iterable, Optional, Sequence

from huggingface_hub import DatasetCard

from .card import CARD, PRETTY_NAME
from .errors import NIHChestXray14Error

try:  # a lock that the system drops when its process dies, even by kill -9: tells a dead export's staging apart
    import fcntl
except ImportError:  # not POSIX: stale staging folders are left for the user to remove
    fcntl = None

logger = logging.getLogger(__name__)

_SHARD = re.compile(r"^(?P<split>.+)-\d{5}-of-\d{5}\.parquet$")
_LOCK = "lock"
_STARTING_SECONDS = 60  # a staging folder without its lock file yet is one being created, unless older than this


class PublishError(NIHChestXray14Error, ValueError):
    """An export or push that cannot go ahead; the message names the argument or file and what to do."""


def data_dir_for(config_name: str) -> str:
    """The folder of a config's shards: ``data`` for ``default`` (as ``push_to_hub`` does), else the config name."""
    return "data" if config_name == "default" else config_name


def read_existing_card(out: Path) -> Optional[DatasetCard]:
    """The card already in ``out``, if it is this dataset's; raise PublishError for any other README.md."""
    path = out / CARD
    if not path.exists():
        return None
    try:
        card = DatasetCard.load(path)
        pretty_name = card.data.to_dict().get("pretty_name")
    except Exception:  # noqa: BLE001 - any card that cannot be read is not one an export wrote
        pretty_name = None
    if pretty_name != PRETTY_NAME:
        raise PublishError(f"{path} exists and is not a {PRETTY_NAME} card written by this command; "
                           "export into an empty folder or one that an earlier export wrote")
    return card


def check_replaceable(out: Path, data_dirs: Iterable[str]) -> Optional[DatasetCard]:
    """Check that exporting into ``out`` replaces only what an earlier export wrote; return ``out``'s card, if any.

    Raises:
        PublishError: ``out`` is a file, its README.md is not this dataset's card, or a config folder to replace
            holds anything the card does not declare (the message names the first such file).
    """
    if out.exists() and not out.is_dir():
        raise PublishError(f"OUT {out} is a file; give a folder to export into")
    card = read_existing_card(out)
    declared = _declared_splits(card)
    for data_dir in data_dirs:
        folder = out / data_dir
        if not folder.exists() and not folder.is_symlink():
            continue
        if folder.is_symlink() or not folder.is_dir():
            raise PublishError(f"{folder} exists and is not a folder an earlier export wrote, and export would "
                               "replace it; move it away or export into another folder")
        for entry in sorted(folder.iterdir()):
            match = _SHARD.match(entry.name)
            ours = (match is not None and match.group("split") in declared.get(data_dir, ())
                    and entry.is_file() and not entry.is_symlink())
            if not ours:
                raise PublishError(f"{entry} was not written by an export, and export replaces all of {folder}; "
                                   "move it away or export into another folder")
    return card


def _declared_splits(card: Optional[DatasetCard]) -> dict[str, set]:
    """``{config folder: split names}`` that ``card``'s ``configs`` point at (``data/train-*`` → data: train)."""
    declared: dict[str, set] = {}
    if card is None:
        return declared
    for config in card.data.to_dict().get("configs") or []:
        for data_file in config.get("data_files") or []:
            folder, _, pattern = str(data_file.get("path", "")).partition("/")
            if pattern == f"{data_file.get('split')}-*":
                declared.setdefault(folder, set()).add(data_file["split"])
    return declared


class Staging:
    """A hidden folder beside ``out``: write the new content into ``tree``, then :meth:`commit` it into ``out``.

    Use as a context manager; leaving it without a commit (an error) removes the folder and leaves ``out`` as it
    was. On entry, staging folders that killed exports left beside ``out`` are removed. When ``out`` is on another
    file system than its parent (a mount point), the staging folder goes inside ``out``, hidden, since a rename
    cannot cross file systems.

    Raises:
        PublishError: on entry, when the staging folder cannot be created.
    """

    def __init__(self, out: Path):
        self.out = Path(os.path.abspath(out))
        self.parent = staging_parent(self.out)
        self.root: Optional[Path] = None
        self._lock = None

    @property
    def tree(self) -> Path:
        return self.root / "tree"

    def __enter__(self) -> "Staging":
        try:
            self.parent.mkdir(parents=True, exist_ok=True)
            remove_stale_staging(self.out)
            self.root = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.export-", dir=self.parent))
        except OSError as err:
            raise PublishError(f"cannot create a staging folder in {self.parent} ({err.strerror or err}); export "
                               f"writes there first so that {self.out} is replaced whole: make {self.parent} "
                               "writable or export into another folder") from None
        self._lock = open(self.root / _LOCK, "w")
        if fcntl is not None:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self.tree.mkdir()
        return self

    def __exit__(self, *exc) -> None:
        self._lock.close()
        shutil.rmtree(self.root, ignore_errors=True)

    def commit(self, data_dirs: Sequence[str]) -> None:
        """Move ``tree``'s config folders (and card, if written) into ``out``, replacing earlier versions."""
        if not self.out.exists():
            os.rename(self.tree, self.out)  # one step: OUT appears whole
            return
        old = self.root / "old"
        old.mkdir()
        for data_dir in data_dirs:
            target = self.out / data_dir
            if target.exists():
                os.rename(target, old / data_dir)
            os.rename(self.tree / data_dir, target)
        if (self.tree / CARD).exists():
            os.replace(self.tree / CARD, self.out / CARD)


def staging_parent(out: Path) -> Path:
    """Where exports into ``out`` (an absolute path) stage: beside it, or inside it when it is a mount point."""
    if out.is_dir() and os.stat(out).st_dev != os.stat(out.parent).st_dev:
        return out
    return out.parent


def remove_stale_staging(out: Path) -> None:
    """Remove the staging folders that exports into ``out`` left when they were killed (their lock is free)."""
    if fcntl is None:
        return
    out = Path(os.path.abspath(out))
    for folder in staging_parent(out).glob(f".{glob.escape(out.name)}.export-*"):
        try:
            with open(folder / _LOCK, "r+") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises while its export still runs
        except FileNotFoundError:  # killed before it took its lock, or being created right now
            try:
                if time.time() - folder.stat().st_mtime < _STARTING_SECONDS:
                    continue
                if any(entry.name not in ("tree", "old") for entry in folder.iterdir()):
                    continue  # not laid out as a staging folder: not ours to remove
            except OSError:
                continue
        except OSError:
            continue  # locked: another export into the same folder is running
        logger.info("removing %s, left by an export that was killed", folder)
        shutil.rmtree(folder, ignore_errors=True)
