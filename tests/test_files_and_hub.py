"""The project's one home for atomic writes and for telling Hub ids and secrets apart."""

import doctest

import pytest

import nih_chestxray14.hub
from nih_chestxray14.files import atomic_path, atomic_write
from nih_chestxray14.hub import is_hub_id, redact_secrets


def test_atomic_write_replaces_the_whole_file(tmp_path):
    target = tmp_path / "card.md"
    target.write_text("old")
    atomic_write(target, "new text")
    assert target.read_text() == "new text"
    assert [path.name for path in tmp_path.iterdir()] == ["card.md"]


def test_a_failed_write_leaves_the_old_file_and_no_leftovers(tmp_path):
    target = tmp_path / "thresholds.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as partial:
            partial.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert [path.name for path in tmp_path.iterdir()] == ["thresholds.json"]


def test_hub_ids_and_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "me").mkdir()
    (tmp_path / "me" / "model").mkdir()
    assert is_hub_id("google/vit-base-patch16-224-in21k")
    assert is_hub_id("nih_chestxray14")
    assert not is_hub_id("me/model")  # exists here: a folder
    assert not is_hub_id("~/models/x")
    assert not is_hub_id("/abs/path")
    assert not is_hub_id(None)


def test_tokens_are_redacted_from_the_environment_and_by_shape(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "secret-token-value")
    text = redact_secrets("failed with secret-token-value and hf_" + "x" * 30)
    assert "secret-token-value" not in text and "hf_x" not in text
    assert text.count("<redacted>") == 2


def test_module_docstring_examples_run():
    assert doctest.testmod(nih_chestxray14.hub).failed == 0
