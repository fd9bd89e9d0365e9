"""The command line: download NIH's release, prepare a config, export it to Parquet, push it to the Hub, show it.

    python -m nih_chestxray14 download DIR
    python -m nih_chestxray14 prepare --data-dir DIR --config resized-256 --num-proc 16
    python -m nih_chestxray14 export  --data-dir DIR --config resized-256 OUT
    python -m nih_chestxray14 push    --data-dir DIR --config resized-256 me/nih-chestxray14 [--private]
    python -m nih_chestxray14 show    --data-dir DIR --split validation -n 16 grid.png

Every command explains itself with ``--help``. On bad input a command prints one line naming the argument or file
and what to do, and exits with status 2 (bad arguments) or 1 (anything else); set NIH_CHESTXRAY14_DEBUG=1 to get
the traceback instead.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from pathlib import Path
from typing import Optional, Sequence

from datasets.exceptions import DatasetGenerationError

from .builder import NIHChestXray14
from .download import (DEFAULT_DEADLINE, DEFAULT_TIMEOUT, DownloadsFailedError, download_archives, nih_archives,
                       read_checksums)
from .errors import NIHChestXray14Error
from .hub import redact_secrets
from .loading import load
from .publish import DEFAULT_MAX_SHARD_SIZE, MAX_DEFAULT_THREADS, export, parse_shard_size, push
from .split_record import split_description
from .splits import SPLITS

PROG = "nih-chestxray14"
CONFIGS = tuple(NIHChestXray14.builder_configs)

logger = logging.getLogger("nih_chestxray14")


class UsageError(Exception):
    """A bad argument: found by argparse (``prog`` is then the parser that found it) or after parsing."""

    def __init__(self, message: str, prog: Optional[str] = None):
        super().__init__(message)
        self.prog = prog


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (the reason and where to get help), not the usage block."""

    def error(self, message: str):
        raise UsageError(f"{message} (see {self.prog} --help)", prog=self.prog)


# ---- arguments ---------------------------------------------------------------------------------------------------
def _whole_number(minimum: int):
    """An argparse type: a whole number of at least ``minimum``, or a one-line error saying what is wrong."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} must be at least {minimum}")
        return value

    parse.__name__ = f"whole number of at least {minimum}"  # argparse names the type in some of its messages
    return parse


_positive_int = _whole_number(1)
_non_negative_int = _whole_number(0)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{value:g} must be more than 0 seconds")
    return value


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"{value} must be in [0, 1)")
    return value


def _split_list(text: str) -> tuple:
    split, sep, path = text.partition("=")
    if not sep or split not in SPLITS or not path:
        raise argparse.ArgumentTypeError(f"{text!r} is not SPLIT=FILE with SPLIT one of {', '.join(SPLITS)}")
    return split, path


def _add_builder_arguments(parser: argparse.ArgumentParser, *, many_configs: bool) -> None:
    group = parser.add_argument_group("dataset")
    group.add_argument("--data-dir", type=Path, required=True,
                       help="your copy of NIH's release: the archives or extracted images, with the CSV and lists")
    if many_configs:
        group.add_argument("--config", dest="configs", action="append", choices=CONFIGS, metavar="CONFIG",
                           help=f"config to include, one of {', '.join(CONFIGS)}; repeat for several "
                                "(default: default)")
    else:
        group.add_argument("--config", choices=CONFIGS, default="default", metavar="CONFIG",
                           help=f"one of {', '.join(CONFIGS)} (default: default)")
    group.add_argument("--num-proc", type=_positive_int, default=None,
                       help="processes used to build a config that is not prepared yet (default: 1)")
    group.add_argument("--cache-dir", type=Path, default=None,
                       help="datasets' cache folder (default: HF_DATASETS_CACHE)")
    group.add_argument("--validation-fraction", type=_fraction, default=0.1,
                       help="share of train_val patients that form validation (default: 0.1)")
    group.add_argument("--allow-missing-images", action="store_true",
                       help="build from a partial download, skipping (and counting) images that are absent")
    if not many_configs:  # export and push write NIH's official split, which their card describes
        group.add_argument("--split-list", dest="split_lists", action="append", type=_split_list, metavar="SPLIT=FILE",
                           help="build on your own split list instead of NIH's, e.g. train=train_list.txt; repeat "
                                "for train, test and optionally validation (format and checks: "
                                "nih_chestxray14.split_lists)")
        group.add_argument("--allow-split-overlap", action="store_true",
                           help="with --split-list, build even when the lists share images or patients (logged)")


def _add_writer_arguments(parser: argparse.ArgumentParser, *, chunking_default: bool) -> None:
    group = parser.add_argument_group("Parquet writing")
    group.add_argument("--max-shard-size", default=DEFAULT_MAX_SHARD_SIZE,
                       help=f"largest shard, e.g. 500MB (default: {DEFAULT_MAX_SHARD_SIZE})")
    group.add_argument("--content-defined-chunking", action=argparse.BooleanOptionalAction, default=None,
                       help="cut Parquet pages where the content says, as push_to_hub does, so the Hub stores "
                            "only what changed when a later upload edits rows; it hashes every byte, so writing "
                            f"is slower (default: {'on' if chunking_default else 'off'} for this command)")
    group.add_argument("--threads", type=_positive_int, default=None, metavar="N",
                       help=f"shards written at once (default: one per CPU core, at most {MAX_DEFAULT_THREADS})")


def _writer_kwargs(args) -> dict:
    """The Parquet options given on the command line; those not given keep publish's defaults."""
    kwargs = {"max_shard_size": args.max_shard_size, "num_threads": args.threads}
    if args.content_defined_chunking is not None:
        kwargs["content_defined_chunking"] = args.content_defined_chunking
    return kwargs


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description=__doc__.split("\n\n")[0], epilog="examples:\n" + __doc__.split("\n\n")[1],
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser, required=True)

    download = commands.add_parser(
        "download", help="fetch NIH's 12 image archives (resumable, checked)",
        description="Fetch NIH's 12 image archives (images_001.tar.gz ... images_012.tar.gz) into DIR, with a "
                    "progress bar each. An interrupted download resumes where it stopped. An archive appears "
                    "under its final name only once it has been read in full and checked: gzip and tar to their "
                    "end, NIH's MD5 (from NIH's FAQ) and its number of PNGs; anything else is deleted. The "
                    "metadata files (Data_Entry_2017_v2020.csv, train_val_list.txt, test_list.txt, "
                    "BBox_List_2017.csv) come from NIH's site: put them in DIR too.")
    download.add_argument("dir", type=Path, metavar="DIR", help="folder to download into (created if needed)")
    download.add_argument("--archives", type=_positive_int, nargs="+", metavar="N",
                          help="only these archives, by number 1-12 (default: all)")
    download.add_argument("--checksums", type=Path, metavar="FILE",
                          help="sha256sum- or md5sum-style file, '<digest>  images_001.tar.gz' per line, whose "
                               "digests replace NIH's MD5s")
    download.add_argument("--retries", type=_non_negative_int, default=3,
                          help="resumes after a dropped connection, per archive (default: 3)")
    download.add_argument("--timeout", type=_seconds, default=DEFAULT_TIMEOUT,
                          help=f"seconds a connection may wait for data (default: {DEFAULT_TIMEOUT:g})")
    download.add_argument("--deadline", type=_seconds, default=DEFAULT_DEADLINE,
                          help="seconds one archive may take in all, retries included, however slowly the server "
                               f"sends (default: {DEFAULT_DEADLINE:g}, i.e. {DEFAULT_DEADLINE / 3600:g} hours)")

    prepare = commands.add_parser(
        "prepare", help="build a config into datasets' cache",
        description="Build a config from your copy of NIH's release into datasets' Arrow cache, so that "
                    "load_dataset, export, push and show reuse it.")
    _add_builder_arguments(prepare, many_configs=False)

    export = commands.add_parser(
        "export", help="write Parquet shards and a dataset card into a folder",
        description="Write configs as Parquet shards in the Hub's dataset layout (OUT/<config>/<split>-NNNNN-of-"
                    "NNNNN.parquet, 'data/' for default) with a README.md dataset card, so that "
                    "datasets.load_dataset(OUT, config) loads them with no code of this package. Prepares the "
                    "configs first if needed. Exporting into a folder an earlier export wrote adds configs to it "
                    "and replaces those exported again; anything else in their folders makes export refuse. "
                    "Everything is written beside OUT first, so a failed or interrupted export leaves OUT as it was.")
    _add_builder_arguments(export, many_configs=True)
    export.add_argument("out", type=Path, metavar="OUT", help="folder to write (created if needed)")
    _add_writer_arguments(export, chunking_default=False)

    push = commands.add_parser(
        "push", help="export configs and upload them to a dataset repo on the Hub",
        description="Export configs (see export) and upload them in one commit to the Hub dataset repo REPO_ID, "
                    "creating it if needed. Configs pushed earlier stay declared in the card. Uses the token of "
                    "`hf auth login` or HF_TOKEN; the token is never printed.")
    _add_builder_arguments(push, many_configs=True)
    push.add_argument("repo_id", metavar="REPO_ID", help="dataset repo, <user or org>/<name>")
    push.add_argument("--private", action="store_true", help="create the repo private (if it does not exist yet)")
    push.add_argument("--work-dir", type=Path, default=None,
                      help="folder for the temporary export (default: the system's temporary folder)")
    push.add_argument("--commit-message", default=None, help="message of the commit on the Hub")
    _add_writer_arguments(push, chunking_default=True)

    show = commands.add_parser(
        "show", help="write a grid PNG of images titled with their findings",
        description="Draw images of one split in a grid, each titled with its file name and findings, into a "
                    "PNG of (columns x cell size) by (rows x cell size) pixels. Prepares the config if needed.")
    _add_builder_arguments(show, many_configs=False)
    show.add_argument("out", type=Path, metavar="OUT.png", help="PNG file to write")
    show.add_argument("--split", choices=SPLITS, default="validation", help="split to draw from (default: validation)")
    show.add_argument("-n", "--count", type=_positive_int, default=16, help="number of images (default: 16)")
    show.add_argument("--columns", type=_positive_int, default=None, help="images per row (default: square grid)")
    show.add_argument("--cell-size", type=_positive_int, default=256, help="pixels per image cell (default: 256)")
    show.add_argument("--seed", type=int, default=None, help="draw a random sample with this seed (default: first N)")
    return parser


# ---- commands ----------------------------------------------------------------------------------------------------
def _check_data_dir(args) -> None:
    if not args.data_dir.is_dir():
        raise UsageError(f"--data-dir {args.data_dir}: no such folder; point it at your copy of NIH's release")


def _builder_kwargs(args) -> dict:
    kwargs = {"data_dir": str(args.data_dir), "num_proc": args.num_proc,
              "cache_dir": str(args.cache_dir) if args.cache_dir else None,
              "validation_fraction": args.validation_fraction, "allow_missing_images": args.allow_missing_images}
    split_lists = getattr(args, "split_lists", None)
    if split_lists:
        given = dict(split_lists)
        if len(given) < len(split_lists):
            raise UsageError("--split-list names one split twice; give each split once")
        kwargs.update(split_lists=given, allow_split_overlap=args.allow_split_overlap)
    elif getattr(args, "allow_split_overlap", False):
        raise UsageError("--allow-split-overlap applies only with --split-list")
    return kwargs


def run_download(args) -> int:
    checksums = read_checksums(args.checksums) if args.checksums else None
    archives = nih_archives(checksums)
    if args.archives:
        wrong = [n for n in args.archives if n > len(archives)]
        if wrong:
            raise UsageError(f"--archives {wrong[0]}: NIH has archives 1 to {len(archives)}")
        archives = [archives[n - 1] for n in sorted(set(args.archives))]
    if args.dir.exists() and not args.dir.is_dir():
        raise UsageError(f"DIR {args.dir} is a file; give a folder to download into")
    try:
        paths = download_archives(archives, args.dir, retries=args.retries, timeout=args.timeout,
                                  deadline=args.deadline)
    except DownloadsFailedError as failed:
        for error in failed.errors:  # each names its archive and says what to do
            print(f"{PROG} download: error: {one_line(error)}", file=sys.stderr)
        print(f"{len(failed.paths)} of {len(archives)} archives in {args.dir}")
        return 1
    print(f"{len(paths)} archives in {args.dir}")
    return 0


def run_prepare(args) -> int:
    _check_data_dir(args)
    dataset_dict = load(name=args.config, **_builder_kwargs(args))
    sizes = ", ".join(f"{split}: {len(ds):,}" for split, ds in dataset_dict.items())
    print(f"prepared {args.config} ({sizes})")
    print(f"split: {split_description(dataset_dict)}")
    return 0


def run_export(args) -> int:
    _check_data_dir(args)
    parse_shard_size(args.max_shard_size)
    if args.out.exists() and not args.out.is_dir():
        raise UsageError(f"OUT {args.out} is a file; give a folder to export into")
    configs = args.configs or ["default"]
    export(out=args.out, configs=configs, **_writer_kwargs(args), **_builder_kwargs(args))
    print(f"exported {', '.join(configs)} to {args.out}")
    return 0


def run_push(args) -> int:
    _check_data_dir(args)
    parse_shard_size(args.max_shard_size)
    configs = args.configs or ["default"]
    url = push(repo_id=args.repo_id, configs=configs, private=args.private, work_dir=args.work_dir,
               commit_message=args.commit_message, **_writer_kwargs(args), **_builder_kwargs(args))
    print(f"pushed {', '.join(configs)}: {url}")
    return 0


def run_show(args) -> int:
    from .show import show_grid  # matplotlib: loaded only for this command

    _check_data_dir(args)
    if args.out.suffix.lower() != ".png":
        raise UsageError(f"OUT.png {args.out}: the grid is a PNG, so give a file name ending in .png")
    dataset = load(name=args.config, split=args.split, **_builder_kwargs(args))
    path = show_grid(dataset, args.out, count=args.count, columns=args.columns, cell_size=args.cell_size,
                     seed=args.seed)
    print(f"wrote {path}")
    return 0


COMMANDS = {"download": run_download, "prepare": run_prepare, "export": run_export, "push": run_push,
            "show": run_show}


# ---- entry point -------------------------------------------------------------------------------------------------
def one_line(error: BaseException) -> str:
    """The most specific message in an exception chain, on one line, with any Hub token masked.

    ``datasets`` wraps errors met while generating in ``DatasetGenerationError``: in this process the project's
    error is its cause; from a ``num_proc`` worker only the worker's traceback text comes back, and the project's
    error is read from it.
    """
    innermost = error
    while innermost.__cause__ is not None and isinstance(innermost, DatasetGenerationError):
        innermost = innermost.__cause__
    message = str(innermost)
    if not isinstance(innermost, NIHChestXray14Error) and "Traceback (most recent call last)" in message:
        message = _project_error_in_traceback(message) or message
    return redact_secrets(" ".join(message.split()) or type(innermost).__name__)


_EXCEPTION_LINE = re.compile(r"^(?P<type>[A-Za-z_][\w.]*): (?P<message>.+)$", re.MULTILINE)


def _project_error_in_traceback(text: str) -> Optional[str]:
    """The message of the first exception of this package in a printed traceback, or None."""
    for match in _EXCEPTION_LINE.finditer(text):
        if match.group("type").startswith(f"{__package__}."):
            return match.group("message")
    return None


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run one command; return the exit status (0 ok, 1 failed, 2 bad arguments, 130 interrupted)."""
    parser = build_parser()
    debug = os.environ.get("NIH_CHESTXRAY14_DEBUG") == "1"
    command = "?"
    try:
        args = parser.parse_args(argv)
        command = args.command
        logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                            format="%(levelname)s %(name)s: %(message)s")
        return COMMANDS[args.command](args)
    except UsageError as error:
        if debug:
            raise
        where = error.prog or (f"{PROG} {command}" if command != "?" else PROG)
        print(f"{where}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG} {command}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - the last line of defence: one line, no traceback
        if debug:
            raise
        print(f"{PROG} {command}: error: {one_line(error)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
