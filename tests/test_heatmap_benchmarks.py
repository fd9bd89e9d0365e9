"""The heatmap benchmarks run end to end on a tiny workload (a smoke test: speed itself is never asserted here)."""


import pytest

from benchmark_modules import load_benchmark


def test_heatmap_speed_reports_each_method_against_the_forward_pass(capsys):
    load_benchmark("heatmap_speed").main(["--model", "tiny", "--calls", "1", "--warmup", "0", "--repeats", "1",
                                         "--batch-size", "4"])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and "---" not in line]
    assert [row.split("|")[1].strip() for row in rows[1:]] == [
        "forward pass (baseline, images/s)", "attention_rollout", "gradient_rollout", "gradcam"]
    assert rows[1].split("|")[4].strip() == "1.00×"
    assert all(float(row.split("|")[2].replace(",", "")) > 0 for row in rows[1:])
    assert "≤ 1.5×" in rows[2] and "≤ 3×" in rows[3] and "≤ 3×" in rows[4]


@pytest.mark.slow
def test_heatmap_localization_trains_then_scores_every_method(tmp_path, capsys):
    summary = load_benchmark("heatmap_localization").main(
        ["--num-patients", "12", "--epochs", "1", "--bbox-fraction", "1.0", "--workdir", str(tmp_path)])
    assert set(summary["results"]) == {"attention_rollout", "gradient_rollout", "gradcam"}
    for result in summary["results"].values():
        assert result["num_boxes"] > 0 and result["findings"]
    assert capsys.readouterr().out.strip()
