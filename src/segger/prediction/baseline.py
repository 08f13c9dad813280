"""Nearest-nucleus baseline: each transcript joins the nearest nucleus (boundary distance)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import shapely

from segger import schema as S
from segger.data.graph import TX_BD, TX_CAND, GraphBundle


def nearest_nucleus_scores(bundle: GraphBundle) -> np.ndarray:
    """Baseline score per candidate edge: ``-distance`` (µm) from the transcript to the nucleus outline (0 inside)."""
    cand = bundle.data[TX_CAND].edge_index.numpy()
    tx = bundle.transcripts
    pts = shapely.points(tx[S.X].to_numpy()[cand[0]], tx[S.Y].to_numpy()[cand[0]])
    geoms = bundle.nuclei[S.GEOMETRY].to_numpy()[cand[1]]
    return -shapely.distance(pts, geoms)


def nearest_nucleus_assignment(bundle: GraphBundle, max_dist: float | None = None) -> pd.DataFrame:
    """Result table of the baseline: every transcript with a candidate within ``max_dist`` joins the nearest nucleus."""
    cand = bundle.data[TX_CAND].edge_index.numpy()
    d = -nearest_nucleus_scores(bundle)
    n = bundle.data["tx"].num_nodes
    order = np.lexsort((d, cand[0]))
    first = np.r_[True, cand[0][order][1:] != cand[0][order][:-1]] if len(order) else np.zeros(0, bool)
    best = np.full(n, -1, dtype=np.int64)
    dist = np.full(n, np.inf)
    best[cand[0][order][first]] = cand[1][order][first]
    dist[cand[0][order][first]] = d[order][first]
    ok = best >= 0
    if max_dist is not None:
        ok &= dist <= max_dist
    ids = bundle.nuclei[S.BD_ID].astype(str).to_numpy(dtype=object)
    cell = np.full(n, S.UNASSIGNED, dtype=object)
    cell[ok] = ids[best[ok]]
    own = np.full(n, -1, dtype=np.int64)
    bel = bundle.data[TX_BD].edge_index.numpy()
    own[bel[0]] = bel[1]
    kind = np.where(ok, np.where(own == best, "nucleus", "cytoplasm"), "none")
    out = bundle.transcripts.copy()
    out[S.SEGGER_CELL_ID] = cell
    out[S.SCORE] = np.where(ok, 1.0, 0.0).astype(np.float32)
    out[S.ASSIGNMENT] = pd.Categorical(kind, categories=list(S.ASSIGNMENT_KINDS))
    return out
