"""Where the pixels are: NIH's archives, extracted ``images/``, Kaggle's ``images_0NN/images/``, or NIH's downloads.

Layouts of ``data_dir`` that :func:`locate_images` recognises:

- ``archives``: ``images_001.tar.gz`` … ``images_012.tar.gz`` (NIH's Box names) or ``images_01.tar.gz`` …
  (the names NIH's ``batch_download_zips.py`` gives), read in place, never extracted;
- ``extracted``: ``images/*.png`` and/or Kaggle's ``images_001/images/*.png`` … ``images_012/images/*.png``.

Archives take precedence when both are present. When neither is, the builder downloads NIH's archives.
Archive members whose path is absolute or climbs with ``..`` are skipped with a warning and never read.
"""

from __future__ import annotations

import hashlib
import logging
import os
import posixpath
import re
from dataclasses import dataclass, field
from typing import BinaryIO, Container, Dict, Iterable, Iterator, Optional, Tuple

from .archives import ARCHIVE_NAME
from .errors import ImageSourceError
from .metadata import BBOX_CSV_NAMES, ENTRY_CSV_NAMES, IMAGE_NAME, TEST_LIST, TRAIN_VAL_LIST

logger = logging.getLogger(__name__)

KAGGLE_FOLDER = re.compile(r"^images_\d{2,3}$")


@dataclass(frozen=True)
class ImageSource:
    """The pixels of one release.

    Attributes:
        layout: ``"archives"`` (found in data_dir), ``"download"`` (fetched by the download manager) or
            ``"extracted"``.
        archives: archive paths (or URLs), in NIH's order, for ``archives`` and ``download``.
        files: image name → PNG path, for ``extracted``.
    """

    layout: str
    archives: Tuple[str, ...] = ()
    files: Dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        """A short description for messages, e.g. ``"12 archives in /data/nih"``."""
        if self.layout == "extracted":
            folders = sorted({os.path.dirname(path) for path in self.files.values()})
            return f"{len(self.files)} PNGs in {', '.join(folders[:3])}{' …' if len(folders) > 3 else ''}"
        where = os.path.dirname(self.archives[0]) if self.archives else ""
        return f"{len(self.archives)} archives" + (f" in {where}" if where and self.layout == "archives" else "")


def find_archives(data_dir: str) -> Tuple[str, ...]:
    """NIH's image archives in ``data_dir``, ordered by number.

    Raises:
        ImageSourceError: if one archive is present under both names (``images_001.tar.gz`` and ``images_01.tar.gz``).
    """
    by_number: Dict[int, str] = {}
    for entry in sorted(os.listdir(data_dir)):
        match = ARCHIVE_NAME.match(entry)
        if not match or not os.path.isfile(os.path.join(data_dir, entry)):
            continue
        number = int(match.group(1))
        if number in by_number:
            raise ImageSourceError(
                f"{data_dir} holds archive {number} twice ({by_number[number]} and {entry}); keep one of them"
            )
        by_number[number] = entry
    return tuple(os.path.join(data_dir, by_number[number]) for number in sorted(by_number))


def find_extracted(data_dir: str) -> Dict[str, str]:
    """Image name → path for every NIH-named PNG in ``data_dir/images`` and ``data_dir/images_0NN/images``.

    Raises:
        ImageSourceError: if one image name is found in two folders.
    """
    folders = [os.path.join(data_dir, "images")]
    folders += [
        os.path.join(data_dir, entry, "images")
        for entry in sorted(os.listdir(data_dir))
        if KAGGLE_FOLDER.match(entry)
    ]
    files: Dict[str, str] = {}
    for folder in folders:
        if not os.path.isdir(folder):
            continue
        with os.scandir(folder) as entries:
            for entry in entries:
                if not IMAGE_NAME.match(entry.name):
                    continue
                if entry.name in files:
                    raise ImageSourceError(
                        f"{entry.name} is in two folders ({files[entry.name]} and {entry.path}); keep one copy"
                    )
                files[entry.name] = entry.path
    return files


def locate_images(data_dir: Optional[str]) -> Optional[ImageSource]:
    """The images in ``data_dir`` (archives first, else extracted PNGs), or ``None`` when it has neither."""
    if data_dir is None or not os.path.isdir(data_dir):
        return None
    archives = find_archives(data_dir)
    if archives:
        return ImageSource("archives", archives=archives)
    files = find_extracted(data_dir)
    if files:
        return ImageSource("extracted", files=files)
    return None


def is_safe_member(path: str) -> bool:
    """Whether an archive member's path stays inside the archive: not absolute, no ``..``, no drive letter."""
    normalised = path.replace("\\", "/")
    if normalised.startswith("/") or re.match(r"^[A-Za-z]:", normalised):
        return False
    return ".." not in normalised.split("/")


def iter_archive_images(
    members: Iterable[Tuple[str, BinaryIO]],
    archive: str,
    wanted: Container[str],
    part: int = 0,
    parts: int = 1,
) -> Iterator[Tuple[str, bytes, str]]:
    """Yield ``(image name, PNG bytes, "archive:member")`` for the wanted images of one archive.

    Args:
        members: ``(member path, file object)`` pairs, as ``dl_manager.iter_archive`` yields them.
        archive: the archive's path or URL, for messages.
        wanted: image names to read; other members are skipped without reading them.
        part, parts: read only the PNG members whose position in the archive is ``part`` modulo ``parts``, so that
            several processes can share one archive.
    """
    position = -1
    for member, fileobj in members:
        if not is_safe_member(member):
            logger.warning("%s: skipping member %r, whose path escapes the archive", archive, member)
            continue
        name = posixpath.basename(member.replace("\\", "/"))
        if not IMAGE_NAME.match(name):
            continue
        position += 1
        if position % parts != part or name not in wanted:
            continue
        yield name, fileobj.read(), f"{archive}:{member}"


def release_fingerprint(data_dir: Optional[str]) -> Optional[str]:
    """A short hash of the release in ``data_dir``: name, size and modification time of its metadata files, archives
    and image folders (a folder's time changes when PNGs are added or removed). ``None`` without a folder.

    Part of the cache key, so that a release that changed (say, a partial download completed) is built again instead
    of being served stale from the cache. It costs one ``stat`` per file or folder of the release, not one per PNG,
    and ignores anything else in ``data_dir`` (a cache folder kept there, say).
    """
    if data_dir is None or not os.path.isdir(data_dir):
        return None
    release_files = set(ENTRY_CSV_NAMES + BBOX_CSV_NAMES)
    release_files |= {name + suffix for name in (TRAIN_VAL_LIST, TEST_LIST) for suffix in ("", ".gz")}
    paths = [os.path.join(data_dir, "images")]
    for entry in sorted(os.listdir(data_dir)):
        if entry in release_files or ARCHIVE_NAME.match(entry):
            paths.append(os.path.join(data_dir, entry))
        elif KAGGLE_FOLDER.match(entry):
            paths.append(os.path.join(data_dir, entry, "images"))
    digest = hashlib.sha256()
    for path in paths:
        try:
            status = os.stat(path)
        except OSError:
            continue
        digest.update(f"{os.path.relpath(path, data_dir)}\0{status.st_size}\0{status.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]
