"""README.md's examples, executed in order, as a reader would run them in a fresh folder next to a clone.

Python blocks share one namespace; shell blocks run with bash. A block is left out only when the line before it is an
HTML comment saying ``not run: <why>``, and the test checks that each such comment gives a reason.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import List, NamedTuple

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
README = REPO_ROOT / "README.md"

_BLOCK = re.compile(r"(?P<before>[^\n]*)\n```(?P<language>\w*)\n(?P<code>.*?)\n```", re.DOTALL)
_NOT_RUN = re.compile(r"<!-- not run: (?P<why>.+?)-->", re.DOTALL)


class Example(NamedTuple):
    language: str
    code: str
    line: int


def readme_examples(text: str) -> List[Example]:
    """The python and bash blocks of ``text`` in order, without those marked ``<!-- not run: ... -->``."""
    examples = []
    for match in _BLOCK.finditer(text):
        if match.group("language") not in ("python", "bash"):
            continue
        if text[: match.start("language")].rstrip("`\n").endswith("-->"):
            continue  # marked "not run"; test_every_example_left_out_says_why checks the reason
        line = text.count("\n", 0, match.start("code")) + 1
        examples.append(Example(match.group("language"), match.group("code"), line))
    return examples


def test_every_example_left_out_says_why():
    text = README.read_text()
    reasons = [match.group("why").strip() for match in _NOT_RUN.finditer(text)]
    assert reasons, "README.md marks no example as not run; update this test if that is intended"
    assert all(len(reason) > 10 for reason in reasons), reasons
    assert text.count("<!--") == len(reasons), "an HTML comment in README.md that is not a 'not run' marker"


def test_readme_opens_with_the_two_commands():
    first_block = re.search(r"```bash\n(.*?)\n```", README.read_text(), re.DOTALL).group(1)
    commands = [line.split("#")[0].strip() for line in first_block.splitlines() if line.strip()]
    assert commands == ["make demo", "make test"]


@pytest.mark.slow
def test_readme_examples_run_in_order(tmp_path, hub, monkeypatch):
    """Runs every example; the demo trains for real, so this takes about half a minute."""
    for folder in ("metrics", "training"):
        (tmp_path / folder).symlink_to(REPO_ROOT / folder, target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    environment = dict(os.environ, HF_DATASETS_CACHE=str(tmp_path / "hf-datasets-cache"))
    monkeypatch.setenv("HF_DATASETS_CACHE", environment["HF_DATASETS_CACHE"])
    python_bin = Path(sys.executable).parent
    environment["PATH"] = f"{python_bin}{os.pathsep}{environment['PATH']}"

    examples = readme_examples(README.read_text())
    assert [example.language for example in examples].count("bash") >= 2
    namespace = {"__name__": "__readme__"}
    for example in examples:
        if example.language == "python":
            exec(compile(example.code, f"README.md:{example.line}", "exec"), namespace)
        else:
            result = subprocess.run(["bash", "-euo", "pipefail", "-c", example.code], cwd=tmp_path, env=environment,
                                    capture_output=True, text=True, timeout=600)
            assert result.returncode == 0, f"README.md:{example.line} failed:\n{result.stdout}\n{result.stderr}"

    # What the examples promise a reader.
    assert set(namespace["ds"]) == {"train", "validation", "test"}
    assert (tmp_path / "grid.png").is_file()
    assert (tmp_path / "demo-output" / "README.md").is_file()
    assert {"evaluation_test.json", "thresholds.json", "calibration.json", "predictions_test.parquet"} <= {
        path.name for path in (tmp_path / "demo-output").iterdir()}
    assert (tmp_path / "demo-eval" / "evaluation_test.json").is_file()
    assert (tmp_path / "demo-comparison.json").is_file()
    pushed = set(hub.files("me/nih-chestxray14-sample", repo_type="dataset"))
    assert "README.md" in pushed and any(path.startswith("resized-224/") for path in pushed)
