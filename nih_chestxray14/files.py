"""Atomic file writes: a reader sees the old file or the whole new one, never a half-written one.

Every file this project writes for a user (cards, plots, configs, exported Parquet, downloaded archives, thresholds)
goes through :func:`atomic_write` or :func:`atomic_path`, so that a killed process or a full disk leaves the previous
version (or nothing) in place.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator, Union

PathLike = Union[str, "os.PathLike[str]"]


@contextlib.contextmanager
def atomic_path(target: PathLike) -> Iterator[Path]:
    """Yield a hidden temporary path beside ``target``; on success it is fsynced and renamed to ``target``.

    Write to the yielded path with anything that takes a file name (``savefig``, ``pq.write_table``, ...). If the
    block raises, the temporary file is removed and ``target`` is left as it was.

    Raises:
        OSError: if the folder of ``target`` does not exist or is not writable.
    """
    target = Path(target)
    handle, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial")
    os.close(handle)
    partial = Path(name)
    try:
        yield partial
        with open(partial, "rb") as written:
            os.fsync(written.fileno())
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def atomic_write(target: PathLike, data: Union[bytes, str], encoding: str = "utf-8") -> Path:
    """Write ``data`` (bytes, or text encoded with ``encoding`` and no newline translation) to ``target`` atomically.

    Returns:
        ``target`` as a :class:`~pathlib.Path`.

    Raises:
        OSError: as :func:`atomic_path` does.
    """
    payload = data.encode(encoding) if isinstance(data, str) else data
    with atomic_path(target) as partial:
        partial.write_bytes(payload)
    return Path(target)


def atomic_write_json(target: PathLike, content: Any, *, sort_keys: bool = False) -> Path:
    """Write ``content`` as indented JSON with a final newline to ``target`` atomically (:func:`atomic_write`)."""
    return atomic_write(target, json.dumps(content, indent=2, sort_keys=sort_keys) + "\n")
