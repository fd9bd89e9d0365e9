"""NIH's image archives: their names, their download links and how many PNGs each holds.

NIH publishes the 112,120 PNGs as 12 ``.tar.gz`` archives, cut by sorted file name, with members named
``images/NNNNNNNN_NNN.png``. On NIH's Box page they are ``images_001.tar.gz`` … ``images_012.tar.gz``; NIH's own
``batch_download_zips.py`` saves them as ``images_01.tar.gz`` … ``images_12.tar.gz``. Both names are accepted
everywhere.
"""

from __future__ import annotations

import re

NIH_ARCHIVE_URLS = (
    "https://nihcc.box.com/shared/static/vfk49d74nhbxq3nqjg0900w5nvkorp5c.gz",
    "https://nihcc.box.com/shared/static/i28rlmbvmfjbl8p2n3ril0pptcmcu9d1.gz",
    "https://nihcc.box.com/shared/static/f1t00wrtdk94satdfb9olcolqx20z2jp.gz",
    "https://nihcc.box.com/shared/static/0aowwzs5lhjrceb3qp67ahp0rd1l1etg.gz",
    "https://nihcc.box.com/shared/static/v5e3goj22zr6h8tzualxfsqlqaygfbsn.gz",
    "https://nihcc.box.com/shared/static/asi7ikud9jwnkrnkj99jnpfkjdes7l6l.gz",
    "https://nihcc.box.com/shared/static/jn1b4mw4n6lnh74ovmcjb8y48h8xj07n.gz",
    "https://nihcc.box.com/shared/static/tvpxmn7qyrgl0w8wfh9kqfjskv6nmm1j.gz",
    "https://nihcc.box.com/shared/static/upyy3ml7qdumlgk2rfcvlb9k6gvqq2pj.gz",
    "https://nihcc.box.com/shared/static/l6nilvfa9cg3s28tqv1qc1olm3gnz54p.gz",
    "https://nihcc.box.com/shared/static/hhq8fkdgvcari67vfhs7ppg2w6ni4jze.gz",
    "https://nihcc.box.com/shared/static/ioqwiy20ihqwyr8pf4c24eazhh281pbu.gz",
)
"""NIH's 12 image archives, in order, as linked from its ``batch_download_zips.py``."""

NIH_ARCHIVE_MEMBERS = (4_999,) + (10_000,) * 10 + (7_121,)
"""How many PNGs each of NIH's 12 archives holds, in order (112,120 in all)."""

NIH_ARCHIVE_MD5 = (
    "fe8ed0a6961412fddcbb3603c11b3698",
    "ab07a2d7cbe6f65ddd97b4ed7bde10bf",
    "2301d03bde4c246388bad3876965d574",
    "9f1b7f5aae01b13f4bc8e2c44a4b8ef6",
    "1861f3cd0ef7734df8104f2b0309023b",
    "456b53a8b351afd92a35bc41444c58c8",
    "1075121ea20a137b87f290d6a4a5965e",
    "b61f34cec3aa69f295fbb593cbd9d443",
    "442a3caa61ae9b64e61c561294d1e183",
    "09ec81c4c31e32858ad8cf965c494b74",
    "499aefc67207a5a97692424cf5dbeed5",
    "dc9fda1757c2de0032b63347a7d2895c",
)
"""MD5 of each of NIH's 12 archives, in order, as NIH's ``FAQ_CHESTXRAY.pdf`` on its release page lists them
(question Q07, digests contributed by Utku Ozbulak). NIH publishes no archive sizes."""

ARCHIVE_NAME = re.compile(r"^images_(\d{2,3})\.tar\.gz$")
"""An archive's file name: ``images_001.tar.gz`` (NIH's Box name) or ``images_01.tar.gz`` (its download script's)."""


def archive_name(index: int, digits: int = 3) -> str:
    """The file name of archive number ``index`` (from 1).

    >>> archive_name(1), archive_name(12, digits=2)
    ('images_001.tar.gz', 'images_12.tar.gz')
    """
    return f"images_{index:0{digits}d}.tar.gz"


def nih_archive_names() -> tuple:
    """NIH's 12 archive names in order, as on its Box page: ``images_001.tar.gz`` … ``images_012.tar.gz``."""
    return tuple(archive_name(index) for index in range(1, len(NIH_ARCHIVE_URLS) + 1))
