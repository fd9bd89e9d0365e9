"""ROC AUC for multi-label classification: exact per-class and averaged AUC, with DeLong confidence intervals."""

import datasets
import evaluate
import numpy as np
import pyarrow as pa

from .multilabel_auc import check_options, roc_auc_report, validate_inputs

_DESCRIPTION = """\
Area under the ROC curve (ROC AUC) of a multi-label classifier, for each class and averaged over classes, with
optional confidence intervals.

For one class, ROC AUC is the probability that a randomly drawn positive case is scored higher than a randomly drawn
negative case (ties count one half). It is computed exactly, as the Mann-Whitney statistic, so it equals
scikit-learn's `roc_auc_score` to rounding, whichever version is installed.

- `average="macro"` (default): the mean of the per-class AUCs. This is the "mean AUC" of the chest X-ray literature.
- `average="weighted"`: the per-class AUCs weighted by each class's number of positive cases.
- `average="micro"`: all (case, class) entries pooled into one binary problem.
- `average=None`: one AUC per class.

A class whose references are all 0 or all 1 has no AUC: it is NaN, left out of the macro and weighted averages, and
a warning names it. Confidence intervals use DeLong's variance (fast algorithm of Sun & Xu, 2014) and, for the
averages, DeLong's covariance across classes, which share their cases; see the metric card.
"""

_KWARGS_DESCRIPTION = """
Args:
    references (`array-like` of shape `(N, C)`): 0/1 ground truth, `references[i][c] == 1` when case `i` has class
        `c` (multi-hot rows).
    prediction_scores (`array-like` of shape `(N, C)`): finite real scores, one per case and class: sigmoid
        probabilities, logits, or any score where higher means "more likely positive". Only their order within a
        class matters.
    average (`str` or `None`, defaults to `"macro"`): `"macro"`, `"weighted"`, `"micro"`, or `None` for a list of
        per-class AUCs.
    label_names (`list` of `str`, optional): one name per class (column). Adds a key `roc_auc_<name>` per class.
    confidence_level (`float`, optional): e.g. `0.95`. Adds `roc_auc_ci_low` and `roc_auc_ci_high` for the requested
        average (lists when `average=None`) and, with `label_names`, `roc_auc_<name>_ci_low` and
        `roc_auc_<name>_ci_high` per class.

Returns:
    `dict` of plain Python `float`s (lists of floats for `average=None`):
        roc_auc: the requested average, or the list of per-class AUCs.
        roc_auc_ci_low, roc_auc_ci_high: its confidence interval, with `confidence_level`.
        roc_auc_<name>, roc_auc_<name>_ci_low, roc_auc_<name>_ci_high: per class, with `label_names`.
    An undefined per-class AUC is `float("nan")`.

Raises:
    ValueError: for references that are not 0/1, scores that are NaN or infinite, shapes that differ or are not 2-D,
        `label_names` whose length is not C, a `confidence_level` outside (0, 1), or an unknown `average`.

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
    >>> auc.compute(references=references, prediction_scores=scores)
    {'roc_auc': 0.8777777777777778}

    One AUC per class, and the other averages:

    >>> auc.compute(references=references, prediction_scores=scores, average=None)
    {'roc_auc': [0.6666666666666666, 1.0, 0.9666666666666667]}
    >>> auc.compute(references=references, prediction_scores=scores, average="weighted")
    {'roc_auc': 0.89}
    >>> auc.compute(references=references, prediction_scores=scores, average="micro")
    {'roc_auc': 0.8928571428571429}

    Named classes with 95% confidence intervals:

    >>> results = auc.compute(
    ...     references=references,
    ...     prediction_scores=scores,
    ...     label_names=["Atelectasis", "Cardiomegaly", "Effusion"],
    ...     confidence_level=0.95,
    ... )
    >>> {key: round(value, 3) for key, value in results.items() if not key.startswith("roc_auc_E")}
    ... # doctest: +NORMALIZE_WHITESPACE
    {'roc_auc': 0.878, 'roc_auc_ci_low': 0.612, 'roc_auc_ci_high': 0.97,
     'roc_auc_Atelectasis': 0.667, 'roc_auc_Atelectasis_ci_low': 0.165, 'roc_auc_Atelectasis_ci_high': 0.953,
     'roc_auc_Cardiomegaly': 1.0, 'roc_auc_Cardiomegaly_ci_low': 1.0, 'roc_auc_Cardiomegaly_ci_high': 1.0}

    Batches can be added one at a time, as in an evaluation loop:

    >>> for start in range(0, 8, 4):
    ...     auc.add_batch(references=references[start:start + 4], prediction_scores=scores[start:start + 4])
    >>> auc.compute()
    {'roc_auc': 0.8777777777777778}
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
"""

# Arrow list offsets are int32: larger inputs are written in several tables.
_MAX_ENTRIES_PER_TABLE = 2**31 - 1


def _to_arrow_table(labels: np.ndarray, scores: np.ndarray) -> pa.Table:
    """Two list columns from ``(n, C)`` arrays, built from the flat buffers in one step (no per-row Python)."""
    num_rows, num_classes = labels.shape
    offsets = pa.array(np.arange(0, num_rows * num_classes + 1, num_classes, dtype=np.int32))
    return pa.table(
        {
            "references": pa.ListArray.from_arrays(offsets, pa.array(labels.astype(np.int8).ravel())),
            "prediction_scores": pa.ListArray.from_arrays(offsets, pa.array(scores.astype(np.float64).ravel())),
        }
    )


def _to_matrix(column, argument: str) -> np.ndarray:
    """An ``(N, C)`` NumPy array from a stored Arrow list column (or from anything NumPy can read)."""
    if not isinstance(column, (pa.Array, pa.ChunkedArray)):
        return np.asarray(column)
    if isinstance(column, pa.ChunkedArray):
        column = column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
    if len(column) == 0:
        raise ValueError("no examples to evaluate: pass references and prediction_scores, or call add_batch first")
    if column.null_count:
        raise ValueError(f"{argument} has a missing row: every row needs C values")
    offsets = column.offsets.to_numpy()
    lengths = np.diff(offsets)
    if lengths.min() != lengths.max():
        raise ValueError(
            f"{argument} rows have between {lengths.min()} and {lengths.max()} entries: every row needs the same "
            "number of classes C"
        )
    return column.flatten().to_numpy(zero_copy_only=False).reshape(len(column), int(lengths[0]))


def _narrowest_exact_float(scores: np.ndarray) -> np.ndarray:
    """float32 when that represents every score exactly (scores from float32 model outputs): sorting it is faster."""
    if scores.dtype != np.float64:
        return scores
    with np.errstate(over="ignore"):
        narrow = scores.astype(np.float32)
    return narrow if np.array_equal(narrow, scores) else scores


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class RocAucMultilabel(evaluate.Metric):
    """Multi-label ROC AUC per class and averaged, with DeLong confidence intervals.

    The math is in ``multilabel_auc.py`` beside this file (plain NumPy). Batches are checked when they are added and
    written to Arrow as two list columns built from the flat NumPy buffers, and ``_compute`` reads them back as Arrow
    arrays: no Python object per value on either side.
    """

    def _info(self):
        info = evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "references": datasets.List(datasets.Value("int8")),
                    "prediction_scores": datasets.List(datasets.Value("float64")),
                }
            ),
            reference_urls=[
                "https://doi.org/10.2307/2531595",
                "https://doi.org/10.1109/LSP.2014.2337313",
                "https://scikit-learn.org/stable/modules/generated/sklearn.metrics.roc_auc_score.html",
            ],
        )
        # Hand the stored columns to _compute as Arrow arrays, which become (N, C) NumPy arrays without a Python
        # object per value. (MetricInfo's own check only allows a format with scalar features, so it is set here.)
        info.format = "arrow"
        return info

    def compute(self, *, references=None, prediction_scores=None, average="macro", label_names=None,
                confidence_level=None):
        """Compute the metric on the given batch plus every batch added before.

        The inputs and options are checked before anything is stored, so a bad call leaves the stored batches as they
        were.

        Raises:
            ValueError: for bad inputs or options (see the inputs description).
        """
        if references is not None or prediction_scores is not None:
            labels, scores = validate_inputs(references, prediction_scores)
            check_options(labels.shape[1], average, label_names, confidence_level)
            self._write(labels, scores)
        else:
            if self.writer is None:
                raise ValueError(
                    "no examples to evaluate: pass references and prediction_scores, or call add_batch first"
                )
            check_options(self._stored_num_classes(), average, label_names, confidence_level)
        return super().compute(average=average, label_names=label_names, confidence_level=confidence_level)

    def add_batch(self, *, references=None, prediction_scores=None):
        """Add a batch of references and prediction scores, each of shape ``(batch_size, C)``.

        The batch is checked (shapes, 0/1 references, finite scores) and written to Arrow column by column.

        Raises:
            ValueError: as ``compute`` does for bad inputs, or when C differs from that of an earlier batch.
        """
        self._write(*validate_inputs(references, prediction_scores))

    def add(self, *, references=None, prediction_scores=None):
        """Add one example: ``references`` and ``prediction_scores`` are each a row of C values.

        Raises:
            ValueError: as ``add_batch`` does.
        """
        if references is None or prediction_scores is None:
            raise ValueError("add needs both references and prediction_scores (one row of C values each)")
        self._write(*validate_inputs([references], [prediction_scores]))

    def _stored_num_classes(self):
        """C of the batches stored since the last compute, or None if none was stored through ``add_batch``."""
        writer, num_classes = getattr(self, "_classes_of_writer", (None, None))
        return num_classes if writer is not None and writer is self.writer else None

    def _write(self, labels: np.ndarray, scores: np.ndarray) -> None:
        num_classes = labels.shape[1]
        stored = self._stored_num_classes()
        if stored is not None and stored != num_classes:
            raise ValueError(f"this batch has {num_classes} classes (columns) but earlier batches had {stored}")
        if self.writer is None:
            self.selected_feature_format = self.features
            self._init_writer()
        self._classes_of_writer = (self.writer, num_classes)
        rows_per_table = max(1, _MAX_ENTRIES_PER_TABLE // num_classes)
        for start in range(0, labels.shape[0], rows_per_table):
            stop = start + rows_per_table
            table = _to_arrow_table(labels[start:stop], scores[start:stop])
            self.writer.write_table(table, writer_batch_size=table.num_rows)  # one record batch, read back in one

    def _compute(self, references, prediction_scores, average="macro", label_names=None, confidence_level=None):
        # Every stored row went through validate_inputs in _write and the options through check_options in compute.
        labels = _to_matrix(references, "references") != 0
        scores = _narrowest_exact_float(_to_matrix(prediction_scores, "prediction_scores"))
        names = None if label_names is None else list(label_names)
        return roc_auc_report(labels, scores, average=average, label_names=names, confidence_level=confidence_level)
