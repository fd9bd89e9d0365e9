"""The recipe under ``torchrun --nproc_per_node 2`` on CPU (gloo): one script, two processes, one set of outputs."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[1]
TINY_VIT = "hidden_size=16,num_hidden_layers=1,num_attention_heads=2,intermediate_size=32,image_size=32,patch_size=8"

# `python training/run.py ARGS` as each process runs it, then a report of whether the recipe left its process group
# alive. One left to interpreter exit can abort the process after a good run: a gloo thread still releasing a
# collective's tensors can't take the GIL while Python finalises ("terminate called without an active exception").
REPORTS_THE_PROCESS_GROUP = """
import faulthandler
import runpy
import signal
import sys

import torch.distributed

faulthandler.register(signal.SIGUSR1, all_threads=True)  # the test asks for every thread's stack if the run hangs
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
print(f"process group still alive at exit: {torch.distributed.is_initialized()}", flush=True)
"""
TIMEOUT_S = 240


def run_in_own_session(command, **kwargs) -> subprocess.CompletedProcess:
    """``subprocess.run`` for torchrun: on timeout, dump the stacks of its workers and end all of them, not only the
    launcher (whose workers would otherwise live on and hold the output pipes open, so the test would never end)."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True, **kwargs)
    try:
        stdout, stderr = process.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        for signal_number in (signal.SIGUSR1, signal.SIGKILL):  # SIGUSR1: the workers print their stacks
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal_number)
            time.sleep(3)
        stdout, stderr = process.communicate()
        pytest.fail(f"torchrun did not finish in {TIMEOUT_S} s; stacks of its workers:\n{stderr[-6000:]}")
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def test_two_cpu_processes_train_and_only_rank_zero_publishes(tmp_path):
    output_dir = tmp_path / "out"
    script = tmp_path / "reports_the_process_group.py"
    script.write_text(REPORTS_THE_PROCESS_GROUP)
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        str(script), str(REPO_ROOT / "training" / "run.py"),
        "--model_type", "vit", "--config_overrides", TINY_VIT,
        "--data_dir", str(tmp_path / "release"), "--make_sample_release", "--sample_num_patients", "20",
        "--sample_image_size", "32", "--cache_dir", str(tmp_path / "cache"), "--output_dir", str(output_dir),
        "--use_cpu", "--do_train", "--do_eval", "--do_predict", "--max_steps", "4", "--logging_steps", "1",
        "--eval_strategy", "steps", "--save_strategy", "steps", "--eval_steps", "2", "--save_steps", "2",
        "--per_device_train_batch_size", "8",
        # The fine-tuning options under DDP; the scaling rule with 2 processes: 0.0032 × 8 × 2 × 2 / 256 = 0.0004.
        "--base_learning_rate", "0.0032", "--gradient_accumulation_steps", "2", "--lr_scheduler_type", "constant",
        "--layer_decay", "0.75", "--drop_path_rate", "0.1", "--ema_decay", "0.5",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    completed = run_in_own_session(command, env=env, cwd=tmp_path)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    assert "2 process(es)" in completed.stdout + completed.stderr
    assert completed.stdout.count("process group still alive at exit: False") == 2, completed.stdout[-3000:]
    assert "terminate called" not in completed.stderr
    state = json.loads((output_dir / "trainer_state.json").read_text())
    assert state["global_step"] == 4
    # The rate the Trainer logs is the optimizer's first group's, the head's: the scaled peak rate.
    rates = [entry["learning_rate"] for entry in state["log_history"] if "learning_rate" in entry]
    assert rates and rates == pytest.approx([0.0032 * 8 * 2 * 2 / 256] * len(rates)), rates
    assert "global batch 32 (8 per device × 2 accumulation × 2 processes)" in completed.stdout + completed.stderr
    assert any("eval_ema_roc_auc" in entry for entry in state["log_history"])
    results = json.loads((output_dir / "all_results.json").read_text())
    assert "eval_roc_auc" in results and "test_roc_auc_ci_low" in results
    for name in ("README.md", "model.safetensors", "roc_curves_test.png", "ipu_config.json"):
        assert (output_dir / name).is_file()
