"""Every command: --help explains it, and bad input gets a non-zero exit and one line naming what is wrong."""

import hashlib
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from nih_chestxray14.__main__ import main

REPO = Path(__file__).resolve().parents[1]


def run_cli(*argv, cwd=None):
    """The real entry point in its own process: exit status, stdout, stderr."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    completed = subprocess.run([sys.executable, "-m", "nih_chestxray14", *map(str, argv)], capture_output=True,
                               text=True, cwd=cwd, env=env, timeout=300)
    return completed.returncode, completed.stdout, completed.stderr


def one_error_line(capsys, code, expected_code=None):
    err = capsys.readouterr().err.strip()
    assert code != 0
    if expected_code is not None:
        assert code == expected_code
    assert len(err.splitlines()) == 1, err
    assert err.startswith("nih-chestxray14") and "Traceback" not in err
    return err


@pytest.mark.slow
def test_every_command_has_help_that_explains_it(capsys):
    code, out, _ = run_cli("--help")
    assert code == 0 and all(c in out for c in ("download", "prepare", "export", "push", "show"))
    for command, words in {
        "download": "resumes", "prepare": "cache", "export": "Parquet", "push": "never printed", "show": "findings",
    }.items():
        with pytest.raises(SystemExit) as exited:
            main([command, "--help"])
        assert exited.value.code == 0 and words in " ".join(capsys.readouterr().out.split()), command


@pytest.mark.slow
def test_bad_input_through_the_real_entry_point_is_one_line_without_traceback(tmp_path):
    code, out, err = run_cli("export", "--data-dir", tmp_path / "absent", tmp_path / "out")
    assert code == 2 and out == ""
    assert err.strip() == (f"nih-chestxray14 export: error: --data-dir {tmp_path / 'absent'}: no such folder; "
                           "point it at your copy of NIH's release")
    code, _, err = run_cli("prepare", "--data-dir", tmp_path)  # a folder without NIH's metadata
    assert code == 1 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "Data_Entry" in err


@pytest.mark.parametrize("argv, reason, expected_code", [
    ([], "the following arguments are required: COMMAND", 2),
    (["publish"], "invalid choice: 'publish'", 2),
    (["export", "--data-dir", "{release}"], "the following arguments are required: OUT", 2),
    (["export", "--data-dir", "{release}", "--config", "resized-100", "{tmp}/o"], "invalid choice: 'resized-100'", 2),
    (["export", "--data-dir", "{tmp}/nowhere", "{tmp}/o"], "--data-dir {tmp}/nowhere: no such folder", 2),
    (["export", "--data-dir", "{release}", "--num-proc", "0", "{tmp}/o"], "--num-proc: 0 must be at least 1", 2),
    (["export", "--data-dir", "{release}", "--validation-fraction", "1.5", "{tmp}/o"], "1.5 must be in [0, 1)", 2),
    (["export", "--data-dir", "{release}", "--max-shard-size", "big", "{tmp}/o"],
     "--max-shard-size 'big' is not a size; write e.g. 500MB", 1),
    (["export", "--data-dir", "{release}", "{tmp}/a-file"], "OUT {tmp}/a-file is a file", 2),
    (["export", "--data-dir", "{release}", "--threads", "0", "{tmp}/o"], "--threads: 0 must be at least 1", 2),
    (["export", "--data-dir", "{release}", "--threads", "two", "{tmp}/o"], "--threads: 'two' is not a whole number", 2),
    (["export", "--data-dir", "{release}", "--content-defined-chunking=yes", "{tmp}/o"],
     "--content-defined-chunking/--no-content-defined-chunking: ignored explicit argument 'yes'", 2),
    (["push", "--data-dir", "{release}", "--threads", "-2", "me/nih"], "--threads: -2 must be at least 1", 2),
    (["show", "--data-dir", "{release}", "{tmp}/grid.jpg"], "give a file name ending in .png", 2),
    (["push", "--data-dir", "{release}", "not a repo!"], "repo id 'not a repo!' is not valid", 1),
    (["push", "--data-dir", "{release}", "nih-chestxray14"], "needs a namespace: write <user or org>/nih", 1),
    (["download", "{tmp}/d", "--archives", "13"], "--archives 13: NIH has archives 1 to 12", 2),
    (["download", "{tmp}/d", "--checksums", "{tmp}/a-file"],
     "a-file, line 1: expected '<sha256 or md5 hex> <archive name>'", 1),
    (["download", "{tmp}/a-file"], "DIR {tmp}/a-file is a file", 2),
    (["download", "{tmp}/d", "--timeout", "0"], "--timeout: 0 must be more than 0 seconds", 2),
    (["download", "{tmp}/d", "--deadline", "soon"], "--deadline: 'soon' is not a number of seconds", 2),
    (["download", "{tmp}/d", "--retries", "-1"], "--retries: -1 must be at least 0", 2),
    (["prepare", "--data-dir", "{tmp}"], "Data_Entry", 1),
])
def test_bad_input_gets_one_line_naming_it(publish_release, publish_cache, tmp_path, capsys, argv, reason,
                                           expected_code):
    (tmp_path / "a-file").write_text("not what was expected\n")
    fill = {"release": str(publish_release), "tmp": str(tmp_path)}
    argv = [a.format(**fill) for a in argv]
    if argv and argv[0] in ("export", "push", "show", "prepare"):
        argv[1:1] = ["--cache-dir", str(publish_cache)]
    err = one_error_line(capsys, main(argv), expected_code)
    assert reason.format(**fill) in err
    assert not (tmp_path / "o").exists() and not (tmp_path / "d").exists()


# Runs the download command in its own process (as a user does, with the command's own logging set-up), against
# archives served by this test: argv[1] is JSON [[url, md5, number of PNGs], ...] standing in for NIH's 12.
_DOWNLOAD_FROM = textwrap.dedent("""
    import json, sys
    from nih_chestxray14 import archives
    urls, md5s, members = zip(*json.loads(sys.argv[1]))
    archives.NIH_ARCHIVE_URLS, archives.NIH_ARCHIVE_MD5, archives.NIH_ARCHIVE_MEMBERS = urls, md5s, members
    from nih_chestxray14.__main__ import main
    sys.exit(main(sys.argv[2:]))
""")


def run_download(server, names, *argv):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    served = [[f"{server.url}/{name}", hashlib.md5(server.files.get(name, b"")).hexdigest(), 3] for name in names]
    completed = subprocess.run([sys.executable, "-c", _DOWNLOAD_FROM, json.dumps(served), "download", *map(str, argv)],
                               capture_output=True, text=True, env=env, timeout=120)
    return completed.returncode, completed.stdout, completed.stderr


@pytest.fixture
def archive_server():
    from test_download import ArchiveServer, make_archive

    server = ArchiveServer({"a.gz": make_archive(seed=1), "c.gz": make_archive(seed=3),
                            "page.gz": b"<html><body>Please log in</body></html>"})
    server.content_type["page.gz"] = "text/html"
    yield server
    server.close()


@pytest.mark.slow
def test_download_command_reports_each_failing_archive_once_and_keeps_the_others(archive_server, tmp_path):
    code, out, err = run_download(archive_server, ["a.gz", "b.gz", "page.gz"], tmp_path, "--retries", "0")
    assert code == 1 and "Traceback" not in err
    assert err.splitlines() == [
        f"nih-chestxray14 download: error: images_002.tar.gz: HTTP 404 Not Found from {archive_server.url}/b.gz; "
        "check that the link still works (NIH's links are on its release page), then run again",
        "nih-chestxray14 download: error: images_003.tar.gz: the server sent text/html content (it starts with "
        f"'<html><body>Please log in</body></html>'), not a gzip archive; nothing was kept. {archive_server.url}/"
        "page.gz may be rate-limited or moved: try again later, or fetch the file in a browser into the same folder"]
    assert out.strip() == f"1 of 3 archives in {tmp_path}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images_001.tar.gz"]
    assert (tmp_path / "images_001.tar.gz").read_bytes() == archive_server.files["a.gz"]


@pytest.mark.slow
def test_download_command_gives_up_on_a_slow_server_at_its_deadline(archive_server, tmp_path):
    archive_server.dribble_body.add("a.gz")
    start = time.monotonic()
    code, _, err = run_download(archive_server, ["a.gz"], tmp_path, "--timeout", "1", "--deadline", "2")
    assert code == 1 and len(err.splitlines()) == 1, err
    assert err.startswith("nih-chestxray14 download: error: images_001.tar.gz: not complete within the 2 s deadline")
    assert time.monotonic() - start < 30  # the process start included; a byte every 0.2 s would go on for 20 s


@pytest.mark.slow
def test_download_command_refuses_a_checksum_mismatch_and_keeps_nothing(archive_server, tmp_path):
    sums = tmp_path / "SHA256SUMS"
    sums.write_text(f"{'0' * 64}  images_001.tar.gz\n")
    code, _, err = run_download(archive_server, ["a.gz"], tmp_path / "d", "--checksums", sums)
    assert code == 1 and len(err.splitlines()) == 1
    assert f"images_001.tar.gz: SHA256 is {hashlib.sha256(archive_server.files['a.gz']).hexdigest()}, expected " \
           f"{'0' * 64}; the download from {archive_server.url}/a.gz was deleted, run again" in err
    assert list((tmp_path / "d").iterdir()) == []


@pytest.mark.parametrize("command, chunking_default", [("export", "off"), ("push", "on")])
def test_export_and_push_help_explains_chunking_and_threads_with_their_defaults(capsys, command, chunking_default):
    with pytest.raises(SystemExit) as exited:
        main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert exited.value.code == 0
    assert "--content-defined-chunking, --no-content-defined-chunking" in text
    assert f"(default: {chunking_default} for this command)" in text
    assert "--threads N shards written at once (default: one per CPU core, at most 8)" in text


@pytest.mark.slow
@pytest.mark.parametrize("num_proc", ["1", "2"])
def test_an_error_met_while_generating_is_reported_as_the_projects_own(tmp_path, capsys, num_proc):
    import datasets

    from nih_chestxray14.sample import make_release

    datasets.disable_progress_bars()  # only the error line on stderr

    release = make_release(tmp_path / "rel", num_patients=12, images_per_patient=2, image_size=64, layout="images")
    png = sorted((release / "images").glob("*.png"))[4]
    png.write_bytes(png.read_bytes()[:100])
    try:
        code = main(["prepare", "--data-dir", str(release), "--cache-dir", str(tmp_path / "cache"),
                     "--num-proc", num_proc])
    finally:
        datasets.enable_progress_bars()
    err = one_error_line(capsys, code, 1)
    assert err.startswith(f"nih-chestxray14 prepare: error: {png} is truncated")
    assert "DatasetGenerationError" not in err and "An error occurred while generating" not in err


def test_one_line_reads_the_projects_error_from_a_worker_traceback_and_masks_tokens(monkeypatch):
    from datasets.exceptions import DatasetGenerationError

    from nih_chestxray14.__main__ import one_line

    token = "hf_" + "x" * 30
    monkeypatch.setenv("HF_TOKEN", token)
    worker = Exception(textwrap.dedent(f'''
        """
        Traceback (most recent call last):
          File "builder.py", line 1, in _generate_examples
        nih_chestxray14.errors.CorruptImageError: rel/images/00000001_000.png is truncated; fetch it again ({token})

        The above exception was the direct cause of the following exception:

        Traceback (most recent call last):
          File "pool.py", line 125, in worker
        datasets.exceptions.DatasetGenerationError: An error occurred while generating the dataset
        """'''))
    error = DatasetGenerationError("An error occurred while generating the dataset")
    error.__cause__ = worker
    assert one_line(error) == "rel/images/00000001_000.png is truncated; fetch it again (<redacted>)"
    assert one_line(ValueError(f"multi\n  line {token}")) == "multi line <redacted>"
