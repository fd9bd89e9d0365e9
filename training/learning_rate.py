"""The learning-rate scaling rule: a base rate per 256 images of global batch, scaled linearly with the batch.

With ``--base_learning_rate`` (the ``blr`` of MAE's fine-tuning code, which the chest X-ray recipes of Xiao et al.
2023 and Yao et al. 2024 use), the peak learning rate of the run is

    learning_rate = base_learning_rate × per_device_train_batch_size × gradient_accumulation_steps × world_size / 256

so one setting means the same thing on one GPU, on eight, or on several machines, with or without gradient
accumulation: the rate per image of an optimizer step stays the same. ``world_size`` is the number of processes
(``torchrun --nnodes N --nproc_per_node G`` gives N × G). Without ``--base_learning_rate``, ``--learning_rate`` is
used as given, whatever the batch.
"""

from __future__ import annotations

import logging
from typing import Any, Optional

logger = logging.getLogger(__name__)

REFERENCE_BATCH_SIZE = 256
"""Images per optimizer step that ``--base_learning_rate`` is quoted for."""

__all__ = ["REFERENCE_BATCH_SIZE", "global_batch_size", "scaled_learning_rate", "apply_base_learning_rate"]


def global_batch_size(training_args: Any) -> int:
    """Images per optimizer step over all processes: per-device batch × accumulation steps × processes."""
    world_size = max(1, int(getattr(training_args, "world_size", 1)))
    return training_args.per_device_train_batch_size * training_args.gradient_accumulation_steps * world_size


def scaled_learning_rate(base_learning_rate: float, batch_size: int) -> float:
    """``base_learning_rate × batch_size / 256``."""
    return base_learning_rate * batch_size / REFERENCE_BATCH_SIZE


def apply_base_learning_rate(base_learning_rate: Optional[float], training_args: Any) -> Optional[float]:
    """Set ``training_args.learning_rate`` from ``base_learning_rate`` by the scaling rule, log it, and return it.

    ``None`` leaves ``--learning_rate`` as it is and returns ``None``.
    """
    if base_learning_rate is None:
        return None
    batch = global_batch_size(training_args)
    training_args.learning_rate = scaled_learning_rate(base_learning_rate, batch)
    logger.info(
        "learning rate %.4g = base %.4g × global batch %d (%d per device × %d accumulation × %d processes) / %d",
        training_args.learning_rate, base_learning_rate, batch, training_args.per_device_train_batch_size,
        training_args.gradient_accumulation_steps, max(1, int(getattr(training_args, "world_size", 1))),
        REFERENCE_BATCH_SIZE,
    )
    return training_args.learning_rate
