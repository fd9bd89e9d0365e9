"""The errors this package raises for bad input. Each message names the file (and row or archive member) and says
what to do.

All derive from :class:`NIHChestXray14Error`; the metadata and split errors are also ``ValueError`` and the missing-file
errors also ``FileNotFoundError``, so generic handlers keep working. A finding name that is not one of the 14 raises
:class:`nih_chestxray14.labels.UnknownFindingError` (a ``ValueError``), with the file and line in its message.
"""

from __future__ import annotations


class NIHChestXray14Error(Exception):
    """Base class of this package's input errors."""


class MetadataError(NIHChestXray14Error, ValueError):
    """A metadata file (entry CSV, split list, box CSV) that cannot be parsed; the message names file and line."""


class MissingMetadataError(NIHChestXray14Error, FileNotFoundError):
    """A required metadata file is absent from ``data_dir`` (or no ``data_dir`` was given)."""


class SplitError(NIHChestXray14Error, ValueError):
    """An image that the split lists place in neither or both lists, or a patient that would span two splits."""


class ImageSourceError(NIHChestXray14Error, ValueError):
    """The images in ``data_dir`` are ambiguous (two copies of one archive or of one PNG) or in no known layout."""


class CorruptArchiveError(NIHChestXray14Error, ValueError):
    """An image archive that is not a readable ``.tar.gz``; the message names it and its last good member."""


class MissingImagesError(NIHChestXray14Error, FileNotFoundError):
    """Images listed in the metadata were not found; ``allow_missing_images=True`` builds without them."""


class CorruptImageError(NIHChestXray14Error, ValueError):
    """A PNG that is truncated or corrupt; the message names the file or the archive and member."""


class ExpertLabelError(NIHChestXray14Error, ValueError):
    """An expert-label CSV (Google's or torchxrayvision's copy) that cannot be read or does not fit NIH's split lists;
    the message names the file and line."""
