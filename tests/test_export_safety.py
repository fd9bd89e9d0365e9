"""export never loses a user's file: it replaces only what an earlier export wrote, and a failed or killed export
(kill -9 included) leaves OUT as it was."""

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from datasets import load_dataset

from nih_chestxray14.__main__ import main

REPO = Path(__file__).resolve().parents[1]


def snapshot(folder):
    """Every file and folder under ``folder`` (symlinks as such), with the bytes of each file."""
    if not folder.exists():
        return None
    return {str(p.relative_to(folder)): (os.readlink(p) if p.is_symlink() else p.read_bytes() if p.is_file() else "/")
            for p in sorted(folder.rglob("*"))}


def beside(out):
    """What lies next to ``out`` in its parent folder, apart from ``out`` itself."""
    return sorted(p.name for p in out.parent.iterdir() if p.name != out.name)


def export_cli(release, cache, out, *configs, extra=()):
    argv = ["export", "--data-dir", str(release), "--cache-dir", str(cache), *extra]
    for config in configs or ("default",):
        argv += ["--config", config]
    return main([*argv, str(out)])


@pytest.fixture
def earlier_export(publish_export, tmp_path):
    """A copy of an earlier export (configs default and resized-224) in a folder of its own."""
    out = tmp_path / "work" / "v"
    shutil.copytree(publish_export, out)
    return out


def _precious(out):
    (out / "data").mkdir(parents=True, exist_ok=True)
    (out / "data" / "precious.txt").write_text("the user's notes\n")
    return out / "data" / "precious.txt"


def _extra_shard(out):
    (out / "data" / "train-extra.parquet").write_bytes(b"a file of the user's that the card's train-* would match")
    return out / "data" / "train-extra.parquet"


def _data_is_a_file(out):
    out.mkdir(parents=True, exist_ok=True)
    (out / "data").write_text("not a folder\n")
    return out / "data"


def _data_is_a_link(out):
    elsewhere = out.parent / "elsewhere"
    elsewhere.mkdir(parents=True)
    (elsewhere / "keep.txt").write_text("keep\n")
    out.mkdir(parents=True, exist_ok=True)
    (out / "data").symlink_to(elsewhere, target_is_directory=True)
    return out / "data"


def _shards_without_a_card(out):
    (out / "README.md").unlink()
    return sorted((out / "data").iterdir())[0]


@pytest.mark.parametrize("start_from_export, make, what", [
    (False, _precious, "was not written by an export"),
    (True, _precious, "was not written by an export"),
    (True, _extra_shard, "was not written by an export"),
    (False, _data_is_a_file, "exists and is not a folder an earlier export wrote"),
    (False, _data_is_a_link, "exists and is not a folder an earlier export wrote"),
    (True, _shards_without_a_card, "was not written by an export"),
])
def test_export_refuses_to_replace_anything_an_earlier_export_did_not_write(
        publish_release, publish_cache, earlier_export, capsys, start_from_export, make, what):
    out = earlier_export
    if not start_from_export:
        shutil.rmtree(out)
    culprit = make(out)
    before, around = snapshot(out), beside(out)
    code = export_cli(publish_release, publish_cache, out, "default")
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1 and "Traceback" not in err
    assert err == (f"nih-chestxray14 export: error: {culprit} {what}" + err.split(what, 1)[1])
    assert "move it away or export into another folder" in err
    assert snapshot(out) == before and beside(out) == around


@pytest.mark.slow
def test_the_export_command_keeps_a_users_file_through_the_real_entry_point(tmp_path):
    from nih_chestxray14.sample import make_release
    from test_cli_errors import run_cli

    make_release(tmp_path / "rel", num_patients=12, images_per_patient=2, image_size=64, layout="images")
    precious = _precious(tmp_path / "v")
    code, out, err = run_cli("export", "--data-dir", "rel", "--cache-dir", "cache", "--config", "default", "v",
                             cwd=tmp_path)
    assert code == 1 and out == "" and "Traceback" not in err
    assert err.strip().splitlines() == [(
        "nih-chestxray14 export: error: v/data/precious.txt was not written by an export, and export replaces all "
        "of v/data; move it away or export into another folder")]
    assert precious.read_text() == "the user's notes\n" and sorted(p.name for p in (tmp_path / "v").rglob("*")) == [
        "data", "precious.txt"]


def test_export_keeps_what_it_does_not_replace_and_replaces_its_own_shards(publish_release, publish_cache,
                                                                            earlier_export):
    out = earlier_export
    (out / "notes.txt").write_text("mine\n")
    for name in ("data.old", ".data.incomplete", "other"):  # names an older version used for its own work
        (out / name).mkdir()
        (out / name / "keep.txt").write_text("mine\n")
    resized_before = snapshot(out / "resized-224")
    old_shards = sorted(p.name for p in (out / "data").iterdir())
    assert len(old_shards) > 3

    assert export_cli(publish_release, publish_cache, out, "default", extra=["--max-shard-size", "100MB"]) == 0
    assert sorted(p.name for p in (out / "data").iterdir()) == [
        "test-00000-of-00001.parquet", "train-00000-of-00001.parquet", "validation-00000-of-00001.parquet"]
    assert snapshot(out / "resized-224") == resized_before  # the config not exported again is untouched
    assert (out / "notes.txt").read_text() == "mine\n"
    assert all((out / name / "keep.txt").read_text() == "mine\n" for name in ("data.old", ".data.incomplete", "other"))
    assert beside(out) == []
    card = (out / "README.md").read_text()
    assert "config_name: resized-224" in card and "config_name: default" in card


_KILLABLE_EXPORT = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import nih_chestxray14.parquet as parquet

    release, cache, out, started = sys.argv[1:5]
    write_shard = parquet.write_shard

    def write_then_hang(shard, **options):  # the export is killed while it writes its shards
        size = write_shard(shard, **options)
        Path(started).touch()
        time.sleep(300)
        return size

    parquet.write_shard = write_then_hang
    from nih_chestxray14.__main__ import main
    sys.exit(main(["export", "--data-dir", release, "--cache-dir", cache, "--config", "default",
                   "--config", "resized-224", "--threads", "1", "--max-shard-size", "100MB", out]))
""")


def kill_export_midway(release, cache, out):
    started = out.parent / "started"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen([sys.executable, "-c", _KILLABLE_EXPORT, str(release), str(cache), str(out),
                                str(started)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not started.exists():
            assert process.poll() is None, process.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "the export did not start writing within 120 s"
            time.sleep(0.05)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.kill()
        process.wait(timeout=30)
        process.stderr.close()
    started.unlink()
    assert process.returncode == -signal.SIGKILL


@pytest.mark.slow
@pytest.mark.parametrize("earlier", [True, False], ids=["into-an-earlier-export", "into-a-new-folder"])
def test_an_export_killed_midway_leaves_out_as_it_was(publish_release, publish_cache, earlier_export, tmp_path,
                                                      earlier):
    out = earlier_export
    if not earlier:
        shutil.rmtree(out)
    before = snapshot(out)

    kill_export_midway(publish_release, publish_cache, out)
    assert snapshot(out) == before
    if earlier:  # still loadable, with the earlier export's rows
        loaded = load_dataset(str(out), "default", cache_dir=str(tmp_path / "hf"))
        assert loaded.num_rows == {"train": 18, "validation": 2, "test": 4}
    assert len(beside(out)) == 1  # the killed export's staging folder, beside OUT, not in it

    # the next export completes and removes what the killed one left
    assert export_cli(publish_release, publish_cache, out, "default", "resized-224") == 0
    assert beside(out) == []
    assert load_dataset(str(out), "resized-224", cache_dir=str(tmp_path / "hf")).num_rows["test"] == 4


def test_out_on_another_file_system_stages_inside_it_and_leaves_nothing(publish_release, publish_cache,
                                                                         earlier_export, monkeypatch):
    """A rename cannot cross file systems: when OUT is a mount point, export stages hidden inside OUT instead."""
    import nih_chestxray14.export_folder as export_folder

    out = earlier_export
    real_stat = os.stat

    class OtherDevice:  # os.stat of OUT, as if OUT were mounted from another device
        def __init__(self, result):
            self.result = result

        def __getattr__(self, name):
            return self.result.st_dev + 1 if name == "st_dev" else getattr(self.result, name)

    monkeypatch.setattr(export_folder.os, "stat", lambda path, *a, **k: OtherDevice(real_stat(path, *a, **k))
                        if Path(path) == out else real_stat(path, *a, **k))
    assert export_folder.staging_parent(out) == out
    assert export_cli(publish_release, publish_cache, out, "default", extra=["--max-shard-size", "100MB"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "data", "resized-224"]
    assert len(list((out / "data").iterdir())) == 3 and beside(out) == []
