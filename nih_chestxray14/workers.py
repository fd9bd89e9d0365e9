"""Build worker processes end with the process that started them.

``datasets`` builds with ``num_proc > 1`` in a process pool. If the parent is killed (``kill -9``, the OOM killer), a
worker would otherwise run on, still writing into the half-built cache, until its whole shard is done. Each worker
therefore asks to be ended with its parent: on Linux through ``prctl(PR_SET_PDEATHSIG, SIGKILL)``, elsewhere by a
daemon thread that checks the parent every second.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import multiprocessing
import os
import signal
import sys
import threading
import time
from typing import Optional

_PR_SET_PDEATHSIG = 1
_watched_parent: Optional[int] = None


def _parent_pid() -> Optional[int]:
    """The pid of the pool's parent when this process is a ``multiprocess`` or ``multiprocessing`` child."""
    for module in (sys.modules.get("multiprocess"), multiprocessing):  # datasets' pool comes from multiprocess
        parent = module.parent_process() if module is not None else None
        if parent is not None:
            return parent.pid
    return None


def _watch(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)  # the parent is gone: nothing this worker writes can be used


def end_with_parent() -> None:
    """In a pool worker, arrange to end when the parent process ends; in the main process, do nothing. Idempotent."""
    global _watched_parent
    parent = _parent_pid()
    if parent is None or parent == _watched_parent:
        return
    _watched_parent = parent
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0:
            if os.getppid() != parent:  # the parent died before the request took effect
                os._exit(1)
            return
    threading.Thread(target=_watch, args=(parent,), name="end-with-parent", daemon=True).start()
