"""Make the Trainer's checkpoints reload into the model they came from, so resuming and best-model loading work.

transformers 5 renamed many models' weights (ViT's ``encoder.layer.N.attention.attention.query`` became
``layers.N.attention.q_proj``, ...). ``save_pretrained`` writes the old names by default, for older readers, and
``from_pretrained`` maps them back. But the Trainer reloads its own checkpoints with a plain, non-strict
``model.load_state_dict``: with old names nothing matches, a warning lists every key as missing and unexpected, and
the model silently keeps its current weights. Resuming would then restart from random weights with a trained
optimizer, and ``load_best_model_at_end`` would publish the last model instead of the best.

The fix here writes *checkpoints* under the model's own names (``save_original_format=False``), which the Trainer's
loader matches one to one. The final model in ``output_dir`` is still written in the default, widely readable format.
"""

from __future__ import annotations

import functools
import inspect
from pathlib import Path
from typing import Optional

from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR


def _save_pretrained_has_original_format_switch() -> bool:
    from transformers import PreTrainedModel

    return "save_original_format" in inspect.signature(PreTrainedModel.save_pretrained).parameters


class ResumableCheckpointsMixin:
    """Mixin for a ``Trainer`` class: checkpoints keep the model's own weight names (see the module docstring)."""

    def _save(self, output_dir: Optional[str] = None, state_dict=None) -> None:
        is_checkpoint = output_dir is not None and Path(output_dir).name.startswith(f"{PREFIX_CHECKPOINT_DIR}-")
        model = self.accelerator.unwrap_model(self.model, keep_torch_compile=False)
        if not is_checkpoint or not hasattr(model, "save_pretrained"):
            return super()._save(output_dir, state_dict)
        # Shadow the bound method on this instance for the duration of one save; deleting the attribute restores it.
        model.save_pretrained = functools.partial(type(model).save_pretrained, model, save_original_format=False)
        try:
            return super()._save(output_dir, state_dict)
        finally:
            del model.save_pretrained


def with_resumable_checkpoints(trainer_class: type) -> type:
    """``trainer_class`` with :class:`ResumableCheckpointsMixin`, when this transformers renames weights on save.

    Older transformers (such as the 4.29 that optimum-graphcore pins) save under the model's own names already, and
    their ``save_pretrained`` has no ``save_original_format``; the class is then returned unchanged.
    """
    if not _save_pretrained_has_original_format_switch():
        return trainer_class
    return type(f"Resumable{trainer_class.__name__}", (ResumableCheckpointsMixin, trainer_class), {})
