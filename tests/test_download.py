"""download: archives over HTTP resume after a dropped connection, are checked in full before they get their final
name, are bounded in time, and fail one by one with a reason. Every server here is a local 127.0.0.1 one."""

import gzip
import hashlib
import io
import os
import tarfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from nih_chestxray14 import archives
from nih_chestxray14.download import (
    Archive,
    ChecksumMismatchError,
    DownloadError,
    DownloadsFailedError,
    InvalidArchiveError,
    check_archive,
    download_archive,
    download_archives,
    nih_archives,
    read_checksums,
)


def make_archive(num_pngs=3, png_size=100_000, seed=0):
    """A small ``.tar.gz`` shaped like NIH's: ``images/NNNNNNNN_NNN.png`` members (random bytes, so it stays about
    ``num_pngs * png_size`` bytes once compressed)."""
    rng = __import__("random").Random(seed)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for index in range(num_pngs):
            data = rng.randbytes(png_size)
            info = tarfile.TarInfo(f"images/{seed:08d}_{index:03d}.png")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


class ArchiveServer:
    """Serves ``files`` with Range support, and misbehaves on request, per file name:

    ``drop_after[name] = n``: cut the connection after n bytes, once; ``content_length[name]``: announce this
    length instead; ``content_type[name]``: send this type; ``dribble_body`` / ``dribble_headers``: names whose body
    or status line is sent one byte per ``dribble_seconds`` (a slowloris server).
    """

    def __init__(self, files):
        self.files = files
        self.drop_after, self.content_length, self.content_type = {}, {}, {}
        self.dribble_body, self.dribble_headers, self.dribble_seconds = set(), set(), 0.2
        self.honour_range = True
        self.ranges = []  # (name, Range header or None) per GET
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def dribble(self, data):
                for byte in data[: int(20 / server.dribble_seconds)]:  # at most 20 s, then give up
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(server.dribble_seconds)

            def do_GET(self):
                name = self.path.lstrip("/")
                server.ranges.append((name, self.headers.get("Range")))
                if name not in server.files:
                    self.send_error(404, "Not Found")
                    return
                if name in server.dribble_headers:
                    self.dribble(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789")
                    return
                data = server.files[name]
                start = 0
                if self.headers.get("Range") and server.honour_range:
                    start = int(self.headers["Range"].split("=")[1].rstrip("-"))
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Type", server.content_type.get(name, "application/octet-stream"))
                length = server.content_length.get(name, len(data) - start)
                self.send_header("Content-Length", str(length))
                self.end_headers()
                if name in server.dribble_body:
                    self.dribble(data[start:])
                    return
                cut = server.drop_after.pop(name, None)
                self.wfile.write(data[start:cut] if cut is not None else data[start:start + length])
                if cut is not None:
                    self.wfile.flush()
                    self.close_connection = True

        class Server(ThreadingHTTPServer):
            def handle_error(self, request, client_address):
                pass  # a client that gave up (as the downloader does on purpose here) is not an error

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def archive(self, name, sha256=None, **known):
        return Archive(name, f"{self.url}/{name}", sha256, **known)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def archive_bytes():
    return {f"images_{i:03d}.tar.gz": make_archive(seed=i) for i in (1, 2, 3)}


@pytest.fixture
def server(archive_bytes):
    srv = ArchiveServer(dict(archive_bytes))
    yield srv
    srv.close()


def sha(data):
    return hashlib.sha256(data).hexdigest()


def names_in(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_dropped_connection_resumes_with_range_within_one_run(server, tmp_path):
    name = "images_001.tar.gz"
    server.drop_after[name] = 100_000
    path = download_archive(server.archive(name, sha(server.files[name])), tmp_path, progress=False)
    assert path.read_bytes() == server.files[name]
    assert server.ranges == [(name, None), (name, "bytes=100000-")]
    assert not (tmp_path / f"{name}.incomplete").exists()


def test_interrupted_run_keeps_only_the_partial_and_the_next_run_resumes(server, tmp_path):
    name = "images_002.tar.gz"
    server.drop_after[name] = 120_000
    with pytest.raises(DownloadError, match=r"images_002\.tar\.gz: connection failed .* run again to resume"):
        download_archive(server.archive(name), tmp_path, retries=0, progress=False)
    assert names_in(tmp_path) == [f"{name}.incomplete"]
    assert (tmp_path / f"{name}.incomplete").stat().st_size == 120_000

    download_archive(server.archive(name), tmp_path, progress=False)
    assert (tmp_path / name).read_bytes() == server.files[name]
    assert server.ranges[-1] == (name, "bytes=120000-")


def test_checksum_mismatch_is_refused_and_nothing_is_left_under_any_name(server, tmp_path):
    name = "images_003.tar.gz"
    with pytest.raises(ChecksumMismatchError, match=r"images_003\.tar\.gz: SHA256 is [0-9a-f]{64}, expected 0{64}"):
        download_archive(server.archive(name, "0" * 64), tmp_path, progress=False)
    assert names_in(tmp_path) == []


def test_md5_is_checked_as_nih_publishes_it(server, tmp_path):
    name = "images_001.tar.gz"
    with pytest.raises(ChecksumMismatchError, match=r"MD5 is [0-9a-f]{32}, expected a{32}"):
        download_archive(server.archive(name, md5="a" * 32), tmp_path, progress=False)
    assert names_in(tmp_path) == []
    right = hashlib.md5(server.files[name]).hexdigest()
    assert download_archive(server.archive(name, md5=right), tmp_path, progress=False).read_bytes() == \
        server.files[name]


def test_each_failing_archive_gets_its_own_error_and_the_rest_still_arrive(server, tmp_path, caplog):
    archives_ = [
        server.archive("images_001.tar.gz"),
        server.archive("images_009.tar.gz"),  # not served: 404
        server.archive("images_003.tar.gz", "f" * 64),
    ]
    with pytest.raises(DownloadsFailedError) as excinfo:
        download_archives(archives_, tmp_path, progress=False)
    errors = {e.archive.name: e.reason for e in excinfo.value.errors}
    assert set(errors) == {"images_009.tar.gz", "images_003.tar.gz"}
    assert errors["images_009.tar.gz"].startswith("HTTP 404")
    assert "expected " + "f" * 64 in errors["images_003.tar.gz"]
    assert "2 of 3 archives failed" in str(excinfo.value)
    assert names_in(tmp_path) == ["images_001.tar.gz"]
    assert excinfo.value.paths == [tmp_path / "images_001.tar.gz"]
    assert not [r for r in caplog.records if r.levelname in ("WARNING", "ERROR")]  # the caller reports them, once


def test_complete_archive_is_not_fetched_again(server, tmp_path):
    name = "images_001.tar.gz"
    download_archive(server.archive(name), tmp_path, progress=False)
    download_archive(server.archive(name, sha(server.files[name])), tmp_path, progress=False)
    assert [r for r in server.ranges if r[0] == name] == [(name, None)]


def test_a_wrong_file_already_under_the_final_name_is_reported_not_trusted(server, tmp_path):
    name = "images_001.tar.gz"
    (tmp_path / name).write_bytes(b"<html>an error page an older version kept under the archive's name</html>")
    right = hashlib.md5(server.files[name]).hexdigest()
    with pytest.raises(ChecksumMismatchError, match=rf"{name} exists but its MD5 is not {right}; delete it and run"):
        download_archive(server.archive(name, md5=right), tmp_path, progress=False)
    assert server.ranges == []


def test_checksums_file_is_read_and_malformed_lines_name_the_line(tmp_path):
    good = tmp_path / "SHA256SUMS"
    good.write_text(f"{'a' * 64}  images_001.tar.gz\n# comment\n{'B' * 64} *dir/images_002.tar.gz\n"
                    f"{'c' * 32}  images_003.tar.gz\n")
    assert read_checksums(good) == {"images_001.tar.gz": "a" * 64, "images_002.tar.gz": "b" * 64,
                                    "images_003.tar.gz": "c" * 32}
    bad = tmp_path / "bad"
    bad.write_text(f"{'a' * 64}  images_001.tar.gz\nnot a checksum\n")
    with pytest.raises(ValueError, match=r"bad, line 2"):
        read_checksums(bad)


def test_nih_archives_carry_nih_md5s_and_png_counts_unless_a_checksum_is_given():
    found = nih_archives()
    assert [a.name for a in found] == [f"images_{i:03d}.tar.gz" for i in range(1, 13)]
    assert [a.md5 for a in found] == list(archives.NIH_ARCHIVE_MD5)
    assert [a.members for a in found] == list(archives.NIH_ARCHIVE_MEMBERS) and sum(a.members for a in found) == 112_120
    given = nih_archives({"images_002.tar.gz": "e" * 64, "images_003.tar.gz": "d" * 32})
    assert given[1].digest == ("sha256", "e" * 64) and given[2].digest == ("md5", "d" * 32)
    assert given[0].digest == ("md5", archives.NIH_ARCHIVE_MD5[0])


def test_partial_that_is_already_whole_is_finished_without_refetching(server, tmp_path):
    name = "images_001.tar.gz"
    (tmp_path / f"{name}.incomplete").write_bytes(server.files[name])  # killed just before the rename
    path = download_archive(server.archive(name, sha(server.files[name])), tmp_path, progress=False)
    assert path.read_bytes() == server.files[name]
    assert server.ranges == [(name, f"bytes={len(server.files[name])}-")]
    assert names_in(tmp_path) == [name]


def test_server_that_ignores_range_gets_a_fresh_full_download(server, tmp_path):
    name = "images_002.tar.gz"
    server.honour_range = False
    (tmp_path / f"{name}.incomplete").write_bytes(server.files[name][:1000])
    path = download_archive(server.archive(name, sha(server.files[name])), tmp_path, progress=False)
    assert path.read_bytes() == server.files[name]


# ---- what is refused: nothing of it ever gets the archive's name ---------------------------------------------------
def test_an_html_error_page_served_with_status_200_is_refused(server, tmp_path):
    name = "images_001.tar.gz"
    server.files[name] = b"<!DOCTYPE html><html><body>Too many requests, try later</body></html>\n" + b" " * 21
    server.content_type[name] = "text/html; charset=utf-8"
    with pytest.raises(InvalidArchiveError, match=r"images_001\.tar\.gz: the server sent text/html; charset=utf-8 "
                                                  r"content \(it starts with '<!DOCTYPE html>.*'\), not a gzip "
                                                  r"archive; nothing was kept"):
        download_archive(server.archive(name), tmp_path, progress=False)
    assert names_in(tmp_path) == []


def test_a_short_content_length_leaves_no_truncated_archive(server, tmp_path):
    name = "images_002.tar.gz"
    server.content_length[name] = len(server.files[name]) // 2  # the server cuts the archive and says it is whole
    with pytest.raises(InvalidArchiveError, match=r"images_002\.tar\.gz: the archive is cut short or corrupt after "
                                                  r"member images/\S+\.png .* run again to fetch it afresh"):
        download_archive(server.archive(name), tmp_path, progress=False)
    assert names_in(tmp_path) == []


@pytest.mark.parametrize("wrong, reason", [
    (b"\x00\x01" + os.urandom(50_000), r"sent application/octet-stream content \(it starts with bytes 00 01 "),
    (b"\x1f\x8b" + os.urandom(50_000), r"cut short or corrupt"),
    (gzip.compress(os.urandom(50_000)), r"cut short or corrupt"),  # gzip, but not a tar archive
    (make_archive(num_pngs=2, seed=9), r"holds 2 PNGs where 3 are expected"),  # a sound archive, not the one expected
])
def test_wrong_bytes_are_refused_without_a_checksum(server, tmp_path, wrong, reason):
    name = "images_003.tar.gz"
    server.files[name] = wrong
    with pytest.raises(InvalidArchiveError, match=reason):
        download_archive(server.archive(name, members=3), tmp_path, progress=False)
    assert names_in(tmp_path) == []


def test_an_earlier_html_partial_is_not_resumed(server, tmp_path):
    name = "images_001.tar.gz"
    (tmp_path / f"{name}.incomplete").write_bytes(b"<html>an error page kept by an older version</html>")
    download_archive(server.archive(name, sha(server.files[name])), tmp_path, progress=False)
    assert server.ranges == [(name, None)]  # fetched afresh, not resumed after the page
    assert (tmp_path / name).read_bytes() == server.files[name]


def test_a_size_that_changes_between_requests_is_refused(server, tmp_path):
    name = "images_002.tar.gz"
    server.drop_after[name] = 100_000
    original = server.files[name]

    class Grows(dict):  # after the first request, the server has another (longer) file under the same name
        def __getitem__(self, key):
            return original + (b"x" * 10 if server.ranges[-1][1] else b"")

    server.files = Grows(server.files)
    with pytest.raises(DownloadError, match=r"announced \d+ bytes, then \d+: the file changed"):
        download_archive(server.archive(name), tmp_path, progress=False)
    assert names_in(tmp_path) == []


@pytest.mark.parametrize("where", ["body", "headers"])
def test_a_slow_server_cannot_hold_an_archive_past_its_deadline(server, tmp_path, where):
    name = "images_001.tar.gz"
    getattr(server, f"dribble_{where}").add(name)
    start = time.monotonic()
    with pytest.raises(DownloadError, match=r"images_001\.tar\.gz: not complete within the 1\.5 s deadline; .*run "
                                            r"again to resume"):
        download_archive(server.archive(name), tmp_path, timeout=1.0, deadline=1.5, retries=5, progress=False)
    assert time.monotonic() - start < 4  # one byte every 0.2 s never trips the 1 s timeout; the deadline does
    assert name not in names_in(tmp_path)


def test_check_archive_accepts_a_sound_archive_and_counts_its_pngs(tmp_path, archive_bytes):
    path = tmp_path / "images_001.tar.gz"
    path.write_bytes(archive_bytes["images_001.tar.gz"])
    check_archive(path, Archive(path.name, "http://x", sha(path.read_bytes()), members=3))
    with pytest.raises(InvalidArchiveError, match="holds 3 PNGs where 4 are expected"):
        check_archive(path, Archive(path.name, "http://x", members=4))


def test_docstring_examples_of_the_transport_run():
    import doctest

    import nih_chestxray14.fetch

    results = doctest.testmod(nih_chestxray14.fetch)
    assert results.attempted > 0 and results.failed == 0
