"""Model health check after training or loading: is this model worth segmenting with?

A model is refused (one-line :class:`ModelHealthError`) when

* a weight is NaN or infinite (always: every score would be NaN, every transcript unassigned);
* it was never trained (random weights: ``--epochs 0`` without a checkpoint);
* training diverged: a non-finite loss, or a last loss above :data:`DIVERGED_LOSS` or
  :data:`DIVERGED_FACTOR` × the first epoch's;
* its validation AUROC is at chance (≤ :data:`CHANCE_AUROC`): it cannot tell a transcript's own
  nucleus from a neighbour's.

Where the user asked for such a model explicitly (``allow=True``, CLI ``--allow-weak-model``), the
last three become warnings (returned, for the CLI/GUI to show) instead of errors.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch

from segger.errors import SeggerError

#: a validation AUROC at or below this is "at chance"
CHANCE_AUROC = 0.52
#: a last training loss above this (the link losses start below 1) is divergence
DIVERGED_LOSS = 1e3
#: ... or above this many times the first epoch's loss
DIVERGED_FACTOR = 10.0

FIX = "retrain with a smaller --learning-rate or more --epochs, or use another --checkpoint"


class ModelHealthError(SeggerError):
    """The model would give a useless segmentation (NaN weights, untrained, diverged, at chance)."""


def nonfinite_weights(model_or_state) -> list[str]:
    """Names of the parameters/buffers holding a NaN or infinite value."""
    state = model_or_state.state_dict() if isinstance(model_or_state, torch.nn.Module) else model_or_state
    bad = []
    for name, t in (state or {}).items():
        if isinstance(t, torch.Tensor) and t.is_floating_point() and t.numel() and not bool(torch.isfinite(t).all()):
            bad.append(name)
    return bad


def _finite(v) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def check_model_health(model=None, *, history: Sequence[Mapping] | None = None, metrics: Mapping | None = None,
                       trained_epochs: int | None = None, pretrained: bool = True, where: str = "the model",
                       allow: bool = False) -> list[str]:
    """Raise :class:`ModelHealthError` for a useless model; return warnings (``allow=True``) otherwise.

    ``history``: the training epochs' records (``loss``, ``val_auroc``); ``metrics``: a checkpoint's
    stored metrics (the same keys); ``trained_epochs``/``pretrained``: whether any training happened.
    """
    if model is not None:
        bad = nonfinite_weights(model)
        if bad:
            raise ModelHealthError(f"{where} has NaN/infinite weights ({len(bad)} tensors, e.g. '{bad[0]}'): every "
                                   f"score would be NaN; {FIX}")
    problems: list[str] = []
    if trained_epochs == 0 and not pretrained:
        problems.append(f"{where} is untrained (0 epochs, no checkpoint): its scores are random")
    records = [dict(r) for r in (history or [])]
    if metrics:
        records.append(dict(metrics))
    losses = [r.get("loss") for r in records if "loss" in r]
    if losses:
        finite = [_finite(v) for v in losses]
        if any(v is None for v in finite) and all(v is None for v in finite[-1:]):
            problems.append(f"{where}: training diverged (loss {losses[-1]})")
        else:
            ok = [v for v in finite if v is not None]
            if ok and (ok[-1] > DIVERGED_LOSS or (len(ok) > 1 and ok[0] > 0 and ok[-1] > DIVERGED_FACTOR * ok[0])):
                problems.append(f"{where}: training diverged (loss {ok[0]:.3g} → {ok[-1]:.3g})")
    aurocs = [_finite(r.get("val_auroc")) for r in records if r.get("val_auroc") is not None]
    aurocs = [a for a in aurocs if a is not None]
    if aurocs and aurocs[-1] <= CHANCE_AUROC:
        problems.append(f"{where}: validation AUROC {aurocs[-1]:.3f} is at chance (it cannot tell a transcript's "
                        "nucleus from its neighbours')")
    if problems and not allow:
        raise ModelHealthError(f"{problems[0]}; {FIX} (or pass --allow-weak-model to segment with it anyway)")
    return problems


__all__ = ["ModelHealthError", "check_model_health", "nonfinite_weights", "CHANCE_AUROC", "DIVERGED_LOSS",
           "DIVERGED_FACTOR"]
