"""Set-up for the IPU stack's tests: no network, the data folder that ``make test-ipu`` prepares, the Hub stand-in."""

import json
import os
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"

DATA_VARIABLE = "NIH_CHESTXRAY14_IPU_DATA"

# The main suite's local stand-in for the Hub (tests/hub_stand_in.py, the `hub` fixture), for the recipe's upload.
pytest_plugins = ["hub_stand_in"]


@pytest.fixture(scope="session")
def exported():
    """``(export folder, expected rows)`` written by ``tests/ipu_env/make_export.py`` in the main environment."""
    folder = os.environ.get(DATA_VARIABLE)
    if not folder:
        pytest.skip(f"{DATA_VARIABLE} is not set: `make test-ipu` exports a sample release with the main environment "
                    "first and sets it")
    folder = Path(folder)
    return folder / "export", json.loads((folder / "expected.json").read_text(encoding="utf-8"))
