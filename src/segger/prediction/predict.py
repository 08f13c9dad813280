"""Prediction: score candidate (transcript, nucleus) links, assign, and form fragments.

Each transcript's candidates are its ``('tx','candidate','bd')`` edges (its ``k_bd`` nearest
nuclei within ``dist_bd``). Their score is ``sigmoid(<z_tx, z_bd>)`` from the trained GNN. The
scores are computed once (:func:`iter_predict`) and cached in a :class:`Prediction`, whose
:meth:`Prediction.assign` re-thresholds instantly (no GNN re-run): a transcript joins its best
candidate when that score is at least ``score_cut``.

Fragments (nucleus-free cells): among the transcripts left unassigned, tx–tx graph edges are
kept when the *GNN output embeddings* of both ends agree (cosine similarity ``>=
fragment_similarity``); connected components of at least ``min_fragment_size`` transcripts become
fragment cells. Because the edges are the spatial kNN graph (bounded by ``dist_tx``) and the
embeddings are contextual (each is computed from the transcript's spatial neighbourhood, not from
its gene alone), two distant transcripts of the same gene are never linked, and a component is
a spatially contiguous group whose neighbourhoods look alike — unlike clustering on the input
gene embedding, where same-gene transcripts have similarity ≈ 1 and components follow gene
co-occurrence.
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
from segger.data.graph import TX_BD, TX_CAND, TX_TX, GraphBundle, make_tiles, subgraph, tile_size_for
from segger.errors import SeggerInputError
from segger.progress import Progress


@dataclass
class PredictConfig:
    score_cut: float = 0.5
    fragments: bool = True
    fragment_similarity: float = 0.9  # min cosine similarity of GNN embeddings along a fragment edge
    min_fragment_size: int = 10
    tile_tx: int = 250_000  # predict in tiles of about this many transcripts (larger inputs; ~0.5 GB each)
    tile_margin: float = 30.0  # µm of context around a prediction tile
    device: str = "auto"
    deterministic: bool = True  # on CPU: one intra-op thread, so runs repeat bit for bit

    def validate(self) -> "PredictConfig":
        if not 0 <= self.score_cut <= 1:
            raise SeggerInputError(f"score_cut={self.score_cut} must be between 0 and 1")
        if not -1 <= self.fragment_similarity <= 1:
            raise SeggerInputError(f"fragment_similarity={self.fragment_similarity} must be a cosine between -1 and 1")
        if self.min_fragment_size < 2:
            raise SeggerInputError(f"min_fragment_size={self.min_fragment_size} must be at least 2")
        return self

    def to_dict(self) -> dict:
        return asdict(self)


def _device(name: str) -> torch.device:
    if name in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SeggerInputError(f"device {name!r} was asked for but no CUDA GPU is available here; use cpu or auto")
    return torch.device(name)


class Prediction:
    """Cached candidate scores for one graph; :meth:`assign` turns them into a result table."""

    def __init__(self, bundle: GraphBundle, cand_tx: np.ndarray, cand_bd: np.ndarray, cand_score: np.ndarray,
                 nn_src: np.ndarray, nn_dst: np.ndarray, nn_sim: np.ndarray, config: PredictConfig,
                 seconds: float = 0.0):
        self.bundle, self.config, self.seconds = bundle, config, seconds
        self.cand_tx, self.cand_bd, self.cand_score = cand_tx, cand_bd, cand_score
        self.nn_src, self.nn_dst, self.nn_sim = nn_src, nn_dst, nn_sim
        n_tx = bundle.data["tx"].num_nodes
        # best candidate per transcript (ties → lower nucleus index, deterministic)
        self.best_bd = np.full(n_tx, -1, dtype=np.int64)
        self.best_score = np.zeros(n_tx, dtype=np.float32)
        if len(cand_tx) and not np.isnan(cand_score).any():
            # segment max per transcript (O(n), no 3-key lexsort); same ties rule
            t, b, sc = cand_tx, cand_bd, cand_score
            if (t[1:] < t[:-1]).any():
                order = np.argsort(t, kind="stable")
                t, b, sc = t[order], b[order], sc[order]
            starts = np.flatnonzero(np.r_[True, t[1:] != t[:-1]])
            seg_max = np.maximum.reduceat(sc, starts)
            seg = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(t)]))
            big = np.iinfo(np.int64).max
            self.best_bd[t[starts]] = np.minimum.reduceat(np.where(sc == seg_max[seg], b, big), starts)
            self.best_score[t[starts]] = seg_max
        elif len(cand_tx):
            order = np.lexsort((cand_bd, -cand_score, cand_tx))
            t, first = cand_tx[order], np.r_[True, cand_tx[order][1:] != cand_tx[order][:-1]]
            self.best_bd[t[first]] = cand_bd[order][first]
            self.best_score[t[first]] = cand_score[order][first]
        self._bd_ids = None
        bel = bundle.data[TX_BD].edge_index.numpy()
        self.own_bd = np.full(n_tx, -1, dtype=np.int64)
        self.own_bd[bel[0]] = bel[1]

    @property
    def n_tx(self) -> int:
        return len(self.best_bd)

    def fragment_labels(self, unassigned: np.ndarray, similarity: float, min_size: int) -> np.ndarray:
        """Fragment index per transcript (-1 = none) over the unassigned transcripts."""
        keep = unassigned[self.nn_src] & unassigned[self.nn_dst] & (self.nn_sim >= similarity)
        labels = np.full(self.n_tx, -1, dtype=np.int64)
        if not keep.any():
            return labels
        s, d = self.nn_src[keep], self.nn_dst[keep]
        g = coo_matrix((np.ones(len(s), dtype=np.int8), (s, d)), shape=(self.n_tx, self.n_tx)).tocsr()
        _, comp = connected_components(g, directed=True, connection="weak")
        comp = np.where(unassigned, comp, -1)
        valid = comp >= 0
        sizes = np.bincount(comp[valid], minlength=comp.max() + 1)
        big = np.flatnonzero(sizes >= min_size)
        if len(big) == 0:
            return labels
        # number fragments by their first transcript (deterministic)
        first_idx = np.full(comp.max() + 1, np.iinfo(np.int64).max)
        np.minimum.at(first_idx, comp[valid], np.flatnonzero(valid))
        big = big[np.argsort(first_idx[big])]
        remap = np.full(comp.max() + 1, -1, dtype=np.int64)
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
            labels = self.fragment_labels(~assigned, sim, mfs)
            fm = labels >= 0
            code[fm] = -2 - labels[fm]
            kind[fm] = 2  # fragment
        return code, kind

    def cell_ids(self, code: np.ndarray) -> np.ndarray:
        """``segger_cell_id`` strings for cell codes from :meth:`assign_codes`."""
        if self._bd_ids is None:
            self._bd_ids = self.bundle.nuclei[S.BD_ID].astype(str).to_numpy(dtype=object)
        cell = np.full(len(code), S.UNASSIGNED, dtype=object)
        nuc = code >= 0
        cell[nuc] = self._bd_ids[code[nuc]]
        fm = code <= -2
        if fm.any():
            k = -2 - code[fm]
            names = np.array([f"fragment-{i}" for i in range(int(k.max()) + 1)], dtype=object)
            cell[fm] = names[k]
        return cell

    def assign(self, score_cut: float | None = None, fragments: bool | None = None,
               fragment_similarity: float | None = None, min_fragment_size: int | None = None) -> pd.DataFrame:
        """Result table: the transcripts + ``segger_cell_id``, ``score``, ``assignment``."""
        code, kind = self.assign_codes(score_cut, fragments, fragment_similarity, min_fragment_size)
        out = self.bundle.transcripts.copy(deep=False)  # new columns only: the input table is untouched
        out[S.SEGGER_CELL_ID] = pd.array(self.cell_ids(code), dtype=object)
        out[S.SCORE] = self.best_score
        out[S.ASSIGNMENT] = pd.Categorical.from_codes(kind, categories=list(S.ASSIGNMENT_KINDS))
        return out


@torch.no_grad()
def embed(model: torch.nn.Module, data, device: torch.device, drop_belongs: bool = False) -> dict[str, torch.Tensor]:
    """Node embeddings of a (sub-)graph with the model in eval mode."""
    model.eval()
    x_dict = {"tx": data["tx"].x.to(device), "bd": data["bd"].x.to(device)}
    ei = {TX_BD: data[TX_BD].edge_index.to(device), TX_TX: data[TX_TX].edge_index.to(device)}
    if drop_belongs:
        ei[TX_BD] = ei[TX_BD][:, :0]
    use_amp = device.type == "cuda"
    from segger.scale.fastgnn import forward as fast_forward

    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_amp):
        # same maths as the PyG forward in cache-sized blocks (~10× faster on a CPU); falls back
        # to the model itself for other layouts and while attention weights are captured
        z = fast_forward(model, x_dict, ei)
        if z is None:
            z = model(x_dict, ei)
    return {k: v.float() for k, v in z.items()}


@torch.no_grad()
def _pair_scores(z_a: torch.Tensor, z_b: torch.Tensor, ia: np.ndarray, ib: np.ndarray, batch: int | None = None,
                 cosine: bool = False, head=None, d_rel: torch.Tensor | None = None) -> np.ndarray:
    """``sigmoid(<a, b>)`` (or the cosine similarity) for the listed pairs, in batches (cache-sized
    on a CPU, large on a GPU)."""
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
            dot = head(dot, None if d_rel is None else d_rel[s:s + batch].to(dev))
        out[s:s + batch] = (dot if cosine else torch.sigmoid(dot)).detach().float().cpu().numpy()
    return out


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
    head = getattr(model, "head", None)
    cand = data[TX_CAND].edge_index.numpy()
    nn = data[TX_TX].edge_index.numpy()
    if n_tx <= config.tile_tx:
        yield Progress("predict", 0, 1, "embedding")
        z = embed(model, data, device)
        cs = _pair_scores(z["tx"], z["bd"], cand[0], cand[1], head=head, d_rel=data[TX_CAND].get("d_rel"))
        ns = _pair_scores(z["tx"], z["tx"], nn[0], nn[1], cosine=True)
        parts = [(cand[0], cand[1], cs, nn[0], nn[1], ns)]
        yield Progress("predict", 1, 1, "scored")
    else:
        tiles = make_tiles(bundle, tile_size_for(bundle, config.tile_tx), config.tile_margin)
        parts = []
        for i, tile in enumerate(tiles):
            sub = subgraph(data, tile.tx_idx, tile.bd_idx)
            z = embed(model, sub, device)
            c = sub[TX_CAND].edge_index.numpy()
            core = tile.core_mask
            cm = core[c[0]]
            c = c[:, cm]
            dr = sub[TX_CAND].d_rel[torch.from_numpy(cm)] if "d_rel" in sub[TX_CAND] else None
            e = sub[TX_TX].edge_index.numpy()
            e = e[:, core[e[1]]]
            cs = _pair_scores(z["tx"], z["bd"], c[0], c[1], head=head, d_rel=dr)
            ns = _pair_scores(z["tx"], z["tx"], e[0], e[1], cosine=True)
            gt, gb = tile.tx_idx, tile.bd_idx
            parts.append((gt[c[0]], gb[c[1]], cs, gt[e[0]], gt[e[1]], ns))
            yield Progress("predict", i + 1, len(tiles), f"tile {i + 1}/{len(tiles)}")
    cat = [np.concatenate([p[k] for p in parts]) for k in range(6)]
    if device.type == "cuda":
        torch.cuda.empty_cache()
    model.cpu()
    return Prediction(bundle, *cat, config=config, seconds=time.perf_counter() - t0)


def predict(model, bundle, config: PredictConfig | None = None) -> Prediction:
    from segger.progress import run

    return run(iter_predict(model, bundle, config))
