"""Write the data the IPU tests read: a synthetic release exported to Parquet by the main environment.

Run with the main environment's Python (datasets 5), as ``make test-ipu`` does::

    .venv/bin/python tests/ipu_env/make_export.py FOLDER

``FOLDER/export`` is what ``python -m nih_chestxray14 export`` writes for the ``resized-224`` config, which is how an
IPU user gets the data into the IPU environment (datasets 3). ``FOLDER/expected.json`` holds, per split, what the
main environment's ``datasets`` reads back from that export (image ids, labels, image modes and sizes), so the IPU
tests can check that their older ``datasets`` reads the same rows.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import datasets

from nih_chestxray14.__main__ import main as nih_chestxray14_cli
from nih_chestxray14.sample import make_release

CONFIG = "resized-224"


def main(folder: Path) -> None:
    release = make_release(folder / "release", num_patients=40, images_per_patient=3, image_size=48,
                           layout="images", signal=True, seed=0)
    cache = folder / "hf-cache"
    status = nih_chestxray14_cli(["export", "--data-dir", str(release), "--config", CONFIG, "--cache-dir", str(cache),
                                  str(folder / "export")])
    if status != 0:
        sys.exit(f"{Path(__file__).name}: the export command failed with status {status}")
    exported = datasets.load_dataset(str(folder / "export"), CONFIG, cache_dir=str(cache))
    expected = {
        split: {
            "image_id": list(dataset["image_id"]),
            "labels": [list(row) for row in dataset["labels"]],
            "image": [[image.mode, list(image.size)] for image in dataset["image"]],
        }
        for split, dataset in exported.items()
    }
    (folder / "expected.json").write_text(json.dumps(expected), encoding="utf-8")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: {Path(sys.argv[0]).name} FOLDER")
    main(Path(sys.argv[1]))
