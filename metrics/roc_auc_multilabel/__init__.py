"""Multi-label ROC AUC: the ``evaluate`` module ``roc_auc_multilabel.py`` and the plain NumPy functions beside it.

From a clone whose root is on ``sys.path`` (as ``training/run.py`` arranges), without ``evaluate``::

    from metrics.roc_auc_multilabel import compare_roc_auc, multilabel_roc_auc, roc_auc_by_subgroup, roc_auc_summary
"""

from .comparison import compare_roc_auc
from .intervals import INTERVAL_DESCRIPTIONS, INTERVAL_METHODS
from .multilabel_auc import (
    AVERAGES,
    UndefinedAUCWarning,
    delong_covariance,
    delong_influence,
    multilabel_roc_auc,
    roc_auc_by_subgroup,
    roc_auc_per_class,
    roc_auc_summary,
    validate_inputs,
)

__all__ = [
    "AVERAGES",
    "INTERVAL_DESCRIPTIONS",
    "INTERVAL_METHODS",
    "UndefinedAUCWarning",
    "compare_roc_auc",
    "delong_covariance",
    "delong_influence",
    "multilabel_roc_auc",
    "roc_auc_by_subgroup",
    "roc_auc_per_class",
    "roc_auc_summary",
    "validate_inputs",
]
