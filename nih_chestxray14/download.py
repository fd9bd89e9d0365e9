"""Download NIH's image archives: resumable over HTTP Range, checked, with a progress bar per archive.

An archive is streamed into ``<name>.incomplete`` beside its final name and renamed only once it is whole (and, where
its SHA-256 is known, matches). So a final name always holds a complete archive, and an interrupted download resumes
from the bytes already on disk, within one run (``retries``) or on the next run.

NIH's links are the ``archives.NIH_ARCHIVE_URLS``; this module only fetches them. NIH publishes no checksums, so checksums are
known only when the caller passes them (``sha256sum`` format, see :func:`read_checksums`).
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Optional, Sequence

from tqdm.auto import tqdm

from .archives import NIH_ARCHIVE_URLS, nih_archive_names
from .errors import NIHChestXray14Error

logger = logging.getLogger(__name__)

INCOMPLETE_SUFFIX = ".incomplete"
_CHUNK = 1 << 20
_TRANSIENT = (http.client.IncompleteRead, ConnectionError, socket.timeout, TimeoutError, urllib.error.URLError)


class DownloadError(NIHChestXray14Error, RuntimeError):
    """One archive could not be downloaded; the message names the archive, the URL and what to do."""

    def __init__(self, archive: "Archive", reason: str):
        super().__init__(f"{archive.name}: {reason}")
        self.archive = archive
        self.reason = reason


class ChecksumMismatchError(DownloadError):
    """An archive arrived whole but its SHA-256 differs from the known one; the partial file has been deleted."""


class DownloadsFailedError(NIHChestXray14Error, RuntimeError):
    """Some archives failed; ``errors`` holds one :class:`DownloadError` per failing archive."""

    def __init__(self, errors: Sequence[DownloadError], total: int):
        self.errors = list(errors)
        lines = "\n".join(f"  {error}" for error in self.errors)
        super().__init__(f"{len(self.errors)} of {total} archives failed:\n{lines}")


@dataclass(frozen=True)
class Archive:
    """One file to fetch: its final ``name`` in the target folder, its ``url`` and, when known, its ``sha256``."""

    name: str
    url: str
    sha256: Optional[str] = None


def nih_archives(checksums: Optional[Mapping[str, str]] = None) -> list[Archive]:
    """NIH's 12 image archives, named ``images_001.tar.gz`` … ``images_012.tar.gz``, from the ``archives.NIH_ARCHIVE_URLS``.

    ``checksums`` maps an archive name to its SHA-256 hex digest.
    """

    checksums = checksums or {}
    return [Archive(name, url, checksums.get(name)) for name, url in zip(nih_archive_names(), NIH_ARCHIVE_URLS)]


def read_checksums(path: os.PathLike) -> dict[str, str]:
    """Read a ``sha256sum``-style file (``<64 hex digits>  <name>`` per line) into ``{name: digest}``.

    Raises ValueError naming the file and line for a line in any other shape.
    """
    checksums = {}
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = re.fullmatch(r"\s*([0-9a-fA-F]{64})\s+\*?(\S.*?)\s*", line)
        if match is None:
            raise ValueError(f"{path}, line {number}: expected '<sha256 hex>  <archive name>', got {line!r}")
        checksums[Path(match.group(2)).name] = match.group(1).lower()
    return checksums


def download_archive(archive: Archive, target_dir: os.PathLike, *, retries: int = 3, timeout: float = 60.0,
                     progress: Optional[bool] = None) -> Path:
    """Fetch one archive into ``target_dir`` and return its final path.

    An archive already under its final name is kept (after a checksum check when its SHA-256 is known). Bytes left
    in ``<name>.incomplete`` by an earlier attempt are resumed with an HTTP Range request; a dropped connection is
    resumed up to ``retries`` times.

    Raises:
        ChecksumMismatchError: the whole file's SHA-256 differs from ``archive.sha256`` (the partial is deleted).
        DownloadError: any other failure (HTTP error, size mismatch, connection lost more than ``retries`` times);
            the bytes fetched so far stay in ``<name>.incomplete`` for the next run.
    """
    target_dir = Path(target_dir)
    final = target_dir / archive.name
    partial = target_dir / (archive.name + INCOMPLETE_SUFFIX)
    if final.exists():
        if archive.sha256 is not None and _sha256_of(final) != archive.sha256.lower():
            raise ChecksumMismatchError(
                archive, f"{final} exists but its SHA-256 is not {archive.sha256}; delete it and run again")
        logger.info("%s already downloaded", final)
        return final
    target_dir.mkdir(parents=True, exist_ok=True)

    attempt = 0
    while True:
        try:
            total = _fetch_into(archive, partial, timeout=timeout, progress=progress)
            break
        except _TRANSIENT as err:
            attempt += 1
            if attempt > retries:
                raise DownloadError(
                    archive, f"connection failed ({_describe(err)}) after {retries} retries; "
                             f"{_size(partial)} bytes kept in {partial.name}, run again to resume") from err
            logger.warning("%s: connection lost (%s); resuming from byte %d",
                           archive.name, _describe(err), _size(partial))

    size = _size(partial)
    if total is not None and size != total:
        partial.unlink()
        raise DownloadError(archive, f"got {size} bytes but the server announced {total}; the download was deleted, "
                                     "run again to fetch it afresh")
    if archive.sha256 is not None:
        digest = _sha256_of(partial)
        if digest != archive.sha256.lower():
            partial.unlink()
            raise ChecksumMismatchError(archive, f"SHA-256 is {digest}, expected {archive.sha256}; the download "
                                                 f"from {archive.url} was deleted, run again to fetch it afresh")
    os.replace(partial, final)
    return final


def download_archives(archives: Iterable[Archive], target_dir: os.PathLike, **kwargs) -> list[Path]:
    """Fetch every archive (see :func:`download_archive` for ``kwargs``), carrying on past failures.

    Returns the final paths. Raises DownloadsFailedError listing every archive that failed, after trying them all.
    """
    archives = list(archives)
    paths, errors = [], []
    for archive in archives:
        try:
            paths.append(download_archive(archive, target_dir, **kwargs))
        except DownloadError as error:
            logger.error("%s", error)
            errors.append(error)
    if errors:
        raise DownloadsFailedError(errors, len(archives))
    return paths


def _fetch_into(archive: Archive, partial: Path, *, timeout: float, progress: Optional[bool]) -> Optional[int]:
    """Append the rest of the archive to ``partial``; return the full size when the server tells it."""
    offset = _size(partial)
    request = urllib.request.Request(archive.url, headers={"User-Agent": "nih-chestxray14"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:
            # Nothing left to send: the partial file may already be whole.
            total = _content_range_total(err.headers.get("Content-Range"))
            if total == offset:
                return total
            partial.unlink()
            raise DownloadError(archive, f"the server refused to resume at byte {offset}; the partial file was "
                                         "deleted, run again to fetch it afresh") from None
        raise DownloadError(archive, f"HTTP {err.code} {err.reason} from {archive.url}") from None
    except ValueError as err:  # malformed URL
        raise DownloadError(archive, f"cannot fetch {archive.url!r}: {err}") from None

    with response:
        if offset and response.status == 206:
            start = _content_range_start(response.headers.get("Content-Range"))
            if start != offset:
                raise DownloadError(archive, f"asked to resume at byte {offset}, the server sent from {start}")
            total = _content_range_total(response.headers.get("Content-Range"))
            mode = "ab"
        else:
            if offset:
                logger.info("%s: the server does not resume; downloading again from the start", archive.name)
            offset, mode = 0, "wb"
            length = response.headers.get("Content-Length")
            total = int(length) if length is not None else None
        with open(partial, mode) as sink, tqdm(total=total, initial=offset, unit="B", unit_scale=True,
                                               unit_divisor=1024, desc=archive.name, disable=_disable(progress)) as bar:
            while chunk := response.read(_CHUNK):
                sink.write(chunk)
                bar.update(len(chunk))
    received = _size(partial)
    if total is not None and received < total:
        # http.client returns a short body rather than raising when the peer closes early
        raise http.client.IncompleteRead(b"", total - received)
    return total


def _disable(progress: Optional[bool]) -> Optional[bool]:
    # tqdm's disable=None hides the bar when stderr is not a terminal (logs, CI)
    return None if progress is None else not progress


def _content_range_start(value: Optional[str]) -> Optional[int]:
    match = re.match(r"bytes (\d+)-", value or "")
    return int(match.group(1)) if match else None


def _content_range_total(value: Optional[str]) -> Optional[int]:
    match = re.search(r"/(\d+)$", value or "")
    return int(match.group(1)) if match else None


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _describe(err: BaseException) -> str:
    if isinstance(err, urllib.error.URLError) and not isinstance(err, urllib.error.HTTPError):
        return str(err.reason)
    return type(err).__name__ + (f": {err}" if str(err) else "")
