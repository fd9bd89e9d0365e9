"""The evaluation of a chest X-ray classifier that a medical reviewer asks for, in small modules that each do one thing.

- ``predictions.py``: one scored split (labels, probabilities, metadata) and its ``predictions_<split>.parquet``;
- ``proportions.py``: Wilson intervals for sensitivities, specificities, predictive values and rates;
- ``operating_points.py``: thresholds chosen on validation (Youden's J, max F1, a target sensitivity), applied on
  test, saved as ``thresholds.json``;
- ``calibration.py``: expected calibration error (binning stated), Brier score, temperature and Platt scaling;
- ``subgroups.py``: sex, age bands and view position; the "No Finding" false-positive rate; the largest gaps;
- ``expert.py``: the mapped findings against Google's radiologist labels, beside NIH's own;
- ``report.py``: all of it for one split, the content of ``evaluation_<split>.json``;
- ``reliability_plot.py``: the reliability diagram;
- ``outputs.py``: the files a run writes (used by ``training/run.py --do_predict`` and ``training/evaluate.py``);
- ``scoring.py``: a model's probabilities on a dataset split, through the Trainer, with its labels mapped by name;
- ``checkpoint.py``: any image-classification checkpoint loaded as it is, and its saved operating points;
- ``comparison.py``: two prediction files joined on ``image_id`` and compared with the paired DeLong test.

AUCs, their intervals and the paired test are the project's metric (``metrics/roc_auc_multilabel``).
"""
