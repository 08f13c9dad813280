"""Graph edges and attention weights -> Vectors layers."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd

from segger import schema as S
from segger.errors import SeggerInputError

from segger.napari.layers._base import (
    LAYER_ATTENTION,
    LAYER_TX_EDGES,
    METADATA_KEY,
    UNITS,
)


# --------------------------------------------------------------------------------------------
# edges -> Vectors
# --------------------------------------------------------------------------------------------
def edges_to_vectors(
    src_yx: np.ndarray,
    dst_yx: np.ndarray,
    weight: np.ndarray | None = None,
    *,
    name: str = LAYER_ATTENTION,
    colormap: str = "plasma",
    edge_width: float = 0.3,
    features: dict | None = None,
    metadata: dict | None = None,
) -> tuple:
    """Edges (start/end points in µm, (y, x)) -> Vectors (N, 2, 2) coloured by weight.

    Vectors have one width per layer, so weight is the colour (a feature with a colormap).
    """
    src_yx = np.asarray(src_yx, dtype=np.float32).reshape(-1, 2)
    dst_yx = np.asarray(dst_yx, dtype=np.float32).reshape(-1, 2)
    vec = np.empty((len(src_yx), 2, 2), dtype=np.float32)
    vec[:, 0] = src_yx
    vec[:, 1] = dst_yx - src_yx
    w = np.ones(len(vec), np.float32) if weight is None else np.asarray(weight, dtype=np.float32)
    feats = pd.DataFrame({"weight": w})
    for k, v in (features or {}).items():
        feats[k] = np.asarray(v)
    # colour range: min .. 98th percentile, so a few strong edges do not wash out the rest
    hi = float(np.percentile(w, 98)) if len(w) else 1.0
    lo = float(w.min()) if len(w) else 0.0
    if hi <= lo:
        lo, hi = (0.0, max(hi, 1e-6))
    kwargs = dict(
        name=name,
        features=feats,
        edge_color="weight",
        edge_colormap=colormap,
        edge_contrast_limits=(lo, hi),
        edge_width=edge_width,
        vector_style="line",
        length=1.0,
        units=UNITS,
        opacity=0.9,
        metadata={METADATA_KEY: {"kind": "edges", **(metadata or {})}},
    )
    return (vec, kwargs, "vectors")


def _node_yx(table: pd.DataFrame, index: np.ndarray) -> np.ndarray:
    return np.column_stack(
        [table[S.Y].to_numpy(dtype=np.float32)[index], table[S.X].to_numpy(dtype=np.float32)[index]]
    )


def attention_to_vectors(
    edges: pd.DataFrame,
    transcripts: pd.DataFrame,
    nuclei: pd.DataFrame | None,
    edge_type: Sequence[str],
    *,
    name: str = LAYER_ATTENTION,
    metadata: dict | None = None,
) -> tuple:
    """``attention_edges()`` output (node indices) -> Vectors from each transcript to the node it
    attended to (a transcript for tx→tx, a nucleus centroid for tx→bd), coloured by weight."""
    src = edges["src"].to_numpy(dtype=np.int64)
    dst = edges["dst"].to_numpy(dtype=np.int64)
    dst_table = transcripts if tuple(edge_type)[-1] == "tx" else nuclei
    if dst_table is None:
        raise SeggerInputError("attention to nuclei needs the graph's nuclei table")
    meta = {"edge_type": "-".join(edge_type)}
    meta.update(metadata or {})
    return edges_to_vectors(
        _node_yx(transcripts, src), _node_yx(dst_table, dst), edges["weight"].to_numpy(),
        name=name, features={"src": src, "dst": dst}, metadata=meta,
    )


def graph_edges_to_vectors(bundle: Any, *, name: str = LAYER_TX_EDGES, max_edges: int = 2_000_000) -> tuple:
    """The graph's tx–tx neighbour edges as a Vectors layer (one colour; weight = 1)."""
    ei = bundle.data["tx", "neighbors", "tx"].edge_index
    ei = ei.cpu().numpy() if hasattr(ei, "cpu") else np.asarray(ei)
    # draw each undirected pair once (kNN graphs are often stored in both directions)
    pairs = np.unique(np.sort(ei[:, ei[0] != ei[1]], axis=0), axis=1)
    src, dst = pairs[0], pairs[1]
    if len(src) > max_edges:
        src, dst = src[:max_edges], dst[:max_edges]
    layer = edges_to_vectors(
        _node_yx(bundle.transcripts, src), _node_yx(bundle.transcripts, dst), None,
        name=name, edge_width=0.1, metadata={"edge_type": "tx-neighbors-tx"},
    )
    data, kwargs, kind = layer
    kwargs.update(edge_color="#7fd3ff", opacity=0.5)
    kwargs.pop("edge_colormap"), kwargs.pop("edge_contrast_limits")
    return (data, kwargs, kind)
