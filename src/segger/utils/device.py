"""One device resolver: ``auto | cpu | cuda | cuda:N`` → a torch device or Lightning's arguments.

Used by training (:func:`lightning_device`), prediction, attention read-out and fine-tuning
(:func:`torch_device`), with the same one-line errors for an unknown name or a missing GPU.
"""

from __future__ import annotations

import re
from typing import Any

import torch

from segger.errors import SeggerInputError

_CUDA = re.compile(r"^cuda(?::(\d+))?$")


def parse_device(name: str | None) -> tuple[str, int | None]:
    """``("cpu", None)`` or ``("cuda", index | None)``; ``auto`` / empty is CUDA when available."""
    if name in (None, "", "auto"):
        return ("cuda", None) if torch.cuda.is_available() else ("cpu", None)
    if name == "cpu":
        return "cpu", None
    m = _CUDA.match(name) if isinstance(name, str) else None
    if m is None:
        raise SeggerInputError(f"unknown device {name!r}: use auto, cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise SeggerInputError(f"device {name!r} was asked for but no CUDA GPU is available here; use --device cpu "
                               "or auto")
    return "cuda", int(m.group(1)) if m.group(1) is not None else None


def torch_device(name: str | None) -> torch.device:
    """The ``torch.device`` of a device name."""
    kind, idx = parse_device(name)
    return torch.device(kind if idx is None else f"{kind}:{idx}")


def lightning_device(name: str | None) -> tuple[str, Any]:
    """Lightning ``(accelerator, devices)`` of a device name."""
    kind, idx = parse_device(name)
    if kind == "cpu":
        return "cpu", 1
    if idx is None and name in (None, "", "auto"):
        return "gpu", 1
    return "gpu", [idx or 0]
