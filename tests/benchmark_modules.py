"""Load a script of ``benchmarks/`` as a module, for the benchmarks' smoke tests."""

import importlib.util
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_benchmark(name: str):
    """``benchmarks/<name>.py``, imported as ``benchmark_<name>``. Scripts that import a sibling benchmark need
    ``benchmarks/`` on ``sys.path`` first (``monkeypatch.syspath_prepend``)."""
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module
