"""The evaluation benchmark runs end to end on a small synthetic test set (a smoke test: speed is never asserted)."""

import re

from benchmark_modules import BENCHMARKS, load_benchmark


def test_the_evaluation_benchmark_reports_the_evaluation_beside_scikit_learn(capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # it imports its sibling, roc_auc_speed.py
    module = load_benchmark("evaluation_speed")
    module.main(["--repeats", "1", "--num-images", "600", "--scores", "continuous"])
    output = capsys.readouterr().out
    rows = [line for line in output.splitlines() if line.startswith("| ") and not line.startswith(("| what", "| ---"))]
    assert rows[0].startswith("| scikit-learn `roc_auc_score(average=None)` |") and "| 1.00x |" in rows[0]
    assert any(row.startswith("| **whole evaluation**") for row in rows)
    assert re.search(r"Target: the whole evaluation at most 2.0x scikit-learn's time: [0-9.]+x CPU", output)
