"""Safe checkpoints: tensors + plain JSON-like metadata, loaded with ``weights_only=True``.

A checkpoint never holds pickled Python objects, so loading one never runs code. It carries the
model configuration, the gene vocabulary, the graph parameters and the package version, so the
model can be rebuilt and a mismatching input panel is caught with a clear message.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

import segger
from segger.data.graph import GraphParams
from segger.data.vocab import GeneVocab
from segger.errors import CheckpointError
from segger.models import ModelConfig, SeggerLinkModel, build_hetero_model

FORMAT = "segger-checkpoint"
FORMAT_VERSION = 1


def save_checkpoint(path: str | os.PathLike, model: torch.nn.Module, model_config: ModelConfig, vocab: GeneVocab,
                    graph_params: GraphParams, *, train_config: dict | None = None, metrics: dict | None = None,
                    epoch: int = 0, global_step: int = 0, optimizer_state: dict | None = None) -> Path:
    """Write a checkpoint atomically (temporary file + rename)."""
    from segger.export.atomic import atomic_path

    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "segger_version": segger.__version__,
        "model_config": model_config.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "link_head": {"spatial": bool(getattr(getattr(model, "head", None), "spatial", False))},
        "vocab": vocab.to_list(),
        "graph_params": graph_params.to_dict(),
        "train_config": dict(train_config or {}),
        "metrics": {k: float(v) for k, v in (metrics or {}).items()},
        "epoch": int(epoch),
        "global_step": int(global_step),
    }
    if optimizer_state is not None:
        payload["optimizer_state"] = optimizer_state
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The raw checkpoint dictionary, loaded without executing code (``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist: give the path of a .pt file written by segger train")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch.load raises many types on garbage or truncated files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"checkpoint {path} was refused: it is not a safe segger checkpoint ({first[:160]}); "
            "segger loads only tensors and plain data, never pickled code — retrain or re-export it"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path} is not a segger checkpoint (no '{FORMAT}' header); use a file written by segger train")
    if int(payload.get("format_version", 0)) > FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {path} has format version {payload.get('format_version')}; upgrade napari-segger to read it")
    return payload


def load_checkpoint(path: str | os.PathLike) -> tuple[torch.nn.Module, ModelConfig, GeneVocab, GraphParams, dict]:
    """Rebuild the model of a checkpoint: ``(model, model_config, vocab, graph_params, payload)``."""
    payload = read_checkpoint(path)
    try:
        config = ModelConfig.from_dict(payload["model_config"])
        gnn = build_hetero_model(**config.to_dict())
        model = SeggerLinkModel(gnn, spatial=bool(payload.get("link_head", {}).get("spatial", False)))
        state = payload["state_dict"]
        if not any(k.startswith("gnn.") for k in state):
            state = {**{f"gnn.{k}": v for k, v in state.items()}, **{k: v for k, v in model.state_dict().items() if k.startswith("head.")}}
        model.load_state_dict(state)
    except (KeyError, RuntimeError, TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path} does not match this version's model ({str(exc).splitlines()[0][:160]})") from None
    vocab = GeneVocab.from_list(payload["vocab"])
    params = GraphParams.from_dict(payload.get("graph_params", {}))
    model.eval()
    return model, config, vocab, params, payload
