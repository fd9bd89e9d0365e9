"""``--push_to_hub``: the finished output_dir goes to the Hub (a local stand-in here) without leaking the token."""

import logging
from pathlib import Path

import pytest

from test_run_recipe import PUBLISHED_FILES
from training.publish import PushError
from training.run import main

pytestmark = pytest.mark.slow

TINY_VIT = "hidden_size=16,num_hidden_layers=1,num_attention_heads=2,intermediate_size=32,image_size=32,patch_size=8"


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """A small synthetic release and its prepared dataset cache, shared by the push tests."""
    return tmp_path_factory.mktemp("push-data")


def push_args(data: Path, output_dir: Path, *extra: str) -> list:
    return [
        "--model_type", "vit", "--config_overrides", TINY_VIT,
        "--data_dir", str(data / "release"), "--make_sample_release", "--sample_num_patients", "20",
        "--sample_image_size", "32", "--cache_dir", str(data / "cache"), "--output_dir", str(output_dir),
        "--use_cpu", "--do_train", "--do_eval", "--do_predict", "--max_steps", "2", "--logging_steps", "1",
        "--eval_strategy", "steps", "--save_strategy", "steps", "--eval_steps", "2", "--save_steps", "2",
        "--push_to_hub", *extra,
    ]


def files_holding(folder: Path, secret: str) -> list:
    return [str(path) for path in folder.rglob("*") if path.is_file() and secret.encode() in path.read_bytes()]


def test_push_uploads_the_model_folder_and_never_writes_the_token(hub, release, tmp_path, caplog, capsys):
    output_dir = tmp_path / "vit-chestxray14"
    with caplog.at_level(logging.DEBUG):
        main(push_args(release, output_dir, "--hub_model_id", "test-user/vit-chestxray14"))
    uploaded = hub.files("test-user/vit-chestxray14")
    assert PUBLISHED_FILES <= set(uploaded)
    # the Hub's evaluation results go with the model, as the Hub reads them: .eval_results/*.yaml
    assert uploaded[".eval_results/nih_chestxray14.yaml"] == (output_dir / ".eval_results" /
                                                               "nih_chestxray14.yaml").read_bytes()
    assert not any(path.startswith("checkpoint-") or path == "training_args.bin" for path in uploaded)
    assert uploaded["README.md"] == (output_dir / "README.md").read_bytes()
    assert uploaded["model.safetensors"] == (output_dir / "model.safetensors").read_bytes()
    assert "model.safetensors" in hub.lfs_files("test-user/vit-chestxray14")
    assert hub.token_leaks() == []
    assert files_holding(output_dir, hub.token) == []
    captured = capsys.readouterr()
    assert hub.token not in caplog.text + captured.out + captured.err


def test_hidden_files_other_than_the_eval_results_stay_local(hub, tmp_path):
    from training.publish import push_output_dir

    output_dir = tmp_path / "model"
    (output_dir / ".eval_results").mkdir(parents=True)
    (output_dir / ".eval_results" / "nih_chestxray14.yaml").write_text("- dataset: {id: x, task_id: t}\n  value: 0.8\n")
    (output_dir / ".eval_results" / ".nih_chestxray14.yaml.x1.partial").write_text("half")
    (output_dir / ".README.md.x2.partial").write_text("half a card")
    (output_dir / ".cache").mkdir()
    (output_dir / ".cache" / "anything").write_text("local")
    (output_dir / "README.md").write_text("card")
    push_output_dir(output_dir, "test-user/hidden")
    uploaded = set(hub.files("test-user/hidden"))
    assert {"README.md", ".eval_results/nih_chestxray14.yaml"} <= uploaded
    assert not [path for path in uploaded if path.endswith(".partial") or path.startswith(".cache")]


def test_a_token_given_as_an_argument_stays_out_of_the_saved_files(hub, release, tmp_path, monkeypatch):
    monkeypatch.delenv("HF_TOKEN")  # the flag is the only place the token comes from
    output_dir = tmp_path / "out"
    main(push_args(release, output_dir, "--hub_token", hub.token))  # no namespace: the token's user is asked
    assert "README.md" in hub.files("test-user/out")
    assert files_holding(output_dir, hub.token) == []  # not in training_args.bin, trainer_state.json, the card...


def test_a_failed_upload_leaves_output_dir_intact_and_says_so(hub, release, tmp_path):
    output_dir = tmp_path / "out"
    hub.fail_next("commit")
    with pytest.raises(PushError) as failure:
        main(push_args(release, output_dir, "--hub_model_id", "test-user/failing"))
    message = str(failure.value)
    assert "test-user/failing" in message and "intact" in message and len(message.splitlines()) == 1
    assert hub.token not in message
    assert PUBLISHED_FILES <= {path.name for path in output_dir.iterdir()}
    assert files_holding(output_dir, hub.token) == []
