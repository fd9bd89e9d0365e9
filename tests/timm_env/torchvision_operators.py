"""Lets a CUDA build of torchvision import beside a CPU-only torch, for the timm tests' environment only.

timm imports torchvision (its transforms, and ``FrozenBatchNorm2d``), and so does transformers once torchvision is
installed. The torchvision wheels on PyPI are built for CUDA; beside the CPU-only torch wheel that CI installs, their
compiled operators don't load, and torchvision then fails at import time: it registers fake (shape-only) kernels for
two of those operators, ``torchvision::nms`` and ``torchvision::qnms``, whether or not they loaded, and torch refuses
a kernel for an operator it doesn't know.

:func:`declare_missing_operators` declares those two operator schemas (``torch.library.define``, with torchvision's
signatures) in that case only. Nothing else changes: the pure-Python parts used here (transforms, layers) are
torchvision's own, and no test calls either operator. With a torchvision built for the installed torch (a normal
install) the first import works and nothing is declared. The recipe never needs this; it is why timm's tests have an
environment of their own (``make test-timm``) instead of torchvision in the one that ``make demo`` uses.

If torchvision fails to import in another way, the error is raised as it is, so that the timm tests fail loudly
rather than stop running.
"""

from __future__ import annotations

import sys

MISSING_OPERATOR = "operator torchvision::nms does not exist"
# torchvision's signatures of the operators it registers fake kernels for unconditionally (its csrc/ops/nms.cpp)
OPERATOR_SCHEMAS = {
    "torchvision::nms": "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "torchvision::qnms": "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}


def _forget(package: str) -> None:
    for name in [name for name in sys.modules if name == package or name.startswith(package + ".")]:
        del sys.modules[name]


def declare_missing_operators() -> bool:
    """Import torchvision, declaring the two operators first if its compiled ones can't load. Returns whether they
    were declared. Call it before anything imports transformers or timm.

    Raises:
        ModuleNotFoundError: without torchvision.
        RuntimeError: when torchvision fails to import in another way than the one described above.
    """
    try:
        import torchvision  # noqa: F401
        return False
    except RuntimeError as error:
        if MISSING_OPERATOR not in str(error):
            raise
    import torch

    _forget("torchvision")
    for name, schema in OPERATOR_SCHEMAS.items():
        torch.library.define(name, schema)
    import torchvision  # noqa: F401,F811

    return True
