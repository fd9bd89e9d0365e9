"""One resumable HTTP download into a partial file, bounded in time: the transport under ``download``.

The bytes go into ``partial``, appended with an HTTP Range request when it already holds some. Time is bounded twice:
``timeout`` is how long a connection may wait for data, and ``deadline`` how long the whole download may take,
retries included. A socket timeout alone does not bound a server that sends one byte just before each timeout, so
when the deadline passes every connection of the download is shut down, which ends any read blocked on it.
"""

from __future__ import annotations

import http.client
import logging
import re
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Optional

from tqdm.auto import tqdm

logger = logging.getLogger(__name__)

_CHUNK = 1 << 20


class FetchError(Exception):
    """The download cannot go on; the message says why and what to do (the caller names the file)."""


class UnexpectedContentError(FetchError):
    """The server sent something that does not start as the file must; nothing of it was kept."""


def fetch(url: str, partial: Path, *, label: str, expected_start: bytes = b"", expected_kind: str = "",
          retries: int, timeout: float, deadline: Optional[float], progress: Optional[bool]) -> Optional[int]:
    """Fetch ``url`` into ``partial``, resuming from the bytes already there; return the size the server announced.

    ``label`` names the progress bar. ``expected_start``: the bytes the file must start with (``expected_kind``
    names such a file in the error), checked as soon as they arrive. A dropped connection is resumed up to
    ``retries`` times within ``deadline`` seconds (None: no limit).

    Raises:
        UnexpectedContentError: the first bytes are not ``expected_start`` (nothing is kept).
        FetchError: HTTP error, connection lost more than ``retries`` times, past the deadline, or a size that
            changed between requests; the message says whether the bytes fetched so far were kept.
    """
    with _Deadline(deadline) as clock:
        opener = _opener(clock)
        attempt, announced = 0, None
        while True:
            try:
                return _fetch_once(url, partial, opener, clock, announced, label=label, timeout=timeout,
                                   expected_start=expected_start, expected_kind=expected_kind, progress=progress)
            except (OSError, http.client.HTTPException) as err:
                if clock.expired:
                    raise FetchError(f"not complete within the {clock.seconds:g} s deadline; {_kept(partial)}, run "
                                     "again to resume (or give more --deadline)") from None
                if isinstance(err, _Announced):
                    announced, err = err.total, err.cause
                attempt += 1
                if attempt > retries:
                    raise FetchError(f"connection failed ({_reason(err)}) after {retries} retries; "
                                     f"{_kept(partial)}, run again to resume") from None
                logger.info("%s: connection lost (%s); resuming from byte %d", label, _reason(err), _size(partial))


class _Announced(OSError):
    """A dropped connection, carrying the size the server had announced."""

    def __init__(self, cause: BaseException, total: Optional[int]):
        super().__init__(str(cause))
        self.cause, self.total = cause, total


def _fetch_once(url: str, partial: Path, opener: urllib.request.OpenerDirector, clock: "_Deadline",
                announced: Optional[int], *, label: str, timeout: float, expected_start: bytes, expected_kind: str,
                progress: Optional[bool]) -> Optional[int]:
    """One request: append the rest of the file to ``partial``; return the full size when the server tells it.

    ``announced``: the size an earlier response gave; a server that now gives another is refused.
    """
    offset = _size(partial)
    request = urllib.request.Request(url, headers={"User-Agent": "nih-chestxray14"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = opener.open(request, timeout=clock.bounded(timeout))
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:
            # Nothing left to send: the partial file may already be whole.
            total = _content_range_total(err.headers.get("Content-Range"))
            if total == offset:
                return total
            partial.unlink()
            raise FetchError(f"the server refused to resume at byte {offset}; the partial file was deleted, run "
                             "again to fetch it afresh") from None
        raise FetchError(f"HTTP {err.code} {err.reason} from {url}; check that the link still works (NIH's links "
                         "are on its release page), then run again") from None
    except ValueError as err:  # malformed URL
        raise FetchError(f"cannot fetch {url!r}: {err}") from None

    with response:
        if offset and response.status == 206:
            start = _content_range_start(response.headers.get("Content-Range"))
            if start != offset:
                raise FetchError(f"asked to resume at byte {offset}, the server sent from {start}")
            total = _content_range_total(response.headers.get("Content-Range"))
            mode = "ab"
        else:
            if offset:
                logger.info("%s: the server does not resume; downloading again from the start", label)
            offset, mode = 0, "wb"
            length = response.headers.get("Content-Length")
            total = int(length) if length is not None else None
        if announced is not None and total is not None and total != announced:
            partial.unlink(missing_ok=True)
            raise FetchError(f"the server announced {announced} bytes, then {total}: the file changed while it was "
                             "fetched. The partial file was deleted, run again")
        head = b"" if offset == 0 and expected_start else None  # the first bytes, until they can be checked
        try:
            with open(partial, mode) as sink, tqdm(total=total, initial=offset, unit="B", unit_scale=True,
                                                   unit_divisor=1024, desc=label, disable=_disable(progress)) as bar:
                # read1 returns what one read of the socket brings, so the deadline is checked while a slow
                # server sends (read would wait for a whole chunk)
                while chunk := response.read1(_CHUNK):
                    if head is not None:
                        head += chunk[:64]
                        if len(head) >= len(expected_start):
                            if not head.startswith(expected_start):
                                raise _Unexpected(head)
                            head = None
                    sink.write(chunk)
                    bar.update(len(chunk))
                    if clock.expired:
                        raise TimeoutError("deadline")
        except _Unexpected as unexpected:
            partial.unlink(missing_ok=True)
            kind = response.headers.get("Content-Type")
            raise UnexpectedContentError(
                f"the server sent {kind + ' ' if kind else ''}content ({describe_start(unexpected.head)}), not "
                f"{expected_kind or 'the file'}; nothing was kept. {url} may be rate-limited or moved: try again "
                "later, or fetch the file in a browser into the same folder") from None
        except (OSError, http.client.HTTPException) as err:
            raise _Announced(err, total) from err
    received = _size(partial)
    if total is not None and received < total:
        # http.client returns a short body rather than raising when the peer closes early
        raise _Announced(http.client.IncompleteRead(b"", total - received), total)
    return total


class _Unexpected(Exception):
    def __init__(self, head: bytes):
        super().__init__()
        self.head = head


def describe_start(head: bytes) -> str:
    """How a file starts, for an error message: its first line if it is text, else its first bytes in hex.

    >>> describe_start(b"<html><body>Not found"), describe_start(b"\\x00\\x01\\x02"), describe_start(b"")
    ("it starts with '<html><body>Not found'", 'it starts with bytes 00 01 02', 'it is empty')
    """
    if not head:
        return "it is empty"
    text = head[:40].decode("ascii", errors="replace").split("\n")[0].strip()
    if text and all(character.isprintable() for character in text):
        return f"it starts with {text!r}"
    return f"it starts with bytes {head[:8].hex(' ')}"


# ---- the deadline ------------------------------------------------------------------------------------------------
class _Deadline:
    """A download's time limit: when it passes, every connection opened for the download is shut down."""

    def __init__(self, seconds: Optional[float]):
        self.seconds = seconds
        self.expired = False
        self._end = None if seconds is None else time.monotonic() + seconds
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = None if seconds is None else threading.Timer(seconds, self._expire)

    def __enter__(self) -> "_Deadline":
        if self._timer is not None:
            self._timer.daemon = True
            self._timer.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def bounded(self, timeout: float) -> float:
        """``timeout``, or the time left if that is less."""
        if self._end is None:
            return timeout
        return max(0.001, min(timeout, self._end - time.monotonic()))

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)
            if self.expired:
                _shut(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._sockets:
                _shut(sock)


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed


def _opener(clock: _Deadline) -> urllib.request.OpenerDirector:
    """urllib's opener (redirects, proxies from the environment), with every connection watched by ``clock``.

    The handlers pass their own connection class to ``do_open``, as urllib's own HTTP and HTTPS handlers do.
    """

    class WatchedHTTPConnection(http.client.HTTPConnection):
        def connect(self):
            super().connect()
            clock.watch(self.sock)

    class WatchedHTTPSConnection(http.client.HTTPSConnection):
        def connect(self):
            super().connect()
            clock.watch(self.sock)

    class HTTPHandler(urllib.request.HTTPHandler):
        def http_open(self, req):
            return self.do_open(WatchedHTTPConnection, req)

    class HTTPSHandler(urllib.request.HTTPSHandler):
        def __init__(self):
            self.tls = ssl.create_default_context()
            super().__init__(context=self.tls)

        def https_open(self, req):
            return self.do_open(WatchedHTTPSConnection, req, context=self.tls)

    return urllib.request.build_opener(HTTPHandler, HTTPSHandler)


# ---- small helpers -----------------------------------------------------------------------------------------------
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


def _kept(partial: Path) -> str:
    size = _size(partial)
    return f"{size} bytes kept in {partial.name}" if size else "nothing was received"


def _reason(err: BaseException) -> str:
    if isinstance(err, urllib.error.URLError) and not isinstance(err, urllib.error.HTTPError):
        return str(err.reason)
    return type(err).__name__ + (f": {err}" if str(err) else "")
