"""The Space's page in a real browser: headless Chromium (Debian's package) driven by Playwright.

The app is served on 127.0.0.1 from this process with a tiny random ViT saved as the recipe saves one, its
``thresholds.json``, and a test double of ``explain`` (the heatmap function of ``training/heatmaps.py``) that records
what it was asked. Each test opens a fresh page, uploads a file and reads what the page shows.

Set ``UPDATE_SPACE_SCREENSHOT=1`` to also rewrite ``space/screenshot.png``, the README's picture of the page, and
``SPACE_SCREENSHOT_MODEL`` to a model folder (``demo-output``) to take it with that model rather than the test's.
"""

from __future__ import annotations

import os
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Dict, List

import numpy as np
import pytest
from PIL import Image

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]
"""Headless Chromium as root on a machine without network: no sandbox, and no calls home at start-up."""

REPO_ROOT = Path(__file__).resolve().parents[1]
README_SCREENSHOT = REPO_ROOT / "space" / "screenshot.png"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium)"),
]
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')")
pytest.importorskip("gradio", reason="the Space needs gradio (pip install -e '.[space]')")
pytest.importorskip("pydicom", reason="the Space needs pydicom (pip install -e '.[space]')")

from app import build_page, launch  # noqa: E402
from dicom_files import IDENTIFYING, NOT_IDENTIFYING, exact_window, write_dicom  # noqa: E402
from examples import write_examples  # noqa: E402
from findings import FindingsModel  # noqa: E402
from space_models import (  # noqa: E402
    reference_probabilities, save_tiny_model, synthetic_image, thresholds_around, write_thresholds,
)

RESULT_TIMEOUT_MS = 60_000


@dataclass
class RecordingExplain:
    """A test double of ``heatmaps.explain``: a left-to-right ramp at the image's size, and a record of each call."""

    calls: List[Dict] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, model, image_processor, image, method="auto", findings=None):
        with self.lock:
            self.calls.append({"findings": list(findings or []), "size": image.size, "mode": image.mode})
        ramp = np.tile(np.linspace(0.0, 1.0, image.width, dtype=np.float32), (image.height, 1))
        return SimpleNamespace(probabilities={}, heatmaps={name: ramp for name in findings})


@dataclass
class Served:
    url: str
    model_folder: Path
    thresholds: Dict[str, float]
    uploads: Path
    explain: RecordingExplain
    files: Dict[str, Path]
    images: Dict[str, Image.Image]  # the 8-bit image each upload should decode to


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _serve(findings_model, explain, examples, patch: pytest.MonkeyPatch, uploads: Path):
    """Serve the page from this process; Gradio reads GRADIO_TEMP_DIR on every upload, so ``patch`` must outlive it."""
    patch.setenv("GRADIO_TEMP_DIR", str(uploads))
    patch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    blocks = build_page(findings_model, explain=explain, examples=examples)
    _, url, _ = launch(blocks, "127.0.0.1", _free_port(), prevent_thread_lock=True, quiet=True)
    return blocks, url


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("space-browser")
    folder = save_tiny_model(root / "tiny-random-vit")
    images = {name: Image.fromarray(synthetic_image(seed)) for seed, name in enumerate(["png", "mono1", "window"])}
    thresholds = thresholds_around(reference_probabilities(folder, images["png"]))
    write_thresholds(folder, thresholds)

    files = {"png": root / "chest.png", "mono1": root / "mono1.dcm", "window": root / "window.dcm",
             "text": root / "report.dcm"}
    images["png"].save(files["png"])
    # MONOCHROME1, 16 bits, no window: the full range is used, then inverted back.
    mono1 = (255 - np.asarray(images["mono1"]).astype(np.uint16)) * 257
    write_dicom(files["mono1"], mono1, bits_stored=16, photometric="MONOCHROME1",
                tags={**IDENTIFYING, **NOT_IDENTIFYING})
    # 12 bits with a LINEAR window that shows stored value 600 + 12 p as grey level p.
    window = 600 + 12 * np.asarray(images["window"]).astype(np.int32)
    write_dicom(files["window"], window, bits_stored=12, window=exact_window(600, 12), tags={"ViewPosition": "AP"})
    files["text"].write_text("Impression: no acute cardiopulmonary abnormality.\n")

    uploads = root / "gradio-uploads"
    explain = RecordingExplain()
    examples = write_examples(root / "examples", size=128)
    with pytest.MonkeyPatch.context() as patch:
        blocks, url = _serve(FindingsModel.load(str(folder)), explain, examples, patch, uploads)
        try:
            yield Served(url, folder, thresholds, uploads, explain, files, images)
        finally:
            blocks.close()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser, served):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    tab = context.new_page()
    tab.goto(served.url)
    tab.wait_for_selector("#upload input[type=file]", state="attached")
    try:
        yield tab
    finally:
        context.close()


def upload(page, path: Path) -> None:
    page.set_input_files("#upload input[type=file]", str(path))


def read_findings(page) -> List[Dict]:
    """The chart's rows as the page shows them: finding, probability (4 decimals), call and threshold texts."""
    page.wait_for_function("document.querySelectorAll('#findings tr[data-finding]').length === 14",
                           timeout=RESULT_TIMEOUT_MS)
    return page.eval_on_selector_all("#findings tr[data-finding]", """rows => rows.map(row => ({
        finding: row.querySelector('.finding').innerText.trim(),
        probability: parseFloat(row.querySelector('.probability').innerText),
        call: row.querySelector('.call') ? row.querySelector('.call').innerText.trim() : null,
        threshold: row.querySelector('.threshold') ? row.querySelector('.threshold').innerText.trim() : null,
    }))""")


def check_against_the_model(rows: List[Dict], served: Served, image: Image.Image) -> None:
    """The page's 14 rows equal the model's own probabilities (to 1e-4), sorted, with the calls of thresholds.json."""
    expected = reference_probabilities(served.model_folder, image)
    assert sorted(row["finding"] for row in rows) == sorted(expected)
    shown = [row["probability"] for row in rows]
    assert shown == sorted(shown, reverse=True), "the chart is not sorted by probability"
    for row in rows:
        assert abs(row["probability"] - expected[row["finding"]]) <= 1e-4, row
        threshold = served.thresholds[row["finding"]]
        positive = expected[row["finding"]] >= threshold
        assert row["call"] == ("positive" if positive else "negative"), row
        assert row["threshold"] == f"{'≥' if positive else '<'} {threshold:.4f}", row


def message(page) -> str:
    return page.locator("#message").inner_text()


def test_a_png_upload_shows_the_models_probabilities_and_calls(page, served, tmp_path):
    upload(page, served.files["png"])
    rows = read_findings(page)
    check_against_the_model(rows, served, served.images["png"])
    assert [row["call"] for row in rows].count("positive") == 5  # thresholds.json was written to call five
    assert "Read a PNG image of 96 × 96 pixels" in message(page)
    assert "Youden's J" in page.locator("#operating-point").inner_text()
    assert "not a medical device" in page.locator("#disclaimer").inner_text()
    # The heatmap of the most probable finding, drawn from explain's map at the image's own size.
    page.wait_for_function("document.querySelector('#heatmap-note').innerText.includes('Heatmap of')")
    assert page.locator("#heatmap img").count() == 1
    assert served.explain.calls[-1] == {"findings": [rows[0]["finding"]], "size": (96, 96), "mode": "RGB"}
    page.screenshot(path=str(tmp_path / "png-upload.png"), full_page=True)
    assert (tmp_path / "png-upload.png").stat().st_size > 10_000


def test_picking_another_finding_redraws_its_heatmap(page, served):
    upload(page, served.files["png"])
    rows = read_findings(page)
    wanted = rows[-1]["finding"]  # the least probable one
    page.locator("#heatmap-finding input").click()
    page.get_by_role("option", name=wanted, exact=True).click()
    page.wait_for_function(
        f"document.querySelector('#heatmap-note').innerText.includes('Heatmap of {wanted}')",
        timeout=RESULT_TIMEOUT_MS,
    )
    assert served.explain.calls[-1]["findings"] == [wanted]


def test_a_monochrome1_dicom_is_inverted_and_shows_no_identifying_tag(page, served, tmp_path):
    upload(page, served.files["mono1"])
    check_against_the_model(read_findings(page), served, served.images["mono1"])
    assert "inverted" in message(page) and "MONOCHROME1" in message(page)
    tags = page.locator("#tags").inner_text()
    for shown in ("PA", "female", "58 years", "DX", "CHEST", "96 × 96, 16 bits stored, MONOCHROME1"):
        assert shown in tags
    everything = page.content() + page.locator("body").inner_text()
    for keyword, value in IDENTIFYING.items():
        for part in value.split("^"):
            assert part not in everything, f"the page shows {keyword}"
    # Nothing of the upload is left on the server either.
    patient = IDENTIFYING["PatientName"].encode()
    kept = [path for path in served.uploads.rglob("*") if path.is_file() and patient in path.read_bytes()]
    assert kept == []
    page.screenshot(path=str(tmp_path / "dicom-monochrome1.png"), full_page=True)


def test_a_dicom_window_is_applied(page, served, tmp_path):
    upload(page, served.files["window"])
    check_against_the_model(read_findings(page), served, served.images["window"])
    assert "window (centre 2130.5, width 3061)" in page.locator("#tags").inner_text()
    page.screenshot(path=str(tmp_path / "dicom-window.png"), full_page=True)


def test_a_text_file_named_dcm_gets_a_message_not_a_traceback(page, served, tmp_path):
    upload(page, served.files["text"])
    page.wait_for_function("document.querySelector('#message').innerText.includes('Cannot read this file')",
                           timeout=RESULT_TIMEOUT_MS)
    text = message(page)
    assert "'report.dcm' is not a DICOM file" in text and "Upload a chest X-ray as DICOM, PNG or JPEG" in text
    assert page.locator("#findings tr[data-finding]").count() == 0
    assert "Traceback" not in page.locator("body").inner_text()
    assert page.locator(".toast-body").count() == 0  # no Gradio error pop-up: the message is on the page
    page.screenshot(path=str(tmp_path / "not-a-dicom.png"), full_page=True)


def test_a_synthetic_example_can_be_tried_with_a_click(page, served):
    page.get_by_text("synthetic-cardiomegaly.png", exact=True).click()
    rows = read_findings(page)
    image = Image.open(next(path for path in (served.files["png"].parent / "examples").iterdir()
                            if path.name == "synthetic-cardiomegaly.png")).convert("L")
    check_against_the_model(rows, served, image)


def test_the_readme_screenshot_is_taken_from_the_page(browser, served, tmp_path, monkeypatch):
    """The README's picture: the DICOM example on a page with the real heatmap function (when it is present)."""
    from findings import FindingsModel as Model

    examples = write_examples(tmp_path / "examples", size=256)
    model = os.environ.get("SPACE_SCREENSHOT_MODEL") or str(served.model_folder)
    blocks, url = _serve(Model.load(model), None, examples, monkeypatch, served.uploads)
    try:
        context = browser.new_context(viewport={"width": 1400, "height": 860})
        tab = context.new_page()
        tab.goto(url)
        tab.get_by_text(examples[-1].name, exact=True).click()
        read_findings(tab)
        tab.wait_for_function("document.querySelector('#heatmap-note').innerText.length > 0")
        tab.wait_for_timeout(500)  # let the images finish drawing
        shot = tmp_path / "page.png"
        tab.screenshot(path=str(shot), full_page=True)
        context.close()
    finally:
        blocks.close()
    picture = Image.open(shot)
    assert picture.width == 1400 and picture.height >= 700
    if os.environ.get("UPDATE_SPACE_SCREENSHOT") == "1":
        scale = 1000 / picture.width
        small = picture.convert("RGB").resize((1000, round(picture.height * scale)), Image.Resampling.LANCZOS)
        small.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(README_SCREENSHOT, optimize=True)
    assert README_SCREENSHOT.is_file(), "run with UPDATE_SPACE_SCREENSHOT=1 to write space/screenshot.png"
    assert README_SCREENSHOT.stat().st_size < 300_000
    assert "space/screenshot.png" in (REPO_ROOT / "README.md").read_text()

