"""``python space/app.py``: the command line, and the ``/predict`` API endpoint through ``gradio_client``."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("gradio", reason="the Space needs gradio (pip install -e '.[space]')")
pytest.importorskip("pydicom", reason="the Space needs pydicom (pip install -e '.[space]')")

from dicom_files import exact_window, write_dicom  # noqa: E402
from space_models import reference_probabilities, save_tiny_model, synthetic_image  # noqa: E402

from nih_chestxray14 import LABELS  # noqa: E402

pytestmark = pytest.mark.slow

APP = Path(__file__).resolve().parents[1] / "space" / "app.py"
START_TIMEOUT_S = 180


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_app(*args: str, tmp_path: Path, **kwargs) -> subprocess.Popen:
    environment = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", GRADIO_TEMP_DIR=str(tmp_path / "uploads"))
    return subprocess.Popen([sys.executable, str(APP), *args], env=environment, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kwargs)


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    """The app started as a user starts it, on a free port of 127.0.0.1; stopped after the module's tests."""
    root = tmp_path_factory.mktemp("space-app")
    folder = save_tiny_model(root / "model")
    port = _free_port()
    process = run_app("--model", str(folder), "--port", str(port), tmp_path=root)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + START_TIMEOUT_S
    try:
        while True:
            if process.poll() is not None:
                pytest.fail(f"the app exited with {process.returncode}:\n{process.stdout.read()}")
            try:
                urllib.request.urlopen(url, timeout=5)
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"the app did not answer on {url} within {START_TIMEOUT_S} s")
                time.sleep(0.5)
        yield url, folder, root
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        process.stdout.close()


def test_predict_returns_the_14_probabilities_of_a_png(app_url, tmp_path):
    from gradio_client import Client, handle_file

    url, folder, _ = app_url
    image = Image.fromarray(synthetic_image(seed=5))
    image.save(tmp_path / "chest.png")
    result = Client(url, verbose=False).predict(handle_file(str(tmp_path / "chest.png")), api_name="/predict")
    assert list(result) == list(LABELS)
    expected = reference_probabilities(folder, image)
    np.testing.assert_allclose([result[k] for k in LABELS], [expected[k] for k in LABELS], atol=1e-4)


def test_predict_reads_dicom_and_leaves_no_upload_behind(app_url, tmp_path):
    from gradio_client import Client, handle_file

    url, folder, root = app_url
    pixels = synthetic_image(seed=6)
    path = write_dicom(tmp_path / "chest.dcm", 400 + 10 * pixels.astype(np.int32), bits_stored=12,
                       window=exact_window(400, 10))
    result = Client(url, verbose=False).predict(handle_file(str(path)), api_name="/predict")
    expected = reference_probabilities(folder, Image.fromarray(pixels))
    np.testing.assert_allclose([result[k] for k in LABELS], [expected[k] for k in LABELS], atol=1e-4)
    assert list((root / "uploads").rglob("chest.dcm")) == []


def test_predict_answers_a_non_image_with_its_message(app_url, tmp_path):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    url, _, _ = app_url
    (tmp_path / "notes.dcm").write_text("not a scan")
    with pytest.raises(AppError, match="'notes.dcm' is not a DICOM file"):
        Client(url, verbose=False).predict(handle_file(str(tmp_path / "notes.dcm")), api_name="/predict")


def test_a_model_that_cannot_be_loaded_is_one_line_of_error(tmp_path, capsys):
    from app import main

    assert main(["--model", str(tmp_path / "missing-model")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: cannot load the model") and len(error.strip().splitlines()) == 1


def test_the_command_line_names_its_options(capsys):
    from app import main

    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert all(option in text for option in ("--model", "--host", "--port", "127.0.0.1"))


def test_the_recipes_heatmaps_draw_over_the_page(tmp_path):
    """The real wiring: training/heatmaps.py's explain, loaded as the page loads it, on a model saved by the recipe."""
    import heatmap
    from app import FindingsPage
    from findings import FindingsModel

    if not heatmap.CANDIDATES[1].is_file():
        pytest.skip(f"{heatmap.CANDIDATES[1].name} is not in this checkout yet: the page shows no heatmap without it")
    page = FindingsPage(FindingsModel.load(str(save_tiny_model(tmp_path / "model"))))
    view = Image.fromarray(synthetic_image(seed=7, size=64))
    drawn, note = page.heatmap("Effusion", view)
    assert note.startswith("Heatmap of **Effusion**"), note
    assert drawn.size == view.size and drawn.mode == "RGB"
    assert not np.array_equal(np.asarray(drawn), np.asarray(view.convert("RGB")))
