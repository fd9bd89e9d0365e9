"""ROC AUC for multi-label classification: exact per-class and averaged AUC, with confidence intervals."""

import datasets
import evaluate

# evaluate copies into its module cache only the files that this script imports itself, so each helper file that
# multilabel_auc.py needs is imported here too (and, as evaluate reads the rest of such a line as a download URL, with
# no comment after it).
from .delong import exact_auc
from .intervals import INTERVAL_METHODS
from .multilabel_auc import multilabel_roc_auc

_DESCRIPTION = """\
Area under the ROC curve (ROC AUC) of a multi-label classifier, for each class and averaged over classes, with
optional confidence intervals and positive counts.

For one class, ROC AUC is the probability that a randomly drawn positive case is scored higher than a randomly drawn
negative case (ties count one half). It is computed exactly, as the Mann-Whitney statistic, so it equals
scikit-learn's `roc_auc_score` to rounding, whichever version is installed.

- `average="macro"` (default): the mean of the per-class AUCs. This is the "mean AUC" of the chest X-ray literature.
- `average="weighted"`: the per-class AUCs weighted by each class's number of positive cases.
- `average="micro"`: all (case, class) entries pooled into one binary problem.
- `average=None`: one AUC per class.

A class whose references are all 0 or all 1 has no AUC: it is NaN, left out of the macro and weighted averages, and
a warning names it. Confidence intervals use DeLong's variance on the logit scale, a score interval (Newcombe, 2006)
for a class with few misranked cases, where DeLong's interval is too narrow or collapses, and, for the averages,
MOVER (Zou & Donner, 2008) with DeLong's correlations across classes, which share their cases; see the metric card.
"""

_KWARGS_DESCRIPTION = f"""
Args:
    references (`array-like` of shape `(N, C)`): 0/1 ground truth, `references[i][c] == 1` when case `i` has class
        `c` (multi-hot rows).
    prediction_scores (`array-like` of shape `(N, C)`): finite real scores, one per case and class: sigmoid
        probabilities, logits, or any score where higher means "more likely positive". Only their order within a
        class matters. Loaded with the config `"predictions"` (`evaluate.load(path, "predictions")`), the module takes
        them as `predictions` instead, evaluate's usual spelling.
    average (`str` or `None`, defaults to `"macro"`): `"macro"`, `"weighted"`, `"micro"`, or `None` for a list of
        per-class AUCs.
    label_names (`list` of `str`, optional): one name per class (column). Adds a key `roc_auc_<name>` per class.
    confidence_level (`float`, optional): e.g. `0.95`. Adds `roc_auc_ci_low` and `roc_auc_ci_high` for the requested
        average (lists when `average=None`, with the list `roc_auc_positives`) and, with `label_names`,
        `roc_auc_<name>_ci_low`, `roc_auc_<name>_ci_high` and `roc_auc_<name>_positives` per class.
    interval (`str`, defaults to `"auto"`): one of {", ".join(f"`{method!r}`" for method in INTERVAL_METHODS)}. How the
        intervals are computed: `"delong"`, DeLong's logit interval everywhere; `"score"`, score intervals for every
        class; `"auto"`, the score interval only for classes with few misranked cases.

Returns:
    `dict` of plain Python `float`s (`int`s for the positive counts; lists for `average=None`):
        roc_auc: the requested average, or the list of per-class AUCs.
        roc_auc_ci_low, roc_auc_ci_high: its confidence interval, with `confidence_level`.
        roc_auc_<name>, roc_auc_<name>_ci_low, roc_auc_<name>_ci_high, roc_auc_<name>_positives: per class.
    An undefined per-class AUC is `float("nan")`.

Raises:
    ValueError: for references that are not 0/1, scores that are NaN or infinite, shapes that differ or are not 2-D,
        batches with different numbers of classes, `label_names` whose length is not C, a `confidence_level` outside
        (0, 1), or an unknown `average` or `interval`.

Examples:
    Three findings on eight images; `scores` are sigmoid outputs.

    >>> import evaluate
    >>> auc = evaluate.load("metrics/roc_auc_multilabel")
    >>> references = [[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 1], [0, 1, 1], [1, 0, 0], [0, 0, 0], [0, 1, 1]]
    >>> scores = [
    ...     [0.8, 0.1, 0.3],
    ...     [0.3, 0.7, 0.2],
    ...     [0.2, 0.4, 0.2],
    ...     [0.4, 0.2, 0.9],
    ...     [0.1, 0.8, 0.4],
    ...     [0.5, 0.3, 0.4],
    ...     [0.6, 0.2, 0.1],
    ...     [0.3, 0.5, 0.7],
    ... ]
    >>> results = auc.compute(references=references, prediction_scores=scores)
    >>> round(results["roc_auc"], 4)
    0.8778

    One AUC per class, and the other averages:

    >>> results = auc.compute(references=references, prediction_scores=scores, average=None)
    >>> [round(value, 4) for value in results["roc_auc"]]
    [0.6667, 1.0, 0.9667]
    >>> round(auc.compute(references=references, prediction_scores=scores, average="weighted")["roc_auc"], 4)
    0.89
    >>> round(auc.compute(references=references, prediction_scores=scores, average="micro")["roc_auc"], 4)
    0.8929

    Named classes with 95% confidence intervals and positive counts:

    >>> results = auc.compute(
    ...     references=references,
    ...     prediction_scores=scores,
    ...     label_names=["Atelectasis", "Cardiomegaly", "Effusion"],
    ...     confidence_level=0.95,
    ... )
    >>> {{key: round(value, 3) for key, value in results.items() if not key.startswith("roc_auc_E")}}
    ... # doctest: +NORMALIZE_WHITESPACE
    {{'roc_auc': 0.878, 'roc_auc_ci_low': 0.664, 'roc_auc_ci_high': 0.964,
     'roc_auc_Atelectasis': 0.667, 'roc_auc_Atelectasis_ci_low': 0.238, 'roc_auc_Atelectasis_ci_high': 0.935,
     'roc_auc_Atelectasis_positives': 3,
     'roc_auc_Cardiomegaly': 1.0, 'roc_auc_Cardiomegaly_ci_low': 0.582, 'roc_auc_Cardiomegaly_ci_high': 1.0,
     'roc_auc_Cardiomegaly_positives': 4}}

    A perfect ranking (Cardiomegaly) still gets an interval: four positives cannot prove an AUC of 1.

    Batches can be added one at a time, as in an evaluation loop:

    >>> for start in range(0, 8, 4):
    ...     auc.add_batch(references=references[start:start + 4], prediction_scores=scores[start:start + 4])
    >>> round(auc.compute()["roc_auc"], 4)
    0.8778
"""

_CITATION = """\
@article{delong1988comparing,
  title   = {Comparing the Areas under Two or More Correlated Receiver Operating Characteristic Curves:
             A Nonparametric Approach},
  author  = {DeLong, Elizabeth R. and DeLong, David M. and Clarke-Pearson, Daniel L.},
  journal = {Biometrics},
  volume  = {44},
  number  = {3},
  pages   = {837--845},
  year    = {1988},
  doi     = {10.2307/2531595}
}
@article{sun2014fast,
  title   = {Fast Implementation of {DeLong}'s Algorithm for Comparing the Areas Under Correlated Receiver
             Operating Characteristic Curves},
  author  = {Sun, Xu and Xu, Weichao},
  journal = {IEEE Signal Processing Letters},
  volume  = {21},
  number  = {11},
  pages   = {1389--1393},
  year    = {2014},
  doi     = {10.1109/LSP.2014.2337313}
}
@article{hanley1982meaning,
  title   = {The Meaning and Use of the Area under a Receiver Operating Characteristic ({ROC}) Curve},
  author  = {Hanley, James A. and McNeil, Barbara J.},
  journal = {Radiology},
  volume  = {143},
  number  = {1},
  pages   = {29--36},
  year    = {1982},
  doi     = {10.1148/radiology.143.1.7063747}
}
@article{newcombe2006confidence,
  title   = {Confidence Intervals for an Effect Size Measure Based on the {Mann-Whitney} Statistic.
             Part 2: Asymptotic Methods and Evaluation},
  author  = {Newcombe, Robert G.},
  journal = {Statistics in Medicine},
  volume  = {25},
  number  = {4},
  pages   = {559--573},
  year    = {2006}
}
@article{zou2008construction,
  title   = {Construction of Confidence Limits about Effect Measures: A General Approach},
  author  = {Zou, Guang Yong and Donner, Allan},
  journal = {Statistics in Medicine},
  volume  = {27},
  number  = {10},
  pages   = {1693--1702},
  year    = {2008}
}
"""

# The input that holds the scores, per config: "default" spells it as evaluate's own `roc_auc` does; "predictions"
# as most evaluate modules do, for `evaluate.combine` with modules that take `predictions`.
_SCORES_INPUT = {"default": "prediction_scores", "predictions": "predictions"}


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class RocAucMultilabel(evaluate.Metric):
    """Multi-label ROC AUC per class and averaged, with confidence intervals; the math is ``multilabel_auc.py``'s."""

    def _info(self):
        if self.config_name not in _SCORES_INPUT:
            raise ValueError(
                f"unknown config {self.config_name!r} of roc_auc_multilabel: use {' or '.join(map(repr, _SCORES_INPUT))}"
            )
        # float64 for both: scores keep their precision, and a reference such as 0.5 reaches _compute (and its clear
        # error) instead of being truncated to an integer on the way into Arrow.
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "references": datasets.List(datasets.Value("float64")),
                    _SCORES_INPUT[self.config_name]: datasets.List(datasets.Value("float64")),
                }
            ),
            reference_urls=[
                "https://doi.org/10.2307/2531595",
                "https://doi.org/10.1109/LSP.2014.2337313",
                "https://scikit-learn.org/stable/modules/generated/sklearn.metrics.roc_auc_score.html",
            ],
        )

    def _compute(
        self,
        references,
        prediction_scores=None,
        predictions=None,
        average="macro",
        label_names=None,
        confidence_level=None,
        interval="auto",
    ):
        scores = prediction_scores if predictions is None else predictions
        return multilabel_roc_auc(
            references,
            scores,
            average=average,
            label_names=label_names,
            confidence_level=confidence_level,
            interval=interval,
        )
