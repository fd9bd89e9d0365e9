"""Parquet shards of a prepared split, written with pyarrow's public writer, without decoding an image.

A shard is what ``datasets``' ``push_to_hub`` would write, so ``load_dataset`` reads it back with the exact features:
the features' Arrow schema with their ``huggingface`` metadata; row groups of at most 1,000 rows and about 100 MB,
so the Hub's viewer reads a page of rows without fetching a whole shard; image bytes with PLAIN encoding and no
compression (PNGs are compressed already); every other column snappy-compressed with dictionaries. Three choices
differ, each measured in ``benchmarks/README.md`` (Export speed):

* image columns whose bytes do compress (the resized configs store PNGs with uncompressed deflate blocks, for fast
  decoding) get zstd, chosen once per config by :func:`compressible_columns`;
* image columns get no min/max statistics: no reader filters on an image's bytes, and computing them reads every byte;
* content-defined chunking (``push_to_hub``'s default, for the Hub's deduplicating storage) is optional.

The rows come from the public ``Dataset.with_format("arrow")``: for a prepared (not shuffled or selected) split, a
zero-copy slice of its memory-mapped Arrow file.
"""

from __future__ import annotations

import json
import logging
import math
import os
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from datasets import Dataset, DatasetDict, Features, Image, LargeList, List

logger = logging.getLogger(__name__)

MAX_DEFAULT_THREADS = 8
"""Shards written at once by default: one per core up to this; past it a disk, not the CPU, is the limit."""

MAX_ROWS_PER_ROW_GROUP = 1000
"""``push_to_hub``'s cap on rows per row group (``datasets.config.DEFAULT_MAX_BATCH_SIZE``)."""
MAX_ROW_GROUP_BYTES = 100 * 10**6
"""``push_to_hub``'s target row-group size, in Arrow bytes (``datasets.config.MAX_ROW_GROUP_SIZE``, "100MB")."""
CONTENT_DEFINED_CHUNKING = {"min_chunk_size": 256 * 1024, "max_chunk_size": 1024 * 1024, "norm_level": 0}
"""The chunking ``push_to_hub`` asks pyarrow for (``datasets.config.DEFAULT_CDC_OPTIONS``)."""

IMAGE_ZSTD_LEVEL = 3
"""zstd level of image columns that compress: zstd's default (benchmarks/README.md compares it with level 1)."""
COMPRESSIBLE_RATIO = 0.8
"""An image column gets zstd when a sample of its bytes compresses to less than this share of its size."""

_PAGE_BYTES = 1024 * 1024  # Parquet's default data page size, and the largest page content-defined chunking cuts
_DEFAULT_WRITE_BATCH_ROWS = 1024  # Parquet's default write batch
_SAMPLE_ROWS_PER_SPLIT = 8
_SAMPLE_BYTES_PER_ROW = 64 * 1024  # a PNG's first 64 KB: its header and the start of its pixel stream


@dataclass(frozen=True)
class Shard:
    """One Parquet file to write: rows ``start:stop`` of ``dataset`` into ``path``, in row groups of
    ``row_group_size`` rows; ``zstd_columns``: the image columns to compress with zstd."""

    path: Path
    dataset: Dataset
    start: int
    stop: int
    row_group_size: int
    zstd_columns: tuple[str, ...] = ()

    def table(self) -> pa.Table:
        """The shard's rows as an Arrow table (zero-copy for a prepared split)."""
        return arrow_rows(self.dataset)[self.start:self.stop]


def arrow_rows(dataset: Dataset) -> Dataset:
    """``dataset`` formatted to return Arrow tables: itself if it already is (formatting copies the dataset)."""
    return dataset if dataset.format["type"] == "arrow" else dataset.with_format("arrow")


def holds_files(feature) -> bool:
    """Whether a (possibly nested) feature stores file bytes, as ``Image`` does: those columns get PLAIN pages."""
    if isinstance(feature, dict):
        return any(holds_files(inner) for inner in feature.values())
    if isinstance(feature, (list, tuple)):
        return holds_files(feature[0])
    if isinstance(feature, (List, LargeList)):
        return holds_files(feature.feature)
    return hasattr(feature, "embed_storage")


def compressible_columns(dataset_dict: DatasetDict, *, sample_rows: int = _SAMPLE_ROWS_PER_SPLIT) -> tuple[str, ...]:
    """The image (or other file) columns whose bytes are worth compressing in Parquet.

    The rule: compress the first 64 KB of each of ``sample_rows`` evenly spaced rows per split, each on its own,
    with zstd at ``IMAGE_ZSTD_LEVEL``; the column qualifies when the sample shrinks below ``COMPRESSIBLE_RATIO`` of
    its size. NIH's PNGs (``default``) are deflate-compressed already and do not qualify; the resized configs' PNGs,
    stored with uncompressed deflate blocks, do. The sample is at most 1.5 MB. Columns whose rows are all null, or
    paths without bytes, do not qualify.
    """
    codec = pa.Codec("zstd", IMAGE_ZSTD_LEVEL)
    features = next(iter(dataset_dict.values())).features
    chosen = []
    for name, feature in features.items():
        if not holds_files(feature):
            continue
        raw = packed = 0
        for dataset in dataset_dict.values():
            count = min(sample_rows, len(dataset))
            if count == 0:
                continue
            rows = sorted({len(dataset) * i // count for i in range(count)})
            column = arrow_rows(dataset)[rows][name].combine_chunks()
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


def row_group_rows(num_rows: int, num_bytes: int) -> int:
    """Rows per row group, as ``push_to_hub`` sizes them: about ``MAX_ROW_GROUP_BYTES``, at most 1,000 rows.

    >>> row_group_rows(1000, 500 * 10**6), row_group_rows(10, 10)
    (200, 1000)
    """
    num_rows, num_bytes = max(num_rows, 1), max(num_bytes, 1)
    return min(MAX_ROWS_PER_ROW_GROUP, max(1, num_rows * MAX_ROW_GROUP_BYTES // num_bytes))


def plan_shards(dataset: Dataset, folder: Path, split: str, max_shard_bytes: int, *,
                zstd_columns: Sequence[str] = ()) -> list[Shard]:
    """Cut ``dataset`` into ``<split>-NNNNN-of-NNNNN.parquet`` shards of at most about ``max_shard_bytes`` (Arrow
    size) each, contiguous in row order.

    The size is the Arrow table's (``dataset.data.nbytes``), scaled by the share of its rows that ``dataset`` shows
    when it is a selected or shuffled view.
    """
    num_rows = len(dataset)
    table_rows = dataset.data.num_rows
    num_bytes = dataset.data.nbytes * num_rows // table_rows if table_rows else 0
    num_shards = max(1, min(num_rows, math.ceil(num_bytes / max_shard_bytes)))
    group_rows = row_group_rows(num_rows, num_bytes)
    bounds = [num_rows * i // num_shards for i in range(num_shards + 1)]
    return [Shard(folder / f"{split}-{index:05d}-of-{num_shards:05d}.parquet", dataset, bounds[index],
                  bounds[index + 1], group_rows, tuple(zstd_columns))
            for index in range(num_shards)]


def write_shards(shards: Sequence[Shard], *, content_defined_chunking: bool = False,
                 num_threads: Optional[int] = None) -> list[int]:
    """Write ``shards`` with ``num_threads`` threads (Parquet encoding runs outside the GIL; default: one per core,
    at most ``MAX_DEFAULT_THREADS``); return each shard's Arrow size in bytes. Raise the first error any met."""
    num_threads = max(1, min(num_threads or min(os.cpu_count() or 1, MAX_DEFAULT_THREADS), len(shards)))
    if num_threads == 1:
        return [write_shard(shard, content_defined_chunking=content_defined_chunking) for shard in shards]
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
    return [future.result() for future in futures]


def write_shard(shard: Shard, *, content_defined_chunking: bool = False) -> int:
    """Write one shard (see :func:`write_parquet`); return its Arrow size in bytes."""
    table = shard.table()
    write_parquet(shard.path, table, shard.dataset.features, row_group_size=shard.row_group_size,
                  zstd_columns=shard.zstd_columns, content_defined_chunking=content_defined_chunking)
    return table.nbytes


def write_parquet(path: Path, table: pa.Table, features: Features, *, row_group_size: int,
                  zstd_columns: Sequence[str] = (), content_defined_chunking: bool = False) -> None:
    """Write ``table`` (rows of ``features``) to ``path`` as described in this module's docstring.

    Without content-defined chunking, pages are kept to about 1 MB so that the page index lets a reader fetch one
    row without its whole row group. Images stored as paths are read into the file (never decoded).
    """
    schema = features.arrow_schema
    options = column_options(features, schema, zstd_columns)
    cdc = dict(CONTENT_DEFINED_CHUNKING) if content_defined_chunking else False
    logger.debug("writing %s (%d rows)", path.name, table.num_rows)
    ready = images_are_portable(table, features)
    if not cdc:  # Parquet checks a page's size once per write batch: rows of ~0.5 MB need batches of a few rows
        # (a quarter page here), or a row group's images land in one 100 MB page that a reader fetches for one row;
        # images stored as paths have no size yet, so those go one row at a time
        rows_per_quarter_page = _PAGE_BYTES * table.num_rows // (4 * max(table.nbytes, 1))
        options["write_batch_size"] = max(1, min(_DEFAULT_WRITE_BATCH_ROWS, rows_per_quarter_page)) if ready else 1
    with pq.ParquetWriter(str(path), schema, use_content_defined_chunking=cdc, write_page_index=True,
                          **options) as writer:
        if ready:  # the common case: straight from the memory-mapped Arrow file into Parquet
            writer.write_table(_with_schema(table, schema), row_group_size=row_group_size)
        else:
            for batch in table.to_batches(max_chunksize=row_group_size):
                portable = portable_images(pa.Table.from_batches([batch]), features)
                writer.write_table(_with_schema(portable, schema), row_group_size=row_group_size)
        if cdc:  # as datasets records it, so a later writer can reuse the same chunking
            writer.add_key_value_metadata({"content_defined_chunking": json.dumps(cdc)})


def column_options(features: Features, schema: pa.Schema, zstd_columns: Sequence[str] = ()) -> dict:
    """``pq.ParquetWriter`` options per leaf column (Parquet names leaves ``image.bytes``, ``bboxes.list.element.x``):
    file columns PLAIN, uncompressed (zstd at ``IMAGE_ZSTD_LEVEL`` in ``zstd_columns``) and without statistics;
    the others snappy with dictionaries and statistics."""
    compression, levels, encoding, dictionary, statistics = {}, {}, {}, [], []
    for field in schema:
        files = holds_files(features[field.name])
        for leaf in _leaf_paths(field.name, field.type):
            if files:
                compression[leaf] = "zstd" if field.name in zstd_columns else "none"
                encoding[leaf] = "PLAIN"
                if field.name in zstd_columns:
                    levels[leaf] = IMAGE_ZSTD_LEVEL
            else:
                compression[leaf] = "snappy"
                dictionary.append(leaf)
                statistics.append(leaf)
    options = {"compression": compression, "use_dictionary": dictionary, "column_encoding": encoding,
               "write_statistics": statistics}
    if levels:
        options["compression_level"] = levels
    return options


def _leaf_paths(path: str, pa_type: pa.DataType) -> list[str]:
    if isinstance(pa_type, pa.ExtensionType):
        pa_type = pa_type.storage_type
    if pa.types.is_struct(pa_type):
        return [leaf for field in pa_type for leaf in _leaf_paths(f"{path}.{field.name}", field.type)]
    if pa.types.is_list(pa_type) or pa.types.is_large_list(pa_type) or pa.types.is_fixed_size_list(pa_type):
        return _leaf_paths(f"{path}.list.element", pa_type.value_type)
    return [path]


def _with_schema(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` under ``schema`` (the features' metadata); cast only where the types differ."""
    if table.schema.equals(schema, check_metadata=False):
        return table.replace_schema_metadata(schema.metadata)
    return table.cast(schema)


def images_are_portable(table: pa.Table, features: Features) -> bool:
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


def portable_images(table: pa.Table, features: Features) -> pa.Table:
    """Make the image columns self-contained without decoding them: keep the stored bytes as they are, cut local
    paths to file names, and read the bytes of any image stored only as a path (``Image.embed_storage``)."""
    for name, feature in features.items():
        if not isinstance(feature, Image) or name not in table.column_names:
            continue
        column = table[name].combine_chunks()
        image_bytes, image_paths = column.field("bytes"), column.field("path")
        if image_bytes.null_count > column.null_count:  # some rows point at files: read them, still no decode
            rebuilt = feature.embed_storage(column)
        else:
            names = pc.replace_substring_regex(image_paths, pattern=r"^.*[/\\]", replacement="")
            rebuilt = pa.StructArray.from_arrays([image_bytes, names], fields=list(column.type),
                                                 mask=column.is_null() if column.null_count else None)
        table = table.set_column(table.column_names.index(name), name, rebuilt)
    return table
