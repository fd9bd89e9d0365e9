"""Set-up for the timm tests: no network, and torchvision importable before transformers or timm is imported."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"

from torchvision_operators import declare_missing_operators  # noqa: E402

declare_missing_operators()
