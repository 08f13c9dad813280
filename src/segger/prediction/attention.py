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
                    device: str = "auto") -> pd.DataFrame:
    """Attention weights of one layer and edge type: ``DataFrame(src, dst, weight)``.

    ``src``/``dst`` are node indices (tx rows of ``bundle.transcripts``; for ``('tx','belongs','bd')``
    ``dst`` is a row of ``bundle.nuclei``). ``layer`` is an index into the model's attention layers
    (``-1`` = last) or a layer name; ``head`` an int, ``"mean"`` or ``"max"``. For each transcript
    the ``top_k`` strongest edges it is part of (as the receiving node for tx→tx, as the sending
    node for tx→bd) are kept, then those below ``min_weight``.
    """
    edge_type = tuple(edge_type)
    if edge_type not in (TX_TX, TX_BD):
        raise SeggerInputError(f"attention is recorded for {TX_TX} and {TX_BD}, not {edge_type}")
    dev = _device(device)
    model = model.to(dev)
    with capture_attention(model) as att:
        embed(model, bundle.data, dev)
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
    owner = dst if edge_type == TX_TX else src
    order = np.lexsort((-w, owner))
    owner_o = owner[order]
    rank = np.arange(len(order)) - np.searchsorted(owner_o, owner_o, side="left")
    keep = order[rank < top_k]
    keep = keep[w[keep] >= min_weight]
    keep.sort()
    return pd.DataFrame({"src": src[keep].astype(np.int64), "dst": dst[keep].astype(np.int64),
                         "weight": w[keep].astype(np.float32)})
