"""Fine-tuning on user corrections, and re-prediction of the neighbourhoods they touch.

Corrections become labelled links: positive to the chosen cell's nucleus, negative to the cell
the transcript was taken from. Their loss is weighted ``correction_weight`` times the nucleus
self-supervision, which keeps being trained alongside (replay of the original objective), so the
model learns from the clicks without forgetting what it knew. Training starts from a copy of the
current weights: cancelling (closing the generator) leaves the caller's model untouched.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass
from typing import Iterator

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from scipy.spatial import cKDTree

from segger import schema as S
from segger.data.graph import TX_BD, TX_CAND, GraphBundle, lookup_geometry, subgraph
from segger.data.sampling import sample_labels
from segger.errors import SeggerInputError
from segger.params import check_fields, param
from segger.progress import Progress, deterministic_threads
from segger.training.train import make_optimizer, message_graph


@dataclass
class FinetuneConfig:
    steps: int = param(15, "fine-tuning steps", low=1, high=1_000_000)
    learning_rate: float = param(5e-4, "AdamW learning rate of the fine-tuning", low=0, high=1, low_open=True,
                                 high_open=True, option="--finetune-learning-rate")
    weight_decay: float = param(1e-4, "AdamW weight decay of the fine-tuning", low=0, high=1,
                                option="--finetune-weight-decay")
    correction_weight: float = param(5.0, "loss weight of a correction link relative to a nucleus link", low=0,
                                     high=1e6, low_open=True)
    supervision_ratio: float = param(0.5, "share of nucleus links supervised per fine-tuning step", low=0, high=1,
                                     low_open=True, option="--finetune-supervision-ratio")
    neg_ratio: float = param(3.0, "negatives per supervised link in fine-tuning", low=0, high=1000,
                             option="--finetune-neg-ratio")
    hard_fraction: float = param(0.5, "share of fine-tuning negatives that are neighbouring nuclei", low=0, high=1,
                                 option="--finetune-hard-fraction")
    context: float = param(60.0, "graph around the corrections that is trained on", unit="µm", low=0, high=1e5,
                           low_open=True)
    max_full_graph_tx: int = param(0, "train on the whole graph up to this many transcripts (0: always the "
                                      "neighbourhood)", low=0, high=1_000_000_000)
    seed: int = param(0, "random seed of the fine-tuning", low=0, high=2**32 - 1, option="--finetune-seed")
    deterministic: bool = param(True, "on CPU: one intra-op thread, so runs repeat bit for bit", shared=True)

    def validate(self) -> "FinetuneConfig":
        check_fields(self, "fine-tuning setting")
        return self

    def to_dict(self) -> dict:
        return asdict(self)


def correction_edges(bundle: GraphBundle, corrections: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(tx_index, bd_index, label)`` links from effective corrections (transcript_id, previous_cell, new_cell)."""
    tx_index = pd.Index(bundle.transcripts[S.TX_ID]).get_indexer(corrections["transcript_id"])
    bd_lookup = pd.Index(bundle.nuclei[S.BD_ID].astype(str))
    new_bd = bd_lookup.get_indexer(corrections["new_cell"].astype(str))
    prev_bd = bd_lookup.get_indexer(corrections["previous_cell"].astype(str))
    ok = tx_index >= 0
    pos = ok & (new_bd >= 0)
    neg = ok & (prev_bd >= 0) & (prev_bd != new_bd)
    t = np.concatenate([tx_index[pos], tx_index[neg]]).astype(np.int64)
    b = np.concatenate([new_bd[pos], prev_bd[neg]]).astype(np.int64)
    y = np.concatenate([np.ones(pos.sum()), np.zeros(neg.sum())]).astype(np.float32)
    return t, b, y


class FinetuneRun:
    """Fine-tune a copy of ``model`` on ``corrections`` (effective table of a CorrectionStore)."""

    def __init__(self, model: torch.nn.Module, bundle: GraphBundle, corrections: pd.DataFrame,
                 config: FinetuneConfig | None = None):
        self.bundle = bundle
        self.config = config or FinetuneConfig()
        self.model = copy.deepcopy(model).cpu()
        self.corrections = corrections
        t, b, y = correction_edges(bundle, corrections)
        if len(t) == 0:
            raise SeggerInputError("none of the corrections names a transcript and a nucleus of this graph; "
                                   "correct transcripts of the loaded data, assigning them to nucleus-bearing cells")
        self.c_tx, self.c_bd, self.c_y = t, b, y
        self.history: list[dict[str, float]] = []
        self.info: dict = {}

    def _training_graph(self):
        data = self.bundle.data
        n_tx = data["tx"].num_nodes
        if n_tx <= self.config.max_full_graph_tx:
            return data, np.arange(n_tx), np.arange(data["bd"].num_nodes)
        pos = data["tx"].pos.numpy()[:, :2]
        tree = cKDTree(pos)
        near = tree.query_ball_point(pos[np.unique(self.c_tx)], r=self.config.context)
        tx_idx = np.unique(np.concatenate([np.asarray(n, dtype=np.int64) for n in near] + [self.c_tx]))
        bpos = data["bd"].pos.numpy()
        lo, hi = pos[tx_idx].min(axis=0) - 1, pos[tx_idx].max(axis=0) + 1
        bd_idx = np.flatnonzero(np.all((bpos >= lo) & (bpos <= hi), axis=1))
        bd_idx = np.union1d(bd_idx, self.c_bd)
        return subgraph(data, tx_idx, bd_idx), tx_idx, bd_idx

    def iter_finetune(self) -> Iterator[Progress]:
        with deterministic_threads(self.config.deterministic):
            result = yield from self._iter()
        return result

    def _iter(self) -> Iterator[Progress]:
        cfg = self.config
        torch.manual_seed(cfg.seed)
        gen = torch.Generator().manual_seed(cfg.seed)
        t0 = time.perf_counter()
        data, tx_idx, bd_idx = self._training_graph()
        tx_map = np.full(self.bundle.data["tx"].num_nodes, -1, dtype=np.int64)
        tx_map[tx_idx] = np.arange(len(tx_idx))
        bd_map = np.full(self.bundle.data["bd"].num_nodes, -1, dtype=np.int64)
        bd_map[bd_idx] = np.arange(len(bd_idx))
        c_index = torch.from_numpy(np.stack([tx_map[self.c_tx], bd_map[self.c_bd]]))
        c_y = torch.from_numpy(self.c_y)
        keep = (c_index >= 0).all(dim=0)
        c_index, c_y = c_index[:, keep], c_y[keep]
        far = float(self.bundle.params.dist_bd)
        c_geo = lookup_geometry(data, c_index, far)
        bel = data[TX_BD].edge_index
        # corrected transcripts no longer pass messages to the nucleus they were taken from
        corrected_tx = torch.zeros(data["tx"].num_nodes, dtype=torch.bool)
        corrected_tx[c_index[0]] = True
        blocked = corrected_tx[bel[0]]
        eligible = ~blocked
        opt = make_optimizer(self.model, cfg.learning_rate, cfg.weight_decay)
        self.model.train()
        yield Progress("finetune", 0, cfg.steps, f"fine-tuning on {int(keep.sum())} correction links")
        for step in range(cfg.steps):
            sup, li, lab = sample_labels(bel, data[TX_CAND].edge_index, data["bd"].num_nodes, eligible, gen,
                                         cfg.supervision_ratio, cfg.neg_ratio, cfg.hard_fraction)
            z = self.model(*message_graph(data, sup | blocked))
            loss = torch.zeros(())
            if lab.numel():
                logits = self.model.logits(z, li, lookup_geometry(data, li, far))
                loss = F.binary_cross_entropy_with_logits(logits, lab)
            c_dot = self.model.dot(z, c_index)
            c_loss = F.binary_cross_entropy_with_logits(self.model.head(c_dot, c_geo), c_y)
            if getattr(self.model.head, "terms", "expression") == "full":
                # the expression term decides between near-equidistant nuclei: it learns the corrections too
                c_loss = c_loss + F.binary_cross_entropy_with_logits(self.model.head.expression_logit(c_dot), c_y)
            total = loss + cfg.correction_weight * c_loss
            opt.zero_grad()
            total.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
            opt.step()
            rec = {"loss": float(loss.detach()), "correction_loss": float(c_loss.detach()), "step": float(step + 1)}
            self.history.append(rec)
            yield Progress("finetune", step + 1, cfg.steps, f"step {step + 1}/{cfg.steps}", rec)
        self.model.eval()
        self.info["seconds"] = time.perf_counter() - t0
        return self


def neighbourhood(bundle: GraphBundle, tx_index: np.ndarray, radius: float) -> np.ndarray:
    """Sorted indices of the transcripts within ``radius`` µm of any of ``tx_index``."""
    pos = bundle.data["tx"].pos.numpy()[:, :2]
    if len(tx_index) == 0:
        return np.zeros(0, dtype=np.int64)
    # one vectorised query of every transcript against the (few) corrected ones: no Python lists
    d, _ = cKDTree(pos[np.unique(tx_index)]).query(pos, k=1, distance_upper_bound=np.nextafter(radius, np.inf),
                                                   workers=-1)
    return np.flatnonzero(np.isfinite(d))


def repredict_region(prediction, model: torch.nn.Module, core_tx: np.ndarray, margin: float = 40.0,
                     device: str = "cpu"):
    """A new :class:`~segger.prediction.Prediction` whose scores are recomputed for ``core_tx``
    (sorted global tx indices) using ``margin`` µm of graph context; all other scores are kept."""
    from segger.prediction.predict import Prediction, _device, score_region

    bundle = prediction.bundle
    data = bundle.data
    dev = _device(device)
    ctx = np.union1d(neighbourhood(bundle, core_tx, margin), core_tx)
    bpos = data["bd"].pos.numpy()
    pos = data["tx"].pos.numpy()[:, :2]
    lo, hi = pos[ctx].min(axis=0) - margin, pos[ctx].max(axis=0) + margin
    bd_idx = np.flatnonzero(np.all((bpos >= lo) & (bpos <= hi), axis=1))
    sub = subgraph(data, ctx, bd_idx)
    model = model.to(dev)
    r = score_region(model, sub, dev, np.isin(ctx, core_tx))
    model.cpu()
    in_core = np.zeros(data["tx"].num_nodes, dtype=bool)
    in_core[core_tx] = True
    keep_c = ~in_core[prediction.cand_tx]
    keep_n = ~in_core[prediction.nn_dst]
    d_abs = choice = None
    if prediction.cand_d_abs is not None and r.d_abs is not None:
        d_abs = np.concatenate([prediction.cand_d_abs[keep_c], r.d_abs])
    if prediction.cand_choice is not None and r.choice is not None:
        choice = np.concatenate([prediction.cand_choice[keep_c], r.choice])
    return Prediction(
        bundle,
        np.concatenate([prediction.cand_tx[keep_c], ctx[r.cand[0]]]),
        np.concatenate([prediction.cand_bd[keep_c], bd_idx[r.cand[1]]]),
        np.concatenate([prediction.cand_score[keep_c], r.score]),
        np.concatenate([prediction.nn_src[keep_n], ctx[r.nn[0]]]),
        np.concatenate([prediction.nn_dst[keep_n], ctx[r.nn[1]]]),
        np.concatenate([prediction.nn_sim[keep_n], r.sim]),
        config=prediction.config, seconds=prediction.seconds, cand_d_abs=d_abs, cand_choice=choice,
        geometric=prediction.geometric,
    )


def finetune_and_repredict(model, prediction, store_or_table, config: FinetuneConfig | None = None,
                           radius: float = 30.0, margin: float = 40.0) -> Iterator[Progress]:
    """Fine-tune on corrections, re-predict the touched neighbourhoods, apply the corrections.

    Yields :class:`Progress`; returns ``(new_model, new_prediction, result_table, changed_mask)`` where
    ``changed_mask`` marks transcripts whose cell changed other than the corrected ones
    (:func:`~segger.corrections.edits.changed_transcripts`: renumbered fragments are no change);
    the corrections are applied by :func:`~segger.corrections.edits.apply_corrections`.
    """
    from segger.corrections.edits import apply_corrections, changed_transcripts
    from segger.corrections.store import CorrectionStore

    eff = store_or_table.effective() if isinstance(store_or_table, CorrectionStore) else store_or_table
    bundle = prediction.bundle
    before = prediction.assign()
    run = FinetuneRun(model, bundle, eff, config)
    result_run = yield from run.iter_finetune()
    corrected = pd.Index(bundle.transcripts[S.TX_ID]).get_indexer(eff["transcript_id"])
    corrected = corrected[corrected >= 0]
    core = neighbourhood(bundle, corrected, radius)
    yield Progress("predict", 0, 1, f"re-predicting {len(core):,} transcripts near the corrections")
    with deterministic_threads(run.config.deterministic):
        new_pred = repredict_region(prediction, result_run.model, core, margin)
    after = apply_corrections(new_pred.assign(), eff)
    changed = np.zeros(len(after), dtype=bool)
    changed[changed_transcripts(before[S.SEGGER_CELL_ID].to_numpy(), after[S.SEGGER_CELL_ID].to_numpy(),
                                exclude=after["corrected"].to_numpy())] = True
    yield Progress("predict", 1, 1, f"{int(changed.sum()):,} other transcripts changed cell")
    return result_run.model, new_pred, after, changed
