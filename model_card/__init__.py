"""The model card of a ChestX-ray14 classifier: Hub metadata (``model-index`` with AUCs and intervals) and text.

```python
from model_card import ModelCardInputs, write_model_card

card = write_model_card("vit-chestxray14", ModelCardInputs(model_name="me/vit-chestxray14", ...))
```
Everything is in ``card.py`` (inputs → metadata → text → file), and the text's skeleton in ``template.md``. The
recipe (``training/publish.py``) builds :class:`ModelCardInputs` from its arguments and metrics and calls
:func:`write_model_card` before pushing ``output_dir``.
"""

from .card import ModelCardInputs, card_data, eval_results, render_model_card, write_model_card

__all__ = ["ModelCardInputs", "card_data", "eval_results", "render_model_card", "write_model_card"]
