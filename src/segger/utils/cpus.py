"""The one count of the CPUs this process may use (its affinity mask, not the machine's cores)."""

from __future__ import annotations

import os


def cpus_available() -> int:
    """CPUs this process may run on (``sched_getaffinity``; ``os.cpu_count`` where there is none)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS / Windows
        return max(1, os.cpu_count() or 1)


__all__ = ["cpus_available"]
