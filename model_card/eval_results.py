"""The Hub's evaluation-results files: YAML under ``.eval_results/`` in the model repo, pushed with the model.

The format is the Hub's (documented at https://huggingface.co/docs/hub/eval-results, "Evaluation Results", marked
there as a work in progress; its specification file is ``eval_results.yaml`` in the ``huggingface/hub-docs``
repository). A model repo holds any number of ``.eval_results/*.yaml`` files, each a list of results:

```yaml
- dataset:
    id: <Hub dataset id>      # required: where the benchmark's leaderboard lives
    task_id: <task>           # required: the task, as the dataset's eval.yaml names it
  value: 0.8123               # required
  notes: ...                  # optional: details of the evaluation set-up
  source: {url: ..., name: ...}  # optional
```

The Hub shows these results on the model page and, for a dataset registered as a benchmark, on its leaderboard. This
project writes one file, ``.eval_results/nih_chestxray14.yaml``, holding the macro ROC AUC of the official test split
(validation figures are not benchmark results: the best checkpoint was chosen on them). ``dataset.id`` is the Hub
dataset the run used, or the builder's name ``nih_chestxray14`` for a local release, as in the card's
``model-index``; ``task_id`` is the split, ``test``, and ``notes`` say what the number is (the mean of how many
findings, its interval, the image count, the config, whether the test list is NIH's official one) and, for a
synthetic demo release, that it is not NIH data.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, List, Optional

import yaml

from nih_chestxray14.files import atomic_write

logger = logging.getLogger(__name__)

__all__ = ["EVAL_RESULTS_FOLDER", "EVAL_RESULTS_FILE", "eval_results_entries", "write_eval_results"]

EVAL_RESULTS_FOLDER = ".eval_results"
EVAL_RESULTS_FILE = "nih_chestxray14.yaml"
TASK_ID = "test"


def eval_results_entries(inputs) -> List[Dict[str, Any]]:
    """The results of ``.eval_results/nih_chestxray14.yaml`` for a card's inputs (``ModelCardInputs``): the test
    split's macro ROC AUC, or ``[]`` when the test split was not scored (or its macro AUC is undefined)."""
    from model_card.card import dataset_id, finite, is_hub_repo

    value = finite(inputs.test_metrics.get("roc_auc"))
    if value is None:
        return []
    low, high = finite(inputs.test_metrics.get("roc_auc_ci_low")), finite(inputs.test_metrics.get("roc_auc_ci_high"))
    defined = sum(finite(inputs.test_metrics.get(f"roc_auc_{name}")) is not None for name in inputs.label_names)
    notes = [f"macro ROC AUC over {defined} of {len(inputs.label_names)} findings (sigmoid scores)"]
    if low is not None and high is not None and low < high:
        notes.append(f"{float(inputs.confidence_level):.0%} CI {low:.4f}-{high:.4f}")
    if inputs.num_test_samples:
        notes.append(f"{int(inputs.num_test_samples):,} test images")
    if inputs.synthetic_data:
        notes.append("a SYNTHETIC sample release in NIH's format, not NIH ChestX-ray14 images")
    else:
        notes.append("a custom test list, not NIH's official one" if inputs.custom_split
                     else "NIH's official test list")
    if inputs.dataset_config_name:
        notes.append(f"config {inputs.dataset_config_name}")
    entry: Dict[str, Any] = {
        "dataset": {"id": dataset_id(inputs), "task_id": TASK_ID},
        "value": round(value, 4),
        "notes": "; ".join(notes),
    }
    if is_hub_repo(inputs.model_name):
        entry["source"] = {"url": f"https://huggingface.co/{inputs.model_name}", "name": "Model card"}
    return [entry]


def write_eval_results(output_dir, inputs) -> Optional[Path]:
    """Write ``output_dir/.eval_results/nih_chestxray14.yaml`` atomically, or remove an earlier one when this run
    has no test result; return the file written, or None."""
    folder = Path(output_dir) / EVAL_RESULTS_FOLDER
    path = folder / EVAL_RESULTS_FILE
    entries = eval_results_entries(inputs)
    if not entries:
        if path.is_file():
            path.unlink()
            logger.info("removed %s: this run has no test result", path)
        return None
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(path, yaml.safe_dump(entries, sort_keys=False, allow_unicode=True))
    return path
