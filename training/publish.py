"""Upload the finished ``output_dir`` (model, image processor, IPU config, card, plots, results) to the Hub.

The upload goes through ``huggingface_hub``'s ``upload_folder`` in one commit. The token is taken from
``--hub_token``, ``HF_TOKEN`` or the local login, and only ever travels in the ``Authorization`` header: it is never
written to a file, a log line or an error message. A failed upload leaves ``output_dir`` untouched.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import List, Optional

logger = logging.getLogger(__name__)

NOT_UPLOADED: List[str] = [
    "checkpoint-*",        # resumable training state: large, and not part of the published model
    "checkpoint-*/**",
    "training_args.bin",   # a pickle; the card lists the hyperparameters in plain text
    ".*",                  # temporary files (e.g. a half-written card)
    "runs/**",
]
"""Patterns of ``output_dir`` that stay local."""


class PushError(RuntimeError):
    """The upload to the Hub failed (or could not start). ``output_dir`` is complete and can be uploaded again."""


def resolve_repo_id(hub_model_id: Optional[str], output_dir: Path, token: Optional[str]) -> str:
    """The full ``namespace/name`` repo id: ``--hub_model_id``, or the output folder's name, under the token's user.

    Called before training, so a missing login or a bad token stops the run before hours of work.

    Raises:
        PushError: if no namespace is given and the token's user can't be found (not logged in, bad token, no Hub).
    """
    name = hub_model_id or Path(output_dir).resolve().name
    if "/" in name:
        return name
    from huggingface_hub import HfApi

    try:
        user = HfApi(token=token).whoami()["name"]
    except Exception as error:  # noqa: BLE001 - any failure here means the same thing to the user
        raise PushError(
            f"--push_to_hub: cannot find which Hub user to publish {name!r} under ({_describe(error, token)}). Log in "
            "with `hf auth login`, set HF_TOKEN, or give --hub_model_id as namespace/name"
        ) from None
    return f"{user}/{name}"


def push_output_dir(
    output_dir: Path,
    repo_id: str,
    *,
    token: Optional[str] = None,
    private: Optional[bool] = None,
    revision: Optional[str] = None,
) -> str:
    """Create ``repo_id`` if needed and upload ``output_dir`` (except :data:`NOT_UPLOADED`) in one commit.

    Returns:
        The URL of the commit.

    Raises:
        PushError: if the repo can't be created or the upload fails; the message names the repo, says that
            ``output_dir`` is intact and how to retry, and never contains the token.
    """
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    output_dir = Path(output_dir)
    try:
        api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        if revision is not None:
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        commit = api.upload_folder(
            repo_id=repo_id,
            folder_path=output_dir,
            repo_type="model",
            revision=revision,
            commit_message="Upload model trained on NIH ChestX-ray14",
            ignore_patterns=NOT_UPLOADED,
        )
    except Exception as error:  # noqa: BLE001 - report every failure the same way, without the token
        raise PushError(
            f"upload of {output_dir} to the Hub repo {repo_id} failed ({_describe(error, token)}). The folder is "
            f"intact: retry with `hf upload {repo_id} {output_dir} . --exclude 'checkpoint-*'` or rerun with "
            "--push_to_hub"
        ) from None
    logger.info("pushed %s to %s", output_dir, commit.commit_url)
    return commit.commit_url


def _describe(error: BaseException, token: Optional[str]) -> str:
    """One line about ``error``, with the token (if it appears anywhere) masked."""
    first_line = (str(error).strip().splitlines() or [""])[0]
    text = f"{type(error).__name__}: {first_line}" if first_line else type(error).__name__
    from huggingface_hub import get_token

    for secret in (token, get_token()):
        if secret:
            text = text.replace(secret, "<token>")
    return text
