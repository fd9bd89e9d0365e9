"""Reading the release's text files (CSVs and image lists), plain or gzipped, with one error per failure.

NIH's files and Google's expert labels are read the same way: UTF-8 with or without a byte-order mark, ``.gz`` when
the name says so, and an error that names the file when it is missing or unreadable.
"""

from __future__ import annotations

import csv
import gzip
import io
from typing import List, Type

from .errors import MetadataError, MissingMetadataError


def open_text(path: str):
    """A text handle on ``path`` (decompressed when it ends in ``.gz``), UTF-8, a leading byte-order mark dropped."""
    if path.endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig", newline="")
    return open(path, encoding="utf-8-sig", newline="")


def read_csv_rows(path: str, error: Type[Exception] = MetadataError, advice: str = "download it again") -> List[List[str]]:
    """Every row of the CSV file ``path``, as lists of strings.

    Raises:
        MissingMetadataError: if ``path`` does not exist.
        error: (MetadataError by default) if it can't be read or parsed; the message names the file and ends with
            ``advice``.
    """
    try:
        with open_text(path) as handle:
            return list(csv.reader(handle))
    except FileNotFoundError:
        raise MissingMetadataError(f"{path} not found") from None
    except (UnicodeDecodeError, csv.Error, OSError, EOFError) as failure:
        raise error(f"{path} is not a readable CSV file ({failure}); {advice}") from None


def read_lines(path: str) -> List[str]:
    """The lines of the text file ``path``, without their line ends.

    Raises:
        MissingMetadataError: if ``path`` does not exist.
        MetadataError: if it can't be read as UTF-8 text.
    """
    try:
        with open_text(path) as handle:
            return handle.read().splitlines()
    except FileNotFoundError:
        raise MissingMetadataError(f"{path} not found") from None
    except (UnicodeDecodeError, OSError, EOFError) as failure:
        raise MetadataError(f"{path} is not a readable text file ({failure})") from None
