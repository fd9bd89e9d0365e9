"""Export prepared configs to Parquet in the Hub's dataset layout, with a dataset card, and push them to the Hub.

The layout is the one ``datasets``' ``push_to_hub`` writes, so ``load_dataset(folder_or_repo, config)`` reads it with
no code of ours::

    OUT/README.md                                   the card; its YAML maps configs and splits to files
    OUT/data/train-00000-of-00090.parquet           the ``default`` config
    OUT/resized-256/validation-00000-of-00001.parquet

Export copies the builder's prepared Arrow tables into Parquet shard by shard, several shards at once: image bytes
are never decoded, so ``default`` (NIH's PNGs, stored as they are) exports near disk speed (see
``benchmarks/export_speed.py``). Image bytes that compress (the resized configs store their PNG pixels
uncompressed, for fast decoding) get zstd in Parquet, which cuts what users download by about 40% for a few times
the CPU (see ``compressible_columns``). A config's shards are written into a hidden staging folder and swapped in
only when complete; the card is written last, through a temporary file.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from datasets import Dataset, DatasetDict, DatasetInfo, Features, Image
from datasets import config as datasets_config
from datasets.arrow_writer import get_parquet_column_options, get_writer_batch_size_from_data_size
from datasets.features.features import require_storage_embed
from datasets.splits import SplitDict, SplitInfo
from datasets.table import embed_table_storage, table_cast
from datasets.utils.py_utils import convert_file_size_to_int
from huggingface_hub import DatasetCard, HfApi, get_token
from huggingface_hub.errors import EntryNotFoundError, HFValidationError
from huggingface_hub.utils import validate_repo_id

from .builder import NIHChestXray14, NIHChestXray14Config
from .card import PRETTY_NAME, ExportedConfig, render_card
from .errors import NIHChestXray14Error
from .loading import load

logger = logging.getLogger(__name__)

DEFAULT_MAX_SHARD_SIZE = "500MB"
"""As ``datasets``' ``push_to_hub``: big enough for few files, small enough for the Hub's viewer and retries."""

MAX_DEFAULT_THREADS = 8
"""Shards written at once by default: one per core up to this; past it a disk, not the CPU, is the limit."""

_PAGE_BYTES = 1024 * 1024  # Parquet's default data page size, and the largest page content-defined chunking cuts
_DEFAULT_WRITE_BATCH_ROWS = 1024  # Parquet's default write batch

_CARD = "README.md"

IMAGE_ZSTD_LEVEL = 3
"""zstd level for image columns that compress: zstd's default. On X-ray-like 256 px PNGs it leaves 0.57 of the
bytes; level 1 writes 1.6-1.8x faster but leaves 0.70: files a fifth larger, for every download."""

COMPRESSIBLE_RATIO = 0.8
"""An image column gets zstd when a sample of its bytes compresses to less than this share of its size."""

_SAMPLE_ROWS_PER_SPLIT = 8
_SAMPLE_BYTES_PER_ROW = 64 * 1024  # a PNG's first 64 KB: its header and the start of its pixel stream


class PublishError(NIHChestXray14Error, ValueError):
    """An export or push that cannot go ahead; the message names the argument or file and what to do."""


def data_dir_for(config_name: str) -> str:
    """The folder of a config's shards: ``data`` for ``default`` (as ``push_to_hub`` does), else the config name."""
    return "data" if config_name == "default" else config_name


def parse_shard_size(max_shard_size: Union[int, str]) -> int:
    """``"500MB"`` → bytes. Raises PublishError for a size that is not a positive number of bytes."""
    try:
        size = convert_file_size_to_int(max_shard_size)
    except (ValueError, TypeError):
        size = 0
    if size <= 0:
        raise PublishError(f"--max-shard-size {max_shard_size!r} is not a size; write e.g. 500MB or 2GB")
    return size


def export(data_dir: Optional[os.PathLike], out: os.PathLike, configs: Sequence[str] = ("default",), *,
           max_shard_size: Union[int, str] = DEFAULT_MAX_SHARD_SIZE, num_proc: Optional[int] = None,
           cache_dir: Optional[os.PathLike] = None, repo_id: Optional[str] = None,
           content_defined_chunking: bool = False, num_threads: Optional[int] = None, **config_kwargs) -> Path:
    """Prepare each config with the builder (reusing its cache) and export it into ``out``; return ``out``.

    ``config_kwargs`` (``validation_fraction``, ``allow_missing_images``) go to the builder. ``repo_id`` only names
    the repo in the card's usage example. Configs already in ``out`` (from an earlier export) stay in its card.
    ``content_defined_chunking`` and ``num_threads``: how shards are written (see ``stage_config``).

    Raises:
        PublishError: ``out`` holds a README.md that is not this dataset's card, or a bad ``max_shard_size``.
        NIHChestXray14Error: from the builder, for bad input in ``data_dir``.
    """
    out = Path(out)
    shard_bytes = parse_shard_size(max_shard_size)
    existing = read_existing_card(out)
    # Prepare every config before writing anything: bad input then leaves `out` untouched.
    prepared = {}
    for config in configs:
        logger.info("preparing config %s", config)
        prepared[config] = load(name=config, data_dir=data_dir, num_proc=num_proc, cache_dir=cache_dir,
                                **config_kwargs)
    fraction = config_kwargs.get("validation_fraction", NIHChestXray14Config.validation_fraction)
    staged: list[tuple[ExportedConfig, Path]] = []
    try:
        for config, dataset_dict in prepared.items():
            staged.append(stage_config(dataset_dict, out, config, max_shard_bytes=shard_bytes,
                                       description=_config_description(config), validation_fraction=fraction,
                                       content_defined_chunking=content_defined_chunking, num_threads=num_threads))
    except BaseException:
        for _, staging in staged:
            shutil.rmtree(staging, ignore_errors=True)
        raise
    for exported, staging in staged:
        _swap_in(staging, out / exported.data_dir)
    write_card(out, [exported for exported, _ in staged], repo_id=repo_id or "<user>/nih-chestxray14",
               existing=existing)
    return out


def read_existing_card(out: Path) -> Optional[DatasetCard]:
    """The card already in ``out``, if it is this dataset's; raise PublishError for a foreign README.md."""
    path = out / _CARD
    if not path.exists():
        return None
    card = DatasetCard.load(path)
    if card.data.to_dict().get("pretty_name") != PRETTY_NAME:
        raise PublishError(f"{path} exists and is not a {PRETTY_NAME} card written by this command; "
                           "export into an empty folder or one that an earlier export wrote")
    return card


def export_dataset_dict(dataset_dict: DatasetDict, out: Path, config_name: str, *, max_shard_bytes: int,
                        description: str = "", validation_fraction: float = 0.1,
                        content_defined_chunking: bool = False, num_threads: Optional[int] = None) -> ExportedConfig:
    """Write every split of one config as Parquet shards under ``out/<data_dir>``; return what the card needs.

    Replaces that config's previous shards only once all new ones are written. See ``stage_config`` for the options.
    """
    exported, staging = stage_config(dataset_dict, out, config_name, max_shard_bytes=max_shard_bytes,
                                     description=description, validation_fraction=validation_fraction,
                                     content_defined_chunking=content_defined_chunking, num_threads=num_threads)
    _swap_in(staging, out / exported.data_dir)
    return exported


def stage_config(dataset_dict: DatasetDict, out: Path, config_name: str, *, max_shard_bytes: int,
                 description: str = "", validation_fraction: float = 0.1, content_defined_chunking: bool = False,
                 num_threads: Optional[int] = None) -> tuple[ExportedConfig, Path]:
    """Write one config's shards into the hidden folder ``out/.<data_dir>.incomplete`` and return it with what the
    card needs; on failure, remove that folder and re-raise.

    ``content_defined_chunking`` cuts Parquet pages where the content says, as ``push_to_hub`` does, for the Hub's
    deduplicating storage. It hashes every byte, which slows a local export of ``default`` by a third or more, and
    for its bulk (PNG bytes stored as they are) it barely changes how much of a re-upload deduplicates (see
    ``benchmarks/README.md``); in zstd-compressed image columns, pages cut by content are what keeps an edit from
    changing every later page: off by default here, on by default in ``push``. Without it, pages are still
    kept to about 1 MB so that the page index lets a reader fetch one row without its whole row group.
    ``num_threads`` shards are written at once (default: one per CPU core, at most ``MAX_DEFAULT_THREADS``).
    Image columns are compressed with zstd where a sample says it pays (``compressible_columns``), the same way in
    every shard of the config.
    """
    data_dir = data_dir_for(config_name)
    staging = out / f".{data_dir}.incomplete"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    splits = SplitDict()
    features = None
    try:
        shards = []
        zstd_columns = compressible_columns(dataset_dict)
        for split, dataset in dataset_dict.items():
            features = dataset.features
            split_shards = plan_shards(dataset, staging, split, max_shard_bytes, zstd_columns=zstd_columns)
            splits.add(SplitInfo(name=split, num_bytes=sum(shard.table.nbytes for shard in split_shards),
                                 num_examples=len(dataset)))
            shards += split_shards
        write_shards(shards, content_defined_chunking=content_defined_chunking, num_threads=num_threads)
        download_size = sum(f.stat().st_size for f in staging.glob("*.parquet"))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    info = DatasetInfo(features=features, splits=splits, download_size=download_size,
                       dataset_size=sum(s.num_bytes for s in splits.values()), config_name=config_name)
    return ExportedConfig(config_name, data_dir, info, description, validation_fraction), staging


@dataclass(frozen=True)
class Shard:
    """One Parquet file to write: ``table`` (a zero-copy slice of the prepared Arrow table) into ``path``;
    ``zstd_columns``: the image columns to compress with zstd (the others stay uncompressed)."""

    path: Path
    table: pa.Table
    features: Features
    row_group_size: int
    zstd_columns: tuple[str, ...] = ()


def compressible_columns(dataset_dict: DatasetDict, *, sample_rows: int = _SAMPLE_ROWS_PER_SPLIT) -> tuple[str, ...]:
    """The image (or other embedded-file) columns whose bytes are worth compressing in Parquet.

    The rule: compress the first 64 KB of each of ``sample_rows`` evenly spaced rows per split, each on its own,
    with zstd at ``IMAGE_ZSTD_LEVEL``; the column qualifies when the sample shrinks below ``COMPRESSIBLE_RATIO`` of
    its size. NIH's PNGs (``default``) are deflate-compressed already and stay at about 1.0, so Parquet stores them as
    they are; ``resized-224`` and ``resized-256`` PNGs of 1024 px X-ray-like images, stored uncompressed, come to
    0.6-0.7, within a few hundredths of what whole Parquet pages reach (``resized-512`` is not measured). The sample
    is at most 1.5 MB (a few milliseconds). Columns whose rows are all null or paths without bytes do not qualify.
    """
    codec = pa.Codec("zstd", IMAGE_ZSTD_LEVEL)
    features = next(iter(dataset_dict.values())).features
    chosen = []
    for name, feature in features.items():
        if not require_storage_embed(feature):
            continue
        raw = packed = 0
        for dataset in dataset_dict.values():
            count = min(sample_rows, len(dataset))
            if count == 0:
                continue
            rows = sorted({len(dataset) * i // count for i in range(count)})
            column = dataset.with_format("arrow")[rows][name].combine_chunks()
            for value in column.field("bytes").to_pylist() if pa.types.is_struct(column.type) else []:
                if value:
                    piece = value[:_SAMPLE_BYTES_PER_ROW]
                    raw += len(piece)
                    packed += len(codec.compress(piece, asbytes=True))
        ratio = packed / raw if raw else 1.0
        logger.debug("column %s: a sample of %d bytes compresses to %.2f of its size", name, raw, ratio)
        if ratio < COMPRESSIBLE_RATIO:
            chosen.append(name)
    return tuple(chosen)


def plan_shards(dataset: Dataset, folder: Path, split: str, max_shard_bytes: int, *,
                zstd_columns: Sequence[str] = ()) -> list[Shard]:
    """Cut ``dataset`` into ``<split>-NNNNN-of-NNNNN.parquet`` shards of at most about ``max_shard_bytes`` (Arrow
    size) each, contiguous in row order. Row groups hold as many rows as ``push_to_hub`` puts in one: at most
    1,000 and about 100 MB, so the Hub's viewer reads a page of rows without fetching a whole shard."""
    if dataset._indices is not None:  # a selected/shuffled view: materialise the rows it points at
        dataset = dataset.flatten_indices()
    table: pa.Table = dataset.data.table
    num_rows, num_bytes = len(dataset), table.nbytes
    num_shards = max(1, min(num_rows, math.ceil(num_bytes / max_shard_bytes)))
    row_group_size = min(datasets_config.DEFAULT_MAX_BATCH_SIZE,
                         get_writer_batch_size_from_data_size(max(num_rows, 1), max(num_bytes, 1)))
    bounds = [num_rows * i // num_shards for i in range(num_shards + 1)]
    return [Shard(folder / f"{split}-{index:05d}-of-{num_shards:05d}.parquet",
                  table.slice(bounds[index], bounds[index + 1] - bounds[index]), dataset.features, row_group_size,
                  tuple(zstd_columns))
            for index in range(num_shards)]


def write_shards(shards: Sequence[Shard], *, content_defined_chunking: bool = False,
                 num_threads: Optional[int] = None) -> None:
    """Write ``shards`` with ``num_threads`` threads (Parquet encoding runs outside the GIL); raise the first
    error any of them met."""
    num_threads = max(1, min(num_threads or min(os.cpu_count() or 1, MAX_DEFAULT_THREADS), len(shards)))
    if num_threads == 1:
        for shard in shards:
            write_shard(shard, content_defined_chunking=content_defined_chunking)
        return
    with ThreadPoolExecutor(num_threads, thread_name_prefix="parquet-shard") as pool:
        futures = [pool.submit(write_shard, shard, content_defined_chunking=content_defined_chunking)
                   for shard in shards]
        try:
            for future in as_completed(futures):
                future.result()
        except BaseException:
            for future in futures:
                future.cancel()
            raise


def write_shard(shard: Shard, *, content_defined_chunking: bool = False) -> None:
    """Write one shard as ``push_to_hub`` would, without decoding an image, and cheaper where that changes nothing.

    The schema and its ``huggingface`` metadata are the features' own, so ``load_dataset`` restores them. As
    ``datasets`` does, image bytes are stored with PLAIN encoding and every other column with snappy and
    dictionaries; image bytes are stored uncompressed (as ``datasets`` does: PNGs are usually compressed already)
    except in ``shard.zstd_columns``, which get zstd at ``IMAGE_ZSTD_LEVEL``. Unlike ``datasets``, image columns get
    no min/max statistics: no reader filters on an image's bytes, and computing them is a pass over every byte.
    """
    features = shard.features
    schema = features.arrow_schema
    options = get_parquet_column_options(features, schema)
    zstd_leaves = [leaf for leaf in options["compression"] if leaf.split(".")[0] in shard.zstd_columns]
    options["compression"].update(dict.fromkeys(zstd_leaves, "zstd"))
    if zstd_leaves:
        options["compression_level"] = dict.fromkeys(zstd_leaves, IMAGE_ZSTD_LEVEL)
    options["write_statistics"] = [leaf for leaf in options["compression"]
                                   if not require_storage_embed(features[leaf.split(".")[0]])]
    cdc = dict(datasets_config.DEFAULT_CDC_OPTIONS) if content_defined_chunking else False
    logger.debug("writing %s (%d rows)", shard.path.name, shard.table.num_rows)
    ready = images_are_portable(shard.table, features)
    if not cdc:  # Parquet checks a page's size once per write batch: rows of ~0.5 MB need batches of a few rows
        # (a quarter page here), or a row group's images land in one 100 MB page that a reader fetches for one row;
        # images stored as paths have no size yet, so those go one row at a time
        rows_per_quarter_page = _PAGE_BYTES * shard.table.num_rows // (4 * max(shard.table.nbytes, 1))
        options["write_batch_size"] = max(1, min(_DEFAULT_WRITE_BATCH_ROWS, rows_per_quarter_page)) if ready else 1
    with pq.ParquetWriter(str(shard.path), schema, use_content_defined_chunking=cdc, write_page_index=True,
                          **options) as writer:
        if ready:  # the common case: straight from the memory-mapped Arrow file into Parquet
            writer.write_table(_with_schema(shard.table, schema), row_group_size=shard.row_group_size)
        else:
            for batch in shard.table.to_batches(max_chunksize=shard.row_group_size):
                table = portable_images(pa.Table.from_batches([batch]), features)
                writer.write_table(_with_schema(table, schema), row_group_size=shard.row_group_size)
        if cdc:  # as datasets records it, so a later writer can reuse the same chunking
            writer.add_key_value_metadata({"content_defined_chunking": json.dumps(cdc)})


def _with_schema(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` under ``schema`` (the features' metadata); cast only where the types differ."""
    if table.schema.equals(schema, check_metadata=False):
        return table.replace_schema_metadata(schema.metadata)
    return table_cast(table, schema)


def images_are_portable(table: pa.Table, features) -> bool:
    """Whether every image column already holds its bytes under a bare file name (no folder in the path)."""
    for name, feature in features.items():
        if not isinstance(feature, Image) or name not in table.column_names:
            continue
        for chunk in table[name].chunks:
            if chunk.field("bytes").null_count > chunk.null_count:
                return False
            if pc.any(pc.match_substring_regex(chunk.field("path"), pattern=r"[/\\]")).as_py():
                return False
    return True


def portable_images(table: pa.Table, features) -> pa.Table:
    """Make the image columns self-contained without decoding them: keep the stored bytes as they are, cut local
    paths to file names, and read the bytes of any image that is stored only as a path."""
    for name, feature in features.items():
        if not isinstance(feature, Image) or name not in table.column_names:
            continue
        column = table[name].combine_chunks()
        image_bytes, image_paths = column.field("bytes"), column.field("path")
        if image_bytes.null_count > column.null_count:
            # some rows point at files: read them (still no decode); embed_table_storage finds the Image columns
            # through the schema's feature metadata
            return embed_table_storage(table.replace_schema_metadata(features.arrow_schema.metadata))
        names = pc.replace_substring_regex(image_paths, pattern=r"^.*[/\\]", replacement="")
        rebuilt = pa.StructArray.from_arrays([image_bytes, names], fields=list(column.type),
                                             mask=column.is_null() if column.null_count else None)
        table = table.set_column(table.column_names.index(name), name, rebuilt)
    return table


def write_card(out: Path, exported: Sequence[ExportedConfig], *, repo_id: str,
               existing: Optional[DatasetCard] = None) -> Path:
    """Render the card (merging ``existing``) into ``out/README.md`` through a temporary file."""
    card = render_card(out, exported, repo_id=repo_id, existing=existing)
    path = out / _CARD
    partial = out / f".{_CARD}.incomplete"
    partial.write_text(str(card), encoding="utf-8")
    os.replace(partial, path)
    return path


def push(data_dir: Optional[os.PathLike], repo_id: str, configs: Sequence[str] = ("default",), *,
         private: bool = False, token: Optional[str] = None, work_dir: Optional[os.PathLike] = None,
         commit_message: Optional[str] = None, content_defined_chunking: bool = True, **export_kwargs) -> str:
    """Export ``configs`` and upload them to the dataset repo ``repo_id`` in one commit; return the commit URL.

    ``export_kwargs`` go to ``export``. Shards are written with ``content_defined_chunking`` by default, as
    ``push_to_hub`` writes them: the upload, not the CPU, bounds a push.

    The repo is created if needed (``private`` applies then). Configs already in the repo stay declared in its card;
    the pushed configs' old shards are replaced. ``token`` defaults to the logged-in token or ``HF_TOKEN``; it is
    never logged. The export is staged in a temporary folder under ``work_dir`` (default: the system's).

    Raises:
        PublishError: an invalid ``repo_id`` or no token.
        huggingface_hub.errors.HfHubHTTPError: the Hub refused a request (the message names the URL, not the token).
    """
    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        raise PublishError(f"repo id {repo_id!r} is not valid: {err}") from None
    if "/" not in repo_id:
        raise PublishError(f"repo id {repo_id!r} needs a namespace: write <user or org>/{repo_id}")
    api = HfApi(token=token)
    if api.token is None and get_token() is None:
        raise PublishError("no Hugging Face token: run `hf auth login` or set HF_TOKEN, then push again")

    repo = api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="nih-chestxray14-push-", dir=work_dir) as staging:
        staging = Path(staging)
        _fetch_remote_card(api, repo.repo_id, staging)
        export(data_dir, staging, configs, repo_id=repo.repo_id, content_defined_chunking=content_defined_chunking,
               **export_kwargs)
        commit = api.upload_folder(
            folder_path=staging,
            repo_id=repo.repo_id,
            repo_type="dataset",
            commit_message=commit_message or f"Upload {', '.join(configs)} of {PRETTY_NAME}",
            delete_patterns=[f"{data_dir_for(config)}/*.parquet" for config in configs],
            ignore_patterns=[".*"],
        )
    logger.info("pushed %s to %s", ", ".join(configs), commit.commit_url)
    return commit.commit_url


def _fetch_remote_card(api: HfApi, repo_id: str, staging: Path) -> None:
    """Put the repo's current card, if any, where export merges into it."""
    try:
        path = api.hf_hub_download(repo_id, _CARD, repo_type="dataset", local_dir=staging / ".remote")
    except EntryNotFoundError:
        return
    shutil.copyfile(path, staging / _CARD)
    shutil.rmtree(staging / ".remote", ignore_errors=True)


def _config_description(config: str) -> str:
    builder_config = NIHChestXray14.builder_configs.get(config)
    return (builder_config.description or "") if builder_config is not None else ""


def _swap_in(staging: Path, final: Path) -> None:
    old = final.with_name(final.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)
    os.replace(staging, final)
    shutil.rmtree(old, ignore_errors=True)
