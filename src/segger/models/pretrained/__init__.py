"""The bundled pretrained model: a small Segger checkpoint shipped with the package.

Trained by ``benchmarks/train_pretrained.py`` (fixed seed, deterministic, default parameters) on the
bundled lung crop only (``segger/sample_data/xenium_lung``); what it was trained on, how, and how
well it does on its own crop and on another panel and tissue is in ``MODEL_CARD.md`` / ``card.json``
beside it (numbers written by ``benchmarks/pretrained_transfer.py``).

* :func:`bundled_checkpoint` — the path of the ``.pt`` file (a one-line
  :class:`~segger.errors.CheckpointError` when it is missing from this installation);
* :func:`load_pretrained` — ``(model, model_config, vocab, graph_params, payload)`` through the
  one checkpoint loader (:func:`segger.training.checkpoint.load_checkpoint` →
  :func:`~segger.training.checkpoint.model_from_payload`);
* :func:`model_card` — the machine-readable card (``card.json``) as a dict.

The checkpoint declares ``min_vocab_coverage`` 0: it is meant for any panel, so the 50 % vocabulary
rule of :func:`segger.workflows.check_vocabulary` does not refuse it; genes it does not know use the
unknown-gene token (a warning says how many).

CLI: ``segger predict INPUT --pretrained --output OUT`` (no training) and
``segger segment INPUT --pretrained --epochs N --output OUT`` (fine-tune from it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
#: file name of the bundled checkpoint inside this package
CHECKPOINT_NAME = "segger_xenium_small.pt"
CARD_JSON = "card.json"
CARD_MD = "MODEL_CARD.md"


def bundled_checkpoint() -> Path:
    """Path of the bundled checkpoint; a one-line ``CheckpointError`` when this installation lacks it."""
    from segger.errors import CheckpointError

    path = HERE / CHECKPOINT_NAME
    if not path.is_file():
        raise CheckpointError(f"the bundled pretrained model {path} is missing from this installation: reinstall "
                              "napari-segger, or rebuild it with 'python benchmarks/train_pretrained.py', or give "
                              "--checkpoint MODEL.pt")
    return path


def load_pretrained(device: str | None = None):
    """``(model, model_config, vocab, graph_params, payload)`` of the bundled model, loaded through
    :func:`segger.training.checkpoint.load_checkpoint` (eval mode; on ``device`` when given)."""
    from segger.training.checkpoint import load_checkpoint

    model, config, vocab, params, payload = load_checkpoint(bundled_checkpoint())
    if device is not None:
        model = model.to(device)
    return model, config, vocab, params, payload


def model_card() -> dict[str, Any]:
    """The bundled model's card (``card.json``): training data, parameters, seed, command, versions,
    benchmark numbers. Empty when the card is missing."""
    path = HERE / CARD_JSON
    if not path.is_file():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))


__all__ = ["CHECKPOINT_NAME", "bundled_checkpoint", "load_pretrained", "model_card"]
