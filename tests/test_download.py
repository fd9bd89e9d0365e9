"""download: archives over HTTP resume after a dropped connection, are checked, and fail one by one with a reason."""

import hashlib
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from nih_chestxray14.download import (
    Archive,
    ChecksumMismatchError,
    DownloadError,
    DownloadsFailedError,
    download_archive,
    download_archives,
    read_checksums,
)


class ArchiveServer:
    """Serves ``files`` with Range support; ``drop_after[name] = n`` cuts the connection after n bytes, once."""

    def __init__(self, files):
        self.files = files
        self.drop_after = {}
        self.honour_range = True
        self.ranges = []  # (name, Range header or None) per GET
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                name = self.path.lstrip("/")
                server.ranges.append((name, self.headers.get("Range")))
                if name not in server.files:
                    self.send_error(404, "Not Found")
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
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                cut = server.drop_after.pop(name, None)
                self.wfile.write(data[start:cut] if cut is not None else data[start:])
                if cut is not None:
                    self.wfile.flush()
                    self.close_connection = True

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def archive(self, name, sha256=None):
        return Archive(name, f"{self.url}/{name}", sha256)


@pytest.fixture
def server():
    files = {f"images_{i:03d}.tar.gz": os.urandom(300_000 + i) for i in (1, 2, 3)}
    srv = ArchiveServer(files)
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()


def sha(data):
    return hashlib.sha256(data).hexdigest()


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
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{name}.incomplete"]
    assert (tmp_path / f"{name}.incomplete").stat().st_size == 120_000

    download_archive(server.archive(name), tmp_path, progress=False)
    assert (tmp_path / name).read_bytes() == server.files[name]
    assert server.ranges[-1] == (name, "bytes=120000-")


def test_checksum_mismatch_is_refused_and_nothing_is_left_under_any_name(server, tmp_path):
    name = "images_003.tar.gz"
    with pytest.raises(ChecksumMismatchError, match=r"images_003\.tar\.gz: SHA-256 is [0-9a-f]{64}, expected 0{64}"):
        download_archive(server.archive(name, "0" * 64), tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_each_failing_archive_gets_its_own_error_and_the_rest_still_arrive(server, tmp_path):
    archives = [
        server.archive("images_001.tar.gz"),
        server.archive("images_009.tar.gz"),  # not served: 404
        server.archive("images_003.tar.gz", "f" * 64),
    ]
    with pytest.raises(DownloadsFailedError) as excinfo:
        download_archives(archives, tmp_path, progress=False)
    errors = {e.archive.name: e.reason for e in excinfo.value.errors}
    assert set(errors) == {"images_009.tar.gz", "images_003.tar.gz"}
    assert errors["images_009.tar.gz"].startswith("HTTP 404")
    assert "expected " + "f" * 64 in errors["images_003.tar.gz"]
    assert "2 of 3 archives failed" in str(excinfo.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images_001.tar.gz"]


def test_complete_archive_is_not_fetched_again(server, tmp_path):
    name = "images_001.tar.gz"
    download_archive(server.archive(name), tmp_path, progress=False)
    download_archive(server.archive(name, sha(server.files[name])), tmp_path, progress=False)
    assert [r for r in server.ranges if r[0] == name] == [(name, None)]


def test_checksums_file_is_read_and_malformed_lines_name_the_line(tmp_path):
    good = tmp_path / "SHA256SUMS"
    good.write_text(f"{'a' * 64}  images_001.tar.gz\n# comment\n{'B' * 64} *dir/images_002.tar.gz\n")
    assert read_checksums(good) == {"images_001.tar.gz": "a" * 64, "images_002.tar.gz": "b" * 64}
    bad = tmp_path / "bad"
    bad.write_text(f"{'a' * 64}  images_001.tar.gz\nnot a checksum\n")
    with pytest.raises(ValueError, match=r"bad, line 2"):
        read_checksums(bad)


def test_partial_that_is_already_whole_is_finished_without_refetching(server, tmp_path):
    name = "images_001.tar.gz"
    (tmp_path / f"{name}.incomplete").write_bytes(server.files[name])  # killed just before the rename
    path = download_archive(server.archive(name, sha(server.files[name])), tmp_path, progress=False)
    assert path.read_bytes() == server.files[name]
    assert server.ranges == [(name, f"bytes={len(server.files[name])}-")]
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


def test_server_that_ignores_range_gets_a_fresh_full_download(server, tmp_path):
    name = "images_002.tar.gz"
    server.honour_range = False
    (tmp_path / f"{name}.incomplete").write_bytes(b"stale bytes from another attempt")
    path = download_archive(server.archive(name, sha(server.files[name])), tmp_path, progress=False)
    assert path.read_bytes() == server.files[name]
