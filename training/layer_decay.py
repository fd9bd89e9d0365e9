"""Layer-wise learning-rate decay (LLRD) for plain vision transformers: the optimizer's parameter groups.

A fine-tuned ViT keeps its early blocks close to the pre-trained weights and lets the late ones, and the new head, move
most. With a decay ``d`` and ``L`` transformer blocks, parameters are grouped by depth and each group's learning rate
is the peak rate times:

====================================================================  ===================
parameters                                                            rate scale
====================================================================  ===================
embeddings (patch projection, position embeddings, class token)      ``d ** (L + 1)``
block ``i`` (``i`` = 0 … L-1)                                         ``d ** (L - i)``
everything after the blocks (final norm, pooler, classifier head)     ``1``
====================================================================  ===================

This is the rule of BEiT and of MAE's fine-tuning code (``param_groups_lrd``), which the chest X-ray recipes of Xiao et
al. 2023 and Yao et al. 2024 use. Depth comes from parameter names, so one rule serves transformers' ViT and DeiT
(``vit.layers.N``), DINOv2 (``dinov2.encoder.layer.N``) and timm backbones wrapped by transformers
(``timm_model.blocks.N``): a name's block is the number after its first ``layer.``, ``layers.`` or ``blocks.``.

Weight decay follows the same recipes: none for biases, norm weights (every tensor with one dimension) and the
position embeddings and class, mask or register tokens. The learning-rate scheduler multiplies every group's rate by
the same factor, so the ratios above hold through warmup and decay.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Dict, List, Optional

import torch

logger = logging.getLogger(__name__)

_BLOCK = re.compile(r"(?:^|\.)(?:layer|layers|blocks)\.(\d+)\.")
_EMBEDDING = re.compile(r"embed|(?:^|\.|_)(?:cls|mask|reg|register|dist)_?tokens?(?:$|\.)")
_NO_WEIGHT_DECAY = re.compile(r"pos(?:ition)?_?embed|(?:^|\.|_)(?:cls|mask|reg|register|dist)_?tokens?(?:$|\.)")

__all__ = ["LayerDecayMixin", "layer_decay_groups", "layer_of", "num_blocks"]


def num_blocks(model: torch.nn.Module) -> int:
    """The number of transformer blocks, counted from parameter names (``layers.N``, ``layer.N``, ``blocks.N``).

    Raises:
        ValueError: if no parameter name has a block number (the model is not a plain ViT-like stack).
    """
    found = {int(match.group(1)) for name, _ in model.named_parameters() if (match := _BLOCK.search(name))}
    if not found:
        raise ValueError(
            f"--layer_decay needs a transformer whose blocks are named layer.N, layers.N or blocks.N; "
            f"{type(model).__name__} has none. Leave --layer_decay unset for this model"
        )
    return max(found) + 1


def layer_of(name: str, blocks: int) -> int:
    """The depth of parameter ``name``: 0 for embeddings, ``i + 1`` for block ``i``, ``blocks + 1`` after the blocks."""
    match = _BLOCK.search(name)
    if match:
        return int(match.group(1)) + 1
    return 0 if _EMBEDDING.search(name) else blocks + 1


def layer_decay_groups(model: torch.nn.Module, layer_decay: float, weight_decay: float,
                       learning_rate: float) -> List[Dict[str, Any]]:
    """Parameter groups for a torch optimizer: one per (depth, with or without weight decay), head group first.

    Each group holds ``params``, ``lr`` (``learning_rate`` times its scale, see the module docstring),
    ``weight_decay``, and for reading back ``layer`` (the depth) and ``lr_scale``. Frozen parameters are left out.

    Raises:
        ValueError: if ``layer_decay`` is not in (0, 1], or the model has no numbered blocks.
    """
    if not 0 < layer_decay <= 1:
        raise ValueError(f"--layer_decay must be in (0, 1], got {layer_decay}")
    blocks = num_blocks(model)
    groups: Dict[tuple, Dict[str, Any]] = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        layer = layer_of(name, blocks)
        decays = parameter.ndim > 1 and not _NO_WEIGHT_DECAY.search(name)
        scale = layer_decay ** (blocks + 1 - layer)
        group = groups.setdefault((layer, decays), {
            "params": [], "layer": layer, "lr_scale": scale, "lr": learning_rate * scale,
            "weight_decay": weight_decay if decays else 0.0,
        })
        group["params"].append(parameter)
    # Deepest first: the Trainer logs the first group's rate, which is then the peak (head) rate.
    return [groups[key] for key in sorted(groups, key=lambda key: (-key[0], not key[1]))]


class LayerDecayMixin:
    """Put before ``transformers.Trainer``: with ``layer_decay`` set, :meth:`create_optimizer` builds the optimizer
    that ``--optim`` names over :func:`layer_decay_groups` instead of the Trainer's two groups.

    Args:
        layer_decay: keyword argument, the decay ``d`` per block; ``None`` keeps the Trainer's own optimizer.
    """

    def __init__(self, *args: Any, layer_decay: Optional[float] = None, **kwargs: Any):
        self.layer_decay = layer_decay
        super().__init__(*args, **kwargs)

    def create_optimizer(self, model=None):
        """The Trainer's optimizer, with one parameter group per depth when ``layer_decay`` is set."""
        if self.layer_decay is None or self.optimizer is not None:
            return super().create_optimizer(model)
        opt_model = self.model if model is None else model
        groups = layer_decay_groups(opt_model, self.layer_decay, self.args.weight_decay, self.args.learning_rate)
        optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
        if "params" in optimizer_kwargs or "model" in optimizer_kwargs:
            raise ValueError(f"--layer_decay can't be combined with --optim {self.args.optim}, which chooses its own "
                             "parameter groups; use adamw_torch_fused or adamw_torch")
        self.optimizer = optimizer_cls(groups, **optimizer_kwargs)
        logger.info(
            "layer-wise learning-rate decay %g over %d depths: rates from %.3g (embeddings) to %.3g (head)",
            self.layer_decay, len({group["layer"] for group in groups}),
            min(group["lr"] for group in groups), max(group["lr"] for group in groups),
        )
        return self.optimizer
