"""Training from tiles streamed from disk: the whole graph is never in memory.

:class:`StreamedTrainingRun` trains the same :class:`~segger.training.train.SeggerLightningModule`
as :class:`~segger.training.TrainingRun` (same losses, same optimiser :func:`make_optimizer`, same
labels: :func:`~segger.training.train.prepare_tiles` on each tile's graph), but its data are
*tiles*: ``load(tile)`` builds one tile's graph (its core transcripts + a margin of context, read
from disk; :mod:`segger.scale.segment` reads the bucket files of the out-of-core tile grid) and
the tile is dropped once its mini-batches have been consumed. Each epoch streams the training
tiles in a new seeded order through an :class:`~torch.utils.data.IterableDataset`, so at most one
tile's graph is held at a time; :attr:`StreamedTrainingRun.counter` records the peak number of
transcripts held (the instrument the tests read).

Differences from the in-memory run, all forced by never holding the slide:

* validation is on whole held-out *tiles* (``val_tiles``), never trained on, instead of spatial
  blocks of the one graph: in a held-out tile every core transcript is held out
  (:func:`prepare_tiles` with ``holdout=core``) and only its validation items are used; in a training tile every core transcript may be supervised
  (``val_fraction=0``) and the margin is context only (it is another tile's core);
* labels are restricted to a tile's core transcripts (validation labels too), so no transcript
  is supervised twice in one epoch and no held-out transcript is supervised;
* the training tiles are a seeded sample of the slide's tiles (``train_tiles``).

Multi-GPU / multi-process training: ``TrainConfig.devices`` / ``strategy`` / ``num_nodes`` are
passed to the Lightning ``Trainer`` as :class:`TrainingRun` passes them; each rank streams its own
share of the tiles (``tiles[rank::world_size]``). Not tested here (no GPU). DDP needs every rank to
take the same number of steps: set ``steps_per_epoch`` (each rank then takes exactly that many
mini-batches per epoch, cycling through its tiles).
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, IterableDataset

from segger.data.graph import GraphBundle
from segger.errors import SeggerInputError
from segger.progress import Progress
from segger.training.train import (LOG_DIR, SeggerLightningModule, TrainConfig, _first, _LiveEvents, _ProgressCallback,
                                   _SafeCheckpoint, make_loggers, prepare_tiles, resolve_device)

#: ``load(tile) -> (graph of core + margin, core mask over its transcripts)`` or ``None`` (nothing to learn)
TileLoader = Callable[[Any], "tuple[GraphBundle, np.ndarray] | None"]

class TranscriptCounter:
    """Transcripts held by the tile stream right now, and the most ever held at once."""

    def __init__(self):
        self._lock = threading.Lock()
        self.held = 0
        self.peak = 0
        self.tiles_loaded = 0

    def take(self, n: int) -> None:
        with self._lock:
            self.held += int(n)
            self.peak = max(self.peak, self.held)
            self.tiles_loaded += 1

    def release(self, n: int) -> None:
        with self._lock:
            self.held -= int(n)


def _rank_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def train_items_of(bundle: GraphBundle, core: np.ndarray, config: TrainConfig) -> list:
    """The training mini-batches of one tile: :func:`prepare_tiles` with no validation blocks, labels
    restricted to the tile's core transcripts (the margin is context)."""
    try:
        items, _, _ = prepare_tiles(bundle, replace(config, val_fraction=0.0))
    except SeggerInputError:  # no nucleus link in this tile: nothing to learn from it
        return []
    core_t = torch.from_numpy(np.asarray(core, dtype=bool))
    out = []
    for it in items:
        it.train_tx = it.train_tx & core_t[it["tx"].global_index]
        if bool(it.train_tx.any()):
            out.append(it)
    return out


def val_items_of(bundle: GraphBundle, core: np.ndarray, config: TrainConfig) -> list:
    """The validation mini-batches of a held-out tile: :func:`prepare_tiles`' validation items with
    every core transcript held out (``holdout=core``), labels of core transcripts only."""
    try:
        _, items, _ = prepare_tiles(bundle, config, holdout=np.asarray(core, dtype=bool))
    except SeggerInputError:
        return []
    core_t = torch.from_numpy(np.asarray(core, dtype=bool))
    out = []
    for it in items:
        keep = core_t[it["tx"].global_index[it.label_index[0]]]
        if not bool(keep.any()) or not bool(it.labels[keep].any()):
            continue
        it.label_index, it.labels, it.label_geo = it.label_index[:, keep], it.labels[keep], it.label_geo[keep]
        out.append(it)
    return out


class StreamedTiles(IterableDataset):
    """Mini-batches of tiles loaded one at a time (``load``), in a new seeded order each pass
    (``seed=None``: the given order). In multi-process training each rank takes every
    ``world_size``-th tile; ``steps`` fixes the number of mini-batches per pass (cycling)."""

    def __init__(self, tiles: Sequence, load: TileLoader, make_items: Callable[[GraphBundle, np.ndarray], list],
                 counter: TranscriptCounter, seed: int | None = None, steps: int | None = None):
        self.tiles, self.load, self.make_items = list(tiles), load, make_items
        self.counter, self.seed, self.steps = counter, seed, steps
        self.epoch = 0

    def _tile_order(self) -> list:
        order = list(self.tiles)
        if self.seed is not None:
            np.random.default_rng([self.seed, self.epoch]).shuffle(order)
        rank, world = _rank_world()
        return order[rank::world] if world > 1 else order

    def _pass(self, order: list):
        for t in order:
            got = self.load(t)
            if got is None:
                continue
            bundle, core = got
            n = int(bundle.data["tx"].num_nodes)
            self.counter.take(n)
            try:
                items = self.make_items(bundle, core)
                del bundle, got
                while items:
                    yield items.pop(0)  # a consumed mini-batch is no longer referenced here
            finally:
                self.counter.release(n)

    def __iter__(self):
        order = self._tile_order()
        self.epoch += 1
        if self.steps is None:
            yield from self._pass(order)
            return
        done = 0
        while done < self.steps:
            got_any = False
            for item in self._pass(order):
                got_any = True
                yield item
                done += 1
                if done >= self.steps:
                    return
            if not got_any:
                return


@dataclass
class StreamedTrainingResult:
    history: list
    info: dict


class StreamedTrainingRun:
    """Train a new model on streamed tiles (see the module docstring).

    ``train_tiles`` / ``val_tiles``: the tile keys handed to ``load``; ``vocab`` and ``graph_params``
    are stored in the checkpoints (``checkpoint_dir``: ``best.pt``, ``last.pt``, ``logs/``, as
    :class:`TrainingRun` writes them).
    """

    def __init__(self, train_tiles: Sequence, val_tiles: Sequence, load: TileLoader, vocab, graph_params,
                 config: TrainConfig | None = None, checkpoint_dir: str | Path | None = None,
                 steps_per_epoch: int | None = None):
        if not list(train_tiles):
            raise SeggerInputError("no training tile: give at least one tile with transcripts (train_tiles)")
        self.config = (config or TrainConfig()).validate()
        self.vocab, self.params = vocab, graph_params
        self.train_tiles, self.val_tiles, self.load = list(train_tiles), list(val_tiles), load
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
        self.steps_per_epoch = steps_per_epoch
        self.model_config = self.config.model_config(num_tx_tokens=len(vocab))
        self.counter = TranscriptCounter()
        self.history: list[dict] = []
        self.info: dict[str, Any] = {"n_train_tiles": len(self.train_tiles), "n_val_tiles": len(self.val_tiles)}
        self.start_epoch = 0
        self.global_rank = 0
        pl.seed_everything(self.config.seed, workers=True, verbose=False)  # deterministic initial weights
        self.module = SeggerLightningModule(self.model_config.to_dict(), self.config.to_dict(), None)

    @property
    def model(self) -> torch.nn.Module:
        return self.module.model

    def _write(self, path: Path, model, metrics: dict, epoch: int, step: int, optimizer_state=None) -> None:
        from segger.training.checkpoint import save_checkpoint

        save_checkpoint(path, model, self.model_config, self.vocab, self.params,
                        train_config=dict(self.config.to_dict(), streamed=True, train_tiles=len(self.train_tiles),
                                          val_tiles=len(self.val_tiles)),
                        metrics=metrics, epoch=epoch, global_step=step, optimizer_state=optimizer_state)

    def _loaders(self):
        cfg = self.config
        train = StreamedTiles(self.train_tiles, self.load, lambda b, c: train_items_of(b, c, cfg), self.counter,
                              seed=cfg.seed, steps=self.steps_per_epoch)
        val = StreamedTiles(self.val_tiles, self.load, lambda b, c: val_items_of(b, c, cfg), self.counter) \
            if self.val_tiles else None
        tl = DataLoader(train, batch_size=1, collate_fn=_first)
        vl = DataLoader(val, batch_size=1, collate_fn=_first) if val is not None else None
        return tl, vl

    def _trainer(self, callbacks: list, loggers: list, epochs: int, has_val: bool) -> pl.Trainer:
        cfg = self.config
        accelerator, devices = resolve_device(cfg.device)
        if cfg.devices not in (1, "1") and cfg.device in ("auto", "cuda", "cpu"):
            devices = cfg.devices
        precision = cfg.precision or ("bf16-mixed" if accelerator == "gpu" else "32-true")
        strategy = "ddp_find_unused_parameters_true" if cfg.strategy == "ddp" else cfg.strategy
        return pl.Trainer(max_epochs=epochs, accelerator=accelerator, devices=devices, strategy=strategy,
                          num_nodes=cfg.num_nodes, precision=precision, gradient_clip_val=cfg.grad_clip,
                          logger=loggers or False, enable_checkpointing=False, enable_progress_bar=False,
                          enable_model_summary=False, callbacks=callbacks, num_sanity_val_steps=0, deterministic=False,
                          log_every_n_steps=1, limit_val_batches=1.0 if has_val else 0)

    def evaluate(self) -> dict[str, float]:
        """The validation metrics (``val_loss``, ``val_auroc``, ``val_auroc_dot``, ``val_auroc_dist``,
        ``val_f1``) of the current weights on the held-out tiles (streamed like training)."""
        from segger.progress import deterministic_threads

        if not self.val_tiles:
            return {}
        _, vl = self._loaders()
        with deterministic_threads(self.config.deterministic and resolve_device(self.config.device)[0] == "cpu"):
            trainer = self._trainer([], [], 1, True)
            trainer.validate(self.module, vl, verbose=False)
        self.model.eval()
        self.model.cpu()
        m = trainer.callback_metrics  # the module logs its metrics to no logger: read them here
        return {k: float(v) for k, v in m.items() if k.startswith("val_") and torch.is_tensor(v) and v.numel() == 1}

    def fit(self, callback: Callable[[Progress], Any] | None = None) -> "StreamedTrainingRun":
        """Train in the calling thread; ``callback`` receives each :class:`Progress` (rank 0)."""
        from segger.progress import deterministic_threads

        cfg = self.config
        with deterministic_threads(cfg.deterministic and resolve_device(cfg.device)[0] == "cpu"):
            pl.seed_everything(cfg.seed, workers=True, verbose=False)
            events = _LiveEvents(callback or (lambda ev: None))
            events.put(Progress("train", 0, None, f"streaming {len(self.train_tiles)} training tiles "
                                                  f"({len(self.val_tiles)} held out)"))
            ckpt = _SafeCheckpoint(self, self.checkpoint_dir) if self.checkpoint_dir else None
            cb = _ProgressCallback(events, threading.Event(), None, ckpt, start_epoch=0)
            loggers = make_loggers(self.checkpoint_dir / LOG_DIR if self.checkpoint_dir else None)
            tl, vl = self._loaders()
            trainer = self._trainer([cb], loggers, cfg.epochs, vl is not None)
            t0 = time.perf_counter()
            try:
                trainer.fit(self.module, tl, vl)
            finally:
                self.history = list(cb.history)
                self.global_rank = int(trainer.global_rank)
                self.info.update(seconds=time.perf_counter() - t0, peak_transcripts=self.counter.peak,
                                 tiles_loaded=self.counter.tiles_loaded)
                self.model.eval()
                self.model.cpu()
        if not any(math.isfinite(h.get("loss", float("nan"))) for h in self.history) and cfg.epochs > 0:
            raise SeggerInputError("no training tile held a nucleus with transcripts: use more or larger tiles "
                                   "(train_tiles, tile_size) or check the nuclei")
        return self


__all__ = ["StreamedTiles", "StreamedTrainingRun", "TranscriptCounter", "TileLoader", "train_items_of", "val_items_of"]
