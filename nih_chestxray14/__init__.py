"""NIH ChestX-ray14 for the Hugging Face ecosystem (work in progress: the builder lands next)."""

from .labels import LABELS, NO_FINDING, NUM_LABELS

__all__ = ["LABELS", "NO_FINDING", "NUM_LABELS"]
