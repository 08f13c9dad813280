"""Attention edges read from the trained model, for display (napari Vectors) and export."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from segger.data.graph import TX_BD, TX_TX, GraphBundle
from segger.errors import SeggerInputError
from segger.models import capture_attention, reduce_heads
from segger.prediction.predict import _device, embed


def attention_edges(model: torch.nn.Module, bundle: GraphBundle, edge_type=TX_TX, layer: int | str = -1,
                    head: int | str = "mean", top_k: int = 3, min_weight: float = 0.0,
                    device: str = "auto", uniform_tolerance: float = 0.0) -> pd.DataFrame:
    """Attention weights of one layer and edge type: ``DataFrame(src, dst, weight, lift)``.

    ``src``/``dst`` are node indices (tx rows of ``bundle.transcripts``; for ``('tx','belongs','bd')``
    ``dst`` is a row of ``bundle.nuclei``). ``layer`` is an index into the model's attention layers
    (``-1`` = last) or a layer name; ``head`` an int, ``"mean"`` or ``"max"``. For each transcript
    the ``top_k`` strongest edges it is part of (as the receiving node for tx→tx, as the sending
    node for tx→bd) are kept, then those below ``min_weight``.

    ``lift`` is the weight over the uniform weight ``1 / n`` of the softmax it belongs to (the
    ``n`` edges into the same receiving node): 1 means "no preference", 2 twice the uniform share.
    ``uniform_tolerance`` drops edges whose lift is within that fraction of 1 (0.25: lifts in
    0.75–1.25), so that only neighbours the model weighs differently from an average are drawn.
    """
    edge_type = tuple(edge_type)
    if edge_type not in (TX_TX, TX_BD):
        raise SeggerInputError(f"attention is recorded for {TX_TX} and {TX_BD}, not {edge_type}")
    dev = _device(device)
    model = model.to(dev)
    with capture_attention(model) as att:
        embed(model, getattr(bundle, "data", bundle), dev)  # a GraphBundle or its HeteroData
    model.cpu()
    layers = [name for (name, et) in att.keys() if et == edge_type]
    if not layers:
        return pd.DataFrame({"src": np.zeros(0, np.int64), "dst": np.zeros(0, np.int64), "weight": np.zeros(0, np.float32)})
    if isinstance(layer, str):
        if layer not in layers:
            raise SeggerInputError(f"no attention layer {layer!r}; the model has {layers}")
        name = layer
    else:
        try:
            name = layers[layer]
        except IndexError:
            raise SeggerInputError(f"attention layer {layer} does not exist; the model has {len(layers)} layers") from None
    ei, alpha = att[(name, edge_type)]
    w = reduce_heads(alpha, head).float().cpu().numpy()
    src, dst = ei[0].cpu().numpy(), ei[1].cpu().numpy()
    n_in = np.bincount(dst, minlength=int(dst.max()) + 1 if len(dst) else 0)  # the softmax runs over each dst's edges
    lift = w * n_in[dst] if len(dst) else w
    owner = dst if edge_type == TX_TX else src
    order = np.lexsort((-w, owner))
    owner_o = owner[order]
    rank = np.arange(len(order)) - np.searchsorted(owner_o, owner_o, side="left")
    keep = order[rank < top_k]
    keep = keep[w[keep] >= min_weight]
    if uniform_tolerance > 0:
        keep = keep[np.abs(lift[keep] - 1.0) >= float(uniform_tolerance)]
    keep.sort()
    return pd.DataFrame({"src": src[keep].astype(np.int64), "dst": dst[keep].astype(np.int64),
                         "weight": w[keep].astype(np.float32), "lift": lift[keep].astype(np.float32)})


def _model_hops(model: torch.nn.Module) -> int | None:
    """Message-passing layers of a Segger model (``num_mid_layers + 2``), None when unknown."""
    for obj in (model, getattr(model, "config", None), getattr(model, "model_config", None)):
        mid = getattr(obj, "num_mid_layers", None)
        if isinstance(mid, int):
            return mid + 2
    return None


def transcript_attention(model: torch.nn.Module, bundle: GraphBundle, tx_index: int, layer: int | str = -1,
                         head: int | str = "mean", device: str = "cpu", hops: int | None = None) -> pd.DataFrame:
    """The tx→tx attention into one transcript: ``DataFrame(src, weight, lift)``, one row per
    in-neighbour (``src``: rows of ``bundle.transcripts``; ``lift`` as in :func:`attention_edges`).

    Computed on the transcript's receptive field only — the transcripts within ``hops`` in-hops
    (a transcript's embedding depends on its transcript in-neighbours only), so a click in a
    million-transcript graph costs a few hundred nodes; the weights are those of the whole graph.
    """
    from segger.data.graph import subgraph

    data = bundle.data
    n_tx = int(data["tx"].num_nodes)
    if not 0 <= int(tx_index) < n_tx:
        raise SeggerInputError(f"transcript index {tx_index} is out of range (0–{n_tx - 1})")
    hops = _model_hops(model) if hops is None else int(hops)
    ei = data[TX_TX].edge_index.numpy()
    need = np.zeros(n_tx, dtype=bool)
    need[int(tx_index)] = True
    for _ in range(hops if hops is not None else n_tx):
        grow = need.copy()
        grow[ei[0, need[ei[1]]]] = True
        if grow.sum() == need.sum():
            break
        need = grow
    tx_idx = np.flatnonzero(need)
    sub = subgraph(data, tx_idx, np.arange(int(data["bd"].num_nodes)))
    local = int(np.searchsorted(tx_idx, int(tx_index)))
    edges = attention_edges(model, sub, TX_TX, layer=layer, head=head, top_k=1 << 30, device=device)
    mine = edges[edges["dst"].to_numpy() == local]
    return pd.DataFrame({"src": tx_idx[mine["src"].to_numpy()].astype(np.int64),
                         "weight": mine["weight"].to_numpy(np.float32),
                         "lift": mine["lift"].to_numpy(np.float32)}).sort_values("weight", ascending=False,
                                                                                 ignore_index=True)
