"""The recipe end to end: the real ``main()`` trains a tiny ViT on a synthetic release with a learnable signal.

One trained run is shared by the module; resuming, the demo config and bad input get their own short runs.
"""

import csv
import json
import logging
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from huggingface_hub import ModelCard
from PIL import Image

from nih_chestxray14.labels import LABELS
from training.run import main

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[1]
TINY_VIT = "hidden_size=64,num_hidden_layers=2,num_attention_heads=4,intermediate_size=128,image_size=32,patch_size=8"
PUBLISHED_FILES = {
    "config.json", "model.safetensors", "preprocessor_config.json", "ipu_config.json", "README.md", "all_results.json",
    "training_loss.png", "learning_rate.png", "roc_curves_test.png",
    # the evaluation written with --do_predict
    "predictions_validation.parquet", "predictions_test.parquet", "evaluation_validation.json", "evaluation_test.json",
    "thresholds.json", "reliability_test.png",
}


def recipe_args(release: Path, cache: Path, output_dir: Path, *extra: str) -> list:
    """A tiny from-scratch run on a 32 px synthetic release (written on first use), CPU only."""
    return [
        "--model_type", "vit", "--config_overrides", TINY_VIT,
        "--data_dir", str(release), "--make_sample_release", "--sample_num_patients", "200",
        "--sample_image_size", "32", "--sample_prevalence", "0.2", "--sample_signal_strength", "2.5",
        "--cache_dir", str(cache), "--output_dir", str(output_dir),
        "--use_cpu", "--per_device_train_batch_size", "32", "--per_device_eval_batch_size", "64",
        "--learning_rate", "1e-3", "--warmup_steps", "20", "--logging_steps", "10", "--seed", "0",
        *extra,
    ]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("recipe")


@pytest.fixture(scope="module")
def trained(workdir):
    """One full run: train 400 steps (evaluating and saving every 100), evaluate, predict on the test split.

    400 steps reach a validation macro AUC of 0.84-0.87 over seeds 0-3 (200 steps: ~0.70).
    """
    output_dir = workdir / "trained"
    results = main(recipe_args(
        workdir / "release", workdir / "cache", output_dir,
        "--do_train", "--do_eval", "--do_predict", "--max_steps", "400",
        "--eval_strategy", "steps", "--save_strategy", "steps", "--eval_steps", "100", "--save_steps", "100",
    ))
    return results, output_dir


def test_training_lowers_the_loss_and_learns_the_findings(trained):
    results, output_dir = trained
    history = json.loads((output_dir / "trainer_state.json").read_text())["log_history"]
    losses = [entry["loss"] for entry in history if "loss" in entry]
    assert len(losses) >= 10
    assert np.mean(losses[-3:]) < 0.85 * np.mean(losses[:3])
    assert results["eval_roc_auc"] > 0.7, results["eval_roc_auc"]  # chance is 0.5
    assert results["test_roc_auc"] > 0.7, results["test_roc_auc"]


def test_the_published_model_is_the_best_checkpoint(trained):
    results, output_dir = trained
    state = json.loads((output_dir / "trainer_state.json").read_text())
    assert state["best_model_checkpoint"] is not None
    # The final evaluation scores the model that was loaded back: the best one, so it reproduces the best score.
    assert results["eval_roc_auc"] == pytest.approx(state["best_metric"], abs=1e-6)


def test_output_dir_holds_everything_that_gets_published(trained):
    results, output_dir = trained
    assert PUBLISHED_FILES <= {path.name for path in output_dir.iterdir()}
    config = json.loads((output_dir / "config.json").read_text())
    assert config["problem_type"] == "multi_label_classification"
    assert [config["id2label"][str(i)] for i in range(14)] == list(LABELS)
    all_results = json.loads((output_dir / "all_results.json").read_text())
    assert all_results == pytest.approx(results, nan_ok=True)
    for key in ("eval_roc_auc", "eval_roc_auc_Hernia", "test_roc_auc_ci_low", "test_roc_auc_Hernia_ci_high", "train_loss"):
        assert key in all_results
    for name in PUBLISHED_FILES:
        if name.endswith(".png"):
            with Image.open(output_dir / name) as image:
                assert image.format == "PNG"


def test_do_predict_writes_the_evaluation_of_validation_and_test(trained):
    from sklearn.metrics import roc_auc_score

    from training.evaluation.predictions import read_predictions

    results, output_dir = trained
    test = read_predictions(output_dir / "predictions_test.parquet")
    report = json.loads((output_dir / "evaluation_test.json").read_text())
    assert report["num_images"] == test.num_images and test.label_names == LABELS
    assert report["roc_auc"]["macro"]["value"] == pytest.approx(results["test_roc_auc"], abs=1e-9)
    for column, name in enumerate(LABELS):  # the file's probabilities are the ones the Trainer's metrics scored
        if 0 < test.references[:, column].sum() < test.num_images:
            assert roc_auc_score(test.references[:, column], test.probabilities[:, column]) == pytest.approx(
                results[f"test_roc_auc_{name}"], abs=1e-9)
    thresholds = json.loads((output_dir / "thresholds.json").read_text())
    assert thresholds["chosen_on"] == "validation" and list(thresholds["thresholds"]) == list(LABELS)
    assert report["operating_points"]["Effusion"]["threshold"] == thresholds["thresholds"]["Effusion"]
    assert set(report["subgroups"]) == {"sex", "age", "view_position"}
    assert {"sex", "age", "view_position", "patient_id"} <= set(test.metadata)
    assert (output_dir / ".eval_results" / "nih_chestxray14.yaml").is_file()


def test_the_model_card_reports_the_run(trained):
    results, output_dir = trained
    card = ModelCard.load(output_dir / "README.md")
    reported = {(result.dataset_split, result.metric_name): result.metric_value for result in card.data.eval_results}
    macro = [value for (split, name), value in reported.items() if split == "test" and "macro" in name.lower()]
    assert macro and macro[0] == pytest.approx(results["test_roc_auc"], abs=1e-3)
    for picture in ("training_loss.png", "learning_rate.png", "roc_curves_test.png", "reliability_test.png"):
        assert picture in card.text
    assert "function_to_apply" in card.text
    for section in ("### Operating points", "### Disaggregated results", "### Calibration",
                    "### Prevalence shift between validation and test"):
        assert section in card.text


def test_the_folder_loads_in_an_image_classification_pipeline(trained, workdir):
    from transformers import pipeline

    _, output_dir = trained
    # top_k=None means the default of 5 in this pipeline; ask for all 14 findings.
    classifier = pipeline("image-classification", model=str(output_dir), function_to_apply="sigmoid", top_k=len(LABELS))
    image = Image.open(next((workdir / "release" / "images").glob("*.png")))
    scores = classifier(image)
    assert sorted(score["label"] for score in scores) == sorted(LABELS)
    assert all(0.0 < score["score"] < 1.0 for score in scores)
    assert sum(score["score"] for score in scores) != pytest.approx(1.0)  # independent sigmoids, not a softmax


def test_a_published_folder_is_a_checkpoint_to_evaluate_or_fine_tune(trained, workdir):
    results, output_dir = trained
    data = ("--data_dir", str(workdir / "release"), "--cache_dir", str(workdir / "cache"), "--use_cpu")
    evaluated = main(["--model_name_or_path", str(output_dir), *data, "--output_dir", str(workdir / "evaluated"),
                      "--do_eval", "--per_device_eval_batch_size", "64"])
    assert evaluated["eval_roc_auc"] == pytest.approx(results["eval_roc_auc"], abs=1e-6)
    tuned = main(["--model_name_or_path", str(output_dir), *data, "--output_dir", str(workdir / "tuned"),
                  "--do_train", "--max_steps", "2", "--eval_strategy", "no", "--save_strategy", "no",
                  "--load_best_model_at_end", "False"])
    assert tuned["train_loss"] > 0
    card = ModelCard.load(workdir / "tuned" / "README.md")
    assert "fine-tuned from a local checkpoint" in card.text.lower()


def test_the_exported_parquet_dataset_trains_like_the_builder(workdir, trained):
    """``--dataset_name`` given the folder that ``nih_chestxray14.publish.export`` writes (as on the Hub)."""
    from nih_chestxray14.publish import export

    exported = export(workdir / "release", workdir / "exported", configs=("default",), cache_dir=workdir / "cache")
    output_dir = workdir / "from-parquet"
    results = main(["--model_type", "vit", "--config_overrides", TINY_VIT, "--dataset_name", str(exported),
                    "--cache_dir", str(workdir / "parquet-cache"), "--output_dir", str(output_dir), "--use_cpu",
                    "--do_train", "--do_eval", "--max_steps", "2", "--eval_strategy", "no", "--save_strategy", "no",
                    "--load_best_model_at_end", "False"])
    assert 0.0 <= results["eval_roc_auc"] <= 1.0
    assert {"model.safetensors", "README.md", "config.json"} <= {path.name for path in output_dir.iterdir()}


def test_a_checkpoint_without_safetensors_weights_is_refused(tmp_path, workdir):
    folder = tmp_path / "pickled"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "vit", "image_size": 32, "patch_size": 8}))
    (folder / "pytorch_model.bin").write_bytes(b"not loaded: pickles are never read")
    with pytest.raises(ValueError, match="--model_name_or_path"):
        main(["--model_name_or_path", str(folder), "--image_processor_name", str(workdir / "trained"),
              "--data_dir", str(workdir / "release"), "--cache_dir", str(workdir / "cache"), "--use_cpu",
              "--output_dir", str(tmp_path / "out"), "--do_train"])


def test_an_interrupted_run_resumes_from_its_last_checkpoint(workdir, caplog):
    output_dir = workdir / "resumed"
    common = ("--do_train", "--eval_strategy", "steps", "--save_strategy", "steps", "--eval_steps", "4",
              "--save_steps", "4", "--max_train_samples", "128", "--max_eval_samples", "32")
    main(recipe_args(workdir / "release", workdir / "cache", output_dir, *common, "--max_steps", "8"))
    first = json.loads((output_dir / "trainer_state.json").read_text())["log_history"]

    with caplog.at_level(logging.INFO):
        main(recipe_args(workdir / "release", workdir / "cache", output_dir, *common, "--max_steps", "12"))
    assert f"resuming training from {output_dir / 'checkpoint-8'}" in caplog.text
    state = json.loads((output_dir / "trainer_state.json").read_text())
    assert state["global_step"] == 12
    logged_steps = [entry["step"] for entry in state["log_history"] if "loss" in entry]
    assert logged_steps == sorted(set(logged_steps))  # no step trained twice
    # The first run's log (up to its closing train summary, written after its last checkpoint) is carried over.
    carried = [entry for entry in state["log_history"] if entry["step"] <= 8]
    assert carried == [entry for entry in first if "train_loss" not in entry]

    caplog.clear()
    with caplog.at_level(logging.INFO):
        main(recipe_args(workdir / "release", workdir / "cache", output_dir, *common, "--max_steps", "4",
                         "--overwrite_output_dir", "--class_weighting", "balanced"))
    assert "resuming" not in caplog.text
    assert "positive weights per finding" in caplog.text
    assert json.loads((output_dir / "trainer_state.json").read_text())["global_step"] == 4
    assert not (output_dir / "checkpoint-12").exists()


KILLED_WHILE_SAVING = '''
"""`python training/run.py ARGS`, killed with SIGKILL part-way through writing checkpoint-8.

Usage: python killed_run.py RUN_PY weights|state ARGS...
  weights: after the checkpoint's config.json, before its weights (what save_pretrained writes first, then the rest);
  state:   half-way through its trainer_state.json, which the Trainer writes last.
"""
import dataclasses
import json
import os
import runpy
import signal
import sys
from pathlib import Path

from transformers import PreTrainedModel, TrainerState

run_py, kill_point = sys.argv[1], sys.argv[2]
sys.argv = [run_py, *sys.argv[3:]]
save_pretrained, save_to_json = PreTrainedModel.save_pretrained, TrainerState.save_to_json


def save_until_the_weights(self, save_directory, *args, **kwargs):
    if kill_point == "weights" and Path(save_directory).name == "checkpoint-8":
        self.config.save_pretrained(save_directory)
        os.kill(os.getpid(), signal.SIGKILL)
    return save_pretrained(self, save_directory, *args, **kwargs)


def save_half_the_state(self, json_path):
    if kill_point == "state" and Path(json_path).parent.name == "checkpoint-8":
        text = json.dumps(dataclasses.asdict(self), indent=2)
        Path(json_path).write_text(text[: len(text) // 2])
        os.kill(os.getpid(), signal.SIGKILL)
    return save_to_json(self, json_path)


PreTrainedModel.save_pretrained, TrainerState.save_to_json = save_until_the_weights, save_half_the_state
runpy.run_path(run_py, run_name="__main__")
'''


@pytest.mark.parametrize("kill_point, left_behind", [("weights", "config.json"), ("state", "trainer_state.json")])
def test_a_run_killed_while_saving_a_checkpoint_resumes_from_the_last_complete_one(workdir, tmp_path, caplog,
                                                                                   kill_point, left_behind):
    """kill -9 while checkpoint-8 is written; the rerun sets that folder aside, resumes from checkpoint-4, finishes."""
    from huggingface_hub.utils import filter_repo_objects

    from training.publish import NOT_UPLOADED

    output_dir = tmp_path / "out"
    argv = recipe_args(workdir / "release", workdir / "cache", output_dir, "--do_train", "--max_steps", "12",
                       "--eval_strategy", "steps", "--save_strategy", "steps", "--eval_steps", "4", "--save_steps", "4",
                       "--max_train_samples", "128", "--max_eval_samples", "32")
    script = tmp_path / "killed_run.py"
    script.write_text(KILLED_WHILE_SAVING)
    killed = subprocess.run([sys.executable, str(script), str(REPO_ROOT / "training" / "run.py"), kill_point, *argv],
                            capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert (output_dir / "checkpoint-4" / "trainer_state.json").is_file()
    assert (output_dir / "checkpoint-8" / left_behind).is_file()

    with caplog.at_level(logging.INFO):
        main(argv)
    assert f"resuming training from {output_dir / 'checkpoint-4'}" in caplog.text
    assert "checkpoint-8 is incomplete" in caplog.text and "set it aside as incomplete-checkpoint-8-" in caplog.text
    state = json.loads((output_dir / "trainer_state.json").read_text())
    assert state["global_step"] == 12
    logged_steps = [entry["step"] for entry in state["log_history"] if "loss" in entry]
    assert logged_steps == sorted(set(logged_steps))  # steps 1-4 from the killed run, 5-12 from the rerun
    # What the kill left is kept for the user, under a name that neither the Trainer's rotation nor the upload touches.
    (set_aside,) = output_dir.glob("incomplete-checkpoint-8-*")
    assert (set_aside / left_behind).is_file()
    left = [str(path.relative_to(output_dir)) for path in set_aside.rglob("*")]
    assert list(filter_repo_objects(left, ignore_patterns=NOT_UPLOADED)) == []
    assert (output_dir / "checkpoint-12" / "trainer_state.json").is_file()

    # The next rerun finds nothing left to set aside and nothing left to train.
    caplog.clear()
    with caplog.at_level(logging.INFO):
        main(argv)
    assert "incomplete" not in caplog.text and f"resuming training from {output_dir / 'checkpoint-12'}" in caplog.text


def test_an_incomplete_checkpoint_named_to_resume_from_is_refused(workdir, tmp_path):
    half_written = tmp_path / "out" / "checkpoint-8"
    half_written.mkdir(parents=True)
    (half_written / "config.json").write_text("{}")
    argv = recipe_args(workdir / "release", workdir / "cache", tmp_path / "out", "--do_train",
                       "--resume_from_checkpoint", str(half_written))
    with pytest.raises(ValueError, match="--resume_from_checkpoint .*checkpoint-8 is incomplete"):
        main(argv)


def test_the_demo_config_runs_and_ends_with_a_model_card(tmp_path):
    demo = REPO_ROOT / "training" / "configs" / "demo.json"
    settings = json.loads(demo.read_text())
    assert settings["model_type"] == "vit" and settings["make_sample_release"] and settings["output_dir"] == "demo-output"
    # The real demo config, shortened, with its folders moved into tmp_path.
    main([str(demo), "--output_dir", str(tmp_path / "demo-output"), "--data_dir", str(tmp_path / "release"),
          "--cache_dir", str(tmp_path / "cache"), "--sample_num_patients", "30", "--max_steps", "3", "--logging_steps", "1"])
    demo_output = tmp_path / "demo-output"
    assert PUBLISHED_FILES | {"calibration.json"} <= {path.name for path in demo_output.iterdir()}
    # A demo model trained on synthetic images must not pass itself off as an NIH ChestX-ray14 model.
    card = ModelCard.load(demo_output / "README.md")
    assert "Demo model" in card.text and not card.data.datasets
    # --sample_bbox_fraction gives the release's box file a row for that share of its images (30 patients x 3), so
    # the card's localization section scores more than a handful of boxes.
    with open(tmp_path / "release" / "BBox_List_2017.csv", newline="") as handle:
        box_rows = list(csv.reader(handle))[1:]
    assert len(box_rows) >= round(settings["sample_bbox_fraction"] * 90) >= 40
    assert "## Where the model looks" in card.text
    # ... and writes the whole evaluation, calibration scaling included, into its card and the Hub's results file
    for section in ("### Operating points", "### Disaggregated results", "### Calibration", "### Prevalence shift"):
        assert section in card.text
    assert "before and after temperature scaling" in " ".join(card.text.split())
    assert "SYNTHETIC" in (demo_output / ".eval_results" / "nih_chestxray14.yaml").read_text()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--dataset_name", "./no/such/exported-dataset"], "--dataset_name"),
        (["--dataset_name", "someone/not-reachable-offline"], "--dataset_name"),
        (["--config_overrides", "hidden_size=64,no_such_setting=3"], "no_such_setting"),
        (["--data_dir", "/no/such/release"], "--data_dir"),
        (["--data_dir", "{tmp_path}", "--dataset_config_name", "resized-999"], "--dataset_config_name 'resized-999'"),
        (["--image_processor_name", "./no/such/processor"], "--image_processor_name"),
        (["--output_dir", "{tmp_path}/a-file"], "--output_dir .* is a file"),
    ],
)
def test_bad_input_stops_with_a_clear_error(tmp_path, extra, message):
    argv = recipe_args(tmp_path / "release", tmp_path / "cache", tmp_path / "out", "--do_train")
    argv.remove("--make_sample_release")
    (tmp_path / "a-file").write_text("not a folder")
    with pytest.raises(ValueError, match=message):
        main(argv + [item.format(tmp_path=tmp_path) for item in extra])  # a later flag wins
    assert not (tmp_path / "out" / "model.safetensors").exists()


def test_an_ipu_config_without_optimum_graphcore_says_what_to_install(tmp_path):
    import importlib.util

    from training.ipu import IPUUnavailableError

    if importlib.util.find_spec("optimum") is not None and importlib.util.find_spec("optimum.graphcore") is not None:
        pytest.skip("optimum-graphcore is installed here, so the IPU path would really start")

    with pytest.raises(IPUUnavailableError, match="optimum-graphcore"):
        main(["--model_type", "vit", "--data_dir", str(tmp_path), "--output_dir", str(tmp_path / "out"),
              "--ipu_config_name", "Graphcore/vit-base-ipu"])


@pytest.mark.parametrize(
    "extra, option",
    [
        ([], "--model_name_or_path"),  # no model at all
        (["--learning_rate", "-1e-3"], "--learning_rate"),
        (["--per_device_train_batch_size", "2.5"], "--per_device_train_batch_size"),
        (["--gradient_accumulation_steps", "0"], "--gradient_accumulation_steps"),  # was a ZeroDivisionError traceback
    ],
)
def test_the_command_line_reports_bad_arguments_in_one_line(tmp_path, extra, option):
    model = ["--model_type", "vit", "--data_dir", str(tmp_path / "release"), "--do_train"] if extra else []
    completed = subprocess.run(
        [sys.executable, str(REPO_ROOT / "training" / "run.py"), "--output_dir", str(tmp_path / "out"), *model, *extra],
        capture_output=True, text=True, timeout=120,
    )
    assert completed.returncode != 0
    assert "Traceback" not in completed.stderr
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1, completed.stderr[-2000:]
    assert lines[0].startswith("run.py: error:") and option in lines[0]
    assert not (tmp_path / "out").exists() and not (tmp_path / "release").exists()  # stopped before any work
