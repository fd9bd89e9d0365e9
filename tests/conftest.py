"""Shared pytest set-up: fixture plugins, and no network."""

import os

# Tests never reach the Hub: anything that slips past the local stand-in fails fast instead of hanging.
os.environ.setdefault("HF_HUB_OFFLINE", "0")
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"

pytest_plugins = ["hub_stand_in", "publish_fixtures"]
