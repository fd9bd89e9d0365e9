"""The fine-tuning recipe for NIH ChestX-ray14, run from a clone as ``python training/run.py``."""
