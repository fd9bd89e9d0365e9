"""Download NIH's image archives: resumable over HTTP Range, bounded in time, and checked before they get their names.

An archive is streamed into ``<name>.incomplete`` beside its final name. It is renamed only once it has been read in
full and found sound (:func:`check_archive`): a gzip stream that ends where it should, with its CRC; a tar archive
that reads to its end; the digest, where one is known (NIH's MD5s are, see ``archives.NIH_ARCHIVE_MD5``); the number
of PNGs, where it is known. So a final name always holds a checked archive. An interrupted download resumes from the
bytes already on disk, within one run (``retries``) or on the next run; a file that cannot be an archive (an HTML
error page served with status 200, a cut or altered archive) is deleted, never resumed.

Time is bounded twice: ``timeout`` is how long one connection may wait for data, and ``deadline`` is how long one
archive may take in all, retries included, however slowly a server sends.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import re
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterable, Mapping, Optional, Sequence

from . import archives as nih
from .errors import NIHChestXray14Error
from .fetch import FetchError, UnexpectedContentError, describe_start, fetch

logger = logging.getLogger(__name__)

INCOMPLETE_SUFFIX = ".incomplete"
DEFAULT_TIMEOUT = 60.0
"""Seconds one connection may wait for data before it counts as dropped."""
DEFAULT_DEADLINE = 6 * 3600.0
"""Seconds one archive may take in all, retries included."""

GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 20
_DIGEST_LENGTHS = {64: "sha256", 32: "md5"}


class DownloadError(NIHChestXray14Error, RuntimeError):
    """One archive could not be downloaded; the message names the archive and says what to do."""

    def __init__(self, archive: "Archive", reason: str):
        super().__init__(f"{archive.name}: {reason}")
        self.archive = archive
        self.reason = reason


class ChecksumMismatchError(DownloadError):
    """An archive arrived whole but its digest differs from the known one; the download has been deleted."""


class InvalidArchiveError(DownloadError):
    """What arrived is not a sound ``.tar.gz`` (an HTML page, a cut or altered archive); it has been deleted."""


class DownloadsFailedError(NIHChestXray14Error, RuntimeError):
    """Some archives failed; ``errors`` holds one :class:`DownloadError` per failing archive, ``paths`` the others."""

    def __init__(self, errors: Sequence[DownloadError], total: int, paths: Sequence[Path] = ()):
        self.errors = list(errors)
        self.paths = list(paths)
        lines = "\n".join(f"  {error}" for error in self.errors)
        super().__init__(f"{len(self.errors)} of {total} archives failed:\n{lines}")


@dataclass(frozen=True)
class Archive:
    """One file to fetch: its final ``name`` in the target folder and its ``url``; when known, its ``sha256`` or
    ``md5`` hex digest and ``members``, the number of PNGs it holds."""

    name: str
    url: str
    sha256: Optional[str] = None
    md5: Optional[str] = None
    members: Optional[int] = None

    @property
    def digest(self) -> Optional[tuple[str, str]]:
        """``(algorithm, hex digest)`` to check the archive against, or None: SHA-256 when known, else MD5."""
        if self.sha256:
            return "sha256", self.sha256.lower()
        if self.md5:
            return "md5", self.md5.lower()
        return None


def nih_archives(checksums: Optional[Mapping[str, str]] = None) -> list[Archive]:
    """NIH's 12 image archives, ``images_001.tar.gz`` … ``images_012.tar.gz``, with NIH's MD5s and PNG counts.

    ``checksums`` maps an archive name to a SHA-256 (64 hex digits) or MD5 (32) digest that replaces NIH's MD5.
    """
    checksums = checksums or {}
    found = []
    for name, url, md5, members in zip(nih.nih_archive_names(), nih.NIH_ARCHIVE_URLS, nih.NIH_ARCHIVE_MD5,
                                       nih.NIH_ARCHIVE_MEMBERS):
        given = checksums.get(name)
        if given is not None and _DIGEST_LENGTHS[len(given)] == "sha256":
            found.append(Archive(name, url, sha256=given, members=members))
        else:
            found.append(Archive(name, url, md5=given or md5, members=members))
    return found


def read_checksums(path: os.PathLike) -> dict[str, str]:
    """Read a ``sha256sum`` or ``md5sum`` file (``<hex digest>  <name>`` per line) into ``{name: digest}``.

    Raises ValueError naming the file and line for a line in any other shape.
    """
    checksums = {}
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = re.fullmatch(r"\s*([0-9a-fA-F]{64}|[0-9a-fA-F]{32})\s+\*?(\S.*?)\s*", line)
        if match is None:
            raise ValueError(f"{path}, line {number}: expected '<sha256 or md5 hex>  <archive name>', got {line!r}")
        checksums[Path(match.group(2)).name] = match.group(1).lower()
    return checksums


def download_archive(archive: Archive, target_dir: os.PathLike, *, retries: int = 3, timeout: float = DEFAULT_TIMEOUT,
                     deadline: Optional[float] = DEFAULT_DEADLINE, progress: Optional[bool] = None) -> Path:
    """Fetch one archive into ``target_dir``, check it, and return its final path.

    An archive already under its final name is kept (after a digest check when its digest is known). Bytes left
    in ``<name>.incomplete`` by an earlier attempt are resumed with an HTTP Range request; a dropped connection is
    resumed up to ``retries`` times. ``timeout``: seconds a connection may wait for data; ``deadline``: seconds the
    whole archive may take, retries included (None: no limit).

    Raises:
        ChecksumMismatchError: the digest differs from the known one (the download is deleted).
        InvalidArchiveError: not a ``.tar.gz``, cut short, or not the PNGs expected (the download is deleted).
        DownloadError: any other failure (HTTP error, connection lost more than ``retries`` times, past the
            deadline); the bytes fetched so far stay in ``<name>.incomplete`` for the next run.
    """
    target_dir = Path(target_dir)
    final = target_dir / archive.name
    partial = target_dir / (archive.name + INCOMPLETE_SUFFIX)
    if final.exists():
        _check_digest_of_final(archive, final)
        logger.info("%s already downloaded", final)
        return final
    target_dir.mkdir(parents=True, exist_ok=True)
    if partial.exists() and not GZIP_MAGIC.startswith(_head(partial)):
        logger.info("%s does not start like a gzip file: fetching it afresh", partial)
        partial.unlink()

    try:
        total = fetch(archive.url, partial, label=archive.name, expected_start=GZIP_MAGIC,
                      expected_kind="a gzip archive", retries=retries, timeout=timeout, deadline=deadline,
                      progress=progress)
    except UnexpectedContentError as err:
        raise InvalidArchiveError(archive, str(err)) from None
    except FetchError as err:
        raise DownloadError(archive, str(err)) from None
    size = _size(partial)
    if total is not None and size != total:
        partial.unlink()
        raise DownloadError(archive, f"got {size} bytes but the server announced {total}; the download was deleted, "
                                     "run again to fetch it afresh")
    try:
        check_archive(partial, archive)
    except DownloadError:
        partial.unlink()
        raise
    os.replace(partial, final)
    return final


def download_archives(archives: Iterable[Archive], target_dir: os.PathLike, **kwargs) -> list[Path]:
    """Fetch every archive (see :func:`download_archive` for ``kwargs``), carrying on past failures.

    Returns the final paths. Raises DownloadsFailedError listing every archive that failed, after trying them all;
    nothing is logged for a failure, so that whoever catches the error reports each one once.
    """
    archives = list(archives)
    paths, errors = [], []
    for archive in archives:
        try:
            paths.append(download_archive(archive, target_dir, **kwargs))
        except DownloadError as error:
            errors.append(error)
    if errors:
        raise DownloadsFailedError(errors, len(archives), paths)
    return paths


def check_archive(path: os.PathLike, archive: Archive) -> None:
    """Read ``path`` once, in full, and raise unless it is a sound ``.tar.gz`` and the archive expected.

    Checks, in one pass: the gzip signature, the gzip stream to its end (CRC and length), the tar archive to its end,
    the digest when ``archive`` knows one, and the number of PNG members when ``archive.members`` is known.

    Raises:
        InvalidArchiveError: not gzip, cut short, corrupt, or holding another number of PNGs.
        ChecksumMismatchError: the digest differs.
    """
    path = Path(path)
    digest = archive.digest
    hasher = hashlib.new(digest[0], usedforsecurity=False) if digest else None
    with open(path, "rb") as raw:
        head = raw.read(64)
        if not head.startswith(GZIP_MAGIC):
            raise InvalidArchiveError(archive, f"not a gzip file ({describe_start(head)}); the download was deleted. "
                                               f"The server at {archive.url} sent something else: try again later, "
                                               "or fetch the archive in a browser into the same folder")
        raw.seek(0)
        reader = _HashingReader(raw, hasher)
        pngs, last = 0, None
        try:
            with gzip.GzipFile(fileobj=reader, mode="rb") as unzipped:
                with tarfile.open(fileobj=unzipped, mode="r|") as tar:
                    for member in tar:
                        if member.isfile() and member.name.lower().endswith(".png"):
                            pngs += 1
                        last = member.name
                while unzipped.read(_CHUNK):  # the tar's padding; reaching the end checks the gzip CRC and length
                    pass
        except (EOFError, OSError, zlib.error, tarfile.TarError) as err:
            after = f" after member {last}" if last else ""
            raise InvalidArchiveError(archive, f"the archive is cut short or corrupt{after} ({type(err).__name__}: "
                                               f"{err}); the download was deleted, run again to fetch it afresh"
                                      ) from None
        while reader.read(_CHUNK):
            pass
    if digest is not None and hasher.hexdigest() != digest[1]:
        raise ChecksumMismatchError(archive, f"{digest[0].upper()} is {hasher.hexdigest()}, expected {digest[1]}; "
                                             f"the download from {archive.url} was deleted, run again to fetch it "
                                             "afresh")
    if archive.members is not None and pngs != archive.members:
        raise InvalidArchiveError(archive, f"holds {pngs:,} PNGs where {archive.members:,} are expected; it is not "
                                           f"the archive published at {archive.url}. The download was deleted")


# ---- small helpers -----------------------------------------------------------------------------------------------
class _HashingReader:
    """A read-only file that feeds what is read through it to ``hasher`` (if any)."""

    def __init__(self, raw: BinaryIO, hasher):
        self.raw, self.hasher = raw, hasher

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        if self.hasher is not None:
            self.hasher.update(data)
        return data


def _check_digest_of_final(archive: Archive, final: Path) -> None:
    digest = archive.digest
    if digest is None:
        return
    hasher = hashlib.new(digest[0], usedforsecurity=False)
    with open(final, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            hasher.update(chunk)
    if hasher.hexdigest() != digest[1]:
        raise ChecksumMismatchError(archive, f"{final} exists but its {digest[0].upper()} is not {digest[1]}; "
                                             "delete it and run again")


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def _head(path: Path) -> bytes:
    with open(path, "rb") as handle:
        return handle.read(len(GZIP_MAGIC))
