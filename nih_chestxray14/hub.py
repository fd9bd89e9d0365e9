"""What the project needs to know about the Hub beyond ``huggingface_hub``: repo ids versus paths, and secrets.

Two jobs, each done once here for the dataset commands, the recipe and the model card:

* :func:`is_hub_id` tells a Hub repo id (``name`` or ``owner/name``) from a local path;
* :func:`redact_secrets` removes Hub tokens from any text that could be printed, logged or published.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterable, Optional

REDACTED = "<redacted>"

# Hugging Face user access tokens: "hf_" followed by a long run of letters and digits.
_TOKEN_PATTERN = re.compile(r"\bhf_[A-Za-z0-9]{20,}\b")
_TOKEN_VARIABLES = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")
_MIN_SECRET_LENGTH = 8  # shorter strings would blank out ordinary words; real tokens are far longer


def is_hub_id(name: Optional[str]) -> bool:
    """Whether ``name`` is meant as a Hub repo id (``name`` or ``owner/name``) rather than a local path.

    A name that exists on disk, starts with ``.``, ``/`` or ``~``, holds a backslash or more than one ``/`` is a path.

    >>> is_hub_id("me/vit-chestxray14"), is_hub_id("./demo-output"), is_hub_id("a/b/c"), is_hub_id("")
    (True, False, False, False)
    """
    if not name:
        return False
    if name.startswith((".", "/", "~")) or "\\" in name or name.count("/") > 1:
        return False
    return not Path(name).expanduser().exists()


def known_tokens(extra: Iterable[Optional[str]] = ()) -> set:
    """The Hub tokens this process could leak: ``extra``, the token environment variables and the saved login."""
    candidates = list(extra) + [os.environ.get(variable) for variable in _TOKEN_VARIABLES] + [_saved_token()]
    return {token for token in candidates if token and len(token) >= _MIN_SECRET_LENGTH}


def redact_secrets(text: str, extra: Iterable[Optional[str]] = ()) -> str:
    """``text`` with every known Hub token (see :func:`known_tokens`) and anything shaped like one replaced.

    >>> redact_secrets("Authorization: Bearer hf_" + "a" * 34)
    'Authorization: Bearer <redacted>'
    """
    for token in known_tokens(extra):
        text = text.replace(token, REDACTED)
    return _TOKEN_PATTERN.sub(REDACTED, text)


def _saved_token() -> Optional[str]:
    try:
        from huggingface_hub import get_token

        return get_token()
    except Exception:  # noqa: BLE001 - redaction is best effort and must never hide the error being reported
        return None
