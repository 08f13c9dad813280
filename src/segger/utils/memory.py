"""Handing freed memory back to the operating system between the passes of a long job."""

from __future__ import annotations

import sys

__all__ = ["release_memory"]


def release_memory() -> None:
    """Give freed memory back to the operating system: Arrow's allocator (mimalloc / jemalloc) keeps
    freed pages for reuse (1.6 GB of RSS after bucketing 30 M rows with nothing allocated), and so
    does glibc's heap (each thread's arena separately: what one thread freed is not reused by
    another). Called between the out-of-core passes, after each tile and each cell-output window, so
    the peak RSS of a run is one pass's working set, not the sum of what the passes before it left
    behind. Best effort: a no-op where neither is available."""
    try:
        import pyarrow as pa

        pa.default_memory_pool().release_unused()
    except Exception:  # noqa: BLE001 - best effort
        pass
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


_TRIM: list = []


def _malloc_trim():
    """glibc's ``malloc_trim`` (None elsewhere), looked up once."""
    if not _TRIM:
        fn = None
        if sys.platform.startswith("linux"):
            try:
                import ctypes

                fn = ctypes.CDLL("libc.so.6").malloc_trim
                fn.argtypes, fn.restype = [ctypes.c_size_t], ctypes.c_int
            except (OSError, AttributeError):
                fn = None
        _TRIM.append(fn)
    return _TRIM[0]
