"""Drop path (stochastic depth) for the recipe's models: in training, each residual branch of each block is skipped
for a random share of the images of a batch; in evaluation nothing is dropped.

How each kind of checkpoint gets it:

- **Models whose config has ``drop_path_rate``** (transformers' DINOv2, BEiT, Data2Vec-Vision, Swin, ConvNeXt, ...):
  the config setting, before the model is built. Their own code applies it.
- **timm backbones** (``TimmWrapperForImageClassification``, a Hub repo or folder in timm's format): timm's own
  ``drop_path_rate``, passed to ``timm.create_model`` through the config's ``model_args``.
- **transformers' ViT and DeiT**, which have no drop path: each block applies one ``nn.Dropout`` module,
  ``layer.dropout``, to the output of its attention branch and of its MLP branch, right before adding the residual.
  :func:`add_drop_path` swaps that module for :class:`DropPath`, which drops the whole branch per image (and keeps the
  original dropout). It holds no weights, so checkpoints and the published model are plain ViTs. The rate grows
  linearly with depth, from 0 in the first block to ``rate`` in the last, as in timm and the MAE recipes.
  ``tests/test_training_drop_path.py`` checks that a dropped branch leaves the block's input unchanged, which fails
  loudly if a transformers release moves that module.
"""

from __future__ import annotations

import logging
from typing import Any, Dict

import torch
from torch import nn

logger = logging.getLogger(__name__)

SWAPPED_MODEL_TYPES = ("vit", "deit")
"""transformers model types whose blocks get :class:`DropPath` in place of their branch dropout."""

__all__ = ["DropPath", "SWAPPED_MODEL_TYPES", "add_drop_path", "drop_path_config_settings"]


class DropPath(nn.Module):
    """Zero a residual branch for each image with probability ``rate`` in training, scaling the kept ones by
    ``1 / (1 - rate)``; then apply ``dropout`` (the module it replaces). The identity in evaluation.

    Input: (N, ...) branch outputs; the draw is one per image (first dimension), from torch's global generator.
    """

    def __init__(self, rate: float, dropout: nn.Module):
        super().__init__()
        if not 0 <= rate < 1:
            raise ValueError(f"drop path rate must be in [0, 1), got {rate}")
        self.rate = float(rate)
        self.dropout = dropout

    def extra_repr(self) -> str:
        return f"rate={self.rate:.3f}"

    def forward(self, branch: torch.Tensor) -> torch.Tensor:
        branch = self.dropout(branch)
        if not self.training or self.rate == 0.0:
            return branch
        keep = 1.0 - self.rate
        shape = (branch.shape[0],) + (1,) * (branch.ndim - 1)
        mask = torch.empty(shape, dtype=branch.dtype, device=branch.device).bernoulli_(keep)
        return branch * mask.div_(keep)


def drop_path_config_settings(config: Any, rate: float) -> Dict[str, Any]:
    """The config settings that give ``config``'s model drop path natively, ``{}`` if it has none.

    For a timm backbone: ``{"model_args": {..., "drop_path_rate": rate}}``; for a config with a ``drop_path_rate``
    field: ``{"drop_path_rate": rate}``.
    """
    if config.model_type == "timm_wrapper":
        return {"model_args": {**(getattr(config, "model_args", None) or {}), "drop_path_rate": rate}}
    if hasattr(config, "drop_path_rate"):
        return {"drop_path_rate": rate}
    return {}


def add_drop_path(model: nn.Module, rate: float) -> int:
    """Give a transformers ViT or DeiT drop path: swap each block's branch dropout for a :class:`DropPath`.

    Block ``i`` of ``L`` drops at ``rate * i / (L - 1)``. Returns the number of blocks changed.

    Raises:
        ValueError: if the model is not a ViT/DeiT whose blocks hold ``dropout`` as an ``nn.Dropout``.
    """
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    backbone = getattr(model, model_type, None) if model_type in SWAPPED_MODEL_TYPES else None
    blocks = getattr(backbone, "layers", None)
    if blocks is None or not all(isinstance(getattr(block, "dropout", None), nn.Dropout) for block in blocks):
        raise ValueError(
            f"--drop_path_rate: {type(model).__name__} ({model_type}) has no drop path setting and is not a "
            f"transformers {'/'.join(SWAPPED_MODEL_TYPES)} model whose blocks this recipe knows. Leave "
            "--drop_path_rate unset, or use a model that has one (DINOv2, BEiT, Swin, a timm backbone)"
        )
    count = len(blocks)
    for index, block in enumerate(blocks):
        block.dropout = DropPath(rate * index / max(1, count - 1), block.dropout)
    logger.info("drop path up to %g over %d blocks (linear in depth)", rate, count)
    return count
