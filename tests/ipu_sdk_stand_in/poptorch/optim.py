"""Stand-in for ``poptorch.optim``: the optimizer classes ``optimum.graphcore.trainer`` imports and builds.

They are torch optimizers that also accept poptorch's extra settings (loss scaling, accumulator types, ...), so
``IPUTrainer.create_optimizer`` and the learning-rate scheduler work on the host. On an IPU the weight update runs
on the device, so ``step()`` raises :class:`~poptorch.NoIPUError` instead of updating weights in some other way.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, Set, Tuple

import torch

from ._no_ipu import NoIPUError


class VariableAttributes:
    """Which optimizer attributes are compiled in as constants (``markAsConstant``) rather than fed each step."""

    def __init__(self):
        self.constants: Set[str] = set()

    def markAsConstant(self, name: str) -> None:
        self.constants.add(name)

    def markAsVariable(self, name: str) -> None:
        self.constants.discard(name)


class Optimizer:
    """Base of the poptorch optimizers (``isinstance(optimizer, poptorch.optim.Optimizer)``)."""

    poptorch_settings: Dict[str, Any]
    variable_attrs: VariableAttributes

    def _record(self, settings: Dict[str, Any]) -> None:
        self.poptorch_settings = settings
        self.variable_attrs = VariableAttributes()

    def step(self, closure=None):
        raise NoIPUError(f"poptorch.optim.{type(self).__name__}.step (the weight update runs on the IPU)")


class AdamW(Optimizer, torch.optim.AdamW):
    """``poptorch.optim.AdamW``: torch's AdamW arguments plus poptorch's (recorded in ``poptorch_settings``)."""

    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-3,
        betas: Tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        bias_correction: bool = True,
        loss_scaling: Any = None,
        max_grad_norm: Any = None,
        accum_type: Any = None,
        first_order_momentum_accum_type: Any = None,
        second_order_momentum_accum_type: Any = None,
    ):
        torch.optim.AdamW.__init__(self, params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad)
        self._record(dict(
            bias_correction=bias_correction,
            loss_scaling=loss_scaling,
            max_grad_norm=max_grad_norm,
            accum_type=accum_type,
            first_order_momentum_accum_type=first_order_momentum_accum_type,
            second_order_momentum_accum_type=second_order_momentum_accum_type,
        ))


class LAMB(Optimizer, torch.optim.Optimizer):
    """``poptorch.optim.LAMB`` (used with ``--lamb``): its arguments, recorded; no host implementation."""

    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-3,
        betas: Tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        bias_correction: bool = True,
        loss_scaling: Any = None,
        max_weight_norm: Any = None,
        accum_type: Any = None,
        first_order_momentum_accum_type: Any = None,
        second_order_momentum_accum_type: Any = None,
    ):
        torch.optim.Optimizer.__init__(self, params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))
        self._record(dict(
            bias_correction=bias_correction,
            loss_scaling=loss_scaling,
            max_weight_norm=max_weight_norm,
            accum_type=accum_type,
            first_order_momentum_accum_type=first_order_momentum_accum_type,
            second_order_momentum_accum_type=second_order_momentum_accum_type,
        ))
