"""Free each chunk's memory before the next chunk allocates its own.

NanoEvents arrays sit in reference cycles (events, their factory, behaviours), so a chunk's
arrays are freed only by a full cyclic collection, which Python runs rarely: several chunks'
arrays pile up, the process grows, and the kernel has to hand it fresh pages again and
again. On the SVJ chain (20 000-event chunks, 120 000 events per pass, one process) the
resident size swung between 1.2 and 1.6 GB from pass to pass and the system time of a pass
between 0.1 and 1.1 s; with a collection before every chunk it stays at 0.56 GB and
0.13-0.35 s, and the chain runs 1.17x faster (``benchmarks/bench_chunk_memory.py``).

A full collection walks every tracked object of the process (modules, classes, the
worker's own state): 0.1 s per chunk there. :func:`collect_before_chunk` therefore freezes
what is alive (:func:`gc.freeze`) and collects only what was made since: the chunks' objects.
The first chunks of a process import modules and compile numba functions (about 160 000
objects in a Dask worker of the SVJ chain, 28 ms per collection while unfrozen), so it freezes
again whenever :data:`sys.modules` grew since the last freeze. A freeze also catches the
chunk that is about to run (with several threads, every chunk running then): it is kept
until the next freeze, at most one chunk per thread, against several without the
collections. Frozen objects are still freed by reference counting; only cycles among them
wait until :func:`unfreeze` (called when an in-process run ends) or the next freeze.

A program that froze objects itself before the first chunk (a server that freezes its
start-up state before it forks) keeps them frozen: :func:`unfreeze` then collects the
garbage of the run and freezes what is alive again, instead of handing everything back.
"""

from __future__ import annotations

import contextlib
import gc
import sys
import threading
from collections.abc import Iterator

__all__ = ["collect_before_chunk", "in_process_run", "unfreeze"]

_lock = threading.Lock()
_modules_at_freeze: int | None = None  # None: nothing frozen by this module
_program_froze = False  # objects were frozen before this module's first freeze


def collect_before_chunk() -> None:
    """Collect the garbage cycles left by earlier chunks in this process (nothing when the
    program switched the collector off: its choice stands)."""
    global _modules_at_freeze, _program_froze
    if not gc.isenabled():
        return
    with _lock:
        if _modules_at_freeze == len(sys.modules):
            gc.collect()
            return
        if _modules_at_freeze is None:
            _program_froze = gc.get_freeze_count() > 0
        gc.unfreeze()
        gc.collect()
        gc.freeze()
        _modules_at_freeze = len(sys.modules)


def unfreeze() -> None:
    """Give the objects frozen by :func:`collect_before_chunk` back to the collector; where
    the program had frozen objects itself, collect the run's garbage and freeze the living
    again (its frozen objects among them)."""
    global _modules_at_freeze, _program_froze
    with _lock:
        if _modules_at_freeze is not None:
            gc.unfreeze()
            if _program_froze:
                gc.collect()
                gc.freeze()
            _modules_at_freeze = None
            _program_froze = False


@contextlib.contextmanager
def in_process_run() -> Iterator[None]:
    """Around a run whose chunks execute in this process (the iterative executor): the
    caller's objects are frozen only while the run lasts."""
    try:
        yield
    finally:
        unfreeze()
