"""Publish the demo page of ``space/`` as a Gradio Space on the Hub, linked to a model trained by the recipe.

    python -m training.publish_space me/vit-chestxray14 me/vit-chestxray14-demo [--private]

The Space holds everything it runs on, since a Space installs only its ``requirements.txt``:

- ``space/*.py`` and ``space/requirements.txt``;
- ``README.md``: ``space/README.md`` with ``models:`` and the text pointing at the model and the Space, and
  ``sdk_version`` set to the gradio installed here (the version the page was tested with);
- ``heatmaps.py``: a copy of ``training/heatmaps.py`` (it imports only numpy, torch, PIL and transformers); without it
  the page shows no heatmap, and this command warns;
- ``examples/``: synthetic X-rays drawn now by ``nih_chestxray14.sample`` (three PNGs and a DICOM file).

The model must already be on the Hub (``training/run.py --push_to_hub``). The token comes from ``HF_TOKEN`` or the
saved login (``hf auth login``); it travels only in the ``Authorization`` header and is masked in every message.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import shutil
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import List, Optional

from nih_chestxray14.hub import redact_secrets

logger = logging.getLogger(__name__)

SPACE_FOLDER = Path(__file__).resolve().parents[1] / "space"
HEATMAPS_SOURCE = Path(__file__).resolve().with_name("heatmaps.py")
TEMPLATE_SPACE_ID = "me/vit-chestxray14-demo"
"""The Space id that ``space/README.md`` uses in its text; replaced by the real one."""

REPLACED_ON_UPDATE = ["*.py", "requirements.txt", "examples/*"]
"""Files of an existing Space that a new upload replaces, so that a module or example dropped here goes there too."""


class SpacePublishError(RuntimeError):
    """The Space could not be published; the message says why and never holds the token."""


def stage_space(model_id: str, space_id: str, folder: Path, heatmaps: Optional[Path] = HEATMAPS_SOURCE) -> Path:
    """Write the Space's files for ``model_id`` into ``folder`` (created if needed) and return it.

    Args:
        heatmaps: the ``heatmaps.py`` to copy in; None or a missing file leaves it out (the page then says so).

    Raises:
        ImportError: if ``nih_chestxray14`` or pydicom, which draw the examples, are not installed.
    """
    from huggingface_hub import SpaceCard

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for source in sorted(SPACE_FOLDER.glob("*.py")) + [SPACE_FOLDER / "requirements.txt"]:
        shutil.copyfile(source, folder / source.name)
    if heatmaps is not None and Path(heatmaps).is_file():
        shutil.copyfile(heatmaps, folder / "heatmaps.py")
    else:
        logger.warning("%s not found: the Space will show no heatmaps", heatmaps)

    card = SpaceCard.load(SPACE_FOLDER / "README.md")
    template_model = card.data.models[0]
    card.text = card.text.replace(TEMPLATE_SPACE_ID, space_id).replace(template_model, model_id)
    card.data.models = [model_id]
    try:
        card.data.sdk_version = metadata.version("gradio")
    except metadata.PackageNotFoundError:
        pass  # keep the version space/README.md names
    card.save(folder / "README.md")

    examples = _space_module("examples")
    examples.write_examples(folder / examples.EXAMPLES_FOLDER)
    return folder


def publish_space(model_id: str, space_id: str, *, private: Optional[bool] = None, token: Optional[str] = None,
                  heatmaps: Optional[Path] = HEATMAPS_SOURCE) -> str:
    """Create the Gradio Space ``space_id`` if needed and upload the page for ``model_id`` in one commit.

    Returns:
        The URL of the commit.

    Raises:
        SpacePublishError: if the model is not on the Hub (or not visible with the token), or creating or uploading
            the Space fails; the message names the repo and holds no token.
    """
    from huggingface_hub import HfApi
    from huggingface_hub.errors import RepositoryNotFoundError

    api = HfApi(token=token)
    try:
        api.model_info(model_id)
    except RepositoryNotFoundError:
        raise SpacePublishError(
            f"the model {model_id} is not on the Hub (or this token can't see it): push it first with "
            "`training/run.py --push_to_hub --hub_model_id ...`"
        ) from None
    except Exception as error:  # noqa: BLE001 - offline, bad token...: one clear line, no token
        raise SpacePublishError(f"cannot check the model {model_id} on the Hub ({_describe(error, token)})") from None

    with tempfile.TemporaryDirectory(prefix="chestxray14-space-") as staging:
        folder = stage_space(model_id, space_id, Path(staging), heatmaps)
        try:
            api.create_repo(space_id, repo_type="space", space_sdk="gradio", private=private, exist_ok=True)
            commit = api.upload_folder(
                repo_id=space_id, repo_type="space", folder_path=folder, commit_message=f"Demo page for {model_id}",
                delete_patterns=REPLACED_ON_UPDATE,
            )
        except Exception as error:  # noqa: BLE001 - report every failure the same way, without the token
            raise SpacePublishError(
                f"publishing the Space {space_id} failed ({_describe(error, token)}); run the command again"
            ) from None
    logger.info("published the Space %s for %s: %s", space_id, model_id, commit.commit_url)
    return commit.commit_url


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_id", help="the model on the Hub, e.g. me/vit-chestxray14")
    parser.add_argument("space_id", help="the Space to create or update, e.g. me/vit-chestxray14-demo")
    parser.add_argument("--private", action="store_true", help="create the Space as private")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        publish_space(args.model_id, args.space_id, private=args.private or None)
    except SpacePublishError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


def _space_module(name: str):
    """A module of ``space/`` (which is not a package: on the Hub its files sit at the Space's root)."""
    spec = importlib.util.spec_from_file_location(f"chestxray14_space_{name}", SPACE_FOLDER / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _describe(error: BaseException, token: Optional[str]) -> str:
    first_line = (str(error).strip().splitlines() or [""])[0]
    text = f"{type(error).__name__}: {first_line}" if first_line else type(error).__name__
    return redact_secrets(text, [token])


if __name__ == "__main__":
    sys.exit(main())
