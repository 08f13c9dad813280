"""Training: a ``pytorch_lightning`` module and a progress generator around ``Trainer.fit``.

Loss (labelled (tx, bd) pairs only; no dense transcripts × nuclei matrix is ever formed):

* the link score (:class:`segger.models.LinkHead`, expression + geometry) by binary cross-entropy on
  supervised nucleus links and their sampled negatives, plus the geometric labels of
  :func:`segger.data.sampling.geometry_labels` (unambiguous cytoplasmic transcripts and background);
  the same loss on the geometric term alone, on the geometric labels and the nucleus positives (it
  is the calibrated assignment score);
* plus ``expression_weight`` × the same loss on the expression term *alone*, on the nucleus links
  and their negatives (hard negatives are the neighbouring nuclei): the distance terms cannot solve
  this one, so the GNN has to learn which nucleus a transcript's expression context fits.

Optimiser: AdamW with the configured learning rate and weight decay; gradients clipped by norm.
Validation on held-out spatial blocks (supervised links hidden from message passing, fixed
negatives): ``val_auroc`` of the full score, ``val_auroc_dot`` of the expression term alone and
``val_auroc_dist`` of the geometry alone. ``val_auroc`` is near 1 from the first epoch because
distance alone separates these labels; ``val_auroc_dot`` is the number that says whether the GNN
learned anything.
"""

from __future__ import annotations

import copy
import math
import queue
import threading
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from torch_geometric.data import HeteroData
from torchmetrics.classification import BinaryAUROC, BinaryF1Score

from segger.data.graph import (TX_BD, TX_CAND, TX_TX, GraphBundle, _edge_ids, _edges_by_node, _local,
                                graph_max_distance, lookup_geometry, make_tiles, subgraph, tile_size_for)
from segger.data.sampling import draw_negatives, geometry_labels, sample_labels, spatial_holdout
from segger.errors import SeggerError, SeggerInputError
from segger.params import check_fields, param
from segger.models import ModelConfig, SeggerLinkModel, build_hetero_model
from segger.models.link import EXPRESSION_SIDES, LINK_TERMS
from segger.training.checkpoint import MODEL_LIMITS
from segger.progress import Progress
from segger.utils.device import lightning_device


@dataclass
class TrainConfig:
    """Training settings. Model size fields are passed to :class:`segger.models.ModelConfig`."""

    epochs: int = param(20, "training epochs (segment with --checkpoint: 0 unless given, i.e. no fine-tuning)", low=0,
                        high=1_000_000)
    learning_rate: float = param(5e-3, "AdamW learning rate", low=0, high=1, low_open=True, high_open=True)
    weight_decay: float = param(1e-4, "AdamW weight decay", low=0, high=1)
    grad_clip: float = param(1.0, "gradient norm clip (0: no clipping)", low=0, high=1e6)
    init_emb: int = param(16, "gene embedding width", low=1, high=MODEL_LIMITS["init_emb"])
    hidden_channels: int = param(32, "GNN hidden width (a model size)", low=1, high=MODEL_LIMITS["hidden_channels"])
    num_mid_layers: int = param(3, "middle GATv2 layers (a model size)", low=0, high=MODEL_LIMITS["num_mid_layers"])
    out_channels: int = param(32, "GNN output width per head (a model size)", low=1, high=MODEL_LIMITS["out_channels"])
    heads: int = param(3, "attention heads (a model size)", low=1, high=MODEL_LIMITS["heads"])
    residual: bool = param(False, "residual connections between the GNN layers")
    spatial_prior: bool = param(True, "legacy switch: off is link_terms expression")
    link_terms: str = param("full", "terms of the link score: expression + geometry (full), geometry only "
                                    "(distance) or the plain Segger expression score (expression); for ablations",
                            choices=LINK_TERMS)
    expression_weight: float = param(1.0, "weight of the expression-only objective (0: off)", low=0, high=100)
    pseudo_gap: float = param(2.0, "a cytoplasmic transcript this much nearer one nucleus than any other is its "
                                   "pseudo-positive", unit="µm", low=0, high=100)
    expression_side: str = param("context", "transcript side of the expression term: GNN context, gene embedding, "
                                            "or both", choices=EXPRESSION_SIDES)
    supervision_ratio: float = param(0.5, "share of nucleus links hidden and supervised per step", low=0, high=1,
                                     low_open=True)
    neg_ratio: float = param(3.0, "negatives per supervised link", low=0, high=1000)
    hard_fraction: float = param(0.5, "share of negatives that are neighbouring nuclei", low=0, high=1)
    val_fraction: float = param(0.2, "share of spatial blocks held out for validation", low=0, high=1, high_open=True)
    val_block: float = param(50.0, "side of a validation block", unit="µm", low=0, high=1e5, low_open=True)
    tile_tx: int = param(4000, "transcripts per training tile (mini-batch)", low=100, high=100_000_000,
                         option="--train-tile-tx")
    tile_margin: float = param(20.0, "context around each training tile", unit="µm", low=0, high=1e4,
                               option="--train-tile-margin")
    device: str = param("auto", "auto, cpu, cuda or cuda:N", cli=False, option="--device")
    devices: int | str = param(1, "Lightning devices, e.g. 2 for two GPUs/processes (multi-GPU / multi-process)")
    strategy: str = param("auto", "Lightning strategy, e.g. ddp")
    num_nodes: int = param(1, "Lightning nodes", low=1, high=100_000)
    precision: str | None = param(None, "Lightning precision, e.g. 32, bf16-mixed (unset: 32 on CPU, bf16-mixed on "
                                        "CUDA)")
    seed: int = param(0, "random seed", low=0, high=2**32 - 1)
    deterministic: bool = param(True, "on CPU: one intra-op thread, so runs repeat bit for bit", shared=True)

    def validate(self) -> "TrainConfig":
        check_fields(self, "training setting")
        self.model_config()
        return self

    @property
    def terms(self) -> str:
        """The link-score terms in effect (``spatial_prior=False`` is the legacy "expression")."""
        return self.link_terms if self.spatial_prior else "expression"

    def model_config(self, num_tx_tokens: int = 2) -> ModelConfig:
        return ModelConfig(num_tx_tokens=num_tx_tokens, init_emb=self.init_emb, hidden_channels=self.hidden_channels,
                           num_mid_layers=self.num_mid_layers, out_channels=self.out_channels, heads=self.heads,
                           residual=self.residual)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


#: learning-rate multiplier of the link head's scalar parameters
HEAD_LR_FACTOR = 20.0


def make_optimizer(model: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW for a :class:`segger.models.SeggerLinkModel` (training and fine-tuning).

    The head's few scalars (bias, slopes, onset) would move ~``lr`` per step: at the GNN's rate
    they are still near their initial values after a short run, so they learn
    :data:`HEAD_LR_FACTOR` × faster, without weight decay.
    """
    head = [p for n, p in model.named_parameters() if n.startswith("head.")]
    rest = [p for n, p in model.named_parameters() if not n.startswith("head.")]
    groups = [{"params": rest}] + ([{"params": head, "lr": lr * HEAD_LR_FACTOR, "weight_decay": 0.0}] if head else [])
    return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay)


def available_devices() -> list[str]:
    """Device choices for the GUI and CLI: auto, cpu and each CUDA device found."""
    out = ["auto", "cpu"]
    if torch.cuda.is_available():
        out += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    return out


def resolve_device(device: str) -> tuple[str, Any]:
    """Lightning ``(accelerator, devices)`` for a device string (:func:`segger.utils.device.lightning_device`)."""
    return lightning_device(device)


# ----------------------------------------------------------------------------------------------
# data
class TileDataset(Dataset):
    """Training or validation tiles; each item is a HeteroData sub-graph with label masks."""

    def __init__(self, items: list[HeteroData]):
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> HeteroData:
        return self.items[i]


def _first(batch: list[HeteroData]) -> HeteroData:
    return batch[0]


def receptive_field(sub: HeteroData, label_index: torch.Tensor, hops: int) -> tuple[HeteroData, torch.Tensor]:
    """The part of tile ``sub`` that the logits of the (tx, bd) pairs ``label_index`` depend on,
    for a model of ``hops`` message-passing layers, and the map old → new transcript index (-1:
    dropped).

    A layer updates a transcript from its transcript–transcript in-neighbours and a nucleus from
    the transcripts of its belongs edges. The labelled nuclei keep their belongs edges (those of
    the other nuclei are dropped: no logit reads those nuclei); the transcripts kept are those
    within ``hops`` in-hops of a labelled transcript or of a source of a kept belongs edge. Every
    node kept at a distance below ``hops`` keeps all its in-edges, so the logits of the labelled
    pairs are those of the whole tile (up to float summation order). All nuclei stay (indices
    unchanged)."""
    n_tx = int(sub["tx"].num_nodes)
    bel = sub[TX_BD].edge_index
    lab_bd = torch.zeros(int(sub["bd"].num_nodes), dtype=torch.bool)
    lab_bd[label_index[1]] = True
    bel_keep = lab_bd[bel[1]]
    need = torch.zeros(n_tx, dtype=torch.bool)
    need[label_index[0]] = True
    need[bel[0, bel_keep]] = True
    ei = sub[TX_TX].edge_index
    for _ in range(max(int(hops) - 1, 0)):  # the last hop adds sources only (their own inputs are unused)
        grow = need.clone()
        grow[ei[0, need[ei[1]]]] = True
        need = grow
    tt_keep = need[ei[1]]  # every in-edge of a node within hops - 1 (its sources: the last hop)
    need[ei[0, tt_keep]] = True
    keep_idx = torch.nonzero(need, as_tuple=False).flatten()
    tx_map = torch.full((n_tx,), -1, dtype=torch.long)
    tx_map[keep_idx] = torch.arange(len(keep_idx))
    out = copy.copy(sub)
    for key, value in sub["tx"].items():
        if torch.is_tensor(value) and value.dim() > 0 and value.shape[0] == n_tx:
            out["tx"][key] = value[keep_idx]
    out["tx"].num_nodes = len(keep_idx)
    if "train_tx" in sub:
        out.train_tx = sub.train_tx[keep_idx]
    out[TX_TX].edge_index = tx_map[ei[:, tt_keep]]
    out[TX_BD].edge_index = torch.stack([tx_map[bel[0, bel_keep]], bel[1, bel_keep]])
    out.hidden = sub.hidden[bel_keep]
    cand = sub[TX_CAND].edge_index
    c_keep = need[cand[0]]
    out[TX_CAND].edge_index = torch.stack([tx_map[cand[0, c_keep]], cand[1, c_keep]])
    for attr, value in sub[TX_CAND].items():
        if attr != "edge_index" and torch.is_tensor(value) and value.dim() > 0 and value.shape[0] == cand.shape[1]:
            out[TX_CAND][attr] = value[c_keep]
    for attr in ("geo_index", "geo_labels"):  # training labels: not used by a validation tile
        if attr in out:
            del out[attr]
    return out, tx_map


def prepare_tiles(bundle: GraphBundle, config: TrainConfig, holdout: np.ndarray | None = None,
                  hops: int | None = None) -> tuple[list[HeteroData], list[HeteroData], dict]:
    """Split the sample into training and validation tiles with their fixed validation labels.

    ``holdout``: a boolean mask over the transcripts held out for validation instead of the spatial
    blocks of ``config.val_block`` / ``val_fraction`` (streamed training validates on whole held-out
    tiles, :mod:`segger.training.streamed`); with it, a sample that is all held out gives no training
    tile and no error.

    ``hops``: the number of message-passing layers of the model (``num_mid_layers + 2``); with it,
    each validation tile keeps only the transcripts within ``hops`` transcript–transcript hops of
    its labelled pairs (:func:`receptive_field`): the others cannot change a validation logit, so
    the metrics are those of the whole tile at a fraction of the cost. ``None``: whole tiles."""
    data = bundle.data
    n_bel = data[TX_BD].edge_index.shape[1]
    if n_bel == 0:
        raise SeggerInputError(
            "no transcript lies in a nucleus, so there is nothing to learn from: check that the nuclei "
            "overlap the transcripts (same µm coordinates) or give nuclei another way (--nuclei)"
        )
    pos = data["tx"].pos.numpy()[:, :2].astype(np.float64)
    if holdout is not None:
        val_tx = np.asarray(holdout, dtype=bool)
    else:
        val_tx = spatial_holdout(pos, config.val_block, config.val_fraction, config.seed)
    if holdout is None and config.val_fraction > 0 and not val_tx.any():
        val_tx = np.zeros(len(pos), dtype=bool)
    gen = torch.Generator().manual_seed(config.seed + 7919)
    bel = data[TX_BD].edge_index
    # fixed validation positives: a share of the nucleus links of held-out transcripts
    val_edge = torch.from_numpy(val_tx)[bel[0]]
    hidden_mask, _, _ = sample_labels(bel, torch.zeros((2, 0), dtype=torch.long), data["bd"].num_nodes, val_edge, gen,
                                      supervision_ratio=config.supervision_ratio, neg_ratio=0.0)
    ts = tile_size_for(bundle, config.tile_tx)
    tiles = make_tiles(bundle, ts, config.tile_margin)
    bel_np = bel.numpy()
    bel_ptr, bel_order = _edges_by_node(bel, 0, int(data["tx"].num_nodes))
    train_items, val_items = [], []
    for tile in tiles:
        sub = subgraph(data, tile.tx_idx, tile.bd_idx)
        # the tile's belongs edges as global ids, ascending (subgraph keeps the edges in order):
        # those with a transcript and a nucleus of the tile, found through the CSR index
        # (cost: the tile's own edges, not a scan of all edges per tile)
        e, _ = _edge_ids(bel_ptr, bel_order, np.asarray(tile.tx_idx, dtype=np.int64))
        sub_eids = torch.from_numpy(e[_local(np.asarray(tile.bd_idx, dtype=np.int64), bel_np[1, e]) >= 0])
        sub.hidden = hidden_mask[sub_eids]
        sub.far = torch.tensor(float(bundle.params.dist_bd))
        core = torch.from_numpy(tile.core_mask)
        sub_val = torch.from_numpy(val_tx[tile.tx_idx])
        sub.train_tx = core & ~sub_val
        n_sub = int(sub["tx"].num_nodes)
        has_nuc = torch.zeros(n_sub, dtype=torch.bool)
        has_nuc[sub[TX_BD].edge_index[0]] = True
        d_abs = sub[TX_CAND].d_abs if "d_abs" in sub[TX_CAND] else torch.zeros(sub[TX_CAND].edge_index.shape[1])
        sub.geo_index, sub.geo_labels = geometry_labels(sub[TX_CAND].edge_index, d_abs, n_sub, sub.train_tx, has_nuc,
                                                        graph_max_distance(data), config.pseudo_gap)
        if bool(sub.train_tx.any()) and sub[TX_BD].edge_index.shape[1]:
            train_items.append(sub)
        vpos_mask = sub.hidden & core[sub[TX_BD].edge_index[0]]
        if bool(vpos_mask.any()):
            vpos = sub[TX_BD].edge_index[:, vpos_mask]
            vneg = draw_negatives(vpos, sub[TX_CAND].edge_index, sub["bd"].num_nodes, gen, config.neg_ratio, config.hard_fraction)
            label_index = torch.cat([vpos, vneg], dim=1)
            label_geo = lookup_geometry(sub, label_index, float(bundle.params.dist_bd))
            if hops is None:
                vsub = copy.copy(sub)  # its own attribute stores; the tensors are shared, never written
            else:
                vsub, tx_map = receptive_field(sub, label_index, hops)
                label_index = torch.stack([tx_map[label_index[0]], label_index[1]])
            vsub.label_index = label_index
            vsub.label_geo = label_geo
            vsub.labels = torch.cat([torch.ones(vpos.shape[1]), torch.zeros(vneg.shape[1])])
            val_items.append(vsub)
    if not train_items and holdout is None:
        raise SeggerInputError("no training tile holds a nucleus with transcripts; lower --val-fraction or check the nuclei")
    info = {"tile_size_um": ts, "n_tiles": len(tiles), "n_train_tiles": len(train_items), "n_val_tiles": len(val_items),
            "n_val_tx": int(val_tx.sum()), "max_distance_um": graph_max_distance(data),
            "n_geometry_labels": int(sum(int(t.geo_labels.numel()) for t in train_items))}
    return train_items, val_items, info


# ----------------------------------------------------------------------------------------------
def edge_logits(z: dict[str, torch.Tensor], index: torch.Tensor) -> torch.Tensor:
    """``<z_tx[src], z_bd[dst]>`` for the listed pairs only (never a dense matrix)."""
    return (z["tx"][index[0]] * z["bd"][index[1]]).sum(dim=-1)


def message_graph(batch: HeteroData, drop: torch.Tensor | None) -> tuple[dict, dict]:
    """x_dict and edge_index_dict for the model, with the ``drop`` belongs edges removed."""
    bel = batch[TX_BD].edge_index
    if drop is not None and bool(drop.any()):
        bel = bel[:, ~drop]
    x_dict = {"tx": batch["tx"].x, "bd": batch["bd"].x}
    ei = {TX_BD: bel, TX_TX: batch[TX_TX].edge_index}
    return x_dict, ei


class SeggerLightningModule(pl.LightningModule):
    """Lightning wrapper: link-prediction loss on supervised nucleus links."""

    def __init__(self, model_config: dict, train_config: dict, state_dict: dict | None = None):
        super().__init__()
        self.save_hyperparameters({"model_config": model_config, "train_config": train_config})
        self.model_config = ModelConfig.from_dict(model_config)
        self.config = TrainConfig.from_dict(train_config)
        self.model = SeggerLinkModel(build_hetero_model(**self.model_config.to_dict()), terms=self.config.terms,
                                     expression=self.config.expression_side)
        if state_dict is not None:
            self.model.load_state_dict(state_dict)
        self.val_auroc = BinaryAUROC()
        self.val_auroc_dot = BinaryAUROC()
        self.val_auroc_dist = BinaryAUROC()
        self.val_f1 = BinaryF1Score()
        self._gen = torch.Generator().manual_seed(self.config.seed)
        self.last_metrics: dict[str, float] = {}

    def forward(self, x_dict, edge_index_dict):
        return self.model(x_dict, edge_index_dict)

    def training_step(self, batch: HeteroData, batch_idx: int):
        bel = batch[TX_BD].edge_index
        eligible = (~batch.hidden.cpu()) & batch.train_tx.cpu()[bel[0].cpu()]
        sup, label_index, labels = sample_labels(
            bel.cpu(), batch[TX_CAND].edge_index.cpu(), batch["bd"].num_nodes, eligible, self._gen,
            self.config.supervision_ratio, self.config.neg_ratio, self.config.hard_fraction)
        geo_index, geo_labels = batch.geo_index.cpu(), batch.geo_labels.cpu()
        if geo_labels.numel() > max(labels.numel(), 1):  # as many geometric labels as nucleus labels
            pick = torch.randperm(geo_labels.numel(), generator=self._gen)[:max(labels.numel(), 1)]
            geo_index, geo_labels = geo_index[:, pick], geo_labels[pick]
        if labels.numel() == 0 and geo_labels.numel() == 0:
            if self._trainer is not None and self._trainer.world_size > 1:  # all ranks join each all-reduce
                return sum(p.sum() for p in self.model.parameters()) * 0.0
            return None
        drop = (sup | batch.hidden.cpu()).to(bel.device)
        z = self(*message_graph(batch, drop))
        index = torch.cat([label_index, geo_index], dim=1)
        target = torch.cat([labels, geo_labels]).to(bel.device)
        geo = lookup_geometry(batch, index, float(batch.far)).to(bel.device)
        dot = self.model.dot(z, index.to(bel.device))
        head = self.model.head
        loss = F.binary_cross_entropy_with_logits(head(dot, geo), target)
        if head.terms == "full" and geo_labels.numel():
            # the geometry alone is the assignment score: calibrate it on its own too, on the
            # geometric labels and the nucleus positives (the nucleus negatives are nuclei that
            # are merely farther, which d_rel already carries)
            sel = torch.ones(target.numel(), dtype=torch.bool, device=target.device)
            sel[:labels.numel()] = labels.to(target.device) > 0
            loss = loss + F.binary_cross_entropy_with_logits(head.geometry(geo[sel]), target[sel])
        w = self.config.expression_weight
        if w > 0 and self.model.head.terms != "distance" and labels.numel():
            n = labels.numel()
            loss = loss + w * F.binary_cross_entropy_with_logits(self.model.head.expression_logit(dot[:n]), target[:n])
        # logger=False: the metrics log holds one row per epoch, written by _ProgressCallback
        self.log("train_loss", loss, batch_size=int(target.numel()), prog_bar=True, on_step=True, on_epoch=True,
                 logger=False)
        return loss

    def validation_step(self, batch: HeteroData, batch_idx: int):
        z = self(*message_graph(batch, batch.hidden))
        dot = self.model.dot(z, batch.label_index)
        geo = batch.label_geo
        logits = self.model.head(dot, geo)
        loss = F.binary_cross_entropy_with_logits(logits, batch.labels)
        prob = torch.sigmoid(logits.float())
        target = batch.labels.long()
        self.val_auroc.update(prob, target)
        self.val_auroc_dot.update(torch.sigmoid(self.model.head.expression_logit(dot).float()), target)
        self.val_auroc_dist.update(torch.sigmoid(self.model.head.geometry(geo).float()), target)
        self.val_f1.update(prob, target)
        self.log("val_loss", loss, batch_size=int(batch.labels.numel()), on_epoch=True, sync_dist=True, logger=False)

    def on_validation_epoch_end(self):
        for name in ("val_auroc", "val_auroc_dot", "val_auroc_dist", "val_f1"):
            metric = getattr(self, name)
            try:
                value = metric.compute()
            except (ValueError, RuntimeError):
                value = torch.tensor(float("nan"))
            self.log(name, value, sync_dist=True, logger=False)
            metric.reset()

    def configure_optimizers(self):
        return make_optimizer(self.model, self.config.learning_rate, self.config.weight_decay)

    def transfer_batch_to_device(self, batch, device, dataloader_idx):
        return batch.to(device)


class _ProgressCallback(pl.Callback):
    """Forwards Lightning events as :class:`Progress` and honours a cancel flag."""

    def __init__(self, events: "queue.Queue", stop: threading.Event, total_steps: int, ckpt: "_SafeCheckpoint | None",
                 start_epoch: int = 0):
        self.events, self.stop, self.total = events, stop, total_steps
        self.ckpt = ckpt
        self.start_epoch = start_epoch  # a resumed run's log counts on from its checkpoint
        self.history: list[dict[str, float]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        loss = outputs["loss"].item() if isinstance(outputs, dict) and "loss" in outputs else float("nan")
        if trainer.is_global_zero:
            self.events.put(Progress("train", trainer.global_step, self.total, f"epoch {trainer.current_epoch + 1}",
                                     {"loss": loss, "epoch": float(trainer.current_epoch)}))
        if self.stop.is_set():
            trainer.should_stop = True

    def on_train_epoch_end(self, trainer, pl_module):
        m = {k: float(v) for k, v in trainer.callback_metrics.items() if torch.is_tensor(v) and v.numel() == 1}
        rec = {"epoch": float(trainer.current_epoch + 1), "step": float(trainer.global_step),
               "loss": m.get("train_loss_epoch", float("nan")), "val_loss": m.get("val_loss", float("nan")),
               "val_auroc": m.get("val_auroc", float("nan")), "val_f1": m.get("val_f1", float("nan")),
               "val_auroc_dot": m.get("val_auroc_dot", float("nan")),
               "val_auroc_dist": m.get("val_auroc_dist", float("nan"))}
        self.history.append(rec)
        pl_module.last_metrics = rec
        if trainer.is_global_zero:
            self.events.put(Progress("train", trainer.global_step, self.total,
                                     f"epoch {trainer.current_epoch + 1} done", dict(rec)))
            # one row per epoch in every logger (CSV, TensorBoard), on disk at once so a long run can be followed
            row = {k: v for k, v in rec.items() if k != "step"}
            row["epoch"] = float(self.start_epoch + trainer.current_epoch + 1)
            for logger in trainer.loggers:
                logger.log_metrics(row, step=trainer.global_step)
                logger.save()
        if self.ckpt is not None:
            self.ckpt.save(trainer, pl_module, rec)
        if self.stop.is_set():
            trainer.should_stop = True


#: the metrics logs of a run, inside its checkpoint folder (``OUTPUT/model/logs``)
LOG_DIR = "logs"
#: the per-epoch metrics of :class:`TrainingRun` (the CSV log's columns besides ``step``)
LOG_METRICS = ("epoch", "loss", "val_loss", "val_auroc", "val_auroc_dot", "val_auroc_dist", "val_f1")


def tensorboard_available() -> bool:
    """True when the ``tensorboard`` package is installed (the optional training monitor)."""
    import importlib.util

    return importlib.util.find_spec("tensorboard") is not None


def make_loggers(log_dir: Path | None, resume: bool = False, start_epoch: int = 0) -> list:
    """Lightning loggers writing into ``log_dir``: always a CSV log (``metrics.csv``, one row per
    epoch, :data:`LOG_METRICS`, plus ``hparams.yaml``), and TensorBoard event files in
    ``tensorboard/`` when the package is installed. ``None``: no logger, no file.

    A new run replaces the logs of a previous run in ``log_dir``; a resumed run keeps the rows of its
    first ``start_epoch`` epochs and appends to them."""
    if log_dir is None:
        return []
    import csv
    import shutil

    from pytorch_lightning.loggers import CSVLogger
    from pytorch_lightning.utilities import rank_zero_only

    log_dir = Path(log_dir)
    csv_path = log_dir / "metrics.csv"
    old_rows: list[dict] = []
    if rank_zero_only.rank == 0:
        if resume and csv_path.is_file():
            with open(csv_path, newline="") as f:
                old_rows = [r for r in csv.DictReader(f) if _float(r.get("epoch")) <= start_epoch]
        if not resume:
            for name in ("metrics.csv", "hparams.yaml", "tensorboard"):
                p = log_dir / name
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        csv_path.unlink(missing_ok=True)  # rewritten (with the kept rows) at the first save
    loggers: list = [CSVLogger(save_dir=str(log_dir), name="", version="")]
    import warnings

    with warnings.catch_warnings():  # "directory not empty": a resumed run's own logs, handled above
        warnings.simplefilter("ignore")
        writer = loggers[0].experiment if rank_zero_only.rank == 0 else None
    if writer is not None:
        for r in old_rows:
            writer.log_metrics({k: _float(v) for k, v in r.items() if k != "step"}, step=int(_float(r.get("step"))))
    if tensorboard_available():
        from pytorch_lightning.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(save_dir=str(log_dir), name="", version="tensorboard", default_hp_metric=False))
    return loggers


def _float(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


class _SafeCheckpoint:
    """Writes ``last.pt`` every epoch and ``best.pt`` on the lowest validation loss (rank 0 only)."""

    def __init__(self, run: "TrainingRun", directory: Path):
        self.run, self.dir = run, Path(directory)
        self.best = -math.inf

    def save(self, trainer, pl_module, rec: dict) -> None:
        if not trainer.is_global_zero:
            return
        opt = trainer.optimizers[0].state_dict() if trainer.optimizers else None
        epoch = self.run.start_epoch + trainer.current_epoch + 1  # a resumed run counts on from its checkpoint
        self.run._write(self.dir / "last.pt", pl_module.model, rec, epoch, trainer.global_step, opt)
        # lowest validation loss (AUROC saturates near 1 within an epoch or two on easy crops)
        score = -rec.get("val_loss", float("nan"))
        score = -rec.get("loss", 0.0) if not np.isfinite(score) else score
        if score > self.best:
            self.best = score
            self.run._write(self.dir / "best.pt", pl_module.model, rec, epoch, trainer.global_step, opt)


class _LiveEvents:
    """Queue stand-in for :meth:`TrainingRun.fit`: events go straight to the callback."""

    def __init__(self, callback):
        self.callback = callback

    def put(self, ev) -> None:
        if ev is not None:
            self.callback(ev)

    def get(self):
        return None  # everything was delivered already


class TrainingRun:
    """One training (or fine-tuning) run.

    ``iter_train()`` yields :class:`Progress` and returns the run. Closing the generator (GUI
    cancel) stops training at the next step; :attr:`model` then holds the weights of the last
    completed step and ``last.pt`` the last completed epoch.
    """

    def __init__(self, bundle: GraphBundle, config: TrainConfig | None = None, checkpoint: str | Path | None = None,
                 checkpoint_dir: str | Path | None = None, resume: bool = False):
        from segger.training.checkpoint import load_checkpoint

        self.bundle = bundle
        self.config = (config or TrainConfig()).validate()
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
        self.history: list[dict[str, float]] = []
        self.info: dict[str, Any] = {}
        self.start_epoch = 0
        self.resume = bool(resume and checkpoint is not None)
        self.global_rank = 0  # set by multi-process training; only rank 0 writes checkpoints
        self._optimizer_state = None
        state = None
        if checkpoint is not None:
            model, mcfg, vocab, _, payload = load_checkpoint(checkpoint)
            if list(vocab.genes) != list(bundle.vocab.genes):
                raise SeggerInputError(
                    f"checkpoint {checkpoint} was trained on another gene vocabulary; build the graph with the "
                    "checkpoint's vocabulary (segger.pipeline does this) so genes keep their tokens"
                )
            self.model_config = mcfg
            head = getattr(model, "head", None)
            if head is not None:  # the checkpoint's head decides which terms the score has
                self.config.link_terms = head.terms
                self.config.spatial_prior = True
                self.config.expression_side = getattr(model, "expression", "context")
            state = model.state_dict()
            if resume:
                self.start_epoch = int(payload.get("epoch", 0))
                self._optimizer_state = payload.get("optimizer_state")
        else:
            self.model_config = self.config.model_config(num_tx_tokens=len(bundle.vocab))
        pl.seed_everything(self.config.seed, workers=True, verbose=False)  # deterministic initial weights
        self.module = SeggerLightningModule(self.model_config.to_dict(), self.config.to_dict(), state)

    @property
    def model(self) -> torch.nn.Module:
        return self.module.model

    def _write(self, path: Path, model, metrics: dict, epoch: int, step: int, optimizer_state=None) -> None:
        from segger.training.checkpoint import save_checkpoint

        save_checkpoint(path, model, self.model_config, self.bundle.vocab, self.bundle.params,
                        train_config=self.config.to_dict(), metrics=metrics, epoch=epoch, global_step=step,
                        optimizer_state=optimizer_state)

    def save_checkpoint(self, path: str | Path) -> Path:
        """Save the current weights (a safe checkpoint) to ``path``."""
        self._write(Path(path), self.model, self.history[-1] if self.history else {}, self.start_epoch + len(self.history), 0)
        return Path(path)

    @property
    def multi_process(self) -> bool:
        """True when Lightning runs several processes (``devices`` > 1, ``num_nodes`` > 1 or a ddp
        strategy): their launchers need the calling (main) thread, see :meth:`fit`."""
        c = self.config
        d = c.devices
        many = len(d) > 1 if isinstance(d, (list, tuple)) else str(d).strip() not in ("1", "auto", "")
        return many or int(c.num_nodes) > 1 or str(c.strategy).startswith("ddp")

    def fit(self, callback=None) -> "TrainingRun":
        """Train in the calling thread (no background thread) and return the run; ``callback``
        receives each :class:`Progress` (rank 0 only). The path for multi-process training
        (``devices=N, strategy='ddp'``, ``num_nodes``): Lightning's DDP launchers re-run the
        program for the other ranks and set up signal handling in the main thread. Each rank
        trains on its own share of the tiles (Lightning's distributed sampler) and only rank 0
        writes checkpoints; :attr:`global_rank` tells the ranks apart afterwards."""
        self._live_callback = callback
        gen = self.iter_train(_in_thread=True)
        try:
            while True:
                try:
                    ev = next(gen)
                except StopIteration:
                    return self
                if callback is not None:
                    callback(ev)
        finally:
            self._live_callback = None

    def iter_train(self, _in_thread: bool = False) -> Iterator[Progress]:
        from segger.progress import deterministic_threads

        with deterministic_threads(self.config.deterministic and resolve_device(self.config.device)[0] == "cpu"):
            try:
                result = yield from self._iter_train(_in_thread or self.multi_process)
            except GeneratorExit:  # closed by the consumer (GUI cancel), at whatever step
                self.info["cancelled"] = True
                raise
        return result

    def _iter_train(self, in_thread: bool = False) -> Iterator[Progress]:
        cfg = self.config
        pl.seed_everything(cfg.seed, workers=True, verbose=False)
        yield Progress("train", 0, None, "preparing tiles")
        train_items, val_items, info = prepare_tiles(self.bundle, cfg, hops=self.model_config.num_mid_layers + 2)
        self.info.update(info)
        epochs_left = max(cfg.epochs - self.start_epoch, 0)
        total = epochs_left * len(train_items)
        accelerator, devices = resolve_device(cfg.device)
        if cfg.devices not in (1, "1") and cfg.device in ("auto", "cuda", "cpu"):
            devices = cfg.devices
        precision = cfg.precision or ("bf16-mixed" if accelerator == "gpu" else "32-true")
        strategy = "ddp_find_unused_parameters_true" if cfg.strategy == "ddp" else cfg.strategy
        live = getattr(self, "_live_callback", None) if in_thread else None
        events = _LiveEvents(live) if live is not None else queue.Queue()
        stop = threading.Event()
        ckpt = _SafeCheckpoint(self, self.checkpoint_dir) if self.checkpoint_dir else None
        cb = _ProgressCallback(events, stop, total, ckpt, start_epoch=self.start_epoch)
        loggers = make_loggers(self.checkpoint_dir / LOG_DIR if self.checkpoint_dir else None,
                               resume=self.resume, start_epoch=self.start_epoch)
        trainer = pl.Trainer(
            max_epochs=epochs_left, accelerator=accelerator, devices=devices, strategy=strategy,
            num_nodes=cfg.num_nodes, precision=precision, gradient_clip_val=cfg.grad_clip,
            logger=loggers or False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
            callbacks=[cb], num_sanity_val_steps=0, deterministic=False, log_every_n_steps=1,
            limit_val_batches=1.0 if val_items else 0,
        )
        train_loader = DataLoader(TileDataset(train_items), batch_size=1, shuffle=True, collate_fn=_first,
                                  generator=torch.Generator().manual_seed(cfg.seed))
        val_loader = DataLoader(TileDataset(val_items), batch_size=1, shuffle=False, collate_fn=_first) if val_items else None
        if self._optimizer_state is not None:
            opt_state = self._optimizer_state

            def _restore(trainer=trainer):
                trainer.optimizers[0].load_state_dict(opt_state)
            self.module.on_train_start = _restore  # type: ignore[method-assign]
        errors: list[BaseException] = []

        def _fit():
            try:
                trainer.fit(self.module, train_loader, val_loader)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the generator's thread
                errors.append(exc)
            finally:
                events.put(None)

        t0 = time.perf_counter()
        if in_thread:  # multi-process (DDP) or fit(): the launcher needs this (main) thread
            _fit()  # its events are queued (or went live to fit()'s callback) and drained below
            self.global_rank = int(trainer.global_rank)
        thread = threading.Thread(target=_fit, name="segger-train", daemon=True)
        if not in_thread:
            thread.start()
        cancelled = False
        try:
            while True:
                ev = events.get()
                if ev is None:
                    break
                yield ev
        except GeneratorExit:
            cancelled = True
            raise
        finally:
            # reached on normal end, on error and when the consumer closes the generator (cancel)
            stop.set()
            if thread.is_alive() or thread.ident is not None:
                thread.join()
            self.history = list(cb.history)
            self.info["seconds"] = time.perf_counter() - t0
            self.info["cancelled"] = cancelled
            self.model.eval()
            self.model.cpu()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        if errors:
            exc = errors[0]
            if isinstance(exc, SeggerError):
                raise exc
            raise exc
        return self


def train(bundle: GraphBundle, config: TrainConfig | None = None, **kwargs) -> TrainingRun:
    """Train without progress reporting; returns the finished :class:`TrainingRun`."""
    from segger.progress import run

    tr = TrainingRun(bundle, config, **kwargs)
    run(tr.iter_train())
    return tr
