"""Export prepared configs to Parquet in the Hub's dataset layout, with a dataset card, and push them to the Hub.

The layout is the one ``datasets``' ``push_to_hub`` writes, so ``load_dataset(folder_or_repo, config)`` reads it with
no code of ours::

    OUT/README.md                                   the card; its YAML maps configs and splits to files
    OUT/data/train-00000-of-00090.parquet           the ``default`` config
    OUT/resized-256/validation-00000-of-00001.parquet

Export copies the builder's prepared Arrow tables into Parquet batch by batch: image bytes are never decoded, so it
runs at disk speed (see ``benchmarks/export_speed.py``). A config's shards are written into a hidden staging folder
and swapped in only when complete; the card is written last, through a temporary file.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Optional, Sequence, Union

import pyarrow as pa
import pyarrow.compute as pc
from datasets import Dataset, DatasetDict, DatasetInfo, Image
from datasets.arrow_writer import ParquetWriter, get_writer_batch_size_from_data_size
from datasets.splits import SplitDict, SplitInfo
from datasets.table import embed_table_storage
from datasets.utils.py_utils import convert_file_size_to_int
from huggingface_hub import DatasetCard, HfApi
from huggingface_hub.errors import EntryNotFoundError, HFValidationError
from huggingface_hub.utils import validate_repo_id

from .card import PRETTY_NAME, ExportedConfig, render_card
from .errors import NIHChestXray14Error

logger = logging.getLogger(__name__)

DEFAULT_MAX_SHARD_SIZE = "500MB"
"""As ``datasets``' ``push_to_hub``: big enough for few files, small enough for the Hub's viewer and retries."""

_CARD = "README.md"


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
           cache_dir: Optional[os.PathLike] = None, repo_id: Optional[str] = None, **config_kwargs) -> Path:
    """Prepare each config with the builder (reusing its cache) and export it into ``out``; return ``out``.

    ``config_kwargs`` (``validation_fraction``, ``allow_missing_images``) go to the builder. ``repo_id`` only names
    the repo in the card's usage example. Configs already in ``out`` (from an earlier export) stay in its card.

    Raises:
        PublishError: ``out`` holds a README.md that is not this dataset's card, or a bad ``max_shard_size``.
        NIHChestXray14Error: from the builder, for bad input in ``data_dir``.
    """
    from . import load  # the builder's entry point; imported here so the card and Parquet code stay light

    out = Path(out)
    shard_bytes = parse_shard_size(max_shard_size)
    existing = read_existing_card(out)
    # Prepare every config before writing anything: bad input then leaves `out` untouched.
    prepared = {}
    for config in configs:
        logger.info("preparing config %s", config)
        prepared[config] = load(name=config, data_dir=data_dir, num_proc=num_proc, cache_dir=cache_dir,
                                **config_kwargs)
    fraction = config_kwargs.get("validation_fraction", 0.1)
    staged: list[tuple[ExportedConfig, Path]] = []
    try:
        for config, dataset_dict in prepared.items():
            staged.append(stage_config(dataset_dict, out, config, max_shard_bytes=shard_bytes,
                                       description=_config_description(config), validation_fraction=fraction))
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
                        description: str = "", validation_fraction: float = 0.1) -> ExportedConfig:
    """Write every split of one config as Parquet shards under ``out/<data_dir>``; return what the card needs.

    Replaces that config's previous shards only once all new ones are written.
    """
    exported, staging = stage_config(dataset_dict, out, config_name, max_shard_bytes=max_shard_bytes,
                                     description=description, validation_fraction=validation_fraction)
    _swap_in(staging, out / exported.data_dir)
    return exported


def stage_config(dataset_dict: DatasetDict, out: Path, config_name: str, *, max_shard_bytes: int,
                 description: str = "", validation_fraction: float = 0.1) -> tuple[ExportedConfig, Path]:
    """Write one config's shards into the hidden folder ``out/.<data_dir>.incomplete`` and return it with what the
    card needs; on failure, remove that folder and re-raise."""
    data_dir = data_dir_for(config_name)
    staging = out / f".{data_dir}.incomplete"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    splits = SplitDict()
    features = None
    try:
        for split, dataset in dataset_dict.items():
            features = dataset.features
            num_bytes = write_split(dataset, staging, split, max_shard_bytes)
            splits.add(SplitInfo(name=split, num_bytes=num_bytes, num_examples=len(dataset)))
        download_size = sum(f.stat().st_size for f in staging.glob("*.parquet"))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    info = DatasetInfo(features=features, splits=splits, download_size=download_size,
                       dataset_size=sum(s.num_bytes for s in splits.values()), config_name=config_name)
    return ExportedConfig(config_name, data_dir, info, description, validation_fraction), staging


def write_split(dataset: Dataset, folder: Path, split: str, max_shard_bytes: int) -> int:
    """Write ``dataset`` as ``<split>-NNNNN-of-NNNNN.parquet`` shards of at most about ``max_shard_bytes`` (Arrow
    size) each, contiguous in row order; return the split's Arrow size in bytes."""
    if dataset._indices is not None:  # a selected/shuffled view: materialise the rows it points at
        dataset = dataset.flatten_indices()
    table: pa.Table = dataset.data.table
    num_bytes = table.nbytes
    num_shards = max(1, min(len(dataset), math.ceil(num_bytes / max_shard_bytes)))
    row_group = get_writer_batch_size_from_data_size(max(len(dataset), 1), max(num_bytes, 1))
    bounds = [len(dataset) * i // num_shards for i in range(num_shards + 1)]
    ready = images_are_portable(table, dataset.features)
    for index in range(num_shards):
        shard = table.slice(bounds[index], bounds[index + 1] - bounds[index])
        path = folder / f"{split}-{index:05d}-of-{num_shards:05d}.parquet"
        with ParquetWriter(path=str(path), features=dataset.features, writer_batch_size=row_group) as writer:
            if ready:  # the common case: straight from the memory-mapped Arrow file into Parquet
                writer.write_table(shard)
            else:
                for batch in shard.to_batches(max_chunksize=row_group):
                    writer.write_table(portable_images(pa.Table.from_batches([batch]), dataset.features))
            writer.finalize()
    return num_bytes


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
         commit_message: Optional[str] = None, **export_kwargs) -> str:
    """Export ``configs`` and upload them to the dataset repo ``repo_id`` in one commit; return the commit URL.

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
    if api.token is None and _logged_in_token() is None:
        raise PublishError("no Hugging Face token: run `hf auth login` or set HF_TOKEN, then push again")

    repo = api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="nih-chestxray14-push-", dir=work_dir) as staging:
        staging = Path(staging)
        _fetch_remote_card(api, repo.repo_id, staging)
        export(data_dir, staging, configs, repo_id=repo.repo_id, **export_kwargs)
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


def _logged_in_token() -> Optional[str]:
    from huggingface_hub import get_token

    return get_token()


def _config_description(config: str) -> str:
    from .builder import NIHChestXray14

    for builder_config in NIHChestXray14.BUILDER_CONFIGS:
        if builder_config.name == config:
            return builder_config.description or ""
    return ""


def _swap_in(staging: Path, final: Path) -> None:
    old = final.with_name(final.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)
    os.replace(staging, final)
    shutil.rmtree(old, ignore_errors=True)
