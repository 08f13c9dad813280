"""Heterogeneous transcript/nucleus graph (scipy cKDTree, vectorised; no loops over points).

Node types
    ``tx``  one node per transcript: ``x`` = gene token (int64), ``pos`` = (x, y, z) µm.
    ``bd``  one node per nucleus: ``x`` = 4 shape features (log area, convexity, elongation,
            circularity), ``pos`` = centroid (x, y) µm, ``area`` = polygon area in µm².

Edge types (source → target, message direction)
    ``('tx','neighbors','tx')``  each transcript receives from its ``k_tx`` nearest transcripts
                                   closer than ``dist_tx`` (a true upper bound: a point with no
                                   neighbour within ``dist_tx`` gets no edge).
    ``('tx','belongs','bd')``    transcripts inside a nucleus (vendor nuclear flag + cell id, or
                                   point-in-polygon with a shapely STRtree): the supervision.
    ``('tx','candidate','bd')``  each transcript's ``k_bd`` nearest nucleus centroids closer than
                                   ``dist_bd`` (plus its own nucleus): the cells it may join. Not a
                                   message-passing edge; prediction scores these.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
import pandas as pd
import shapely
import torch
from scipy.spatial import cKDTree
from torch_geometric.data import HeteroData

from segger import schema as S
from segger.data.vocab import GeneVocab
from segger.errors import SeggerInputError

TX_TX = ("tx", "neighbors", "tx")
TX_BD = ("tx", "belongs", "bd")
TX_CAND = ("tx", "candidate", "bd")


@dataclass
class GraphParams:
    """Graph-building parameters (µm)."""

    k_tx: int = 5  # neighbours per transcript in the tx–tx graph
    dist_tx: float = 5.0  # upper bound on tx–tx edge length
    k_bd: int = 4  # candidate nuclei per transcript
    dist_bd: float = 15.0  # upper bound on the transcript–nucleus-centroid distance of a candidate
    use_z: bool = False  # tx–tx neighbours in 3-D (x, y, z) instead of 2-D
    belongs: str = "auto"  # auto | flag | polygon: how nuclear transcripts are linked to nuclei

    def validate(self) -> "GraphParams":
        for name in ("k_tx", "k_bd"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1 or v > 100:
                raise SeggerInputError(f"graph parameter {name}={v!r} is invalid: use a whole number from 1 to 100")
        for name in ("dist_tx", "dist_bd"):
            v = getattr(self, name)
            if not isinstance(v, (int, float, np.floating)) or not np.isfinite(v) or v <= 0 or v > 1000:
                raise SeggerInputError(
                    f"graph parameter {name}={v!r} is invalid: use a distance in µm greater than 0 and at most 1000"
                )
        if self.belongs not in ("auto", "flag", "polygon"):
            raise SeggerInputError(f"graph parameter belongs={self.belongs!r} is invalid: use auto, flag or polygon")
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "GraphParams":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass
class GraphBundle:
    """A built graph with the tables that map its nodes back to transcripts and nuclei.

    tx node ``i`` is row ``i`` of ``transcripts``; bd node ``j`` is row ``j`` of ``nuclei``.
    """

    data: HeteroData
    transcripts: pd.DataFrame
    nuclei: pd.DataFrame
    vocab: GeneVocab
    params: GraphParams
    info: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, int]:
        d = self.data
        return {
            "n_tx": int(d["tx"].num_nodes),
            "n_bd": int(d["bd"].num_nodes),
            "n_tx_tx": int(d[TX_TX].edge_index.shape[1]),
            "n_belongs": int(d[TX_BD].edge_index.shape[1]),
            "n_candidates": int(d[TX_CAND].edge_index.shape[1]),
        }


# ----------------------------------------------------------------------------------------------
# neighbours
def knn_edges(points: np.ndarray, k: int, max_dist: float, query: np.ndarray | None = None,
              exclude_self: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """k nearest neighbours within ``max_dist`` (true upper bound), vectorised.

    Returns ``(query_index, neighbour_index, distance)``. Without ``query`` the points are
    queried against themselves and self-matches are dropped.
    """
    points = np.ascontiguousarray(points, dtype=np.float64)
    if len(points) == 0:
        e = np.zeros(0, dtype=np.int64)
        return e, e, np.zeros(0)
    q = points if query is None else np.ascontiguousarray(query, dtype=np.float64)
    if len(q) == 0:
        e = np.zeros(0, dtype=np.int64)
        return e, e, np.zeros(0)
    self_query = query is None and exclude_self
    kk = min(k + (1 if self_query else 0), len(points))
    tree = cKDTree(points, leafsize=32, balanced_tree=False, compact_nodes=False)
    dist, idx = tree.query(q, k=kk, distance_upper_bound=max_dist, workers=-1)
    if kk == 1:
        dist, idx = dist[:, None], idx[:, None]
    rows = np.broadcast_to(np.arange(len(q))[:, None], idx.shape)
    ok = np.isfinite(dist)
    if self_query:
        ok &= idx != rows
    qi, ni, d = rows[ok].astype(np.int64), idx[ok].astype(np.int64), dist[ok]
    if self_query:
        # a duplicate point can push the node itself out of its k+1 list; keep at most k
        order = np.argsort(qi, kind="stable")
        qi, ni, d = qi[order], ni[order], d[order]
        rank = np.arange(len(qi)) - np.searchsorted(qi, qi, side="left")
        keep = rank < k
        qi, ni, d = qi[keep], ni[keep], d[keep]
    return qi, ni, d


# ----------------------------------------------------------------------------------------------
# nuclei features
def nucleus_features(geoms: np.ndarray) -> np.ndarray:
    """(n, 4) float32: log1p(area µm²), convexity, elongation, circularity. Vectorised shapely.

    convexity = area(convex hull) / area; elongation = area(min rotated rectangle) / area(envelope);
    circularity = area / r² with r the minimum bounding radius.
    """
    if len(geoms) == 0:
        return np.zeros((0, 4), dtype=np.float32)
    area = shapely.area(geoms)
    safe = np.where(area > 0, area, 1e-9)
    convexity = shapely.area(shapely.convex_hull(geoms)) / safe
    env = shapely.area(shapely.envelope(geoms))
    elongation = shapely.area(shapely.minimum_rotated_rectangle(geoms)) / np.where(env > 0, env, 1e-9)
    r = shapely.minimum_bounding_radius(geoms)
    circularity = area / np.where(r > 0, r * r, 1e-9)
    feats = np.stack([np.log1p(area), convexity, elongation, circularity], axis=1)
    return np.nan_to_num(feats, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)


# ----------------------------------------------------------------------------------------------
def _check_tables(tx: pd.DataFrame, bd: pd.DataFrame) -> None:
    missing = [c for c in (S.X, S.Y, S.GENE) if c not in tx.columns]
    if missing:
        raise SeggerInputError(
            f"transcripts table lacks column(s) {missing} (found {list(tx.columns)[:12]}); read the input with segger.io.read_sample"
        )
    if len(tx) == 0:
        raise SeggerInputError("transcripts table is empty: nothing to segment (check the input file and the qv/control filters)")
    xy = tx[[S.X, S.Y]].to_numpy(dtype=np.float64)
    if not np.isfinite(xy).all():
        bad = int((~np.isfinite(xy)).any(axis=1).sum())
        raise SeggerInputError(f"transcripts table has {bad} rows with NaN/inf x or y: drop them (segger.io.read_sample does)")
    missing = [c for c in (S.BD_ID, S.GEOMETRY, S.X, S.Y) if c not in bd.columns]
    if missing:
        raise SeggerInputError(f"nuclei table lacks column(s) {missing}; build it with segger.io (polygons, labels or approximate_nuclei)")
    if bd[S.BD_ID].duplicated().any():
        dup = bd.loc[bd[S.BD_ID].duplicated(), S.BD_ID].iloc[0]
        raise SeggerInputError(f"nuclei table has duplicate id {dup!r}: each nucleus needs a unique bd_id")


def belongs_edges(tx: pd.DataFrame, bd: pd.DataFrame, mode: str = "auto") -> tuple[np.ndarray, np.ndarray, str]:
    """(tx_index, bd_index, mode_used) of transcripts inside a nucleus.

    ``flag``: the vendor nuclear flag plus the vendor cell id matching a nucleus id.
    ``polygon``: point-in-polygon against the nuclei (STRtree, vectorised); a point inside
    several overlapping nuclei goes to the one with the nearest centroid.
    ``auto``: ``flag`` when the nuclear flag exists and most flagged transcripts' cell ids name a
    nucleus, else ``polygon``.
    """
    n_bd = len(bd)
    empty = np.zeros(0, dtype=np.int64)
    if n_bd == 0:
        return empty, empty, "none"
    if mode in ("auto", "flag") and S.NUCLEAR in tx.columns and S.CELL_ID in tx.columns:
        nuclear = tx[S.NUCLEAR].fillna(False).to_numpy(dtype=bool)
        ids = tx[S.CELL_ID].to_numpy(dtype=object)
        lookup = pd.Index(bd[S.BD_ID].astype(str).to_numpy())
        cand = np.flatnonzero(nuclear)
        cand_ids = pd.Series(ids[cand]).astype("string").fillna("\x00").to_numpy(dtype=object)
        pos = lookup.get_indexer(cand_ids)
        hit = pos >= 0
        if mode == "flag" or (len(cand) > 0 and hit.mean() >= 0.5):
            return cand[hit].astype(np.int64), pos[hit].astype(np.int64), "flag"
        if mode == "flag":
            return empty, empty, "flag"
    if mode == "flag":
        raise SeggerInputError("belongs='flag' needs the transcripts' 'nuclear' and 'cell_id' columns; use belongs='polygon'")
    pts = shapely.points(tx[S.X].to_numpy(np.float64), tx[S.Y].to_numpy(np.float64))
    tree = shapely.STRtree(bd[S.GEOMETRY].to_numpy())
    pi, gi = tree.query(pts, predicate="within")
    if len(pi):
        cx, cy = bd[S.X].to_numpy()[gi], bd[S.Y].to_numpy()[gi]
        d2 = (tx[S.X].to_numpy()[pi] - cx) ** 2 + (tx[S.Y].to_numpy()[pi] - cy) ** 2
        order = np.lexsort((d2, pi))
        pi, gi = pi[order], gi[order]
        first = np.r_[True, pi[1:] != pi[:-1]]
        pi, gi = pi[first], gi[first]
    return pi.astype(np.int64), gi.astype(np.int64), "polygon"


def relative_outline_distance(xy: np.ndarray, geoms: np.ndarray | None, cand: np.ndarray) -> np.ndarray:
    """Per candidate edge: distance (µm) from the transcript to the nucleus outline (0 inside)
    minus the same distance to the transcript's nearest candidate nucleus. Vectorised shapely."""
    if geoms is None or cand.shape[1] == 0:
        return np.zeros(cand.shape[1], dtype=np.float32)
    pts = shapely.points(xy[cand[0], 0], xy[cand[0], 1])
    d = shapely.distance(pts, geoms[cand[1]])
    d = np.nan_to_num(d, nan=0.0)
    best = np.full(len(xy), np.inf)
    np.minimum.at(best, cand[0], d)
    return (d - best[cand[0]]).astype(np.float32)


def build_graph(transcripts: pd.DataFrame, nuclei: pd.DataFrame, params: GraphParams | None = None,
                vocab: GeneVocab | None = None) -> GraphBundle:
    """Build the Segger graph for ``transcripts`` and ``nuclei`` (tables as in :mod:`segger.schema`)."""
    params = (params or GraphParams()).validate()
    _check_tables(transcripts, nuclei)
    tx = transcripts.reset_index(drop=True)
    bd = nuclei.reset_index(drop=True)
    vocab = vocab or GeneVocab.from_genes(tx[S.GENE].astype(str).unique())

    x = tx[S.X].to_numpy(np.float64)
    y = tx[S.Y].to_numpy(np.float64)
    z = tx[S.Z].to_numpy(np.float64) if S.Z in tx.columns else np.zeros(len(tx))
    z = np.nan_to_num(z)
    xy = np.stack([x, y], axis=1)
    pts = np.stack([x, y, z], axis=1) if params.use_z else xy

    # tx–tx: node i receives from its neighbours j (edge j → i)
    qi, ni, _ = knn_edges(pts, params.k_tx, params.dist_tx)
    tx_tx = np.stack([ni, qi])

    # belongs
    b_tx, b_bd, mode_used = belongs_edges(tx, bd, params.belongs)
    belongs = np.stack([b_tx, b_bd])

    # candidates: k nearest nucleus centroids within dist_bd, plus the own nucleus
    bd_xy = bd[[S.X, S.Y]].to_numpy(np.float64) if len(bd) else np.zeros((0, 2))
    if len(bd):
        c_tx, c_bd, _ = knn_edges(bd_xy, params.k_bd, params.dist_bd, query=xy)
        key = np.concatenate([c_tx * len(bd) + c_bd, b_tx * len(bd) + b_bd])
        key = np.unique(key)
        cand = np.stack([key // len(bd), key % len(bd)])
    else:
        cand = np.zeros((2, 0), dtype=np.int64)
    d_rel = relative_outline_distance(xy, bd[S.GEOMETRY].to_numpy() if len(bd) else None, cand)

    geoms = bd[S.GEOMETRY].to_numpy() if len(bd) else np.zeros(0, dtype=object)
    data = HeteroData()
    data["tx"].x = torch.from_numpy(vocab.encode(tx[S.GENE].to_numpy()))
    data["tx"].pos = torch.from_numpy(np.stack([x, y, z], axis=1).astype(np.float32))
    data["bd"].x = torch.from_numpy(nucleus_features(geoms))
    data["bd"].pos = torch.from_numpy(bd_xy.astype(np.float32))
    data["bd"].area = torch.from_numpy(shapely.area(geoms).astype(np.float32) if len(bd) else np.zeros(0, np.float32))
    data["bd"].num_nodes = len(bd)
    data["tx"].num_nodes = len(tx)
    data[TX_TX].edge_index = torch.from_numpy(np.ascontiguousarray(tx_tx, dtype=np.int64))
    data[TX_BD].edge_index = torch.from_numpy(np.ascontiguousarray(belongs, dtype=np.int64))
    data[TX_CAND].edge_index = torch.from_numpy(np.ascontiguousarray(cand, dtype=np.int64))
    data[TX_CAND].d_rel = torch.from_numpy(d_rel)
    info = {"belongs_mode": mode_used}
    return GraphBundle(data=data, transcripts=tx, nuclei=bd, vocab=vocab, params=params, info=info)


# ----------------------------------------------------------------------------------------------
# sub-graphs and tiles
def subgraph(data: HeteroData, tx_idx: np.ndarray, bd_idx: np.ndarray) -> HeteroData:
    """Induced sub-graph on the given (sorted, unique) global tx and bd indices, re-indexed."""
    n_tx, n_bd = data["tx"].num_nodes, data["bd"].num_nodes
    tx_map = np.full(n_tx, -1, dtype=np.int64)
    tx_map[tx_idx] = np.arange(len(tx_idx))
    bd_map = np.full(n_bd, -1, dtype=np.int64)
    bd_map[bd_idx] = np.arange(len(bd_idx))
    out = HeteroData()
    for key in ("x", "pos"):
        out["tx"][key] = data["tx"][key][torch.from_numpy(tx_idx)]
    for key in ("x", "pos", "area"):
        out["bd"][key] = data["bd"][key][torch.from_numpy(bd_idx)]
    out["tx"].num_nodes = len(tx_idx)
    out["bd"].num_nodes = len(bd_idx)
    out["tx"].global_index = torch.from_numpy(np.asarray(tx_idx, dtype=np.int64))
    out["bd"].global_index = torch.from_numpy(np.asarray(bd_idx, dtype=np.int64))
    for et, (smap, dmap) in ((TX_TX, (tx_map, tx_map)), (TX_BD, (tx_map, bd_map)), (TX_CAND, (tx_map, bd_map))):
        ei = data[et].edge_index.numpy()
        s, d = smap[ei[0]], dmap[ei[1]]
        keep = (s >= 0) & (d >= 0)
        out[et].edge_index = torch.from_numpy(np.stack([s[keep], d[keep]]))
        if et == TX_CAND and "d_rel" in data[TX_CAND]:
            out[et].d_rel = data[TX_CAND].d_rel[torch.from_numpy(keep)]
    return out


def lookup_d_rel(data: HeteroData, index: torch.Tensor, default: float) -> torch.Tensor:
    """``d_rel`` of (tx, bd) pairs from the candidate edges; ``default`` for non-candidate pairs."""
    cand = data[TX_CAND].edge_index.cpu()
    n_bd = max(int(data["bd"].num_nodes), 1)
    ckey = cand[0] * n_bd + cand[1]
    order = torch.argsort(ckey)
    ckey = ckey[order]
    vals = data[TX_CAND].d_rel.cpu()[order] if "d_rel" in data[TX_CAND] else torch.zeros(len(ckey))
    key = index[0].cpu() * n_bd + index[1].cpu()
    pos = torch.searchsorted(ckey, key).clamp(max=max(len(ckey) - 1, 0))
    out = torch.full((index.shape[1],), float(default))
    if len(ckey):
        hit = ckey[pos] == key
        out[hit] = vals[pos[hit]]
    return out


@dataclass
class Tile:
    """A spatial tile: the transcripts it owns (``core``), and the ones it sees (core + margin)."""

    bounds: tuple[float, float, float, float]  # xmin, ymin, xmax, ymax of the core
    tx_idx: np.ndarray  # global tx indices inside core + margin (sorted)
    bd_idx: np.ndarray  # global bd indices with centroid inside core + margin (sorted)
    core_mask: np.ndarray  # bool over tx_idx: inside the core

    @property
    def n_core(self) -> int:
        return int(self.core_mask.sum())


def make_tiles(bundle: GraphBundle, tile_size: float, margin: float) -> list[Tile]:
    """Square tiles of ``tile_size`` µm covering the transcripts; each sees ``margin`` µm more.

    Every transcript is in exactly one tile's core. Empty tiles are skipped.
    """
    if tile_size <= 0 or margin < 0:
        raise SeggerInputError(f"tile_size={tile_size} and margin={margin} must be positive µm")
    pos = bundle.data["tx"].pos.numpy()[:, :2].astype(np.float64)
    bpos = bundle.data["bd"].pos.numpy().astype(np.float64)
    x0, y0 = pos.min(axis=0)
    x1, y1 = pos.max(axis=0)
    nx = max(1, int(np.ceil((x1 - x0 + 1e-9) / tile_size)))
    ny = max(1, int(np.ceil((y1 - y0 + 1e-9) / tile_size)))
    ix = np.minimum(((pos[:, 0] - x0) / tile_size).astype(np.int64), nx - 1)
    iy = np.minimum(((pos[:, 1] - y0) / tile_size).astype(np.int64), ny - 1)
    cell = ix * ny + iy
    order = np.argsort(cell, kind="stable")
    bounds_idx = np.searchsorted(cell[order], np.arange(nx * ny + 1))
    tree = cKDTree(pos)
    btree = cKDTree(bpos) if len(bpos) else None
    tiles = []
    for c in range(nx * ny):
        core = order[bounds_idx[c]:bounds_idx[c + 1]]
        if len(core) == 0:
            continue
        i, j = divmod(c, ny)
        bx0, by0 = x0 + i * tile_size, y0 + j * tile_size
        bx1, by1 = bx0 + tile_size, by0 + tile_size
        lo = np.array([bx0 - margin, by0 - margin])
        hi = np.array([bx1 + margin, by1 + margin])
        centre = (lo + hi) / 2
        half = (hi - lo) / 2
        # Chebyshev ball = the square tile + margin
        near = np.asarray(tree.query_ball_point(centre, r=float(half.max()), p=np.inf), dtype=np.int64)
        inside = np.all((pos[near] >= lo) & (pos[near] <= hi), axis=1)
        tx_idx = np.union1d(near[inside], core)
        if btree is not None:
            bn = np.asarray(btree.query_ball_point(centre, r=float(half.max()), p=np.inf), dtype=np.int64)
            bin_ = np.all((bpos[bn] >= lo) & (bpos[bn] <= hi), axis=1) if len(bn) else np.zeros(0, bool)
            bd_idx = np.sort(bn[bin_])
        else:
            bd_idx = np.zeros(0, dtype=np.int64)
        core_mask = np.isin(tx_idx, core, assume_unique=True)
        tiles.append(Tile((bx0, by0, bx1, by1), tx_idx, bd_idx, core_mask))
    return tiles


def tile_size_for(bundle: GraphBundle, target_tx: int) -> float:
    """Tile side (µm) that holds about ``target_tx`` transcripts at this sample's density."""
    pos = bundle.data["tx"].pos.numpy()[:, :2]
    ext = np.ptp(pos, axis=0).astype(np.float64) + 1e-6
    area = float(ext[0] * ext[1])
    n = max(len(pos), 1)
    return float(max(np.sqrt(area * target_tx / n), 10.0))
