"""``segger segment --out-of-core``: read → tiles → train on streamed tiles → predict every tile →
every output of an in-memory run, never holding the slide.

1. **Plan and bucket** (:mod:`segger.scale.tiled`): the one tile grid of out-of-core predict
   (:func:`plan_tiles`), the transcripts streamed into per-tile part files (core + margin) with the
   vocabulary (every kept gene) and the reach (``max_distance``, from every kept transcript and
   nucleus polygon, as the in-memory graph estimates it) collected on the way.
2. **Train** (:class:`segger.training.streamed.StreamedTrainingRun`): a seeded sample of the tiles
   (``train_tiles``: a fraction ≤ 1 or a count), plus ``val_tiles`` held-out tiles for validation;
   each tile's graph is built from its part files when the stream reaches it and dropped after its
   mini-batches. Checkpoints and the metrics log go to ``model/`` as in memory.
3. **Health check** of the trained model (:func:`segger.training.health.check_model_health`).
4. **Predict** every tile with ``model/best.pt`` (:func:`segger.scale.runner.iter_predict_out_of_core`,
   same graph parameters and reach) on the configured Dask scheduler, streamed to
   ``segger_transcripts.parquet``.
5. **Cell outputs** (outlines, cells × genes, QC) by :func:`segger.workflows.write_cell_outputs`
   from the streamed result, window by window (:mod:`segger.export.streamed`), and
   ``segger_run.json``, all staged and published by :func:`segger.utils.outdir.output_session`, the
   path of every other run. Fragments keep the global ids of out-of-core predict
   (``fragment-tx<first transcript id>``).

The training pass and the prediction pass each stream the input once (two reads of the parquet).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from segger.errors import SeggerInputError
from segger.progress import Progress
from segger.scale.runner import OutOfCoreConfig, OutOfCoreResult, _with_global_reach, iter_predict_out_of_core
from segger.scale.tiled import (InputSpec, TileTask, bucket_nuclei, bucket_transcripts, plan_tiles, read_tile,
                                tile_nuclei)
from segger.utils.memory import release_memory


@dataclass
class SegmentOutOfCoreResult:
    output: Path
    predict: OutOfCoreResult
    history: list
    train_info: dict
    timings: dict[str, float]
    n_cells: int
    qc: dict
    warnings: list[str] = field(default_factory=list)
    train_tiles: list[int] = field(default_factory=list)
    val_tiles: list[int] = field(default_factory=list)


def choose_tiles(tiles: list[int], core_rows: dict[int, int], train_tiles: float | int, val_tiles: int,
                 seed: int) -> tuple[list[int], list[int]]:
    """``(training tiles, held-out tiles)``: a seeded sample of the tiles that own transcripts.
    ``train_tiles`` ≤ 1 is a fraction of them, > 1 a count; ``val_tiles`` more are held out (none
    when there is a single tile)."""
    if not (train_tiles > 0 and np.isfinite(train_tiles)):
        raise SeggerInputError(f"train_tiles={train_tiles}: give a fraction in (0, 1] or a count ≥ 1")
    if val_tiles < 0:
        raise SeggerInputError(f"val_tiles={val_tiles} must be ≥ 0")
    cand = [t for t in tiles if core_rows.get(t, 0) > 0]
    order = list(np.random.default_rng(seed).permutation(len(cand)))
    cand = [cand[i] for i in order]
    n_val = min(int(val_tiles), max(len(cand) - 1, 0))
    val, rest = cand[:n_val], cand[n_val:]
    n_train = int(round(train_tiles * len(rest))) if train_tiles <= 1 else int(train_tiles)
    train = rest[:max(1, min(n_train, len(rest)))]
    return sorted(int(t) for t in train), sorted(int(t) for t in val)


def _tile_loader(tasks: dict[int, TileTask], graph, vocab, min_nuclear: int):
    """``load(tile)``: the tile's graph (core + margin) from its bucket files, and its core mask."""
    from segger.data import build_graph

    def load(t: int):
        task = tasks[t]
        df, core = read_tile(task)
        nuc = tile_nuclei(task, df, min_nuclear)
        if len(nuc) == 0 or not core.any():
            return None
        return build_graph(df, nuc, graph, vocab=vocab), core

    return load


def segment_out_of_core(input_path: str | os.PathLike, output: str | os.PathLike, *, train=None, graph=None,
                        predict=None, config: OutOfCoreConfig | None = None, train_tiles: float | int = 0.5,
                        val_tiles: int = 1, steps_per_epoch: int | None = None, platform: str = "auto",
                        pixel_size: float | None = None, reference_column: str | None = "cell_id",
                        allow_weak_model: bool = False, callback: Callable[[Progress], Any] | None = None,
                        command: str = "segger segment --out-of-core") -> SegmentOutOfCoreResult:
    """Segment a whole slide out of core, training a new model on streamed tiles (module docstring).

    ``train`` (:class:`segger.training.TrainConfig`), ``graph`` (:class:`segger.data.GraphParams`),
    ``predict`` (:class:`segger.prediction.PredictConfig`), ``config`` (:class:`OutOfCoreConfig`:
    tiling, ``scheduler``, ``workers``, ``work_dir``, filters, ``device`` of the prediction). Writes
    the files of an in-memory ``segger segment`` (+ ``model/best.pt``, ``last.pt``, ``logs/``).
    """
    from segger.data import GraphParams
    from segger.data.vocab import GeneVocab
    from segger.export import write_run_json
    from segger.prediction import PredictConfig
    from segger.progress import run as run_gen
    from segger.training import TrainConfig
    from segger.training.health import check_model_health
    from segger.training.streamed import StreamedTrainingRun
    from segger.utils.outdir import OOC_PREFIX, RUN_MARKER, TRANSCRIPTS_FILE, check_output_path, output_session
    from segger.workflows import write_cell_outputs

    emit = callback or (lambda ev: None)
    cfg = dataclasses.replace(config) if config is not None else OutOfCoreConfig()
    output = check_output_path(output, [("input", input_path), ("work folder", cfg.work_dir)])
    gp = (graph or GraphParams()).validate()
    tcfg = dataclasses.replace(train) if train is not None else TrainConfig()
    tcfg.validate()
    if tcfg.epochs == 0 and not allow_weak_model:
        raise SeggerInputError("--epochs 0 would segment with an untrained (random) model: give --epochs N (N ≥ 1), "
                               "or segment with a trained model: 'segger predict --out-of-core --checkpoint MODEL.pt'")
    pc = (predict or PredictConfig()).validate()
    if cfg.margin < gp.dist_bd:
        raise SeggerInputError(f"margin={cfg.margin} µm is smaller than dist_bd={gp.dist_bd} µm: use a margin of at "
                               "least dist_bd + a nucleus radius")
    t_all = time.perf_counter()
    timings: dict[str, float] = {}
    spec = InputSpec.resolve(input_path, platform, cfg.nuclei, pixel_size)
    nuclei_mode = "polygons" if spec.polygons else "approximate"
    plan = plan_tiles(spec, cfg.tile_size, cfg.tile_tx, cfg.margin)
    emit(Progress("plan", 1, 1, f"{plan.n_rows:,} rows, {plan.nx}×{plan.ny} tiles of {plan.tile_size:.0f} µm "
                  f"(+{plan.margin:g} µm margin)", {"n_tiles": float(plan.n_tiles)}))
    warnings: list[str] = []
    with output_session(output, command) as session:
        stage = session.stage
        base = Path(cfg.work_dir) if cfg.work_dir else stage
        base.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=OOC_PREFIX, dir=base))
        try:
            # 1. bucket (vocabulary and reach on the way)
            t = time.perf_counter()
            buckets = bucket_transcripts(spec, plan, work, min_qv=cfg.min_qv, filter_controls=cfg.filter_controls,
                                         batch_rows=cfg.batch_rows, flush_bytes=cfg.flush_bytes,
                                         progress=lambda d, n: emit(Progress("bucket", d, n, "bucketing rows")),
                                         keep_xy=gp.max_distance is None and nuclei_mode == "polygons")
            if not buckets.tiles():
                raise SeggerInputError(f"{spec.path}: no transcript is left after filtering (qv ≥ {cfg.min_qv}, controls)")
            nuclei_parts = bucket_nuclei(spec, plan, work) if nuclei_mode == "polygons" else {}
            if buckets.xy:
                gp = _with_global_reach(gp, spec, np.concatenate(buckets.xy))
                buckets.xy = []
            vocab = GeneVocab.from_genes(buckets.genes)
            release_memory()
            timings["bucket"] = time.perf_counter() - t

            # 2. train on streamed tiles
            t = time.perf_counter()
            train_ids, val_ids = choose_tiles(buckets.tiles(), buckets.core_rows, train_tiles, val_tiles, tcfg.seed)
            tasks = {t_: TileTask(t_, plan.bounds(t_), buckets.parts[t_], nuclei_parts.get(t_), nuclei_mode)
                     for t_ in train_ids + val_ids}
            load = _tile_loader(tasks, gp, vocab, cfg.min_nuclear_transcripts)
            tr = StreamedTrainingRun(train_ids, val_ids, load, vocab, gp, tcfg, checkpoint_dir=stage / "model",
                                     steps_per_epoch=steps_per_epoch)
            tr.fit(emit)
            timings["train"] = time.perf_counter() - t
            warnings += check_model_health(tr.model, history=tr.history, trained_epochs=tcfg.epochs, pretrained=False,
                                           where="the trained model", allow=allow_weak_model)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        checkpoint = stage / "model" / "best.pt"
        if not checkpoint.is_file():
            tr._write(checkpoint, tr.model, {}, 0, 0)  # epochs 0 with allow_weak_model: the untrained weights

        # 3. predict every tile (its own bucket pass), on the configured scheduler
        t = time.perf_counter()
        pcfg = dataclasses.replace(cfg, work_dir=str(base))
        res = run_gen(iter_predict_out_of_core(input_path, checkpoint, stage / TRANSCRIPTS_FILE, pcfg, graph=gp,
                                               predict=pc, platform=platform, pixel_size=pixel_size), emit)
        timings["predict"] = time.perf_counter() - t

        # 4. the cell outputs and the run record, published together
        t = time.perf_counter()
        adata, qc = write_cell_outputs(stage / TRANSCRIPTS_FILE, stage, reference_column=reference_column)
        n_cells = int(adata.n_obs)
        del adata
        timings["export"] = time.perf_counter() - t
        timings["total"] = time.perf_counter() - t_all
        write_run_json(stage / RUN_MARKER,
                       parameters={"mode": "out-of-core", "scale": res.config, "plan": res.plan, "graph": gp.to_dict(),
                                   "train": tcfg.to_dict(), "predict": pc.to_dict(), "scheduler": res.scheduler,
                                   "train_tiles": train_ids, "val_tiles": val_ids, "seed": tcfg.seed,
                                   "streamed_training": True},
                       inputs=[res.input_path or str(input_path)], timings=timings,
                       extra={"counts": res.counts, "warnings": warnings, "n_cells": n_cells,
                              "training_history": tr.history,
                              "training": {k: v for k, v in tr.info.items() if not isinstance(v, (list, dict))}})
        session.publish()
        emit(Progress("export", 1, 1, f"wrote {output}"))
    return SegmentOutOfCoreResult(output, res, tr.history, dict(tr.info), timings, n_cells, qc, warnings,
                                  train_ids, val_ids)


__all__ = ["SegmentOutOfCoreResult", "choose_tiles", "segment_out_of_core"]
