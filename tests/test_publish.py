"""export and push: Parquet in the Hub layout that datasets loads on its own, with a truthful card."""

import hashlib
import io
import json
import subprocess
import sys
import textwrap

import pyarrow.parquet as pq
import pytest
import yaml
from datasets import Image, load_dataset

import nih_chestxray14
from nih_chestxray14 import LABELS
from nih_chestxray14.__main__ import main
from nih_chestxray14.parquet import images_are_portable, portable_images
from nih_chestxray14.publish import export_dataset_dict
from publish_fixtures import EXPORTED_CONFIGS

# Runs in a fresh interpreter that never imports nih_chestxray14: what a user of the published copy runs.
_LOAD_WITHOUT_PACKAGE = textwrap.dedent("""
    import hashlib, json, sys
    from datasets import Image, load_dataset
    out, config = sys.argv[1], sys.argv[2]
    dataset_dict = load_dataset(out, config)
    result = {"features": dataset_dict["train"].features.to_dict(), "splits": {}}
    for split, dataset in dataset_dict.items():
        dataset = dataset.cast_column("image", Image(decode=False))
        rows = []
        for row in dataset:
            image = row.pop("image")
            rows.append([hashlib.sha256(image["bytes"]).hexdigest(), image["path"], row])
        result["splits"][split] = rows
    assert "nih_chestxray14" not in sys.modules
    print(json.dumps(result))
""")


def rows_of(dataset):
    dataset = dataset.cast_column("image", Image(decode=False))
    out = []
    for row in dataset:
        image = row.pop("image")
        out.append([hashlib.sha256(image["bytes"]).hexdigest(), image["path"], row])
    return json.loads(json.dumps(out))  # same float/int rendering as the subprocess


def card_metadata(folder):
    text = (folder / "README.md").read_text()
    return yaml.safe_load(text.split("---")[1]), text


@pytest.mark.slow
@pytest.mark.parametrize("config", EXPORTED_CONFIGS)
def test_export_round_trip_in_a_fresh_process_matches_the_builder(publish_export, publish_release, publish_cache,
                                                                   tmp_path, config):
    completed = subprocess.run(
        [sys.executable, "-c", _LOAD_WITHOUT_PACKAGE, str(publish_export), config],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
        env={**_env_without_repo(), "HF_DATASETS_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"},
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    loaded = json.loads(completed.stdout.strip().splitlines()[-1])

    built = nih_chestxray14.load(config, data_dir=str(publish_release), cache_dir=str(publish_cache))
    assert loaded["features"] == built["train"].features.to_dict()
    assert list(loaded["splits"]) == list(built)
    for split, dataset in built.items():
        assert loaded["splits"][split] == rows_of(dataset), split


def test_export_writes_hub_layout_shards_and_a_card_declaring_every_config(publish_export, publish_release,
                                                                           publish_cache):
    files = sorted(str(p.relative_to(publish_export)) for p in publish_export.rglob("*") if p.is_file())
    assert "README.md" in files
    assert not [f for f in files if "incomplete" in f or f.startswith(".")]
    train_shards = [f for f in files if f.startswith("resized-224/train-")]
    assert len(train_shards) > 1  # 200KB shards split the train split
    assert train_shards[-1].endswith(f"-of-{len(train_shards):05d}.parquet")
    assert any(f.startswith("data/test-00000-of-") for f in files)  # "default" goes to data/, as push_to_hub does

    metadata, text = card_metadata(publish_export)
    assert metadata["license"] == "other" and metadata["license_link"].startswith("https://nihcc.app.box.com")
    assert metadata["task_categories"] == ["image-classification"]
    assert metadata["task_ids"] == ["multi-label-image-classification"]
    assert metadata["pretty_name"] == "NIH ChestX-ray14"
    assert metadata["size_categories"] == ["n<1K"]
    assert {c["config_name"] for c in metadata["configs"]} == set(EXPORTED_CONFIGS)
    built = nih_chestxray14.load("default", data_dir=str(publish_release), cache_dir=str(publish_cache))
    info = next(i for i in metadata["dataset_info"] if i["config_name"] == "default")
    assert {s["name"]: s["num_examples"] for s in info["splits"]} == {k: len(v) for k, v in built.items()}

    # the text: label order, split rule, per-split counts computed from the data, limits, citation, terms
    assert all(f"| {index} | {name} |" in text for index, name in enumerate(LABELS))
    assert "validation_fraction=0.1" in text and "patient" in text
    for split, dataset in built.items():
        column = list(built).index(split)
        for index, name in enumerate(LABELS):
            expected = sum(row[index] for row in dataset["labels"])
            row = next(line for line in text.splitlines() if line.startswith(f"| {name} | ") and line.count("|") == 5)
            assert int(row.split("|")[2 + column].replace(",", "")) == expected, (split, name)
    assert "Bias, Risks, and Limitations" in text and "Label noise" in text
    # NIH's Follow-up # can differ from the file name's suffix: the card says which one follow_up holds
    assert "differ in\n24,106 of 112,120 rows" in text and "`follow_up` keeps the\nCSV's value" in text
    assert "| `follow_up` | `int32` | the patient's visit number, from 0: the entry CSV's `Follow-up #`" in text
    assert "@inproceedings{wang2017chestxray8" in text and "CVPR" in text
    assert "no restrictions on the use" in text


def test_export_keeps_image_bytes_untouched_without_decoding(publish_export, publish_release, publish_cache,
                                                              monkeypatch):
    import PIL.Image

    built = nih_chestxray14.load("default", data_dir=str(publish_release), cache_dir=str(publish_cache))
    monkeypatch.setattr(PIL.Image, "open", lambda *a, **k: pytest.fail("export decoded an image"))
    table = pq.read_table(sorted((publish_export / "data").glob("train-*.parquet"))[0])
    stored = built["train"].data.table.column("image").combine_chunks().field("bytes")
    assert table.column("image").combine_chunks().field("bytes")[0] == stored[0]

    out = publish_export.parent / "again"
    out.mkdir()
    export_dataset_dict(built, out, "default", max_shard_bytes=10**9)  # would fail on any PIL.Image.open


def test_images_stored_as_paths_are_embedded_and_paths_cut_to_names(tmp_path):
    import pyarrow as pa
    from datasets import Features

    png = tmp_path / "00000001_000.png"
    png.write_bytes(b"\x89PNG fake bytes")
    features = Features({"image": Image()})
    table = pa.table({"image": pa.array([{"bytes": None, "path": str(png)}, {"bytes": b"kept", "path": "/x/y/b.png"}],
                                        type=features.arrow_schema.field("image").type)})
    assert not images_are_portable(table, features)
    fixed = portable_images(table, features)
    rows = fixed.column("image").to_pylist()
    assert rows == [{"bytes": png.read_bytes(), "path": "00000001_000.png"}, {"bytes": b"kept", "path": "b.png"}]
    assert images_are_portable(fixed, features)


def test_export_into_a_foreign_folder_is_refused_and_writes_nothing(publish_release, publish_cache, tmp_path, capsys):
    out = tmp_path / "someone-elses"
    out.mkdir()
    (out / "README.md").write_text("# my notes\n")
    code = main(["export", "--data-dir", str(publish_release), "--cache-dir", str(publish_cache), str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1
    assert "README.md exists and is not a NIH ChestX-ray14 card" in err
    assert sorted(p.name for p in out.iterdir()) == ["README.md"]


@pytest.mark.slow
def test_push_sends_several_configs_to_one_repo_and_keeps_earlier_ones(hub, publish_release, publish_cache, tmp_path,
                                                                       capsys):
    common = ["--data-dir", str(publish_release), "--cache-dir", str(publish_cache), "--max-shard-size", "1MB"]
    assert main(["push", *common, "--config", "default", "--config", "resized-224", "me/nih-chestxray14",
                 "--private"]) == 0
    files = hub.files("me/nih-chestxray14", repo_type="dataset")
    assert {p.split("/")[0] for p in files} == {".gitattributes", "README.md", "data", "resized-224"}
    assert all(p.endswith(".parquet") for p in files if "/" in p)
    assert hub.lfs_files("me/nih-chestxray14", repo_type="dataset") == {p for p in files if p.endswith(".parquet")}
    assert hub.repo("me/nih-chestxray14", "dataset").private
    shard = next(p for p in files if p.startswith("data/train-"))  # push writes as push_to_hub: content-defined pages
    assert b"content_defined_chunking" in pq.ParquetFile(io.BytesIO(files[shard])).metadata.metadata

    # a later push of another config adds it, keeps the others declared, and replaces only its own shards
    assert main(["push", *common, "--config", "resized-224", "--max-shard-size", "100MB", "me/nih-chestxray14"]) == 0
    files = hub.files("me/nih-chestxray14", repo_type="dataset")
    metadata = yaml.safe_load(files["README.md"].decode().split("---")[1])
    assert {c["config_name"] for c in metadata["configs"]} == {"default", "resized-224"}
    assert sorted(p for p in files if p.startswith("resized-224/")) == [
        "resized-224/test-00000-of-00001.parquet", "resized-224/train-00000-of-00001.parquet",
        "resized-224/validation-00000-of-00001.parquet"]
    assert any(p.startswith("data/train-") for p in files)

    loaded = load_dataset("me/nih-chestxray14", "resized-224", split="validation", cache_dir=str(tmp_path / "c"))
    built = nih_chestxray14.load("resized-224", split="validation", data_dir=str(publish_release),
                                 cache_dir=str(publish_cache))
    assert loaded["image_id"] == built["image_id"] and loaded["labels"] == built["labels"]

    output = capsys.readouterr()
    assert hub.token not in output.out + output.err
    assert hub.token_leaks() == []


def test_failed_push_reports_one_line_without_the_token(hub, publish_release, publish_cache, capsys):
    nih_chestxray14.load("default", data_dir=str(publish_release), cache_dir=str(publish_cache))
    capsys.readouterr()  # a first build's progress bars, when this test runs on its own
    hub.fail_next_commit = True
    code = main(["push", "--data-dir", str(publish_release), "--cache-dir", str(publish_cache), "me/broken"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1
    assert err.startswith("nih-chestxray14 push: error:") and "500" in err
    assert hub.token not in err
    assert set(hub.files("me/broken", repo_type="dataset")) == {".gitattributes"}


def test_push_without_a_token_says_how_to_log_in(hub, publish_release, publish_cache, monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.setenv("HF_TOKEN_PATH", str(tmp_path / "no-token"))
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(tmp_path / "no-tokens"))
    code = main(["push", "--data-dir", str(publish_release), "--cache-dir", str(publish_cache), "me/nih"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and "no Hugging Face token" in err and "hf auth login" in err
    assert hub.repos == {}


def _env_without_repo():
    import os

    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}


def test_failed_export_leaves_the_earlier_export_untouched(publish_export, publish_release, publish_cache, tmp_path,
                                                           monkeypatch):
    import shutil

    import nih_chestxray14.parquet as parquet
    import nih_chestxray14.publish as publish

    out = tmp_path / "copy"
    shutil.copytree(publish_export, out)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    real_write_shard = parquet.write_shard

    def disk_full_on_second_config(shard, **options):
        if "resized" in shard.path.parent.name:
            raise OSError("No space left on device")
        return real_write_shard(shard, **options)

    monkeypatch.setattr(parquet, "write_shard", disk_full_on_second_config)
    with pytest.raises(OSError, match="No space left"):
        publish.export(publish_release, out, ["default", "resized-224"], cache_dir=publish_cache,
                       max_shard_size="100MB")
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before
    assert [p.name for p in tmp_path.iterdir()] == ["copy"]  # and nothing is left beside it


def test_shards_written_in_parallel_are_the_same_files_as_written_one_by_one(publish_release, publish_cache, tmp_path):
    built = nih_chestxray14.load("default", data_dir=str(publish_release), cache_dir=str(publish_cache))
    one, many = tmp_path / "one", tmp_path / "many"
    for out, threads in ((one, 1), (many, 4)):
        out.mkdir()
        export_dataset_dict(built, out, "default", max_shard_bytes=200_000, num_threads=threads)
    files = sorted(p.relative_to(one) for p in (one / "data").glob("*.parquet"))
    assert len([f for f in files if f.name.startswith("train-")]) > 2
    assert files == sorted(p.relative_to(many) for p in (many / "data").glob("*.parquet"))
    assert all((one / f).read_bytes() == (many / f).read_bytes() for f in files)


@pytest.mark.parametrize("options", [{}, {"content_defined_chunking": True}, {"content_defined_chunking": False}])
def test_export_writes_parquet_as_push_to_hub_does_with_optional_content_defined_chunking(
        publish_release, publish_cache, tmp_path, options):
    built = nih_chestxray14.load("default", data_dir=str(publish_release), cache_dir=str(publish_cache))
    out = tmp_path / "out"
    out.mkdir()
    export_dataset_dict(built, out, "default", max_shard_bytes=10**9, **options)
    chunking = options.get("content_defined_chunking", False)  # off by default for a local export
    parquet = pq.ParquetFile(out / "data" / "train-00000-of-00001.parquet")
    # the features travel in the schema, so load_dataset restores them without this package
    stored_features = json.loads(parquet.schema_arrow.metadata[b"huggingface"])["info"]["features"]
    assert stored_features == built["train"].features.to_dict()
    assert (b"content_defined_chunking" in parquet.metadata.metadata) is chunking
    image = parquet.metadata.row_group(0).column(0)
    assert image.path_in_schema == "image.bytes" and image.compression == "UNCOMPRESSED"  # PNGs are compressed already
    assert parquet.metadata.row_group(0).num_rows <= 1000

    loaded = load_dataset(str(out), "default", cache_dir=str(tmp_path / "cache"))
    assert loaded["train"].features == built["train"].features
    for split, dataset in built.items():
        assert rows_of(loaded[split]) == rows_of(dataset), split


@pytest.fixture(scope="module")
def full_size_release(tmp_path_factory):
    """A tiny release of 1024 px PNGs, as NIH's: its resized PNGs carry X-ray-like grain that zstd shrinks (the
    256 px release of the other tests is all grain once resized, so zstd would save too little to be used)."""
    from nih_chestxray14.sample import make_release

    return make_release(tmp_path_factory.mktemp("full-size"), num_patients=4, images_per_patient=2,
                        image_size=1024, layout="images", seed=3)


@pytest.mark.slow
def test_resized_images_are_zstd_compressed_in_parquet_and_originals_are_not(full_size_release, tmp_path):
    from nih_chestxray14.publish import export

    cache, out = tmp_path / "cache", tmp_path / "out"
    export(full_size_release, out, ["default", "resized-224"], cache_dir=cache)
    for config, folder in (("default", "data"), ("resized-224", "resized-224")):
        built = nih_chestxray14.load(config, data_dir=str(full_size_release), cache_dir=str(cache))
        image_bytes = sum(ds.data.table.column("image").combine_chunks().field("bytes").nbytes for ds in built.values())
        shards = sorted((out / folder).glob("*.parquet"))
        parquet_bytes = sum(p.stat().st_size for p in shards)
        codecs = {pq.ParquetFile(p).metadata.row_group(0).column(0).compression for p in shards}
        if config == "default":  # NIH's PNGs are compressed already: stored as they are
            assert codecs == {"UNCOMPRESSED"} and parquet_bytes > image_bytes
        else:  # PNGs with stored deflate blocks: zstd brings the download well below the Arrow cache
            assert codecs == {"ZSTD"} and parquet_bytes < 0.8 * image_bytes, (parquet_bytes, image_bytes)

    completed = subprocess.run(  # a user without this package reads the compressed shards back, byte for byte
        [sys.executable, "-c", _LOAD_WITHOUT_PACKAGE, str(out), "resized-224"], capture_output=True, text=True,
        cwd=tmp_path, timeout=300,
        env={**_env_without_repo(), "HF_DATASETS_CACHE": str(tmp_path / "fresh"), "HF_HUB_OFFLINE": "1"})
    assert completed.returncode == 0, completed.stderr[-2000:]
    loaded = json.loads(completed.stdout.strip().splitlines()[-1])
    built = nih_chestxray14.load("resized-224", data_dir=str(full_size_release), cache_dir=str(cache))
    assert loaded["features"] == built["train"].features.to_dict()
    assert loaded["splits"] == {split: rows_of(dataset) for split, dataset in built.items()}


@pytest.mark.parametrize("flags, chunking, threads", [
    ([], False, None),
    (["--content-defined-chunking", "--threads", "1"], True, 1),
    (["--no-content-defined-chunking", "--threads", "3"], False, 3),
])
def test_export_command_passes_chunking_and_threads_to_the_writer(publish_release, publish_cache, tmp_path,
                                                                  monkeypatch, flags, chunking, threads):
    import nih_chestxray14.publish as publish

    calls = []
    real_write_shards = publish.write_shards

    def recording(shards, **options):
        calls.append(options)
        return real_write_shards(shards, **options)

    monkeypatch.setattr(publish, "write_shards", recording)
    out = tmp_path / "out"
    assert main(["export", "--data-dir", str(publish_release), "--cache-dir", str(publish_cache), *flags,
                 str(out)]) == 0
    assert calls == [{"content_defined_chunking": chunking, "num_threads": threads}]
    shard = pq.ParquetFile(out / "data" / "train-00000-of-00001.parquet")
    assert (b"content_defined_chunking" in shard.metadata.metadata) is chunking


@pytest.mark.slow
def test_push_command_can_turn_content_defined_chunking_off(hub, publish_release, publish_cache, capsys):
    assert main(["push", "--data-dir", str(publish_release), "--cache-dir", str(publish_cache),
                 "--no-content-defined-chunking", "--threads", "2", "me/plain"]) == 0
    files = hub.files("me/plain", repo_type="dataset")
    shard = next(p for p in files if p.startswith("data/train-"))
    assert b"content_defined_chunking" not in (pq.ParquetFile(io.BytesIO(files[shard])).metadata.metadata or {})
    assert "pushed default" in capsys.readouterr().out


def test_shards_are_laid_out_as_push_to_hub_lays_them_out():
    """parquet.py keeps its own copy of push_to_hub's Parquet settings (public pyarrow options, no datasets
    internals). This compares them with datasets' own, offline: it fails when a datasets release changes them."""
    try:
        from datasets import config
        from datasets.arrow_writer import get_parquet_column_options, get_writer_batch_size_from_data_size
        from datasets.features.features import require_storage_embed
        from datasets.utils.py_utils import convert_file_size_to_int
    except ImportError as error:  # pragma: no cover - only when datasets moves its internals
        pytest.fail(f"datasets {__import__('datasets').__version__} moved what this test compares with ({error}); "
                    "check by hand that nih_chestxray14/parquet.py still writes Parquet as push_to_hub does")

    from nih_chestxray14 import FEATURES, parquet
    from nih_chestxray14.publish import parse_shard_size

    assert parquet.MAX_ROWS_PER_ROW_GROUP == config.DEFAULT_MAX_BATCH_SIZE
    assert parquet.MAX_ROW_GROUP_BYTES == convert_file_size_to_int(config.MAX_ROW_GROUP_SIZE)
    assert parquet.CONTENT_DEFINED_CHUNKING == config.DEFAULT_CDC_OPTIONS
    for rows, size in ((1, 1), (24, 6_000_000), (1000, 500 * 10**6), (86_524, 42 * 10**9), (10, 10**12)):
        assert parquet.row_group_rows(rows, size) == min(config.DEFAULT_MAX_BATCH_SIZE,
                                                         get_writer_batch_size_from_data_size(rows, size))
    ours = parquet.column_options(FEATURES, FEATURES.arrow_schema)
    theirs = get_parquet_column_options(FEATURES, FEATURES.arrow_schema)
    assert {key: ours[key] for key in theirs} == theirs
    assert all(parquet.holds_files(f) == require_storage_embed(f) for f in FEATURES.values())
    for size in ("500MB", "2GB", "1GiB", "64KiB", "8Mb", 12345):
        assert parse_shard_size(size) == convert_file_size_to_int(size), size


def test_docstring_examples_of_the_writer_and_the_exporter_run():
    import doctest

    import nih_chestxray14.parquet
    import nih_chestxray14.publish

    for module in (nih_chestxray14.parquet, nih_chestxray14.publish):
        results = doctest.testmod(module)
        assert results.attempted > 0 and results.failed == 0, module.__name__
