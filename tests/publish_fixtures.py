"""Fixtures for the publishing tests: one small synthetic release and one datasets cache,
shared by the session (names prefixed ``publish_`` so they never shadow the builder tests' fixtures)."""

from pathlib import Path

import pytest

EXPORTED_CONFIGS = ("default", "resized-224")


@pytest.fixture(scope="session")
def publish_release(tmp_path_factory) -> Path:
    """A synthetic NIH release in NIH's archive layout: 12 patients, 24 PNGs of 256 px."""
    from nih_chestxray14.sample import make_release

    return make_release(tmp_path_factory.mktemp("release"), num_patients=12, images_per_patient=2, image_size=256,
                        layout="archives", seed=5)


@pytest.fixture(scope="session")
def publish_cache(tmp_path_factory) -> Path:
    """A datasets cache folder that every publishing test shares, so each config is built once."""
    return tmp_path_factory.mktemp("datasets-cache")


@pytest.fixture(scope="session")
def publish_export(publish_release, publish_cache, tmp_path_factory) -> Path:
    """``publish_release`` exported (configs default and resized-224) by the command line, with small shards."""
    from nih_chestxray14.__main__ import main

    out = tmp_path_factory.mktemp("export") / "nih-chestxray14"
    argv = ["export", "--data-dir", str(publish_release), "--cache-dir", str(publish_cache),
            "--max-shard-size", "200KB"]
    for config in EXPORTED_CONFIGS:
        argv += ["--config", config]
    assert main([*argv, str(out)]) == 0
    return out
