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
    from segger.utils.atomic import atomic_path

    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "segger_version": segger.__version__,
        "model_config": model_config.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "link_head": model.link_config() if hasattr(model, "link_config") else {"terms": "expression", "spatial": False},
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


#: upper bounds of a checkpoint's declared model sizes, checked before anything is allocated
#: (the CLI checks --hidden-channels etc. against the same table)
MODEL_LIMITS = {"num_tx_tokens": 1_000_000, "init_emb": 4096, "hidden_channels": 4096, "out_channels": 4096,
                "heads": 64, "num_mid_layers": 64, "bd_in_channels": 1024}
#: largest inflated size of a checkpoint (bytes; env SEGGER_MAX_CHECKPOINT_BYTES), and the largest
#: inflation ratio of a compressed zip entry (torch.save stores entries uncompressed)
MAX_CHECKPOINT_BYTES = 8 << 30
MAX_INFLATE_RATIO = 20
#: most weights a declared model_config may imply (float32: 1 GiB)
MAX_MODEL_ELEMENTS = 1 << 28


def check_model_limits(config: dict, where: str) -> None:
    """One-line error when a (declared) model size is not an integer within :data:`MODEL_LIMITS`."""
    for name, limit in MODEL_LIMITS.items():
        if name not in config:
            continue
        v = config[name]
        low = 0 if name == "num_mid_layers" else 1
        if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= limit:
            raise CheckpointError(f"{where}: model_config {name}={v!r} is outside {low}..{limit:,}; the file is "
                                  "damaged or not from segger — retrain or use another checkpoint")


def _check_archive(path: Path) -> None:
    """Refuse a zip whose entries would inflate beyond the bounds, before torch allocates anything."""
    import zipfile

    if not zipfile.is_zipfile(path):
        return
    limit = int(os.environ.get("SEGGER_MAX_CHECKPOINT_BYTES", MAX_CHECKPOINT_BYTES))
    try:
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path} is a damaged archive ({exc}); retrain or copy it again") from None
    total = sum(i.file_size for i in infos)
    if total > limit:
        raise CheckpointError(f"checkpoint {path} would inflate to {total / 2**30:.1f} GiB (limit {limit / 2**30:.1f} "
                              "GiB, SEGGER_MAX_CHECKPOINT_BYTES); segger checkpoints are megabytes — use another file")
    for i in infos:
        if i.compress_type != zipfile.ZIP_STORED and i.file_size > MAX_INFLATE_RATIO * max(i.compress_size, 1) \
                and i.file_size > 1 << 20:
            raise CheckpointError(f"checkpoint {path}: entry {i.filename} is compressed {i.file_size // max(i.compress_size, 1)}:1 "
                                  f"({i.file_size / 2**20:.0f} MiB inflated); torch.save never writes that — refused "
                                  "(a decompression bomb?); use a file written by segger train")


def _check_payload(payload: dict, path: Path) -> None:
    """Required keys, types and the declared sizes; tensor shapes against the declared config."""
    for key, typ, what in (("model_config", dict, "the model configuration"), ("state_dict", dict, "the weights"),
                           ("vocab", list, "the gene vocabulary")):
        if not isinstance(payload.get(key), typ):
            raise CheckpointError(f"checkpoint {path} has no valid '{key}' ({what}); it is incomplete — use a "
                                  "file written by segger train")
    vocab = payload["vocab"]
    if not vocab or not all(isinstance(g, str) for g in vocab):
        raise CheckpointError(f"checkpoint {path}: 'vocab' must be a non-empty list of gene names; use a file "
                              "written by segger train")
    cfg = payload["model_config"]
    check_model_limits(cfg, f"checkpoint {path}")
    n_tok = cfg.get("num_tx_tokens")
    if isinstance(n_tok, int) and n_tok < len(vocab):
        raise CheckpointError(f"checkpoint {path}: model_config num_tx_tokens={n_tok} is smaller than its "
                              f"vocabulary ({len(vocab)} genes); the file is inconsistent — retrain")
    state = payload["state_dict"]
    for k, v in state.items():
        if not isinstance(k, str) or not isinstance(v, torch.Tensor):
            raise CheckpointError(f"checkpoint {path}: state_dict entry {k!r} is not a tensor")
    # sizes the declared config allows (generous: every layer as wide as the widest, 4 edge types);
    # a checkpoint whose tensors exceed them is not what its config says
    width = max(int(cfg.get(k, 1) or 1) for k in ("hidden_channels", "out_channels", "init_emb", "bd_in_channels"))
    heads = int(cfg.get("heads", 1) or 1)
    layers = int(cfg.get("num_mid_layers", 0) or 0) + 2
    bound = int(n_tok or 0) * int(cfg.get("init_emb", 16) or 16) + 4 * layers * 16 * (heads * width) * (heads * width + 1)
    if bound > MAX_MODEL_ELEMENTS:
        raise CheckpointError(f"checkpoint {path}: model_config declares a model of up to {bound:,} weights "
                              f"(limit {MAX_MODEL_ELEMENTS:,}); the file is damaged or not from segger — retrain")
    total = sum(v.numel() for v in state.values())
    if total > bound:
        big = max(state, key=lambda k: state[k].numel())
        raise CheckpointError(f"checkpoint {path}: its tensors hold {total:,} values (e.g. '{big}' with shape "
                              f"{tuple(state[big].shape)}) but its model_config allows at most {bound:,}; the "
                              "file is damaged or edited — retrain")


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The raw checkpoint dictionary, loaded without executing code (``weights_only=True``).

    Bounded before allocation: the archive's inflated size and compression ratio are checked from
    its directory, then the declared model sizes (:data:`MODEL_LIMITS`), the required keys and the
    tensor shapes against the declared configuration.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist: give the path of a .pt file written by segger train")
    _check_archive(path)
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
    version = payload.get("format_version", 0)
    if isinstance(version, bool) or not isinstance(version, int):
        raise CheckpointError(f"checkpoint {path} has format_version {version!r}, not an integer; the file is damaged "
                              "or not from segger — use a file written by segger train")
    if version > FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {path} has format version {version}; upgrade napari-segger to read it")
    _check_payload(payload, path)
    return payload


def model_from_payload(payload: dict[str, Any]) -> tuple[SeggerLinkModel, ModelConfig]:
    """The model (eval mode) and its config from a checkpoint payload (see :func:`read_checkpoint`).

    The one checkpoint → model path (the in-memory loader and the out-of-core tile workers).
    Checkpoints written before the link head had ``d_abs`` (``link_head`` without ``terms``) load
    with the new head parameters at their initial values. Raises ``KeyError``/``RuntimeError``/
    ``TypeError``/``ValueError`` on a mismatch.
    """
    from segger.models.link import LinkHead

    config = ModelConfig.from_dict(payload["model_config"])
    link = dict(payload.get("link_head") or {})
    model = SeggerLinkModel(build_hetero_model(**config.to_dict()), expression=str(link.get("expression", "context")))
    model.head = LinkHead.from_config(link)
    state = dict(payload["state_dict"])
    if not any(k.startswith("gnn.") for k in state):  # a bare GNN state dict
        state = {f"gnn.{k}": v for k, v in state.items()}
    for k, v in model.state_dict().items():  # head parameters an older checkpoint lacks keep their initial values
        if k.startswith("head.") and k not in state:
            state[k] = v
    model.load_state_dict(state)
    model.eval()
    return model, config


def load_checkpoint(path: str | os.PathLike) -> tuple[torch.nn.Module, ModelConfig, GeneVocab, GraphParams, dict]:
    """Rebuild the model of a checkpoint: ``(model, model_config, vocab, graph_params, payload)``."""
    payload = read_checkpoint(path)
    try:
        model, config = model_from_payload(payload)
    except (KeyError, RuntimeError, TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path} does not match this version's model ({str(exc).splitlines()[0][:160]})") from None
    vocab = GeneVocab.from_list(payload["vocab"])
    params = GraphParams.from_dict(payload.get("graph_params", {}))
    model.eval()
    return model, config, vocab, params, payload
