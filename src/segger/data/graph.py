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
                                   message-passing edge; prediction scores these. Edge attributes:
                                   ``d_abs`` = distance (µm) from the transcript to the nucleus
                                   outline (0 inside) and ``d_rel`` = ``d_abs`` minus the smallest
                                   ``d_abs`` of the transcript's candidates (0 for the nearest).
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
from segger.params import check_fields, param
from segger.utils.gc import gc_paused

TX_TX, TX_BD, TX_CAND = S.TX_TX, S.TX_BD, S.TX_CAND  # declared in segger.schema


@dataclass
class GraphParams:
    """Graph-building parameters (µm)."""

    k_tx: int = param(5, "neighbours per transcript in the transcript–transcript graph", low=1, high=100)
    dist_tx: float = param(5.0, "longest transcript–transcript edge (a true upper bound)", unit="µm", low=0, high=1000,
                           low_open=True)
    k_bd: int = param(4, "candidate nuclei per transcript (the cells it may join)", low=1, high=100)
    dist_bd: float = param(20.0, "farthest nucleus centroid a transcript may take as a candidate", unit="µm", low=0,
                           high=1000, low_open=True)
    use_z: bool = param(False, "transcript–transcript neighbours in 3-D (x, y, z) instead of 2-D")
    belongs: str = param("auto", "how nuclear transcripts are linked to their nucleus: the vendor's nuclear flag and "
                                 "cell id (flag), point in polygon (polygon), or flag when present (auto)",
                         choices=("auto", "flag", "polygon"))
    max_distance: float | None = param(None, "farthest distance from a nucleus outline at which a transcript may join "
                                             "that nucleus; unset: estimated from the sample's transcript density "
                                             "(segger.data.reach)", unit="µm", low=0, high=1000)

    def validate(self) -> "GraphParams":
        check_fields(self, "graph parameter")
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

    @property
    def max_distance(self) -> float:
        """The reach (µm) this graph was built with (see :mod:`segger.data.reach`)."""
        return graph_max_distance(self.data)

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
    dist, idx = tree.query(q, k=kk, distance_upper_bound=max_dist, workers=_threads())
    if kk == 1:
        dist, idx = dist[:, None], idx[:, None]
    rows = np.broadcast_to(np.arange(len(q), dtype=np.int64)[:, None], idx.shape)
    ok = np.isfinite(dist)
    if self_query:
        ok &= idx != rows
        # a duplicate point can push the node itself out of its k+1 list: such a row has k+1
        # finite neighbours and no self match; drop its farthest (the lists are sorted)
        over = np.count_nonzero(ok, axis=1) > k
        if over.any():
            ok[over, kk - 1] = False
    qi, ni, d = rows[ok], idx[ok].astype(np.int64), dist[ok]
    return qi, ni, d


def _unique_int(a: np.ndarray) -> np.ndarray:
    """Sorted unique values of an int64 array (sort-based: numpy's hash-based unique is many
    times slower on millions of int64 keys)."""
    a = np.sort(a)
    if len(a) == 0:
        return a
    return a[np.r_[True, a[1:] != a[:-1]]]


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
    with gc_paused():
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


def _outline_distance(xy: np.ndarray, geoms: np.ndarray, cand: np.ndarray, chunk: int = 1 << 18) -> np.ndarray:
    """shapely distance (0 inside) per candidate edge. One point per *transcript* (not per edge),
    and the edges in chunks on a thread pool: shapely's vectorised calls release the GIL."""
    used = _unique_int(cand[0])
    pts = np.empty(len(xy), dtype=object)
    n = cand.shape[1]
    out = np.empty(n, dtype=np.float64)

    def make(s: int) -> None:
        u = used[s:s + chunk]
        pts[u] = shapely.points(xy[u])

    def work(s: int) -> None:
        e = min(s + chunk, n)
        out[s:e] = shapely.distance(pts[cand[0, s:e]], geoms[cand[1, s:e]])

    workers = min(max(len(used), n) // chunk + 1, _threads())
    if workers > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(workers) as ex:
            with gc_paused():
                list(ex.map(make, range(0, len(used), chunk)))
            list(ex.map(work, range(0, n, chunk)))
    else:
        with gc_paused():
            for s in range(0, len(used), chunk):
                make(s)
        for s in range(0, n, chunk):
            work(s)
    return np.nan_to_num(out, nan=0.0)


def _threads() -> int:
    """Threads for shapely work: torch's intra-op setting (so a tile worker limited to one
    thread stays at one), at most the CPUs this process may use."""
    from segger.utils.cpus import cpus_available

    return max(1, min(torch.get_num_threads(), cpus_available()))


def outline_distances(xy: np.ndarray, geoms: np.ndarray | None, cand: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per candidate edge ``(d_abs, d_rel)`` (float32 µm): the distance from the transcript to the
    nucleus outline (0 inside), and that distance minus the same distance to the transcript's
    nearest candidate nucleus (0 for the nearest). Vectorised shapely."""
    if geoms is None or cand.shape[1] == 0:
        z = np.zeros(cand.shape[1], dtype=np.float32)
        return z, z.copy()
    d = _outline_distance(xy, geoms, cand)
    best = np.full(len(xy), np.inf)
    np.minimum.at(best, cand[0], d)
    return d.astype(np.float32), (d - best[cand[0]]).astype(np.float32)


def relative_outline_distance(xy: np.ndarray, geoms: np.ndarray | None, cand: np.ndarray) -> np.ndarray:
    """``d_rel`` of :func:`outline_distances`."""
    return outline_distances(xy, geoms, cand)[1]


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
        key = _unique_int(key)
        cand = np.stack([key // len(bd), key % len(bd)])
    else:
        cand = np.zeros((2, 0), dtype=np.int64)
    d_abs, d_rel = outline_distances(xy, bd[S.GEOMETRY].to_numpy() if len(bd) else None, cand)

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
    data[TX_CAND].d_abs = torch.from_numpy(d_abs)
    data[TX_CAND].d_rel = torch.from_numpy(d_rel)
    if params.max_distance is not None:
        reach, how = float(params.max_distance), "given"
    else:
        from segger.data.reach import estimate_reach

        reach, how = estimate_reach(xy, geoms), "estimated"
    data.max_distance = torch.tensor(reach, dtype=torch.float32)
    info = {"belongs_mode": mode_used, "max_distance_um": reach, "max_distance_source": how}
    return GraphBundle(data=data, transcripts=tx, nuclei=bd, vocab=vocab, params=params, info=info)


# ----------------------------------------------------------------------------------------------
# sub-graphs and tiles
_CSR_CACHE: dict[int, tuple] = {}


def _edges_by_node(edge_index: torch.Tensor, row: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``(ptr, order)``: the edges sorted by their ``row`` end (CSR), built once per edge tensor
    (cached while the tensor lives) so that a sub-graph costs its own edges, not the whole graph."""
    key = id(edge_index)
    hit = _CSR_CACHE.get(key)
    if hit is not None and hit[0]() is edge_index and hit[1] == (row, n, tuple(edge_index.shape)):
        return hit[2], hit[3]
    r = edge_index[row].numpy()
    order = np.argsort(r, kind="stable")
    ptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(r, minlength=n)[:n], out=ptr[1:])
    import weakref

    try:
        ref = weakref.ref(edge_index, lambda _r, k=key: _CSR_CACHE.pop(k, None))
        _CSR_CACHE[key] = (ref, (row, n, tuple(edge_index.shape)), ptr, order)
    except TypeError:  # pragma: no cover - not weak-referenceable
        pass
    return ptr, order


def _edge_ids(ptr: np.ndarray, order: np.ndarray, nodes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ids (ascending) of the edges whose CSR end is one of ``nodes``, and the position in
    ``nodes`` of that end."""
    starts, ends = ptr[nodes], ptr[np.asarray(nodes) + 1]
    lens = ends - starts
    total = int(lens.sum())
    if total == 0:
        e = np.zeros(0, dtype=np.int64)
        return e, e
    offs = np.repeat(starts - np.cumsum(np.r_[0, lens[:-1]]), lens) + np.arange(total)
    ids = order[offs]
    srt = np.argsort(ids, kind="stable")
    return ids[srt], np.repeat(np.arange(len(nodes), dtype=np.int64), lens)[srt]


def _local(idx: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Position of each value in the sorted ``idx`` (-1 when absent)."""
    if len(idx) == 0:
        return np.full(len(values), -1, dtype=np.int64)
    pos = np.searchsorted(idx, values)
    pos = np.minimum(pos, len(idx) - 1)
    return np.where(idx[pos] == values, pos, -1).astype(np.int64)


def subgraph(data: HeteroData, tx_idx: np.ndarray, bd_idx: np.ndarray) -> HeteroData:
    """Induced sub-graph on the given (sorted, unique) global tx and bd indices, re-indexed.

    Edges keep their order. The cost is the sub-graph's own edges (a CSR index of each edge type
    by its transcript end is built on first use and cached), so tiling a large graph is linear.
    """
    tx_idx = np.asarray(tx_idx, dtype=np.int64)
    bd_idx = np.asarray(bd_idx, dtype=np.int64)
    n_tx = data["tx"].num_nodes
    out = HeteroData()
    for key in ("x", "pos"):
        out["tx"][key] = data["tx"][key][torch.from_numpy(tx_idx)]
    for key in ("x", "pos", "area"):
        out["bd"][key] = data["bd"][key][torch.from_numpy(bd_idx)]
    out["tx"].num_nodes = len(tx_idx)
    out["bd"].num_nodes = len(bd_idx)
    if "max_distance" in data:
        out.max_distance = data.max_distance
    out["tx"].global_index = torch.from_numpy(tx_idx.copy())
    out["bd"].global_index = torch.from_numpy(bd_idx.copy())
    # (edge type, the row that is a transcript of the tile, index of the other end)
    for et, row, other in ((TX_TX, 1, tx_idx), (TX_BD, 0, bd_idx), (TX_CAND, 0, bd_idx)):
        ei_t = data[et].edge_index
        ptr, order = _edges_by_node(ei_t, row, n_tx)
        e, mine = _edge_ids(ptr, order, tx_idx)
        theirs = _local(other, ei_t.numpy()[1 - row, e])
        keep = theirs >= 0
        s, d = (theirs, mine) if row == 1 else (mine, theirs)
        out[et].edge_index = torch.from_numpy(np.stack([s[keep], d[keep]]).astype(np.int64))
        if et == TX_CAND:
            for attr in GEOMETRY_ATTRS:
                if attr in data[TX_CAND]:
                    out[et][attr] = data[TX_CAND][attr][torch.from_numpy(e[keep])]
    return out


def graph_max_distance(data: HeteroData) -> float:
    """``max_distance`` (µm) of a graph or sub-graph; infinite for a graph built without one."""
    return float(data.max_distance) if "max_distance" in data else float("inf")


#: candidate-edge attributes the link head reads, in this order (see :func:`edge_geometry`)
GEOMETRY_ATTRS = ("d_abs", "d_rel")


def edge_geometry(data: HeteroData, mask: torch.Tensor | np.ndarray | None = None) -> torch.Tensor | None:
    """``(E, 2)`` float tensor ``[d_abs, d_rel]`` of the candidate edges (``mask`` selects some);
    ``None`` for a graph built without them."""
    store = data[TX_CAND]
    if not all(a in store for a in GEOMETRY_ATTRS):
        return None
    geo = torch.stack([store[a].float() for a in GEOMETRY_ATTRS], dim=1)
    if mask is not None:
        geo = geo[torch.as_tensor(mask)]
    return geo


def lookup_geometry(data: HeteroData, index: torch.Tensor, default: float) -> torch.Tensor:
    """``(L, 2)`` ``[d_abs, d_rel]`` of (tx, bd) pairs from the candidate edges; ``default`` µm for
    both where a pair is not a candidate (a nucleus that far is no candidate)."""
    cand = data[TX_CAND].edge_index.cpu()
    n_bd = max(int(data["bd"].num_nodes), 1)
    ckey = cand[0] * n_bd + cand[1]
    order = torch.argsort(ckey)
    ckey = ckey[order]
    geo = edge_geometry(data)
    vals = geo.cpu()[order] if geo is not None else torch.zeros(len(ckey), 2)
    key = index[0].cpu() * n_bd + index[1].cpu()
    pos = torch.searchsorted(ckey, key).clamp(max=max(len(ckey) - 1, 0))
    out = torch.full((index.shape[1], 2), float(default))
    if len(ckey):
        hit = ckey[pos] == key
        out[hit] = vals[pos[hit]]
    return out


def lookup_d_rel(data: HeteroData, index: torch.Tensor, default: float) -> torch.Tensor:
    """``d_rel`` of (tx, bd) pairs (see :func:`lookup_geometry`)."""
    return lookup_geometry(data, index, default)[:, 1]


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
