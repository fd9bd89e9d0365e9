"""A page to try a chest X-ray classifier trained by the recipe: upload a PNG, JPEG or DICOM file, see the 14 findings.

    python space/app.py --model demo-output            # a folder written by training/run.py
    python space/app.py --model me/vit-chestxray14     # or the Hub id of one

It serves on 127.0.0.1 (``--host``, ``--port``; on a Space the platform's ``GRADIO_SERVER_NAME`` and
``GRADIO_SERVER_PORT`` apply). Without ``--model`` it loads the model that ``README.md`` beside it links (the Space's
``models:``). The page shows the probabilities as a bar chart sorted by probability, positive/negative calls at the
model's ``thresholds.json``, the few DICOM tags that identify no one, and a heatmap for a finding the user picks.

Its API endpoint ``/predict`` takes one image file and returns ``{label: probability}`` for the 14 findings::

    from gradio_client import Client, handle_file
    Client("http://127.0.0.1:7860/").predict(handle_file("xray.dcm"), api_name="/predict")

An upload is read once and then deleted from the server's upload folder: nothing of the file, identifying DICOM tags
included, stays on the server.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import gradio as gr
from PIL import Image

from examples import example_files
from findings import FindingsModel, ModelLoadError, model_view
from heatmap import HeatmapsUnavailable, load_explain, overlay
from page import CSS, DISCLAIMER, findings_chart, operating_point_text, tag_table
from radiograph import Radiograph, UnreadableImageError, read_radiograph

logger = logging.getLogger("chestxray14_space")

APP_FOLDER = Path(__file__).resolve().parent
NOTHING_YET = "Upload a chest X-ray (PNG, JPEG or DICOM), or pick one of the synthetic examples below."


class FindingsPage:
    """The page's callbacks around one loaded model; ``explain`` is loaded on the first heatmap unless given."""

    def __init__(self, findings_model: FindingsModel, explain: Optional[Callable] = None):
        self.findings_model = findings_model
        self._explain = explain
        self._explain_error: Optional[str] = None

    # -- callbacks ---------------------------------------------------------------------------------------------------
    def analyse(self, path: Optional[str]) -> Tuple[Any, ...]:
        """An uploaded or example file → (message, chart, tags, heatmap finding, heatmap image, heatmap note, view).

        Never raises: a file that can't be read gives its message in the first output and empties the others.
        """
        if not path:
            return self._empty(NOTHING_YET)
        try:
            radiograph = read_radiograph(path)
        except UnreadableImageError as error:
            return self._empty(f"**Cannot read this file.** {error}")
        except Exception as error:  # noqa: BLE001 - the page shows a message, the log keeps the traceback
            logger.exception("reading %s failed", Path(path).name)
            return self._empty(f"**Cannot read '{Path(path).name}'** ({type(error).__name__}).")
        view = model_view(radiograph.image)
        probabilities = self.findings_model.probabilities(view)
        top = max(probabilities, key=probabilities.get)
        heatmap_image, heatmap_note = self.heatmap(top, view)
        return (
            _summary(radiograph, view),
            findings_chart(probabilities, self.findings_model.operating_point),
            tag_table(radiograph.tags),
            gr.update(value=top, interactive=True),
            heatmap_image,
            heatmap_note,
            view,
        )

    def analyse_upload(self, path: Optional[str]) -> Tuple[Any, ...]:
        """:meth:`analyse`, then delete the uploaded copy."""
        try:
            return self.analyse(path)
        finally:
            _forget_upload(path)

    def heatmap(self, finding: Optional[str], view: Optional[Image.Image]) -> Tuple[Optional[Image.Image], str]:
        """(overlay image, note) for ``finding`` on the image the model saw; the plain image and why, if none."""
        if view is None or not finding:
            return None, ""
        explain = self._load_explain()
        if explain is None:
            return view, self._explain_error or ""
        try:
            explanation = explain(self.findings_model.model, self.findings_model.image_processor, view.convert("RGB"),
                                  findings=[finding])
            drawn = overlay(view, explanation.heatmaps[finding])
        except Exception as error:  # noqa: BLE001 - a failed heatmap must not take the probabilities with it
            logger.exception("the heatmap of %s failed", finding)
            reason = (str(error).strip().splitlines() or [""])[0]
            return view, f"The heatmap of {finding} could not be computed ({type(error).__name__}: {reason})."
        return drawn, f"Heatmap of **{finding}**: brighter is where the model's score for it depends on most."

    def predict(self, image: gr.FileData) -> Dict[str, float]:
        """The 14 findings' probabilities for one X-ray file (PNG, JPEG or DICOM), in the model's label order."""
        path = image["path"] if isinstance(image, dict) else image.path
        try:
            radiograph = read_radiograph(path, name=(image.get("orig_name") if isinstance(image, dict) else None))
        except UnreadableImageError as error:
            raise gr.Error(str(error)) from None
        finally:
            _forget_upload(path)
        return self.findings_model.probabilities(model_view(radiograph.image))

    def clear(self) -> Tuple[Any, ...]:
        """The outputs of a page with nothing uploaded."""
        return self._empty(NOTHING_YET)

    # -- helpers -----------------------------------------------------------------------------------------------------
    def _load_explain(self) -> Optional[Callable]:
        if self._explain is None and self._explain_error is None:
            try:
                self._explain = load_explain()
            except HeatmapsUnavailable as error:
                self._explain_error = f"No heatmap: {error}."
            except Exception as error:  # noqa: BLE001 - a broken heatmaps.py must not break the page
                logger.exception("loading heatmaps.py failed")
                self._explain_error = f"No heatmap: heatmaps.py could not be loaded ({type(error).__name__})."
        return self._explain

    def _empty(self, message: str) -> Tuple[Any, ...]:
        return message, "", "", gr.update(value=None, interactive=False), None, "", None


def build_page(findings_model: FindingsModel, explain: Optional[Callable] = None,
               examples: Optional[Sequence[Path]] = None) -> gr.Blocks:
    """The page for ``findings_model``.

    Args:
        findings_model: the loaded model.
        explain: the heatmap function; by default ``explain`` of ``heatmaps.py``, loaded on first use.
        examples: example files to offer; by default :func:`examples.example_files`.
    """
    page = FindingsPage(findings_model, explain)
    examples = list(example_files(APP_FOLDER) if examples is None else examples)
    title = f"Chest X-ray findings: {_model_title(findings_model.name)}"
    with gr.Blocks(title=title, analytics_enabled=False) as blocks:
        gr.Markdown(f"# {title}")
        gr.Markdown(DISCLAIMER, elem_id="disclaimer")
        with gr.Row():
            with gr.Column(scale=1):
                upload = gr.File(label="Chest X-ray: PNG, JPEG or DICOM (.dcm)", type="filepath", elem_id="upload")
                message = gr.Markdown(NOTHING_YET, elem_id="message")
                tags = gr.HTML(elem_id="tags")
                example_area = gr.Column()
            with gr.Column(scale=2):
                chart = gr.HTML(elem_id="findings")
                gr.Markdown(operating_point_text(findings_model.operating_point), elem_id="operating-point")
            with gr.Column(scale=1):
                finding = gr.Dropdown(choices=list(findings_model.labels), value=None, label="Heatmap for",
                                      interactive=False, elem_id="heatmap-finding")
                heatmap_image = gr.Image(label="Where the model looks", type="pil", interactive=False,
                                         elem_id="heatmap")
                heatmap_note = gr.Markdown(elem_id="heatmap-note")
        view = gr.State(None)
        outputs = [message, chart, tags, finding, heatmap_image, heatmap_note, view]
        upload.upload(page.analyse_upload, inputs=[upload], outputs=outputs, api_visibility="private")
        upload.clear(page.clear, outputs=outputs, api_visibility="private")
        if examples:
            with example_area:
                gr.Examples(examples=[[str(path)] for path in examples], inputs=[upload], outputs=outputs,
                            fn=page.analyse, cache_examples=False, run_on_click=True, api_visibility="private",
                            example_labels=[path.name for path in examples],
                            label="Synthetic examples (drawn by a program, not real patients)")
        finding.input(page.heatmap, inputs=[finding, view], outputs=[heatmap_image, heatmap_note],
                      api_visibility="private")
        gr.api(page.predict, api_name="predict")
    return blocks


def launch(blocks: gr.Blocks, host: Optional[str] = None, port: Optional[int] = None, **options: Any):
    """Serve ``blocks`` with the page's styles; ``host``/``port`` None let Gradio decide (127.0.0.1:7860 here).

    Returns what ``gr.Blocks.launch`` returns: ``(app, local_url, share_url)``.
    """
    theme = gr.themes.Default(font=["system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])
    return blocks.launch(server_name=host, server_port=port, css=CSS, theme=theme, run_history=False,
                         footer_links=["api"], **options)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default_model = _linked_model()
    parser.add_argument("--model", default=default_model, required=default_model is None,
                        help="a folder written by training/run.py or a Hub model id"
                        + (f" (default: {default_model}, linked by README.md)" if default_model else ""))
    parser.add_argument("--host", default=None,
                        help="address to serve on (default: $GRADIO_SERVER_NAME, else 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None,
                        help="port to serve on (default: $GRADIO_SERVER_PORT, else 7860 or the next free one)")
    parser.add_argument("--open-browser", action="store_true", help="open the page in the default web browser")
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        findings_model = FindingsModel.load(args.model)
    except ModelLoadError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    launch(build_page(findings_model), args.host, args.port, inbrowser=args.open_browser)
    return 0


def _summary(radiograph: Radiograph, view: Image.Image) -> str:
    """The message above the tags: what was read, and what was done to it."""
    width, height = radiograph.image.size
    lines = [f"Read a {radiograph.kind} image of {width} × {height} pixels."]
    lines += list(radiograph.notes)
    if view.size != radiograph.image.size:
        lines.append(f"The model looks at its central {view.width} × {view.height} square, as in training.")
    return " ".join(lines)


def _model_title(name: str) -> str:
    """A Hub id as it is; a folder by its own name (the rest of its path says nothing to a visitor)."""
    folder = Path(name).expanduser()
    return folder.resolve().name if folder.is_dir() else name


def _forget_upload(path: Optional[str]) -> None:
    """Delete a file that a user uploaded, if it lies in Gradio's upload folder; other paths are left alone."""
    if not path:
        return
    from gradio.utils import get_upload_folder

    upload = Path(path).resolve()
    folder = Path(get_upload_folder()).resolve()
    if folder in upload.parents and upload.is_file():
        upload.unlink()
        if upload.parent != folder and not any(upload.parent.iterdir()):
            upload.parent.rmdir()


def _linked_model() -> Optional[str]:
    """The first model of the ``models:`` list in README.md beside this file, if there is one."""
    readme = APP_FOLDER / "README.md"
    if not readme.is_file():
        return None
    from huggingface_hub import metadata_load

    models = (metadata_load(readme) or {}).get("models") or []
    return str(models[0]) if models else None


if __name__ == "__main__":
    sys.exit(main())
