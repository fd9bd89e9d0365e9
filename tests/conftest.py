"""Shared pytest set-up: fixture plugins, and no network.

The Hub libraries run offline in every test. The ``hub`` fixture (``tests/hub_stand_in.py``) turns that off for its
test only, and points them at a local server that stands in for the Hub.
"""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"

pytest_plugins = ["hub_stand_in", "publish_fixtures"]

# The IPU stack's tests and the timm tests run in their own environments (`make test-ipu`, `make test-timm`),
# never in this suite.
collect_ignore = ["ipu_env", "ipu_sdk_stand_in", "timm_env"]
