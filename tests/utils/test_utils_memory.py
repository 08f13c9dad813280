"""``segger.utils.memory.release_memory``: freed pages go back to the OS between the out-of-core passes."""

from __future__ import annotations


def test_release_memory_hands_arrow_pages_back():
    """``segger.utils.memory.release_memory`` (between the out-of-core passes, after each tile): Arrow's
    pool keeps freed pages; after the call the process's RSS is back near where it was."""
    import psutil
    import pyarrow as pa

    from segger.utils.memory import release_memory

    proc = psutil.Process()
    release_memory()
    before = proc.memory_info().rss
    bufs = [pa.allocate_buffer(8 << 20) for _ in range(64)]  # 512 MiB through Arrow's pool
    for b in bufs:
        memoryview(b).cast("B")[::4096] = b"\x01" * len(range(0, b.size, 4096))  # touch every page
    del bufs, b
    release_memory()
    assert proc.memory_info().rss - before < 128 << 20
