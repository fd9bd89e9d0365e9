"""``compute_metrics`` for the Trainer: sigmoid scores → macro and per-finding ROC AUC, from the project's metric.

The math is the metric module's (``metrics/roc_auc_multilabel``), imported as a package from the clone, whose root
``training/run.py`` puts on ``sys.path``: evaluation needs neither ``evaluate``'s module cache nor a network, and every
process of a distributed run reads the same files.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from types import ModuleType
from typing import Any, Dict, Optional, Sequence

import numpy as np

from metrics.roc_auc_multilabel import multilabel_auc
from metrics.roc_auc_multilabel.multilabel_auc import UndefinedAUCWarning, multilabel_roc_auc

METRIC_DIR = Path(__file__).resolve().parents[1] / "metrics" / "roc_auc_multilabel"
"""The metric module folder, also loadable with ``evaluate.load(str(METRIC_DIR))``."""


def metric_functions() -> ModuleType:
    """The metric's plain NumPy module, ``metrics.roc_auc_multilabel.multilabel_auc`` (``multilabel_roc_auc``,
    ``roc_auc_summary``, ...); importing it directly is the same."""
    return multilabel_auc


def logits_of(predictions: Any) -> np.ndarray:
    """The (N, C) logits of a Trainer's ``predictions``: the array itself, or the first item of a tuple of outputs."""
    return predictions[0] if isinstance(predictions, tuple) else predictions


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Element-wise logistic function, computed without overflow for large |logits|."""
    logits = np.asarray(logits, dtype=np.float64)
    return np.exp(-np.logaddexp(0.0, -logits))


class MultiLabelROCAUC:
    """``compute_metrics(eval_prediction) -> {"roc_auc": macro, "roc_auc_<finding>": ..., ...}``.

    Scores are per-finding sigmoid probabilities (each finding is its own yes/no question), never a softmax.

    Args:
        label_names: the C finding names, in the model's output order.
        confidence_level: e.g. 0.95 adds ``roc_auc_ci_low``/``_ci_high`` and per-finding ``_ci_low``/``_ci_high``
            (the metric's default ``interval="auto"``) and ``_positives``. ``None`` for none (cheaper, for the
            evaluations during training).
    """

    def __init__(self, label_names: Sequence[str], confidence_level: Optional[float] = None):
        self.label_names = list(label_names)
        self.confidence_level = confidence_level

    def __call__(self, eval_prediction) -> Dict[str, float]:
        """Score a ``transformers.EvalPrediction`` with ``predictions`` logits (N, C) and ``label_ids`` (N, C).

        Raises:
            ValueError: if the shapes don't match the C label names (from the metric's input checks).
        """
        references = np.asarray(eval_prediction.label_ids)
        return self.score(references, sigmoid(logits_of(eval_prediction.predictions)))

    def score(self, references: np.ndarray, probabilities: np.ndarray) -> Dict[str, float]:
        """Macro and per-finding AUC of ``probabilities`` (N, C) against 0/1 ``references`` (N, C)."""
        with warnings.catch_warnings():
            # A finding absent from a small split is reported as NaN in the results; a warning per evaluation is noise.
            warnings.filterwarnings("ignore", message="ROC AUC", category=UndefinedAUCWarning)
            return multilabel_roc_auc(
                np.rint(references).astype(np.int8),
                probabilities,
                average="macro",
                label_names=self.label_names,
                confidence_level=self.confidence_level,
            )


def strip_prefix(metrics: Dict[str, float], prefix: str) -> Dict[str, float]:
    """``{"eval_roc_auc": x, "epoch": 3}`` → ``{"roc_auc": x}`` for ``prefix="eval_"``: keys without the prefix go."""
    return {key[len(prefix):]: value for key, value in metrics.items() if key.startswith(prefix)}


__all__: Sequence[str] = ["MultiLabelROCAUC", "logits_of", "metric_functions", "sigmoid", "strip_prefix", "METRIC_DIR"]
