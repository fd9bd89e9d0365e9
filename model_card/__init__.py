"""The model card of a ChestX-ray14 classifier: Hub metadata (``model-index``, ``.eval_results/``) and text.

```python
from model_card import ModelCardInputs, write_model_card

card = write_model_card("vit-chestxray14", ModelCardInputs(model_name="me/vit-chestxray14", ...))
```
Everything is in ``card.py`` (inputs → metadata → text → file), the text's skeleton in ``template.md``, the
evaluation sections' tables in ``evaluation_sections.py``, and the Hub's ``.eval_results/`` files in
``eval_results.py``. The recipe (``training/publish.py``) builds :class:`ModelCardInputs` from its arguments, metrics
and evaluation, and calls :func:`write_model_card` and :func:`write_eval_results` before pushing ``output_dir``.
"""

from .card import ModelCardInputs, card_data, eval_results, render_model_card, write_model_card
from .eval_results import EVAL_RESULTS_FOLDER, eval_results_entries, write_eval_results

__all__ = [
    "EVAL_RESULTS_FOLDER",
    "ModelCardInputs",
    "card_data",
    "eval_results",
    "eval_results_entries",
    "render_model_card",
    "write_eval_results",
    "write_model_card",
]
