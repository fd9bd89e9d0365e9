"""``python -m training.publish_space``: the page goes to the Hub (a local stand-in) as a self-contained Gradio Space."""

from __future__ import annotations

import io
import logging
import sys

import pytest
import yaml
from huggingface_hub import HfApi

pytest.importorskip("pydicom", reason="the Space's DICOM example needs pydicom (pip install -e '.[space]')")

from space_models import save_tiny_model  # noqa: E402
from training.publish_space import SPACE_FOLDER, main, publish_space, stage_space  # noqa: E402

pytestmark = pytest.mark.slow

MODEL, SPACE = "test-user/vit-chestxray14", "test-user/vit-chestxray14-demo"


@pytest.fixture
def heatmaps_file(tmp_path):
    path = tmp_path / "heatmaps.py"
    path.write_text("def explain(model, image_processor, image, method='auto', findings=None):\n    raise NotImplementedError\n")
    return path


@pytest.fixture
def model_on_hub(hub, tmp_path):
    folder = save_tiny_model(tmp_path / "model")
    HfApi().create_repo(MODEL)
    HfApi().upload_folder(repo_id=MODEL, folder_path=folder)
    return MODEL


def front_matter(readme: bytes) -> dict:
    text = readme.decode()
    return yaml.safe_load(text.split("---\n")[1])


def test_the_space_holds_everything_it_runs_on(hub, model_on_hub, heatmaps_file, caplog, capsys):
    with caplog.at_level(logging.DEBUG):
        assert main([MODEL, SPACE]) == 0
    files = hub.files(SPACE, repo_type="space")
    app_modules = {path.name for path in SPACE_FOLDER.glob("*.py")}
    assert app_modules <= set(files) and "requirements.txt" in files
    assert {path for path in files if path.startswith("examples/")} == {
        "examples/synthetic-cardiomegaly.png", "examples/synthetic-effusion-nodule.png",
        "examples/synthetic-no-finding.png", "examples/synthetic-pneumothorax-monochrome1.dcm",
    }
    metadata = front_matter(files["README.md"])
    assert metadata["sdk"] == "gradio" and metadata["app_file"] == "app.py" and metadata["models"] == [MODEL]
    assert metadata["sdk_version"] == __import__("gradio").__version__
    text = files["README.md"].decode()
    assert f"huggingface.co/{MODEL})" in text and f'Client("{SPACE}")' in text and "me/vit-chestxray14" not in text
    assert hub.repo(SPACE, repo_type="space").sdk == "gradio"
    # What the Space installs covers what its modules import.
    requirements = files["requirements.txt"].decode()
    for package in ("torch", "transformers", "pydicom", "matplotlib", "pylibjpeg"):
        assert f"\n{package}" in "\n" + requirements
    captured = capsys.readouterr()
    assert hub.token_leaks() == [] and hub.token not in caplog.text + captured.out + captured.err


def test_heatmaps_py_is_copied_in_and_examples_are_synthetic_images(hub, model_on_hub, heatmaps_file):
    from PIL import Image

    publish_space(MODEL, SPACE, heatmaps=heatmaps_file)
    files = hub.files(SPACE, repo_type="space")
    assert files["heatmaps.py"] == heatmaps_file.read_bytes()
    image = Image.open(io.BytesIO(files["examples/synthetic-cardiomegaly.png"]))
    assert image.mode == "L" and image.size == (512, 512)


def test_without_heatmaps_py_the_space_is_published_with_a_warning(hub, model_on_hub, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        publish_space(MODEL, SPACE, heatmaps=tmp_path / "missing.py")
    assert "heatmaps.py" not in hub.files(SPACE, repo_type="space")
    assert "the Space will show no heatmaps" in caplog.text


def test_a_second_publish_replaces_files_that_are_gone(hub, model_on_hub, heatmaps_file, tmp_path):
    publish_space(MODEL, SPACE, heatmaps=heatmaps_file)
    HfApi().upload_file(path_or_fileobj=b"old = 1\n", path_in_repo="retired_module.py", repo_id=SPACE,
                        repo_type="space")
    publish_space(MODEL, SPACE, heatmaps=heatmaps_file)
    assert "retired_module.py" not in hub.files(SPACE, repo_type="space")
    assert len(hub.commits(SPACE, repo_type="space")) == 4  # created, published, edited, published


def test_a_model_that_is_not_on_the_hub_stops_before_anything_is_created(hub, capsys):
    assert main(["test-user/never-pushed", SPACE]) == 1
    error = capsys.readouterr().err
    assert "the model test-user/never-pushed is not on the Hub" in error and "--push_to_hub" in error
    assert ("space", SPACE) not in hub.repos


def test_a_failed_upload_says_which_space_and_never_shows_the_token(hub, model_on_hub, capsys):
    hub.fail_next("commit")
    assert main([MODEL, SPACE]) == 1
    error = capsys.readouterr().err
    assert f"publishing the Space {SPACE} failed" in error and hub.token not in error


def test_the_staged_readme_keeps_the_space_yaml(tmp_path):
    folder = stage_space("someone/model", "someone/demo", tmp_path / "staged", heatmaps=None)
    metadata = front_matter((folder / "README.md").read_bytes())
    template = front_matter((SPACE_FOLDER / "README.md").read_bytes())
    assert {key: value for key, value in metadata.items() if key not in ("models", "sdk_version")} == {
        key: value for key, value in template.items() if key not in ("models", "sdk_version")
    }
    assert metadata["models"] == ["someone/model"]


def test_the_space_imports_nothing_its_requirements_do_not_install(tmp_path):
    """Every module the staged Space imports is its own, Python's, gradio's, or installed by its requirements.txt.

    ``training/heatmaps.py`` is staged too when this checkout has it, so the copy the Space runs is checked as well.
    """
    import ast
    import re

    folder = stage_space("someone/model", "someone/demo", tmp_path / "staged")
    own = {path.stem for path in folder.glob("*.py")}
    requirement_names = {re.split(r"[<>=\[ ]", line)[0].lower() for line in
                         (folder / "requirements.txt").read_text().splitlines() if line and not line.startswith("#")}
    import_names = {"pillow": "PIL", "huggingface_hub": "huggingface_hub", "pylibjpeg-libjpeg": "libjpeg",
                    "pylibjpeg-openjpeg": "openjpeg"}
    installed = {import_names.get(name, name) for name in requirement_names} | {"gradio", "gradio_client"}
    # examples.write_examples draws new examples with nih_chestxray14; a Space has examples/ and never calls it.
    drawn_here_only = {("examples.py", "nih_chestxray14")}
    for path in folder.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
            for name in names:
                top = name.split(".")[0]
                if top in sys.stdlib_module_names or top in own or top in installed:
                    continue
                assert (path.name, top) in drawn_here_only, f"{path.name} imports {name}, which the Space lacks"
