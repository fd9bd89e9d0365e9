"""Images set aside for later splits, so that one pass over NIH's archives serves all three splits.

``datasets`` prepares the splits one after another, and each split's generator would read every archive again:
skipping another split's member still means inflating it. When a resized config is built from archives, the first
split's pass therefore also resizes the other splits' images and appends them to one spill file per (split, shard);
the later splits read those small files instead of the archives. Spill files live in the build's incomplete
directory and are deleted when the build ends, whether it succeeds or fails.

File format: records of a 16-byte ASCII image name (NIH names are always 16 characters), a 4-byte big-endian length,
and that many bytes of PNG. A file is complete once renamed from ``.part`` to ``.spill``.
"""

from __future__ import annotations

import os
import struct
from typing import BinaryIO, Dict, Iterable, Iterator, Optional, Sequence, Tuple

_NAME_BYTES = 16


def spill_path(directory: str, split: str, shard: Sequence[int]) -> str:
    """The finished spill file of one split's images from one shard ``(archive, part, parts)``."""
    return os.path.join(directory, f"{split}-" + "-".join(str(value) for value in shard) + ".spill")


class SpillWriter:
    """Append processed images to the spill files of ``splits`` for one shard; :meth:`close` publishes them."""

    def __init__(self, directory: str, shard: Sequence[int], splits: Iterable[str]):
        self.directory = directory
        self.shard = tuple(shard)
        self.splits = set(splits)
        self._files: Dict[str, BinaryIO] = {}

    def write(self, split: str, name: str, png: bytes) -> None:
        self._file(split).write(name.encode("ascii").ljust(_NAME_BYTES) + struct.pack(">I", len(png)) + png)

    def close(self, complete: bool) -> None:
        """Close every file, and publish one per split (empty if the shard held none of its images) only if the
        shard was read to its end."""
        for split in self.splits if complete else ():
            self._file(split)
        for split, handle in self._files.items():
            handle.close()
            final = spill_path(self.directory, split, self.shard)
            if complete:
                os.replace(final + ".part", final)
            else:
                os.remove(final + ".part")
        self._files = {}

    def _file(self, split: str) -> BinaryIO:
        """The open ``.part`` file of ``split``, created on first use."""
        if split not in self._files:
            os.makedirs(self.directory, exist_ok=True)
            self._files[split] = open(spill_path(self.directory, split, self.shard) + ".part", "wb")
        return self._files[split]


def read_spill(directory: Optional[str], split: str, shard: Sequence[int]) -> Optional[Iterator[Tuple[str, bytes]]]:
    """``(name, png)`` records set aside for ``split`` from ``shard``, or ``None`` if there is no finished spill."""
    if directory is None:
        return None
    path = spill_path(directory, split, shard)
    if not os.path.isfile(path):
        return None

    def records() -> Iterator[Tuple[str, bytes]]:
        with open(path, "rb") as handle:
            while True:
                head = handle.read(_NAME_BYTES + 4)
                if not head:
                    return
                (length,) = struct.unpack(">I", head[_NAME_BYTES:])
                yield head[:_NAME_BYTES].decode("ascii").rstrip(), handle.read(length)

    return records()
