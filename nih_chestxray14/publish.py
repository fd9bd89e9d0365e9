"""Export prepared configs to Parquet in the Hub's dataset layout, with a dataset card, and push them to the Hub.

The layout is the one ``datasets``' ``push_to_hub`` writes, so ``load_dataset(folder_or_repo, config)`` reads it with
no code of ours::

    OUT/README.md                                   the card; its YAML maps configs and splits to files
    OUT/data/train-00000-of-00090.parquet           the ``default`` config
    OUT/resized-256/validation-00000-of-00001.parquet

Export prepares each config with the builder (reusing its cache), then copies the prepared Arrow tables into Parquet
shards (:mod:`nih_chestxray14.parquet`: no image is decoded), and writes the card last. It replaces only what an
earlier export wrote, and writes everything beside ``OUT`` first (:mod:`nih_chestxray14.export_folder`), so a
failed or killed export leaves ``OUT`` as it was. ``push`` exports into a temporary folder and uploads it in one
commit with ``huggingface_hub``.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Mapping, Optional, Sequence, Union

from datasets import DatasetDict, DatasetInfo, SplitDict, SplitInfo
from huggingface_hub import DatasetCard, HfApi, get_token
from huggingface_hub.errors import EntryNotFoundError, HFValidationError
from huggingface_hub.utils import validate_repo_id

from .builder import NIHChestXray14, NIHChestXray14Config
from .card import CARD, PRETTY_NAME, ExportedConfig, render_card
from .export_folder import PublishError, Staging, check_replaceable, data_dir_for
from .files import atomic_write
from .loading import load
from .parquet import MAX_DEFAULT_THREADS, compressible_columns, plan_shards, write_shards

__all__ = ["DEFAULT_MAX_SHARD_SIZE", "MAX_DEFAULT_THREADS", "PublishError", "data_dir_for", "export",
           "export_dataset_dict", "parse_shard_size", "push", "write_config"]

logger = logging.getLogger(__name__)

DEFAULT_MAX_SHARD_SIZE = "500MB"
"""As ``datasets``' ``push_to_hub``: big enough for few files, small enough for the Hub's viewer and retries."""

_SIZE = re.compile(r"^\s*(\d+)\s*([KMGTP]?)(I?)(B)\s*$", re.IGNORECASE)


def parse_shard_size(max_shard_size: Union[int, str]) -> int:
    """``"500MB"`` → 500,000,000 bytes (``KB``/``MB``/``GB``/``TB`` are powers of 1000, ``KiB``… of 1024, a lower-case
    ``b`` means bits), or an int as it is, as ``push_to_hub`` reads its ``max_shard_size``.

    >>> parse_shard_size("500MB"), parse_shard_size("1GiB"), parse_shard_size(2048)
    (500000000, 1073741824, 2048)

    Raises:
        PublishError: for a size that is not a positive number of bytes.
    """
    size = 0
    if isinstance(max_shard_size, int) and not isinstance(max_shard_size, bool):
        size = max_shard_size
    elif isinstance(max_shard_size, str) and (match := _SIZE.match(max_shard_size)):
        number, prefix, binary, unit = match.groups()
        power = "_KMGTP".index(prefix.upper()) if prefix else 0
        size = int(number) * (1024 if binary else 1000) ** power
        if unit == "b" and not binary:
            size //= 8
    if size <= 0:
        raise PublishError(f"--max-shard-size {max_shard_size!r} is not a size; write e.g. 500MB or 2GB")
    return size


def export(data_dir: Optional[os.PathLike], out: os.PathLike, configs: Sequence[str] = ("default",), *,
           max_shard_size: Union[int, str] = DEFAULT_MAX_SHARD_SIZE, num_proc: Optional[int] = None,
           cache_dir: Optional[os.PathLike] = None, repo_id: Optional[str] = None,
           content_defined_chunking: bool = False, num_threads: Optional[int] = None, **config_kwargs) -> Path:
    """Prepare each config with the builder (reusing its cache) and export it into ``out``; return ``out``.

    ``config_kwargs`` (``validation_fraction``, ``allow_missing_images``) go to the builder; ``split_lists`` is
    refused. ``repo_id`` only names the repo in the card's usage example. Configs already in ``out`` (from an
    earlier export) stay in its card.
    ``content_defined_chunking`` (as ``push_to_hub`` writes; off by default, as it slows a local export) and
    ``num_threads`` (shards written at once): see :mod:`nih_chestxray14.parquet`.

    Raises:
        PublishError: a bad ``max_shard_size``, ``split_lists`` among ``config_kwargs``, or ``out`` holds something
            an earlier export did not write that this export would replace (a README.md that is not this dataset's
            card, a file in a config's folder).
        NIHChestXray14Error: from the builder, for bad input in ``data_dir``.
    """
    if config_kwargs.get("split_lists") is not None:
        raise PublishError("export and push write NIH's official split, which the card they write describes; a copy "
                           "built on split_lists is not exported, as its card would name the wrong split")
    out = Path(out)
    shard_bytes = parse_shard_size(max_shard_size)
    existing = check_replaceable(out, [data_dir_for(config) for config in configs])
    # Prepare every config before writing anything: bad input then leaves `out` untouched.
    prepared = {}
    for config in configs:
        logger.info("preparing config %s", config)
        prepared[config] = load(name=config, data_dir=data_dir, num_proc=num_proc, cache_dir=cache_dir,
                                **config_kwargs)
    fraction = config_kwargs.get("validation_fraction", NIHChestXray14Config.validation_fraction)
    _export_configs(out, prepared, max_shard_bytes=shard_bytes, validation_fraction=fraction,
                    content_defined_chunking=content_defined_chunking, num_threads=num_threads,
                    card_for=repo_id or "<user>/nih-chestxray14", existing=existing)
    return out


def export_dataset_dict(dataset_dict: DatasetDict, out: os.PathLike, config_name: str, *, max_shard_bytes: int,
                        description: str = "", validation_fraction: float = 0.1,
                        content_defined_chunking: bool = False, num_threads: Optional[int] = None) -> ExportedConfig:
    """Write every split of one config as Parquet shards under ``out/<data_dir>`` (no card); return what a card
    needs. The config's previous shards are replaced only once all new ones are written.

    Raises:
        PublishError: ``out/<data_dir>`` holds something an earlier export did not write.
    """
    out = Path(out)
    check_replaceable(out, [data_dir_for(config_name)])
    return _export_configs(out, {config_name: dataset_dict}, max_shard_bytes=max_shard_bytes,
                           validation_fraction=validation_fraction, content_defined_chunking=content_defined_chunking,
                           num_threads=num_threads, descriptions={config_name: description})[0]


def _export_configs(out: Path, prepared: Mapping[str, DatasetDict], *, max_shard_bytes: int,
                    validation_fraction: float, content_defined_chunking: bool, num_threads: Optional[int],
                    descriptions: Optional[Mapping[str, str]] = None, card_for: Optional[str] = None,
                    existing: Optional[DatasetCard] = None) -> list[ExportedConfig]:
    """Write ``prepared`` configs (and, with ``card_for`` as the repo id, the card) beside ``out``, then swap them
    in; on any error ``out`` is left as it was."""
    with Staging(out) as staging:
        exported = [write_config(dataset_dict, staging.tree, config, max_shard_bytes=max_shard_bytes,
                                 description=(descriptions or {}).get(config, _config_description(config)),
                                 validation_fraction=validation_fraction,
                                 content_defined_chunking=content_defined_chunking, num_threads=num_threads)
                    for config, dataset_dict in prepared.items()]
        if card_for is not None:
            card = render_card(out, exported, repo_id=card_for, existing=existing, staged_dir=staging.tree)
            atomic_write(staging.tree / CARD, str(card))
        staging.commit([config.data_dir for config in exported])
    return exported


def write_config(dataset_dict: DatasetDict, root: Path, config_name: str, *, max_shard_bytes: int,
                 description: str = "", validation_fraction: float = 0.1, content_defined_chunking: bool = False,
                 num_threads: Optional[int] = None) -> ExportedConfig:
    """Write one config's splits as shards into ``root/<data_dir>`` (created; it must not exist) and return what
    the card needs. Image columns get zstd where a sample says it pays, the same way in every shard."""
    folder = root / data_dir_for(config_name)
    folder.mkdir(parents=True)
    rows = dataset_dict.with_format("arrow")  # formatted once: each formatting copies the dataset
    zstd_columns = compressible_columns(rows)
    planned = {split: plan_shards(dataset, folder, split, max_shard_bytes, zstd_columns=zstd_columns)
               for split, dataset in rows.items()}
    sizes = iter(write_shards([shard for shards in planned.values() for shard in shards],
                              content_defined_chunking=content_defined_chunking, num_threads=num_threads))
    splits = SplitDict()
    for split, shards in planned.items():
        splits.add(SplitInfo(name=split, num_bytes=sum(next(sizes) for _ in shards),
                             num_examples=len(dataset_dict[split])))
    first = next(iter(dataset_dict.values()))
    info = DatasetInfo(features=first.features, splits=splits, config_name=config_name,
                       download_size=sum(f.stat().st_size for f in folder.glob("*.parquet")),
                       dataset_size=sum(s.num_bytes for s in splits.values()), citation=first.info.citation)
    return ExportedConfig(config_name, data_dir_for(config_name), info, description, validation_fraction)


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
        out = Path(staging) / "export"
        out.mkdir()
        _fetch_remote_card(api, repo.repo_id, out)
        export(data_dir, out, configs, repo_id=repo.repo_id, content_defined_chunking=content_defined_chunking,
               **export_kwargs)
        commit = api.upload_folder(
            folder_path=out,
            repo_id=repo.repo_id,
            repo_type="dataset",
            commit_message=commit_message or f"Upload {', '.join(configs)} of {PRETTY_NAME}",
            delete_patterns=[f"{data_dir_for(config)}/*.parquet" for config in configs],
            ignore_patterns=[".*"],
        )
    logger.info("pushed %s to %s", ", ".join(configs), commit.commit_url)
    return commit.commit_url


def _fetch_remote_card(api: HfApi, repo_id: str, out: Path) -> None:
    """Put the repo's current card, if any, where export merges into it."""
    remote = out.parent / "remote"
    try:
        path = api.hf_hub_download(repo_id, CARD, repo_type="dataset", local_dir=remote)
    except EntryNotFoundError:
        return
    shutil.copyfile(path, out / CARD)
    shutil.rmtree(remote, ignore_errors=True)


def _config_description(config: str) -> str:
    builder_config = NIHChestXray14.builder_configs.get(config)
    return (builder_config.description or "") if builder_config is not None else ""
