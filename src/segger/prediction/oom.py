"""GPU out-of-memory fallback: retry with smaller tiles, then run on the CPU with a notice.

A long prediction (or training) on a shared GPU can run out of memory part-way. Rather than
failing the run, :func:`iter_with_oom_fallback` (for the core's progress generators) and
:func:`run_with_oom_fallback` (for plain callables) call the work again:

1. with tiles of ``shrink`` × the previous number of transcripts, at most ``max_retries`` times
   and never below ``min_tile_tx`` transcripts;
2. then on the CPU, with the original tile size (slower, but the CPU has the memory), after a
   notice: an :class:`OOMFallbackWarning`, a :class:`~segger.progress.Progress` message (CLI
   progress bar / GUI status line) and the optional ``notice`` callback.

Only CUDA out-of-memory errors are handled (``torch.cuda.OutOfMemoryError`` or a ``RuntimeError``
whose message says "out of memory"); any other error, and running out of memory on the CPU,
propagates unchanged. The work must be restartable: each attempt starts from scratch.
"""

from __future__ import annotations

import gc
import warnings
from typing import Any, Callable, Generator

import torch

from segger.errors import one_line
from segger.progress import Progress

#: never retry the GPU with tiles of fewer transcripts than this
MIN_TILE_TX = 10_000
#: GPU retries with smaller tiles before falling back to the CPU
MAX_RETRIES = 3
#: each retry uses this fraction of the previous tile size
SHRINK = 0.5


class OOMFallbackWarning(RuntimeWarning):
    """The GPU ran out of memory; the work was retried with smaller tiles or on the CPU."""


def is_oom(exc: BaseException) -> bool:
    """True for a CUDA out-of-memory error (typed, or a ``RuntimeError`` saying so)."""
    oom_type = getattr(torch.cuda, "OutOfMemoryError", None)
    if oom_type is not None and isinstance(exc, oom_type):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def free_gpu_memory() -> None:
    """Drop unreachable tensors and return cached blocks to the driver (no-op without CUDA)."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def iter_with_oom_fallback(
    factory: Callable[[torch.device, int], Generator[Progress, None, Any]],
    device: str | torch.device,
    tile_tx: int,
    *,
    stage: str = "predict",
    min_tile_tx: int | None = None,
    max_retries: int | None = None,
    shrink: float | None = None,
    notice: Callable[[str], None] | None = None,
) -> Generator[Progress, None, Any]:
    """Drive ``factory(device, tile_tx)`` (a progress generator); on CUDA OOM start it again with
    smaller tiles, then on the CPU. Yields its events (and one notice event per fallback) and
    returns its result."""
    min_tile = MIN_TILE_TX if min_tile_tx is None else int(min_tile_tx)
    retries_left = MAX_RETRIES if max_retries is None else int(max_retries)
    factor = SHRINK if shrink is None else float(shrink)
    device = torch.device(device)
    initial = tile = max(int(tile_tx), 1)
    while True:
        try:
            result = yield from factory(device, tile)
            return result
        except Exception as exc:  # noqa: BLE001 - only CUDA OOM is handled, everything else re-raised
            if device.type != "cuda" or not is_oom(exc):
                raise
            reason = one_line(exc)[:160]
        # outside the except block: the traceback (and the tensors its frames hold) is gone
        free_gpu_memory()
        smaller = int(tile * factor)
        if retries_left > 0 and smaller >= min_tile:
            retries_left -= 1
            tile = smaller
            msg = f"GPU out of memory ({reason}); retrying with tiles of {tile:,} transcripts"
        else:
            device, tile = torch.device("cpu"), initial
            msg = (f"GPU out of memory ({reason}) even with smaller tiles; continuing on the CPU "
                   "(slower; free GPU memory or use a larger GPU to stay on it)")
        warnings.warn(msg, OOMFallbackWarning, stacklevel=2)
        if notice is not None:
            notice(msg)
        yield Progress(stage, 0, None, msg)


def run_with_oom_fallback(
    fn: Callable[[torch.device, int], Any],
    device: str | torch.device,
    tile_tx: int,
    **kwargs,
) -> Any:
    """:func:`iter_with_oom_fallback` for a plain callable ``fn(device, tile_tx) -> result``
    (e.g. a scoring or training step); the notices go to the warning and ``notice`` only."""
    from segger.progress import run

    def factory(dev: torch.device, tile: int):
        return fn(dev, tile)
        yield  # pragma: no cover - makes this a generator

    return run(iter_with_oom_fallback(factory, device, tile_tx, **kwargs))
