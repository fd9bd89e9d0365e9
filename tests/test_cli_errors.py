"""Every command: --help explains it, and bad input gets a non-zero exit and one line naming what is wrong."""

import os
import subprocess
import sys
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
     "a-file, line 1: expected '<sha256 hex> <archive name>'", 1),
    (["download", "{tmp}/a-file"], "DIR {tmp}/a-file is a file", 2),
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


def test_download_command_reports_each_failing_archive_and_keeps_the_others(tmp_path, monkeypatch, capsys):
    from test_download import ArchiveServer

    import nih_chestxray14.archives
    import nih_chestxray14.download

    server = ArchiveServer({"a.gz": b"first archive", "c.gz": b"third archive"})
    try:
        urls = tuple(f"{server.url}/{name}" for name in ("a.gz", "b.gz", "c.gz"))
        monkeypatch.setattr(nih_chestxray14.archives, "NIH_ARCHIVE_URLS", urls)
        monkeypatch.setattr(nih_chestxray14.download, "NIH_ARCHIVE_URLS", urls)
        code = main(["download", str(tmp_path), "--retries", "0"])
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert err == [f"nih-chestxray14 download: error: images_002.tar.gz: HTTP 404 Not Found from {server.url}/b.gz",
                   "nih-chestxray14 download: 1 of 3 archives failed; run the same command again to resume"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images_001.tar.gz", "images_003.tar.gz"]
    assert (tmp_path / "images_003.tar.gz").read_bytes() == b"third archive"


@pytest.mark.parametrize("command, chunking_default", [("export", "off"), ("push", "on")])
def test_export_and_push_help_explains_chunking_and_threads_with_their_defaults(capsys, command, chunking_default):
    with pytest.raises(SystemExit) as exited:
        main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert exited.value.code == 0
    assert "--content-defined-chunking, --no-content-defined-chunking" in text
    assert f"(default: {chunking_default} for this command)" in text
    assert "--threads N shards written at once (default: one per CPU core, at most 8)" in text
