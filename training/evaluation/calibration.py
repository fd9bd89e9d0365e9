"""Calibration of per-finding probabilities: expected calibration error, Brier score, reliability bins, and optional
temperature or Platt scaling fitted on validation.

- **Binning** (:data:`ECE_BINNING`): ``bins`` equal-width bins of the predicted probability on [0, 1] (bin ``b`` holds
  ``b/bins <= p < (b+1)/bins``, the last bin also ``p = 1``), per finding. The expected calibration error is the
  mean over bins of ``|mean predicted probability - observed rate|``, weighted by the bin's share of images (Naeini,
  Cooper & Hauskrecht, 2015; Guo et al., 2017), which is ``sum over bins |sum (p - y)| / N``. Equal-width bins put
  most images of a rare finding in the first bin, so the ECE of a rare finding is small whatever the model does;
  read it with the reliability diagram and the Brier score.
- **Brier score** (Brier, 1950): ``mean((p - y)^2)`` per finding, a proper scoring rule (lower is better).
- **Scaling**, one map per finding, fitted by maximum likelihood on validation and applied to the logit
  ``z = log(p / (1 - p))`` of the model's probability: temperature scaling ``sigmoid(z / T)`` (Guo et al., 2017),
  which keeps the ranking and the 0.5 point, or Platt scaling ``sigmoid(a z + b)`` (Platt, 1999), fitted as an
  unpenalised logistic regression on ``z`` (scikit-learn's ``LogisticRegression``; Platt's smoothed targets are not
  used). Both are monotone, so AUCs and the operating points' counts do not change; only the probabilities do.

The thresholds of ``thresholds.json`` stay on the model's own sigmoid probability, which is what inference code
computes; ``calibration.json`` holds the scaling for code that wants calibrated probabilities.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np

from nih_chestxray14.files import atomic_write_json

__all__ = [
    "CALIBRATION_FILE",
    "ECE_BINNING",
    "SCALING_METHODS",
    "CalibrationScaling",
    "brier_scores",
    "calibration_report",
    "expected_calibration_errors",
    "fit_scaling",
    "logit",
    "read_scaling",
    "reliability_bins",
    "write_scaling",
]

CALIBRATION_FILE = "calibration.json"
SCALING_METHODS = ("none", "temperature", "platt")
ECE_BINNING = (
    "{bins} equal-width bins of the predicted probability on [0, 1], each weighted by its share of images"
)
"""How the card and reports state the binning of the expected calibration error."""

_EDGE = 1e-15
"""Probabilities are clipped to [_EDGE, 1 - _EDGE] before their logit is taken: a saturated 0.0 or 1.0 stays finite."""


def logit(probabilities) -> np.ndarray:
    """``log(p / (1 - p))`` element-wise, float64, with ``p`` clipped to ``[1e-15, 1 - 1e-15]``."""
    p = np.clip(np.asarray(probabilities, dtype=np.float64), _EDGE, 1.0 - _EDGE)
    np.divide(p, 1.0 - p, out=p)
    return np.log(p, out=p)


def _scaled_sigmoid(logits: np.ndarray, slopes: np.ndarray, intercepts: np.ndarray) -> np.ndarray:
    """``sigmoid(slopes * logits + intercepts)``, column-wise, computed in place on ``logits`` (which it returns)."""
    logits *= slopes[None, :]
    if intercepts.any():
        logits += intercepts[None, :]
    np.negative(logits, out=logits)
    with np.errstate(over="ignore"):  # exp(-x) overflows to inf for x < -709, and 1 / (1 + inf) is the right 0
        np.exp(logits, out=logits)
    logits += 1.0
    return np.reciprocal(logits, out=logits)


def _bin_index(probabilities: np.ndarray, bins: int) -> np.ndarray:
    """Flat index ``column * bins + bin`` of each entry of an ``(N, C)`` array (:data:`ECE_BINNING`)."""
    index = (probabilities * bins).astype(np.intp)
    np.minimum(index, bins - 1, out=index)
    index += np.arange(probabilities.shape[1], dtype=np.intp)[None, :] * bins
    return index.ravel()


def reliability_bins(references, probabilities, bins: int = 10) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per finding and bin: number of images, sum of predicted probabilities, number of positives.

    Args:
        references: ``(N, C)`` 0/1. probabilities: ``(N, C)`` in [0, 1]. bins: number of equal-width bins.

    Returns:
        ``(counts, probability_sums, positive_counts)``, each of shape ``(C, bins)``.
    """
    p = np.asarray(probabilities, dtype=np.float64)
    shape, size = (p.shape[1], bins), p.shape[1] * bins
    flat = _bin_index(p, bins)
    counts = np.bincount(flat, minlength=size).reshape(shape)
    probability_sums = np.bincount(flat, weights=p.ravel(), minlength=size).reshape(shape)
    positive_counts = np.bincount(flat, weights=np.asarray(references, dtype=np.float64).ravel(),
                                  minlength=size).reshape(shape)
    return counts, probability_sums, positive_counts


def _ece_and_brier(labels: np.ndarray, p: np.ndarray, bins: int) -> Tuple[np.ndarray, np.ndarray]:
    """ECE and Brier score of each column, from one pass over ``p - y``: ``sum over bins |sum (p - y)| / N`` and
    ``mean((p - y)^2)``."""
    difference = p - labels
    num_images, num_classes = p.shape
    sums = np.bincount(_bin_index(p, bins), weights=difference.ravel(), minlength=num_classes * bins)
    ece = np.abs(sums.reshape(num_classes, bins)).sum(axis=1) / num_images
    return ece, np.einsum("ij,ij->j", difference, difference) / num_images


def expected_calibration_errors(references, probabilities, bins: int = 10) -> np.ndarray:
    """ECE of each finding with ``bins`` equal-width bins (:data:`ECE_BINNING`): shape ``(C,)``."""
    p = np.asarray(probabilities, dtype=np.float64)
    return _ece_and_brier(np.asarray(references, dtype=np.float64), p, bins)[0]


def brier_scores(references, probabilities) -> np.ndarray:
    """Brier score of each finding, ``mean((p - y)^2)``: shape ``(C,)``."""
    difference = np.asarray(probabilities, dtype=np.float64) - np.asarray(references, dtype=np.float64)
    return np.einsum("ij,ij->j", difference, difference) / difference.shape[0]


@dataclass
class CalibrationScaling:
    """A per-finding map from the model's probability to a calibrated one (the content of ``calibration.json``).

    Attributes:
        method: ``"temperature"`` or ``"platt"``.
        fitted_on: the split it was fitted on (``"validation"``). num_images: that split's size.
        slopes, intercepts: finding → ``a`` and ``b`` of ``sigmoid(a * logit(p) + b)``; temperature scaling has
            ``a = 1 / T`` and ``b = 0``.
        not_fitted: finding → why its map is the identity (no positive or negative image, or a fit that would
            reverse the ranking).
        notes: finding → a caveat about its fit: where the split separates the finding perfectly, the likelihood
            has no finite optimum (the best temperature is 0), and the fit is where the solver stopped.
    """

    method: str
    fitted_on: str
    num_images: int
    slopes: Dict[str, float]
    intercepts: Dict[str, float]
    not_fitted: Dict[str, str] = field(default_factory=dict)
    notes: Dict[str, str] = field(default_factory=dict)

    def apply(self, probabilities, label_names: Sequence[str]) -> np.ndarray:
        """The calibrated ``(N, C)`` probabilities of ``probabilities`` whose columns are ``label_names``."""
        slopes = np.array([self.slopes[name] for name in label_names], dtype=np.float64)
        intercepts = np.array([self.intercepts[name] for name in label_names], dtype=np.float64)
        return _scaled_sigmoid(logit(probabilities), slopes, intercepts)

    def to_json(self) -> Dict[str, Any]:
        parameters = {}
        for name in self.slopes:
            if self.method == "temperature":
                parameters[name] = {"temperature": 1.0 / self.slopes[name]}
            else:
                parameters[name] = {"slope": self.slopes[name], "intercept": self.intercepts[name]}
        content: Dict[str, Any] = {
            "method": self.method,
            "fitted_on": self.fitted_on,
            "num_images": self.num_images,
            "formula": "sigmoid(logit(p) / temperature)" if self.method == "temperature"
            else "sigmoid(slope * logit(p) + intercept)",
            "parameters": parameters,
        }
        if self.not_fitted:
            content["not_fitted"] = dict(self.not_fitted)
        if self.notes:
            content["notes"] = dict(self.notes)
        return content


def fit_scaling(
    references, probabilities, label_names: Sequence[str], method: str, *, fitted_on: str = "validation"
) -> CalibrationScaling:
    """Fit temperature or Platt scaling per finding by maximum likelihood.

    Args:
        references: ``(N, C)`` 0/1 of the split to fit on. probabilities: ``(N, C)`` the model's probabilities there.
        label_names: the C names. method: ``"temperature"`` or ``"platt"``.

    Returns:
        :class:`CalibrationScaling`. A finding without positives or negatives, or whose fitted slope is not positive
        (a model ranking it backwards), keeps the identity map and is named in ``not_fitted``.

    Raises:
        ValueError: for an unknown method.
    """
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits  # installed with scikit-learn

    if method not in ("temperature", "platt"):
        raise ValueError(f"unknown calibration method {method!r}: use 'temperature' or 'platt'")
    labels = np.asarray(references).astype(np.int8)
    logits = logit(probabilities)
    slopes, intercepts, not_fitted, notes = {}, {}, {}, {}
    for column, name in enumerate(label_names):
        slopes[name], intercepts[name] = 1.0, 0.0
        positives = int(labels[:, column].sum())
        if positives == 0 or positives == labels.shape[0]:
            not_fitted[name] = f"no {'positive' if positives == 0 else 'negative'} image in {fitted_on}"
            continue
        # unpenalised, and solved to the optimum (scikit-learn's default tolerance stops 1e-3 short of it); one
        # thread: a one-feature fit gains nothing from more, and a busy machine's thread start-ups cost 5-10x the fit
        model = LogisticRegression(C=np.inf, fit_intercept=method == "platt", tol=1e-10, max_iter=1000)
        with threadpool_limits(1):
            model.fit(logits[:, column:column + 1], labels[:, column])
        slope = float(model.coef_[0, 0])
        if not slope > 0.0:
            not_fitted[name] = f"the fitted slope {slope:.3g} is not positive (the model ranks it backwards)"
            continue
        slopes[name] = slope
        intercepts[name] = float(model.intercept_[0]) if method == "platt" else 0.0
        positive = labels[:, column] == 1
        if logits[positive, column].min() > logits[~positive, column].max():
            notes[name] = (f"{fitted_on} separates it perfectly: the likelihood has no finite optimum, and the scaling "
                           "is where the solver stopped (close to a step at the boundary)")
    return CalibrationScaling(method, fitted_on, int(labels.shape[0]), slopes, intercepts, not_fitted, notes)


def calibration_report(
    references, probabilities, label_names: Sequence[str], bins: int = 10,
    scaling: Optional[CalibrationScaling] = None,
) -> Dict[str, Dict[str, Any]]:
    """ECE, Brier score, mean probability and observed rate per finding, before and (with ``scaling``) after scaling.

    Returns:
        finding → ``{"ece", "brier", "mean_probability", "observed_rate"}``, plus ``"scaled": {"ece", "brier",
        "mean_probability"}`` with ``scaling``.
    """
    labels = np.asarray(references, dtype=np.float64)
    p = np.asarray(probabilities, dtype=np.float64)
    ece, brier = _ece_and_brier(labels, p, bins)
    mean_probability, observed = p.mean(axis=0), labels.mean(axis=0)
    scaled = None
    if scaling is not None:
        calibrated = scaling.apply(p, label_names)
        scaled = (*_ece_and_brier(labels, calibrated, bins), calibrated.mean(axis=0))
    report = {}
    for column, name in enumerate(label_names):
        entry: Dict[str, Any] = {
            "ece": float(ece[column]),
            "brier": float(brier[column]),
            "mean_probability": float(mean_probability[column]),
            "observed_rate": float(observed[column]),
        }
        if scaled is not None:
            entry["scaled"] = {"ece": float(scaled[0][column]), "brier": float(scaled[1][column]),
                               "mean_probability": float(scaled[2][column])}
        report[name] = entry
    return report


def write_scaling(folder, scaling: CalibrationScaling) -> Path:
    """Write ``folder/calibration.json`` atomically; return its path."""
    path = Path(folder) / CALIBRATION_FILE
    atomic_write_json(path, scaling.to_json())
    return path


def read_scaling(path, label_names: Sequence[str]) -> CalibrationScaling:
    """Read a ``calibration.json`` written by :func:`write_scaling` for a model with ``label_names``.

    Raises:
        ValueError: naming the file, if it is unreadable, has an unknown method or misses a finding.
    """
    path = Path(path)
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
        method, parameters = content["method"], content["parameters"]
        slopes, intercepts = {}, {}
        for name in label_names:
            entry = parameters[name]
            if method == "temperature":
                slopes[name], intercepts[name] = 1.0 / float(entry["temperature"]), 0.0
            elif method == "platt":
                slopes[name], intercepts[name] = float(entry["slope"]), float(entry["intercept"])
            else:
                raise ValueError(f"unknown method {method!r}")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError,
            ZeroDivisionError) as error:
        raise ValueError(
            f"{path}: not a calibration file for these findings ({type(error).__name__}: {error})") from None
    return CalibrationScaling(method, str(content.get("fitted_on", "unknown")), int(content.get("num_images", 0)),
                              slopes, intercepts, dict(content.get("not_fitted") or {}),
                              dict(content.get("notes") or {}))
