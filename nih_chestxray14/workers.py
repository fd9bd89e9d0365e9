"""The processes of a build end with the process that started them.

``datasets`` builds with ``num_proc > 1`` in a process pool, plus a queue-manager process. If the parent is killed
(``kill -9``, the OOM killer), a worker would otherwise run on, still writing into the half-built cache until its
whole shard is done, and the manager would wait forever. So:

- while :func:`children_end_with_this_process` is active, every process forked from the main thread asks the kernel
  to kill it when its parent dies (Linux ``prctl(PR_SET_PDEATHSIG, SIGKILL)``, through ``os.register_at_fork``);
- each worker also calls :func:`end_with_parent` when it starts generating, which covers the ``spawn`` and
  ``forkserver`` start methods and, outside Linux, watches the parent from a thread once a second.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import multiprocessing
import os
import signal
import sys
import threading
import time
from typing import Iterator, Optional

_PR_SET_PDEATHSIG = 1
_building = False  # set in the parent while a build runs; inherited by the processes it forks
_forking = {"from_main_thread": False, "parent": 0}
_watched_parent: Optional[int] = None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_me_with_parent() -> bool:
    """Ask the kernel to kill this process when its parent dies; ``False`` where that is not available."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch(parent: int) -> None:
    while _alive(parent):
        time.sleep(1.0)
    os._exit(1)  # the parent is gone: nothing this process writes can be used


def _end_with(parent: int) -> None:
    if not _kill_me_with_parent():
        threading.Thread(target=_watch, args=(parent,), name="end-with-parent", daemon=True).start()
    elif not _alive(parent):  # it died before the request took effect
        os._exit(1)


def _before_fork() -> None:
    _forking["from_main_thread"] = threading.current_thread() is threading.main_thread()
    _forking["parent"] = os.getpid()


def _after_fork_in_child() -> None:
    # Only forks from the parent's main thread: the kernel ties the request to the thread that forked.
    if _building and _forking["from_main_thread"]:
        _end_with(_forking["parent"])


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)


@contextlib.contextmanager
def children_end_with_this_process() -> Iterator[None]:
    """While active, processes forked from the main thread end when this process ends."""
    global _building
    previous, _building = _building, True
    try:
        yield
    finally:
        _building = previous


def _pool_parent() -> Optional[int]:
    """The pid of the process that started this one through ``multiprocess`` (datasets' pool) or
    ``multiprocessing``; ``None`` in a main process."""
    for module in (sys.modules.get("multiprocess"), multiprocessing):
        parent = module.parent_process() if module is not None else None
        if parent is not None:
            return parent.pid
    return None


def end_with_parent() -> None:
    """In a pool worker, arrange to end when the parent process ends; in a main process, do nothing. Idempotent."""
    global _watched_parent
    parent = _pool_parent()
    if parent is None or parent == _watched_parent:
        return
    _watched_parent = parent
    _end_with(parent)
