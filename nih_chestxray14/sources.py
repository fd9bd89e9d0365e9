"""Where the pixels are, and the two readers: NIH's archives (read in place) and extracted PNG files.

Layouts of ``data_dir`` that :func:`locate_images` recognises:

- ``archives``: ``images_001.tar.gz`` … ``images_012.tar.gz`` (NIH's Box names) or ``images_01.tar.gz`` …
  (the names NIH's ``batch_download_zips.py`` gives), read in place, never extracted;
- ``extracted``: ``images/*.png`` and/or Kaggle's ``images_001/images/*.png`` … ``images_012/images/*.png``.

Archives take precedence when both are present. When neither is, the builder downloads NIH's archives, but only if
``data_dir`` holds no NIH-named PNG and no archive anywhere else (a typo such as ``imgs/`` is an error, not a 45 GB
download). Archive members whose path is absolute or climbs with ``..`` are skipped with a warning and never read.

Before anything is generated, :func:`index_archives` reads every archive's member headers once (which inflates it),
so that a missing or doubled image or a damaged archive is reported before the build starts.
"""

from __future__ import annotations

import hashlib
import logging
import os
import posixpath
import re
import tarfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import BinaryIO, Callable, Collection, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from .archives import ARCHIVE_NAME
from .errors import CorruptArchiveError, ImageSourceError, MissingImagesError
from .metadata import BBOX_CSV_NAMES, ENTRY_CSV_NAMES, IMAGE_NAME, TEST_LIST, TRAIN_VAL_LIST

logger = logging.getLogger(__name__)

KAGGLE_FOLDER = re.compile(r"^images_\d{2,3}$")
ACCEPTED_LAYOUTS = (
    "images_001.tar.gz … images_012.tar.gz (or images_01.tar.gz …) beside the metadata, images/*.png, or "
    "Kaggle's images_001/images/*.png …"
)
_ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")
_ARCHIVE_ERRORS = (tarfile.TarError, EOFError, zlib.error, OSError)


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
                if not IMAGE_NAME.match(entry.name) or not entry.is_file():
                    continue
                if entry.name in files:
                    raise ImageSourceError(
                        f"{entry.name} is in two folders ({files[entry.name]} and {entry.path}); keep one copy"
                    )
                files[entry.name] = entry.path
    return files


def find_unplaced_images(data_dir: str, depth: int = 3) -> List[str]:
    """Up to three NIH-named PNGs or archives (``.tar.gz``, ``.tgz``, ``.tar``, ``.zip``) in ``data_dir``, down to
    ``depth`` folders, that no layout of this module reads (call it when :func:`locate_images` found none)."""
    found: List[str] = []
    for folder, subfolders, files in os.walk(data_dir):
        level = os.path.relpath(folder, data_dir).count(os.sep) + (folder != data_dir)
        subfolders[:] = [] if level >= depth else sorted(name for name in subfolders if not name.startswith("."))
        found += [
            os.path.join(folder, name) for name in sorted(files)
            if IMAGE_NAME.match(name) or (name.lower().endswith(_ARCHIVE_SUFFIXES) and not ARCHIVE_NAME.match(name))
        ][:3 - len(found)]
        if len(found) >= 3:
            break
    return found


def locate_images(data_dir: Optional[str]) -> Optional[ImageSource]:
    """The images in ``data_dir`` (archives first, else extracted PNGs), or ``None`` when it holds no image at all.

    Raises:
        ImageSourceError: for images in no recognised layout (naming some and the layouts accepted), or one archive
            or PNG present twice.
    """
    if data_dir is None or not os.path.isdir(data_dir):
        return None
    archives = find_archives(data_dir)
    if archives:
        return ImageSource("archives", archives=archives)
    files = find_extracted(data_dir)
    if files:
        return ImageSource("extracted", files=files)
    unplaced = find_unplaced_images(data_dir)
    if unplaced:
        raise ImageSourceError(
            f"{data_dir} holds images in no layout this builder reads ({', '.join(unplaced)}); accepted: "
            f"{ACCEPTED_LAYOUTS}. Move them there; NIH's archives are downloaded only into a folder with no images"
        )
    return None


def is_safe_member(path: str) -> bool:
    """Whether an archive member's path stays inside the archive: not absolute, no ``..``, no drive letter."""
    normalised = path.replace("\\", "/")
    if normalised.startswith("/") or re.match(r"^[A-Za-z]:", normalised):
        return False
    return ".." not in normalised.split("/")


def _archive_images(
    members: Iterable[Tuple[str, BinaryIO]], archive: str, wanted: Collection[str] = ()
) -> Iterator[Tuple[str, str, Optional[bytes]]]:
    """``(image name, member path, PNG bytes or None)`` for each NIH-named PNG member, read only if ``wanted``.

    Raises:
        CorruptArchiveError: if the archive is not a ``.tar.gz`` or ends early; names it and the last good member.
    """
    last = None
    try:
        for member, fileobj in members:
            if not is_safe_member(member):
                logger.warning("%s: skipping member %r, whose path escapes the archive", archive, member)
                continue
            name = posixpath.basename(member.replace("\\", "/"))
            if IMAGE_NAME.match(name):
                yield name, member, fileobj.read() if name in wanted else None
            last = member
    except _ARCHIVE_ERRORS as error:
        place = f"after its member {last}" if last else "at its start (it is not a readable .tar.gz)"
        raise CorruptArchiveError(
            f"{archive} is damaged {place}: {error or type(error).__name__}; download that archive again"
        ) from None


def index_archives(
    archives: Sequence[str], iter_archive: Callable[[str], Iterable[Tuple[str, BinaryIO]]], workers: int = 1
) -> Dict[str, str]:
    """Image name → archive, for every NIH-named PNG in ``archives``, reading them on ``workers`` threads.

    Args:
        archives: archive paths, in NIH's order.
        iter_archive: ``dl_manager.iter_archive``.

    Raises:
        CorruptArchiveError: for an archive that cannot be read to its end.
        ImageSourceError: for an image that occurs twice (in two archives or in one).
    """
    def names(archive: str) -> List[Tuple[str, str]]:
        return [(name, member) for name, member, _ in _archive_images(iter_archive(archive), archive)]

    with ThreadPoolExecutor(max(1, min(workers, len(archives)))) as pool:
        listings = list(pool.map(names, archives))
    index: Dict[str, str] = {}
    for archive, listing in zip(archives, listings):
        for name, member in listing:
            if name in index:
                raise ImageSourceError(f"{name} occurs twice (in {index[name]} and as {archive}:{member}); keep one copy")
            index[name] = archive
    return index


def report_missing(split: str, missing: Collection[str], listed: int, where: str, allow_missing: bool) -> None:
    """Raise :class:`MissingImagesError` for listed images that are absent, or log them with ``allow_missing``."""
    shown = ", ".join(sorted(missing)[:5]) + (" …" if len(missing) > 5 else "")
    if not allow_missing:
        raise MissingImagesError(
            f"{len(missing)} of the {listed} images of the {split} split are not in {where} ({shown}); "
            "complete the download, or build from what you have with allow_missing_images=True"
        )
    logger.warning("allow_missing_images: skipped %d of the %d images of the %s split (%s)",
                   len(missing), listed, split, shown)


def present_images(
    split: str, names: Sequence[str], index: Collection[str], where: str, allow_missing: bool
) -> List[str]:
    """The names found in ``index``; the others are reported by :func:`report_missing`."""
    missing = [name for name in names if name not in index]
    if missing:
        report_missing(split, missing, len(names), where, allow_missing)
    return [name for name in names if name in index]


def read_archives(
    archives: Sequence[Tuple[str, Iterable[Tuple[str, BinaryIO]]]],
    wanted: Collection[str],
    split: str,
    num_archives: int,
    allow_missing: bool,
) -> Iterator[Tuple[str, bytes, str]]:
    """Yield ``(image name, PNG bytes, "archive:member")`` for the ``wanted`` images in ``archives``.

    Args:
        archives: ``(path, dl_manager.iter_archive(path))`` pairs: this job's share of the split's archives.
        num_archives: how many archives the split has; a job that read them all also reports wanted images it did
            not find (streaming, which does not index the archives first, relies on this).

    Raises:
        ImageSourceError: for an image that occurs twice. CorruptArchiveError: see :func:`index_archives`.
    """
    seen = set()
    for path, members in archives:
        for name, member, png in _archive_images(members, path, wanted):
            if png is None:
                continue
            if name in seen:
                raise ImageSourceError(f"{name} occurs twice in the archives (again as {path}:{member}); keep one copy")
            seen.add(name)
            yield name, png, f"{path}:{member}"
    if 0 < num_archives == len(archives) and len(seen) < len(wanted):
        report_missing(split, set(wanted) - seen, len(wanted), "the archives", allow_missing)


def read_files(paths: Iterable[str]) -> Iterator[Tuple[str, bytes, str]]:
    """Yield ``(image name, PNG bytes, path)`` for extracted PNG files.

    Raises:
        MissingImagesError: for a file that can no longer be read.
    """
    for path in paths:
        try:
            with open(path, "rb") as handle:
                png = handle.read()
        except OSError as error:
            raise MissingImagesError(f"{path} cannot be read ({error}); restore it, or remove it and build with "
                                     "allow_missing_images=True") from None
        yield os.path.basename(path), png, path


def release_fingerprint(data_dir: Optional[str]) -> Optional[str]:
    """A short hash of the release in ``data_dir``; ``None`` without a folder. Part of the cache key.

    It covers the size, modification time and inode change time (``st_size``, ``st_mtime_ns``, ``st_ctime_ns``) of
    each metadata file, each archive and *each* NIH-named PNG of an extracted layout, so that a release that changed
    (a partial download completed, one PNG overwritten in place even with its old size and modification time) is
    built again instead of being served stale from the cache. The inode change time also moves on ``chmod`` or
    ``chown``, which costs a rebuild but never a stale result. Contents are not hashed: a change that keeps all three
    (a filesystem with coarse timestamps rewriting a file within one tick) is not seen; after such a change, load
    with ``load_dataset(..., download_mode="force_redownload")``, which builds again. Files in ``data_dir`` that the
    builder does not read (a cache kept there, say) are ignored. Cost: one ``stat`` per file, on every load (see
    ``benchmarks/README.md``).
    """
    if data_dir is None or not os.path.isdir(data_dir):
        return None
    release_files = set(ENTRY_CSV_NAMES + BBOX_CSV_NAMES)
    release_files |= {name + suffix for name in (TRAIN_VAL_LIST, TEST_LIST) for suffix in ("", ".gz")}
    paths = [
        os.path.join(data_dir, entry) for entry in os.listdir(data_dir)
        if entry in release_files or ARCHIVE_NAME.match(entry)
    ]
    paths += find_extracted(data_dir).values()
    digest = hashlib.sha256()
    for path in sorted(paths):
        try:
            status = os.stat(path)
        except OSError:
            continue
        digest.update(f"{os.path.relpath(path, data_dir)}\0{status.st_size}\0{status.st_mtime_ns}\0"
                      f"{status.st_ctime_ns}\n".encode())
    return digest.hexdigest()[:16]
