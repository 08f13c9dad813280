"""Typed progress events yielded by every long-running core generator.

Core functions named ``iter_*`` are generators: they ``yield`` :class:`Progress` events and
``return`` their result (available as ``StopIteration.value``; napari's generator workers emit it
through ``returned``). :func:`run` drives such a generator for code that only wants the result.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable, Generator, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Progress:
    stage: str  # e.g. "read", "graph", "train", "predict", "export"
    step: int = 0
    total: int | None = None
    message: str = ""
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def fraction(self) -> float | None:
        if not self.total:
            return None
        return min(1.0, self.step / self.total)


ProgressGen = Generator[Progress, None, T]


def run(gen: Generator[Progress, None, T], callback: Callable[[Progress], Any] | None = None) -> T:
    """Exhaust a progress generator, passing each event to ``callback``; return its result."""
    while True:
        try:
            event = next(gen)
        except StopIteration as stop:
            return stop.value
        if callback is not None:
            callback(event)


@contextlib.contextmanager
def deterministic_threads(enabled: bool = True):
    """Run torch CPU kernels on one intra-op thread inside the block (scatter sums on several
    threads add in a varying order, so results would differ in the last bits between runs)."""
    if not enabled:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
