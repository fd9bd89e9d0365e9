"""Binary cross-entropy with logits for the 14 findings, optionally weighted for class imbalance.

Handed to ``Trainer(compute_loss_func=...)``, so it also scales correctly under gradient accumulation: the Trainer
passes the number of label entries in the whole accumulated batch, and the loss divides its sum by it.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch
import torch.nn.functional as F


def balanced_pos_weight(labels: np.ndarray, max_weight: float = 50.0) -> torch.Tensor:
    """Per-finding weight of positive examples, ``negatives / positives``, capped at ``max_weight``.

    Args:
        labels: (N, C) 0/1 matrix of the training split.
        max_weight: cap, so that a finding with a handful of positives (Hernia: 0.2% of NIH's images) does not
            dominate the loss. A finding with no positive gets weight 1 (there is nothing to up-weight).

    Returns:
        float32 tensor of shape (C,).

    Raises:
        ValueError: if ``labels`` is not a non-empty 2-D matrix.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.shape[0] == 0:
        raise ValueError(f"expected a non-empty (N, C) label matrix, got shape {labels.shape}")
    positives = (labels > 0).sum(axis=0).astype(np.float64)
    negatives = labels.shape[0] - positives
    weights = np.where(positives > 0, negatives / np.maximum(positives, 1), 1.0)
    return torch.as_tensor(np.clip(weights, 1.0 / max_weight, max_weight), dtype=torch.float32)


class MultiLabelBCELoss:
    """``compute_loss_func`` for the Trainer: mean BCE with logits over all (image, finding) entries.

    Args:
        pos_weight: optional (C,) weights of positive examples (see :func:`balanced_pos_weight`).
    """

    def __init__(self, pos_weight: Optional[torch.Tensor] = None):
        self.pos_weight = pos_weight

    def __call__(self, outputs: Any, labels: torch.Tensor, num_items_in_batch: Optional[Any] = None) -> torch.Tensor:
        """Return the loss for ``outputs.logits`` (N, C) against float ``labels`` (N, C).

        With ``num_items_in_batch`` (entries in the accumulated batch, all processes together), the sum is divided by
        it; otherwise the mean over this batch is returned.
        """
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
        pos_weight = None if self.pos_weight is None else self.pos_weight.to(device=logits.device, dtype=torch.float32)
        loss = F.binary_cross_entropy_with_logits(
            logits.float(), labels.to(device=logits.device, dtype=torch.float32), pos_weight=pos_weight, reduction="sum"
        )
        if num_items_in_batch is None:
            return loss / labels.numel()
        if torch.is_tensor(num_items_in_batch):
            num_items_in_batch = num_items_in_batch.to(loss.device)
        return loss / num_items_in_batch

    def __repr__(self) -> str:
        weights = None if self.pos_weight is None else [round(float(w), 3) for w in self.pos_weight]
        return f"MultiLabelBCELoss(pos_weight={weights})"
