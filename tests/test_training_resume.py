"""Exact resume: a run killed just after a checkpoint and resumed ends with the same weights, bit for bit, as a run
that was never interrupted; with augmentation on, and with the data loader in the main process or in 2 workers.

The killed run is a real process that ``SIGKILL``s itself right after its step-4 checkpoint is written; the resumed
run is the recipe's own ``main()`` with the same arguments, which picks up ``checkpoint-4``. The 9 steps cross an
epoch boundary, so the resumed part both skips batches of a half-done epoch and starts a new one.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from training.run import main

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[1]
TINY_VIT = "hidden_size=32,num_hidden_layers=1,num_attention_heads=2,intermediate_size=64,image_size=32,patch_size=8"
MAX_STEPS, KILLED_AFTER_STEP = 9, 4

KILL_AFTER_CHECKPOINT = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, sys.argv[1])
    import torch, transformers
    from training.run import main

    class KillAfterCheckpoint(transformers.TrainerCallback):
        def on_save(self, args, state, control, **kwargs):  # called once the checkpoint is on disk
            if state.global_step == int(sys.argv[2]):
                os.kill(os.getpid(), signal.SIGKILL)

    trainer_init = transformers.Trainer.__init__
    def init_then_add_the_callback(self, *args, **kwargs):
        trainer_init(self, *args, **kwargs)
        self.add_callback(KillAfterCheckpoint())
    transformers.Trainer.__init__ = init_then_add_the_callback
    torch.set_num_threads(1)
    main(sys.argv[3:])
""")


def recipe_args(workdir: Path, output_dir: Path, workers: int) -> list:
    """9 steps of 8 images from a 32 px synthetic release (about 7 steps per epoch), a checkpoint every 4 steps."""
    return [
        "--model_type", "vit", "--config_overrides", TINY_VIT,
        "--data_dir", str(workdir / "release"), "--make_sample_release", "--sample_num_patients", "24",
        "--sample_image_size", "32", "--cache_dir", str(workdir / "cache"), "--output_dir", str(output_dir),
        "--use_cpu", "--do_train", "--max_steps", str(MAX_STEPS), "--per_device_train_batch_size", "8",
        "--learning_rate", "1e-3", "--logging_steps", "1", "--seed", "0",
        "--eval_strategy", "no", "--save_strategy", "steps", "--save_steps", "4", "--load_best_model_at_end", "False",
        "--dataloader_num_workers", str(workers),
    ]


@pytest.fixture
def one_thread():
    """Every run does its float work on one thread: the same reductions in the same order in each process."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def step_losses(output_dir: Path) -> dict:
    history = json.loads((output_dir / "trainer_state.json").read_text())["log_history"]
    return {entry["step"]: entry["loss"] for entry in history if "loss" in entry}


@pytest.mark.parametrize("workers", [0, 2], ids=["in-process-loader", "2-loader-workers"])
def test_a_killed_and_resumed_run_ends_with_the_uninterrupted_runs_weights_bit_for_bit(tmp_path, one_thread, workers):
    uninterrupted, interrupted = tmp_path / "uninterrupted", tmp_path / "interrupted"
    main(recipe_args(tmp_path, uninterrupted, workers))

    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    killed = subprocess.run(
        [sys.executable, "-c", KILL_AFTER_CHECKPOINT, str(REPO_ROOT), str(KILLED_AFTER_STEP),
         *recipe_args(tmp_path, interrupted, workers)],
        capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stdout[-2000:] + killed.stderr[-2000:]
    assert (interrupted / f"checkpoint-{KILLED_AFTER_STEP}").is_dir()
    assert not (interrupted / "model.safetensors").exists()  # it died before its last steps
    at_checkpoint = load_file(interrupted / f"checkpoint-{KILLED_AFTER_STEP}" / "model.safetensors")

    main(recipe_args(tmp_path, interrupted, workers))  # resumes from checkpoint-4

    state = json.loads((interrupted / "trainer_state.json").read_text())
    assert state["global_step"] == MAX_STEPS and state["epoch"] > 1  # the resumed part crossed into a second epoch
    assert step_losses(interrupted) == step_losses(uninterrupted)
    expected, resumed = load_file(uninterrupted / "model.safetensors"), load_file(interrupted / "model.safetensors")
    assert expected.keys() == resumed.keys()
    changed = [name for name in expected if not torch.equal(expected[name], resumed[name])]
    assert not changed, f"weights differ after resuming: {changed}"
    # The comparison is not vacuous: the resumed run trained on from the checkpoint's weights.
    assert any(not torch.equal(at_checkpoint[name], resumed[name]) for name in at_checkpoint if name in resumed)
