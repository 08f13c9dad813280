"""Prediction: score candidate (transcript, nucleus) links, assign, and form fragments.

Each transcript's candidates are its ``('tx','candidate','bd')`` edges (its ``k_bd`` nearest
nuclei within ``dist_bd``). Their score is ``sigmoid(logit)`` of the trained link head
(:class:`segger.models.LinkHead`: GNN expression term ``<z_tx, z_bd>`` plus the learned geometric
term of ``d_abs``/``d_rel``). The scores are computed once (:func:`iter_predict`) and cached in a
:class:`Prediction`, whose :meth:`Prediction.assign` re-thresholds instantly (no GNN re-run).

Assignment rule, per transcript:

1. candidates farther than ``max_distance`` µm from the nucleus outline are out (the graph's reach,
   :mod:`segger.data.reach`, unless ``PredictConfig.max_distance`` overrides it);
2. geometry decides where it is unambiguous: the nearest remaining nucleus outline wins, unless
   another nucleus lies within ``ambiguity`` µm of that distance (two touching cells, a transcript
   between them) and the GNN's expression term for it (``<z_tx, z_bd> + b_e``, a log-odds) beats the
   nearest one's by more than ``move_margin`` (default 2, i.e. e² ≈ 7× as likely) — there the expression
   evidence decides;
3. the transcript joins the winner when the winner's *geometric* score (the calibrated
   probability, from distance alone, that the transcript lies in that nucleus's cell) is at least
   ``score_cut``; otherwise it is unassigned. So the cut sets coverage the same way for every
   model, and the GNN decides between competing nuclei.

With the plain Segger score (``link_terms="expression"``) there is no geometry: every candidate
within the reach competes on ``sigmoid(<z_tx, z_bd> + b)``, which is also the score.

Fragments (nucleus-free cells) are formed only from transcripts that no nucleus can claim: no
candidate nucleus outline within ``max_distance``. A transcript near a nucleus that scores below
``score_cut`` stays unassigned instead of splitting that cell. Among the free transcripts, tx–tx graph edges are kept
when the *GNN output embeddings* of both ends agree (cosine similarity ``>= fragment_similarity``);
connected components of at least ``min_fragment_size`` transcripts become fragment cells, unless
they hold more than ``max_fragment_size`` transcripts or span more than ``max_fragment_extent`` µm
(a component that size is not one cell: its transcripts stay unassigned). Because the edges are
the spatial kNN graph (bounded by ``dist_tx``) and the embeddings are contextual, a component is a
spatially contiguous group whose neighbourhoods look alike. Fragment ids never collide with
nucleus ids (:meth:`Prediction.fragment_prefix`).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Iterator

import numpy as np
import pandas as pd
import torch
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from segger import schema as S
from segger.data.graph import (TX_BD, TX_CAND, TX_TX, GraphBundle, edge_geometry, graph_max_distance, make_tiles,
                                subgraph, tile_size_for)
from segger.errors import SeggerInputError
from segger.params import check_fields, param
from segger.progress import Progress
from segger.utils.device import torch_device


@dataclass
class PredictConfig:
    score_cut: float = param(0.5, "lowest (geometric) link score at which a transcript joins a cell: assigned ⇔ "
                                  "score ≥ cut, so 0 assigns every transcript with a nucleus within the reach and 1 "
                                  "keeps only scores of exactly 1.0", low=0, high=1)
    fragments: bool = param(True, "form nucleus-free fragment cells from transcripts no nucleus can claim")
    fragment_similarity: float = param(0.9, "lowest cosine similarity of the GNN embeddings along a fragment edge",
                                       low=-1, high=1)
    min_fragment_size: int = param(10, "fewest transcripts in a fragment cell", low=2, high=1_000_000)
    max_fragment_size: int = param(400, "most transcripts in a fragment cell (a larger nucleus-free component is not "
                                        "one cell: left unassigned)", low=2, high=100_000_000)
    max_fragment_extent: float = param(30.0, "longest side of a fragment's bounding box", unit="µm", low=0, high=1e5,
                                       low_open=True)
    ambiguity: float = param(1.0, "nuclei this close to the nearest outline compete on their expression", unit="µm",
                             low=0, high=100)
    move_margin: float = param(2.0, "expression margin a competing nucleus must win by to take a transcript from the "
                                    "nearest", unit="log-odds", low=0, high=100)
    max_distance: float | None = param(None, "farthest distance from a nucleus outline at which a transcript is "
                                             "assigned; unset: the graph's (estimated) reach", unit="µm", low=0,
                                       high=1000, option="--predict-max-distance")
    tile_tx: int = param(250_000, "predict in tiles of about this many transcripts (larger inputs; ~0.5 GB each)",
                         low=1, high=1_000_000_000, option="--predict-tile-tx")
    tile_margin: float = param(30.0, "context around a prediction tile", unit="µm", low=0, high=1e4,
                               option="--predict-tile-margin")
    device: str = param("auto", "auto, cpu, cuda or cuda:N", cli=False, option="--device")
    deterministic: bool = param(True, "on CPU: one intra-op thread, so runs repeat bit for bit", shared=True)

    def validate(self) -> "PredictConfig":
        check_fields(self, "prediction setting")
        if self.max_fragment_size < self.min_fragment_size:
            raise SeggerInputError(f"max_fragment_size={self.max_fragment_size} must be at least min_fragment_size "
                                   f"({self.min_fragment_size})")
        return self

    def to_dict(self) -> dict:
        return asdict(self)


#: the torch device of a device name (one resolver: :mod:`segger.utils.device`)
_device = torch_device


def best_per_segment(t: np.ndarray, b: np.ndarray, sc: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``(best_b, best_score)`` per group ``t`` (length ``n``; ``-1`` / 0 where a group is empty): the
    highest score, ties to the lower ``b``. O(E), no 3-key sort when ``t`` is already sorted."""
    best_b = np.full(n, -1, dtype=np.int64)
    best_s = np.zeros(n, dtype=np.float32)
    if len(t) == 0:
        return best_b, best_s
    if (t[1:] < t[:-1]).any():
        order = np.argsort(t, kind="stable")
        t, b, sc = t[order], b[order], sc[order]
    starts = np.flatnonzero(np.r_[True, t[1:] != t[:-1]])
    seg_max = np.maximum.reduceat(sc, starts)
    seg = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(t)]))
    big = np.iinfo(np.int64).max
    best_b[t[starts]] = np.minimum.reduceat(np.where(sc == seg_max[seg], b, big), starts)
    best_s[t[starts]] = seg_max
    return best_b, best_s


class Prediction:
    """Cached candidate scores for one graph; :meth:`assign` turns them into a result table.

    Per candidate edge: ``cand_score`` (the reported score, compared with ``score_cut``),
    ``cand_d_abs`` (µm to the outline) and ``cand_choice`` (the logit that decides between nuclei
    within ``ambiguity`` µm of the nearest; see the module docstring). Without ``cand_d_abs`` every
    candidate competes on its score alone (no reach, no ambiguity window).
    """

    def __init__(self, bundle: GraphBundle, cand_tx: np.ndarray, cand_bd: np.ndarray, cand_score: np.ndarray,
                 nn_src: np.ndarray, nn_dst: np.ndarray, nn_sim: np.ndarray, config: PredictConfig,
                 seconds: float = 0.0, cand_d_abs: np.ndarray | None = None, cand_choice: np.ndarray | None = None,
                 geometric: bool = True):
        self.bundle, self.config, self.seconds = bundle, config, seconds
        self.cand_tx, self.cand_bd = np.asarray(cand_tx, np.int64), np.asarray(cand_bd, np.int64)
        self.cand_score = np.nan_to_num(np.asarray(cand_score, np.float32), nan=0.0)
        self.cand_d_abs = None if cand_d_abs is None else np.asarray(cand_d_abs, np.float32)
        self.cand_choice = None if cand_choice is None else np.asarray(cand_choice, np.float32)
        self.geometric = bool(geometric)  # False: the plain Segger score, no ambiguity window
        self.nn_src, self.nn_dst, self.nn_sim = nn_src, nn_dst, nn_sim
        n_tx = bundle.data["tx"].num_nodes
        self._bd_ids = None
        self._prefix = None
        self._frag_cache = None  # (rule key, best_bd array, labels): fragments do not depend on the cut
        bel = bundle.data[TX_BD].edge_index.numpy()
        self.own_bd = np.full(n_tx, -1, dtype=np.int64)
        self.own_bd[bel[0]] = bel[1]
        self._rule = None
        self.set_rule(config.max_distance, config.ambiguity)

    @property
    def max_distance(self) -> float:
        """The reach in effect (µm): ``PredictConfig.max_distance`` or the graph's."""
        return self._rule[0]

    def set_rule(self, max_distance: float | None = None, ambiguity: float | None = None) -> None:
        """Recompute each transcript's winner for another reach / ambiguity (no GNN re-run)."""
        reach = graph_max_distance(self.bundle.data) if max_distance is None else float(max_distance)
        amb = self.config.ambiguity if ambiguity is None else float(ambiguity)
        if self._rule == (reach, amb):
            return
        self._rule = (reach, amb)
        n_tx = self.n_tx if hasattr(self, "best_bd") else self.bundle.data["tx"].num_nodes
        t, b, sc = self.cand_tx, self.cand_bd, self.cand_score
        self.nearest_bd = np.full(n_tx, -1, dtype=np.int64)
        if self.cand_d_abs is None or not len(t):
            self.best_bd, self.best_score = best_per_segment(t, b, sc, n_tx)
            return
        d = self.cand_d_abs
        ok = d <= reach
        d1 = np.full(n_tx, np.inf, dtype=np.float32)
        np.minimum.at(d1, t[ok], d[ok])
        near = ok & (d == d1[t])
        self.nearest_bd, _ = best_per_segment(t[near], b[near], -b[near].astype(np.float32), n_tx)
        if not self.geometric:  # plain score: every candidate within the reach competes on it
            self.best_bd, self.best_score = best_per_segment(t[ok], b[ok], sc[ok], n_tx)
            return
        winner = self.nearest_bd.copy()
        if self.cand_choice is not None and amb > 0:
            ch = self.cand_choice
            is_near = ok & (b == self.nearest_bd[t])
            near_choice = np.full(n_tx, np.nan, dtype=np.float32)
            near_choice[t[is_near]] = ch[is_near]
            rival = ok & ~is_near & (d <= d1[t] + amb) & (ch - near_choice[t] > self.config.move_margin)
            if rival.any():
                rb, _ = best_per_segment(t[rival], b[rival], ch[rival], n_tx)
                moved = rb >= 0
                winner[moved] = rb[moved]
        # the winner's own score
        has = winner >= 0
        self.best_bd = winner
        self.best_score = np.zeros(n_tx, dtype=np.float32)
        sel = ok & (b == winner[t])
        self.best_score[t[sel]] = sc[sel]
        self.best_score[~has] = 0.0

    @property
    def n_tx(self) -> int:
        return len(self.best_bd)

    def fragment_labels(self, unassigned: np.ndarray, similarity: float, min_size: int,
                        max_size: int | None = None, max_extent: float | None = None) -> np.ndarray:
        """Fragment index per transcript (-1 = none) over the ``unassigned`` transcripts that no
        nucleus can claim (no candidate within the reach)."""
        cfg = self.config
        max_size = cfg.max_fragment_size if max_size is None else int(max_size)
        max_extent = cfg.max_fragment_extent if max_extent is None else float(max_extent)
        free = unassigned & (self.best_bd < 0)
        keep = free[self.nn_src] & free[self.nn_dst] & (self.nn_sim >= similarity)
        labels = np.full(self.n_tx, -1, dtype=np.int64)
        if not keep.any():
            return labels
        s, d = self.nn_src[keep], self.nn_dst[keep]
        g = coo_matrix((np.ones(len(s), dtype=np.int8), (s, d)), shape=(self.n_tx, self.n_tx)).tocsr()
        _, comp = connected_components(g, directed=True, connection="weak")
        comp = np.where(free, comp, -1)
        valid = comp >= 0
        n_comp = comp.max() + 1
        sizes = np.bincount(comp[valid], minlength=n_comp)
        pos = self.bundle.data["tx"].pos.numpy()[:, :2]
        extent = np.zeros(n_comp)
        for axis in (0, 1):
            lo = np.full(n_comp, np.inf)
            hi = np.full(n_comp, -np.inf)
            np.minimum.at(lo, comp[valid], pos[valid, axis])
            np.maximum.at(hi, comp[valid], pos[valid, axis])
            extent = np.maximum(extent, np.where(sizes > 0, hi - lo, 0.0))
        big = np.flatnonzero((sizes >= min_size) & (sizes <= max_size) & (extent <= max_extent))
        if len(big) == 0:
            return labels
        # number fragments by their first transcript (deterministic)
        first_idx = np.full(n_comp, np.iinfo(np.int64).max)
        np.minimum.at(first_idx, comp[valid], np.flatnonzero(valid))
        big = big[np.argsort(first_idx[big])]
        remap = np.full(n_comp, -1, dtype=np.int64)
        remap[big] = np.arange(len(big))
        labels[valid] = remap[comp[valid]]
        return labels

    def assign_codes(self, score_cut: float | None = None, fragments: bool | None = None,
                     fragment_similarity: float | None = None,
                     min_fragment_size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Integer form of :meth:`assign` (cheap; for recolouring): ``(cell_code, kind_code)``.

        ``cell_code``: nucleus index ``>= 0``, ``-1`` unassigned, ``-2 - k`` fragment ``k``.
        ``kind_code``: index into :data:`segger.schema.ASSIGNMENT_KINDS`.
        """
        cfg = self.config
        cut = cfg.score_cut if score_cut is None else float(score_cut)
        frag = cfg.fragments if fragments is None else bool(fragments)
        sim = cfg.fragment_similarity if fragment_similarity is None else float(fragment_similarity)
        mfs = cfg.min_fragment_size if min_fragment_size is None else int(min_fragment_size)
        assigned = (self.best_bd >= 0) & (self.best_score >= cut)
        code = np.where(assigned, self.best_bd, -1)
        kind = np.full(self.n_tx, 3, dtype=np.int8)  # none
        kind[assigned] = 1  # cytoplasm
        kind[assigned & (self.own_bd == self.best_bd)] = 0  # nucleus
        if frag:
            labels = self._fragments(sim, mfs)
            fm = labels >= 0
            code[fm] = -2 - labels[fm]
            kind[fm] = 2  # fragment
        return code, kind

    def fragment_prefix(self) -> str:
        """The prefix of generated fragment ids: ``fragment-``, or a longer one that no nucleus id
        starts with, so that a vendor id such as ``fragment-3`` never merges with a fragment."""
        if self._prefix is None:
            ids = self._nucleus_ids()
            prefix = "fragment-"
            while len(ids) and pd.Series(ids, dtype=object).str.startswith(prefix).any():
                prefix = "segger-" + prefix
            self._prefix = prefix
        return self._prefix

    def _nucleus_ids(self) -> np.ndarray:
        if self._bd_ids is None:
            self._bd_ids = self.bundle.nuclei[S.BD_ID].astype(str).to_numpy(dtype=object)
        return self._bd_ids

    def _fragments(self, similarity: float, min_size: int) -> np.ndarray:
        """:meth:`fragment_labels` of the transcripts no nucleus can claim, cached.

        Fragments form only where ``best_bd < 0`` (no candidate within the reach), and those
        transcripts are unassigned at every score cut, so the labels depend on the fragment rule and
        the reach only: a re-threshold (the napari slider) reuses them instead of re-running the
        connected components."""
        cfg = self.config
        key = (float(similarity), int(min_size), int(cfg.max_fragment_size), float(cfg.max_fragment_extent))
        cached = self._frag_cache
        if cached is not None and cached[0] == key and cached[1] is self.best_bd:
            return cached[2]
        labels = self.fragment_labels(self.best_bd < 0, similarity, min_size)
        labels.setflags(write=False)
        self._frag_cache = (key, self.best_bd, labels)
        return labels

    def cell_categories(self, code: np.ndarray) -> tuple[np.ndarray, pd.Index]:
        """Cell codes from :meth:`assign_codes` as ``(category code per transcript, categories)``.

        Categories: every nucleus id, then the fragment ids, then ``UNASSIGNED`` (last) — the ids
        of :meth:`cell_ids` without building a million strings: ``categories[codes]`` is the id.
        """
        ids = self._nucleus_ids()
        n_bd = len(ids)
        fm = code <= -2
        n_frag = int(-2 - code[fm].min()) + 1 if fm.any() else 0
        prefix = self.fragment_prefix()
        cats = pd.Index(np.concatenate([
            ids, np.array([f"{prefix}{i}" for i in range(n_frag)], dtype=object),
            np.array([S.UNASSIGNED], dtype=object)]), dtype=object)
        codes = np.where(code >= 0, code, n_bd + n_frag)
        codes[fm] = n_bd + (-2 - code[fm])
        if not cats.is_unique:  # duplicated nucleus ids: one category per distinct id
            uniq, inv = np.unique(cats.to_numpy(dtype=object).astype(str), return_inverse=True)
            cats, codes = pd.Index(uniq, dtype=object), inv[codes]
        return codes.astype(np.int32), cats

    def cell_ids(self, code: np.ndarray) -> np.ndarray:
        """``segger_cell_id`` strings for cell codes from :meth:`assign_codes`."""
        codes, cats = self.cell_categories(code)
        return cats.to_numpy(dtype=object)[codes]

    def assign(self, score_cut: float | None = None, fragments: bool | None = None,
               fragment_similarity: float | None = None, min_fragment_size: int | None = None) -> pd.DataFrame:
        """Result table: the transcripts + ``segger_cell_id``, ``score``, ``assignment``."""
        return self.assign_with_codes(score_cut, fragments, fragment_similarity, min_fragment_size)[0]

    def assign_with_codes(self, score_cut: float | None = None, fragments: bool | None = None,
                          fragment_similarity: float | None = None, min_fragment_size: int | None = None,
                          ) -> tuple[pd.DataFrame, "AssignCodes"]:
        """:meth:`assign` and the same assignment in integer form (:class:`AssignCodes`), which a
        viewer recolours from without factorising a million id strings again."""
        code, kind = self.assign_codes(score_cut, fragments, fragment_similarity, min_fragment_size)
        cell_codes, cats = self.cell_categories(code)
        out = self.bundle.transcripts.copy(deep=False)  # new columns only: the input table is untouched
        out[S.SEGGER_CELL_ID] = cats.to_numpy(dtype=object)[cell_codes]
        out[S.SCORE] = self.best_score
        out[S.ASSIGNMENT] = pd.Categorical.from_codes(kind, categories=list(S.ASSIGNMENT_KINDS))
        return out, AssignCodes(cell_codes, cats, kind)


@dataclass(frozen=True)
class AssignCodes:
    """An assignment in integer form: ``categories[cell_codes]`` is each transcript's
    ``segger_cell_id`` (``UNASSIGNED`` is the last category), ``kind`` indexes
    :data:`segger.schema.ASSIGNMENT_KINDS`."""

    cell_codes: np.ndarray
    categories: pd.Index
    kind: np.ndarray

    def cell_id_categorical(self) -> pd.Categorical:
        return pd.Categorical.from_codes(self.cell_codes, categories=self.categories, validate=False)

    def kind_categorical(self) -> pd.Categorical:
        return pd.Categorical.from_codes(self.kind, categories=list(S.ASSIGNMENT_KINDS), validate=False)


@torch.no_grad()
def embed(model: torch.nn.Module, data, device: torch.device, drop_belongs: bool = False,
          workspace=None) -> dict[str, torch.Tensor]:
    """Node embeddings of a (sub-)graph with the model in eval mode (``workspace``: buffers of the
    fused path reused across calls, :class:`segger.models.fused.Workspace`)."""
    model.eval()
    x_dict = {"tx": data["tx"].x.to(device), "bd": data["bd"].x.to(device)}
    ei = {TX_BD: data[TX_BD].edge_index.to(device), TX_TX: data[TX_TX].edge_index.to(device)}
    if drop_belongs:
        ei[TX_BD] = ei[TX_BD][:, :0]
    use_amp = device.type == "cuda"
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_amp):
        # the model's inference forward: the fused path (same maths as the PyG forward in cache-sized
        # blocks, ~10× faster on a CPU) where its configuration allows, else the model itself
        if hasattr(model, "infer"):
            z = model.infer(x_dict, ei, workspace=workspace)
        else:
            from segger.models.fused import infer

            z = infer(model, x_dict, ei, workspace=workspace)
    return {k: v.float() for k, v in z.items()}


@torch.no_grad()
def _pair_scores(z_a: torch.Tensor, z_b: torch.Tensor, ia: np.ndarray, ib: np.ndarray, batch: int | None = None,
                 cosine: bool = False, head=None, geo: torch.Tensor | None = None) -> np.ndarray:
    """``sigmoid(head(<a, b>, geo))`` (or the cosine similarity) for the listed pairs, in batches
    (cache-sized on a CPU, large on a GPU). Link scores of a trained model: :func:`score_region`."""
    out = np.empty(len(ia), dtype=np.float32)
    dev = z_a.device
    if batch is None:
        batch = 1 << 15 if dev.type == "cpu" else 1 << 22
    if cosine:
        z_a = torch.nn.functional.normalize(z_a, dim=-1)
        z_b = z_a if z_b is None else torch.nn.functional.normalize(z_b, dim=-1)
    for s in range(0, len(ia), batch):
        a = torch.from_numpy(ia[s:s + batch]).to(dev)
        b = torch.from_numpy(ib[s:s + batch]).to(dev)
        # index_select + in-place product: ~2.5× faster than z_a[a] * z_b[b] on a CPU
        dot = z_a.index_select(0, a.long()).mul_(z_b.index_select(0, b.long())).sum(-1)
        if head is not None:
            dot = head(dot, None if geo is None else geo[s:s + batch].to(dev))
        out[s:s + batch] = (dot if cosine else torch.sigmoid(dot)).detach().float().cpu().numpy()
    return out


@torch.no_grad()
def _link_scores(z_tx: torch.Tensor, z_bd: torch.Tensor, c: np.ndarray, head, geo: torch.Tensor | None,
                 batch: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """``(score, choice)`` per candidate pair (see the module docstring): with geometry, the score
    is ``sigmoid(geometry)`` and the choice logit the expression term (``None`` for the
    distance-only ablation: the nearest nucleus always wins); without geometry (the plain Segger
    score) the score is ``sigmoid(<z_tx, z_bd> + b)`` and there is no choice logit."""
    dev = z_tx.device
    n = c.shape[1]
    if batch is None:
        batch = 1 << 15 if dev.type == "cpu" else 1 << 22
    geometric = head is not None and head.spatial and geo is not None
    score = np.empty(n, dtype=np.float32)
    choice = np.empty(n, dtype=np.float32) if geometric and head.terms == "full" else None
    for s in range(0, n, batch):
        a = torch.from_numpy(c[0, s:s + batch]).to(dev)
        b = torch.from_numpy(c[1, s:s + batch]).to(dev)
        dot = z_tx.index_select(0, a.long()).mul_(z_bd.index_select(0, b.long())).sum(-1).float()
        if not geometric:
            logit = dot if head is None else head(dot, None)
            score[s:s + batch] = torch.sigmoid(logit).cpu().numpy()
            continue
        g = head.geometry(geo[s:s + batch].to(dev))
        score[s:s + batch] = torch.sigmoid(g).cpu().numpy()
        if choice is not None:
            choice[s:s + batch] = head.expression_logit(dot).cpu().numpy()
    return score, choice


@dataclass
class RegionScores:
    """Scores of one (sub-)graph's core transcripts, in the sub-graph's local indices."""

    cand: np.ndarray  # (2, E) tx, bd
    score: np.ndarray  # (E,) link score compared with score_cut
    choice: np.ndarray | None  # (E,) logit deciding between competing nuclei (None: plain score)
    d_abs: np.ndarray | None  # (E,) µm to the outline
    nn: np.ndarray  # (2, N) tx-tx edges (src, dst) whose dst is a core transcript
    sim: np.ndarray  # (N,) cosine similarity of the GNN embeddings


def score_region(model: torch.nn.Module, sub, device: torch.device, core: np.ndarray | None = None,
                 workspace=None) -> RegionScores:
    """Embed a (sub-)graph once and score its core transcripts' candidate links and tx–tx edges.

    The one scorer of prediction, tiled prediction and re-prediction after fine-tuning
    (``workspace``: see :func:`embed`; one per tile loop).
    """
    z = embed(model, sub, device, workspace=workspace)
    head = getattr(model, "head", None)
    c = sub[TX_CAND].edge_index.numpy()
    e = sub[TX_TX].edge_index.numpy()
    cm = np.ones(c.shape[1], dtype=bool) if core is None else core[c[0]]
    geo = edge_geometry(sub, torch.from_numpy(cm))
    c = c[:, cm]
    if core is not None:
        e = e[:, core[e[1]]]
    side = model.tx_side(z) if hasattr(model, "tx_side") else z["tx"]
    cs, choice = _link_scores(side, z["bd"], c, head, geo)
    ns = _pair_scores(z["tx"], z["tx"], e[0], e[1], cosine=True)
    d_abs = None if geo is None else geo[:, 0].numpy().astype(np.float32)
    return RegionScores(c, cs, choice, d_abs, e, ns)


def iter_predict(model: torch.nn.Module, bundle: GraphBundle, config: PredictConfig | None = None) -> Iterator[Progress]:
    """Score every candidate link (in spatial tiles for large inputs); returns a :class:`Prediction`."""
    from segger.progress import deterministic_threads

    config = (config or PredictConfig()).validate()
    device = _device(config.device)
    with deterministic_threads(config.deterministic and device.type == "cpu"):
        if device.type == "cuda":  # out of GPU memory: smaller tiles, then the CPU, with a notice
            from dataclasses import replace

            from segger.prediction.oom import iter_with_oom_fallback

            result = yield from iter_with_oom_fallback(
                lambda dev, tile: _iter_predict(model, bundle, replace(config, tile_tx=tile), dev),
                device, min(config.tile_tx, max(int(bundle.data["tx"].num_nodes), 1)))
        else:
            result = yield from _iter_predict(model, bundle, config, device)
    return result


def _iter_predict(model, bundle: GraphBundle, config: PredictConfig, device: torch.device) -> Iterator[Progress]:
    t0 = time.perf_counter()
    data = bundle.data
    n_tx = data["tx"].num_nodes
    if data["bd"].num_nodes == 0:
        raise SeggerInputError("there are no nuclei to assign transcripts to: give nuclei (polygons, a label image or --nuclei approximate)")
    model = model.to(device)
    parts = []
    if n_tx <= config.tile_tx:
        yield Progress("predict", 0, 1, "embedding")
        r = score_region(model, data, device)
        parts.append((r.cand[0], r.cand[1], r.score, r.d_abs, r.choice, r.nn[0], r.nn[1], r.sim))
        yield Progress("predict", 1, 1, "scored")
    else:
        from segger.models.fused import Workspace

        tiles = make_tiles(bundle, tile_size_for(bundle, config.tile_tx), config.tile_margin)
        ws = Workspace(device=device)  # one set of buffers for every tile
        for i, tile in enumerate(tiles):
            sub = subgraph(data, tile.tx_idx, tile.bd_idx)
            r = score_region(model, sub, device, tile.core_mask, workspace=ws)
            gt, gb = tile.tx_idx, tile.bd_idx
            parts.append((gt[r.cand[0]], gb[r.cand[1]], r.score, r.d_abs, r.choice, gt[r.nn[0]], gt[r.nn[1]], r.sim))
            yield Progress("predict", i + 1, len(tiles), f"tile {i + 1}/{len(tiles)}")
    cat = [None if any(p[k] is None for p in parts) else np.concatenate([p[k] for p in parts]) for k in range(8)]
    if device.type == "cuda":
        torch.cuda.empty_cache()
    model.cpu()
    ct, cb, cs, cd, ch, ns, nd, nsim = cat
    return Prediction(bundle, ct, cb, cs, ns, nd, nsim, config=config, seconds=time.perf_counter() - t0,
                      cand_d_abs=cd, cand_choice=ch, geometric=ch is not None)


def predict(model, bundle, config: PredictConfig | None = None) -> Prediction:
    from segger.progress import run

    return run(iter_predict(model, bundle, config))
