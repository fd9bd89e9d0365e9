"""The training benchmarks run end to end on a tiny workload (a smoke test: speed itself is never asserted here)."""

import re

import pytest

from benchmark_modules import load_benchmark


def table_rows(text):
    return [line for line in text.splitlines() if re.match(r"^\| (baseline|recipe|tutorial)", line)]


def test_train_step_benchmark_reports_both_set_ups(capsys):
    benchmark = load_benchmark("train_step")
    benchmark.main(["--model", "tiny", "--steps", "1", "--warmup", "0", "--repeats", "1", "--batch-size", "4"])
    rows = table_rows(capsys.readouterr().out)
    assert len(rows) == 2
    assert "| 1.00x |" in rows[0]
    assert all(float(row.split("|")[2].replace(",", "")) > 0 for row in rows)


def test_input_pipeline_benchmark_compares_recipe_with_memcpy_and_tutorial(capsys, tmp_path):
    import nih_chestxray14

    if not hasattr(nih_chestxray14, "load"):
        pytest.skip("nih_chestxray14.load (the builder's public entry point) is not available in this checkout")
    benchmark = load_benchmark("input_pipeline")
    benchmark.main(["--num-patients", "4", "--images-per-patient", "1", "--epochs", "1", "--batch-size", "2",
                    "--workdir", str(tmp_path)])
    output = capsys.readouterr().out
    rows = [line for line in output.splitlines() if re.match(r"^\| (recipe|tutorial|storage|memcpy)", line)]
    assert [row.split("|")[1].split(":")[0].strip() for row in rows] == [
        "tutorial (2022)", "recipe, loader (training and evaluation)", "recipe, loader with Pillow decode (before "
        "the fast path)", "recipe, host path, training",
        "recipe, host path, evaluation", "storage alternative", "memcpy bound"]
    assert rows[0].split("|")[4].strip() == "1.0x" and rows[-1].split("|")[3].strip() == "1.000"
    assert all(float(row.split("|")[2].replace(",", "")) > 0 for row in rows)
    assert "Target: the recipe's training pipeline (CPU side) at least 2,000 images/s per core" in output


def test_train_step_benchmark_times_the_recipes_full_loop_and_writes_a_profile(capsys, tmp_path):
    benchmark = load_benchmark("train_step")
    benchmark.main(["--model", "tiny", "--steps", "2", "--warmup", "1", "--repeats", "1", "--batch-size", "4",
                    "--full-loop", "--release-images", "32", "--workdir", str(tmp_path / "work"),
                    "--profile", str(tmp_path / "profile"), "--peak-tflops", "1"])
    output = capsys.readouterr().out
    assert re.search(r"GFLOPs per image per training step", output)
    assert all(row.rstrip(" |").endswith("%") for row in table_rows(output))  # MFU against the given peak
    match = re.search(r"Full loop .*: ([\d,.]+) images/s = ([\d.]+)x the model-only recipe step", output)
    assert match and float(match.group(1).replace(",", "")) > 0
    assert (tmp_path / "profile" / "train_step_trace.json").stat().st_size > 0
    assert "aten::" in output  # the operator table


def test_flops_per_image_grow_with_the_model():
    benchmark = load_benchmark("train_step")
    tiny = benchmark.training_flops_per_image(benchmark.MODELS["tiny"], benchmark.torch.device("cpu"))
    wider = benchmark.ModelSpec("wider", {**benchmark.MODELS["tiny"].config, "hidden_size": 128,
                                          "intermediate_size": 256}, 1, 1)
    assert benchmark.training_flops_per_image(wider, benchmark.torch.device("cpu")) > 3 * tiny > 0
