"""Steering Python's cyclic garbage collector around work that would otherwise stall every thread.

A full collection holds the GIL while it walks every tracked object of the process, so in a
process holding a million-transcript session each one is a pause of every thread (the napari GUI
included). Two controls, both process-wide (the collector is) and safe to nest and to use from
several threads:

* :func:`gc_paused` — no collections at all during a block that makes many acyclic objects (one
  shapely point per transcript);
* :func:`hold_existing` / :func:`release_existing` — while long jobs run, collections skip the objects
  that existed before the first of them (``gc.freeze``, O(1)); they are collected again once the
  last job ends.
"""

from __future__ import annotations

import contextlib
import gc
import threading

_LOCK = threading.Lock()
_STATE = {"paused": 0, "was_enabled": False, "held": 0}


@contextlib.contextmanager
def gc_paused():
    """The collector off for the block (back on after the last nested / concurrent block ends, and
    only if it was on). A 340 k-point ``shapely.points`` in a tile worker took 0.55 s with it on,
    0.04 s off."""
    with _LOCK:
        if _STATE["paused"] == 0:
            _STATE["was_enabled"] = gc.isenabled()
            gc.disable()
        _STATE["paused"] += 1
    try:
        yield
    finally:
        with _LOCK:
            _STATE["paused"] -= 1
            if _STATE["paused"] == 0 and _STATE["was_enabled"]:
                gc.enable()


def hold_existing() -> None:
    """A long job starts: collections skip today's objects until :func:`release_existing` of the
    last job (with a million-transcript napari session one full collection had held the GIL for
    530 ms in the middle of training)."""
    with _LOCK:
        if _STATE["held"] == 0:
            gc.freeze()
        _STATE["held"] += 1


def release_existing() -> None:
    with _LOCK:
        _STATE["held"] = max(_STATE["held"] - 1, 0)
        if _STATE["held"] == 0:
            gc.unfreeze()
