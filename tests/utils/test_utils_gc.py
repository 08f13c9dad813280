"""``segger.utils.gc``: ``gc_paused`` turns the cyclic GC off inside (nested and from several tile
threads at once) and back to how it was after the last block ends; ``hold_existing`` /
``release_existing`` (napari jobs) freeze the objects that existed before the first job until the
last one ends."""

from __future__ import annotations

import gc
import threading

from segger.utils.gc import gc_paused, hold_existing, release_existing


def test_gc_paused_nested_and_threads():
    assert gc.isenabled()
    with gc_paused():
        assert not gc.isenabled()
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the outer block still holds it
    assert gc.isenabled()

    inside, release = threading.Event(), threading.Event()

    def worker():
        with gc_paused():
            inside.set()
            release.wait(10)

    t = threading.Thread(target=worker)
    t.start()
    inside.wait(10)
    with gc_paused():
        pass
    assert not gc.isenabled()  # the other thread's block is still open
    release.set()
    t.join(10)
    assert gc.isenabled()


def test_gc_paused_leaves_a_disabled_gc_disabled():
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_gc_paused_restores_after_an_error():
    try:
        with gc_paused():
            raise ValueError("boom")
    except ValueError:
        pass
    assert gc.isenabled()


def test_jobs_hold_the_existing_objects_until_the_last_one_ends():
    assert gc.get_freeze_count() == 0
    before = [object() for _ in range(10)]  # noqa: F841 - objects that exist before the jobs
    hold_existing()
    frozen = gc.get_freeze_count()
    assert frozen > 0  # a full collection now skips them
    hold_existing()  # a second job
    release_existing()
    assert gc.get_freeze_count() == frozen  # the first job still runs
    release_existing()
    assert gc.get_freeze_count() == 0
    release_existing()  # an unmatched release is harmless
    assert gc.get_freeze_count() == 0
