"""End-to-end segmentation: read → graph → train (or reuse a checkpoint) → predict → export.

Used by ``segger segment`` and ``make demo``; every step is the same core function the napari
widgets call. Outputs are staged in a hidden folder inside the output folder and moved into
place only when everything succeeded, so a failed or killed run leaves the previous complete
output (or none), never a half-written one. Inputs are only read.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pandas as pd

from segger import schema as S
from segger.data import GraphBundle, GraphParams, build_graph
from segger.errors import SeggerInputError
from segger.progress import Progress

from segger.utils.outdir import (BACKUP_PREFIX, OUTPUT_FILES, STAGING_PREFIX, check_output_path,  # noqa: F401
                                 output_session, publish, sweep_leftovers)


@dataclass
class SegmentResult:
    output: Path
    result: pd.DataFrame
    bundle: GraphBundle
    model: Any
    qc: dict
    timings: dict[str, float]
    files: dict[str, Path] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def _reference_column(df: pd.DataFrame, requested: str | None) -> str | None:
    if requested and requested in df.columns and df[requested].notna().any():
        return requested
    return None


def iter_segment(input_path: str | os.PathLike, output: str | os.PathLike, *, platform: str = "auto",
                 min_qv: float = 20.0, filter_controls: bool = True, nuclei: str = "auto",
                 nuclei_labels: str | os.PathLike | None = None, pixel_size: float | None = None,
                 labels_offset: tuple[float, float] = (0.0, 0.0), graph: GraphParams | None = None,
                 train=None, predict=None, checkpoint: str | os.PathLike | None = None, device: str = "auto",
                 reference_column: str | None = "cell_id", boundaries_method: str = "concave",
                 corrections=None, finetune=None, allow_weak_model: bool = False) -> Iterator[Progress]:
    """Generator form of :func:`segment` (yields :class:`Progress`, returns :class:`SegmentResult`)."""
    from segger.export import build_anndata, cell_boundaries, write_anndata, write_boundaries, write_run_json, write_transcripts
    from segger.io import read_sample
    from segger.prediction import PredictConfig, iter_predict
    from segger.training import TrainConfig, TrainingRun, load_checkpoint
    from segger.training.health import check_model_health
    from segger.validation import qc_report, write_qc_json

    input_path = Path(input_path)
    output = check_output_path(output, [("input", input_path), ("nuclei label image", nuclei_labels),
                                        ("checkpoint", checkpoint),
                                        ("corrections file", getattr(corrections, "path", None))])
    graph = (graph or GraphParams()).validate()
    train_cfg = dataclasses.replace(train) if train is not None else TrainConfig()  # never mutate the caller's
    pred_cfg = dataclasses.replace(predict) if predict is not None else PredictConfig()
    train_cfg.device = device
    pred_cfg.device = device
    train_cfg.validate()
    pred_cfg.validate()
    if finetune is not None and (checkpoint is None or corrections is None):
        raise SeggerInputError("fine-tuning needs a checkpoint and corrections (segger finetune --checkpoint --corrections)")
    if checkpoint is None and train_cfg.epochs == 0 and not allow_weak_model:
        raise SeggerInputError("--epochs 0 without --checkpoint would segment with an untrained (random) model: "
                               "give --epochs N (N ≥ 1) or --checkpoint MODEL.pt (or --allow-weak-model to accept it)")
    timings: dict[str, float] = {}
    warnings: list[str] = []

    # read
    t = time.perf_counter()
    yield Progress("read", 0, 1, f"reading {input_path}")
    sample = read_sample(input_path, platform=platform, min_qv=min_qv, filter_controls=filter_controls,
                         nuclei=nuclei, nuclei_labels=nuclei_labels, pixel_size=pixel_size, labels_offset=labels_offset)
    warnings += list(sample.warnings)
    if len(sample.nuclei) == 0:
        raise SeggerInputError(f"{input_path}: no nuclei were found or derived ({no_nuclei_reason(sample)}), so no cell "
                               "can be formed")
    timings["read"] = time.perf_counter() - t
    yield Progress("read", 1, 1, f"{len(sample.transcripts):,} transcripts, {len(sample.nuclei):,} nuclei "
                   f"({sample.nuclei_source}); {sample.filter_report.summary()}")

    # graph
    t = time.perf_counter()
    vocab = None
    ckpt_model = None
    ckpt_payload: dict = {}
    if checkpoint is not None:
        ckpt_model, ckpt_config, vocab, _, ckpt_payload = load_checkpoint(checkpoint)
        warnings += check_model_health(ckpt_model, metrics=ckpt_payload.get("metrics"), where=f"checkpoint {checkpoint}",
                                       allow=allow_weak_model)
        cov, unknown = vocab.coverage(sample.transcripts[S.GENE].unique())
        if cov < 0.5:
            raise SeggerInputError(
                f"checkpoint {checkpoint} knows only {cov:.0%} of this panel's genes ({len(unknown)} unknown): "
                "it was trained on another panel; train a new model (omit --checkpoint)"
            )
        if unknown:
            warnings.append(f"{len(unknown)} genes are not in the checkpoint's vocabulary and use the unknown-gene token")
    bundle = build_graph(sample.transcripts, sample.nuclei, graph, vocab=vocab)
    timings["graph"] = time.perf_counter() - t
    summ = bundle.summary()
    yield Progress("graph", 1, 1, f"graph: {summ['n_tx']:,} tx, {summ['n_bd']:,} nuclei, {summ['n_tx_tx']:,} tx–tx, "
                   f"{summ['n_belongs']:,} nucleus links, {summ['n_candidates']:,} candidates", dict(summ))

    # everything is validated: lock the output folder, stage the outputs in it, publish at the end
    with output_session(output, "segger segment") as session:
        stage = session.stage
        # train (or reuse / fine-tune)
        t = time.perf_counter()
        history: list[dict] = []
        if finetune is not None:
            from segger.corrections import FinetuneRun
            from segger.training import save_checkpoint

            ft = FinetuneRun(ckpt_model, bundle, corrections.effective(), finetune)
            gen = ft.iter_finetune()
            while True:
                try:
                    yield next(gen)
                except StopIteration:
                    break
            model = ft.model
            warnings += check_model_health(model, where="the fine-tuned model", allow=allow_weak_model)
            save_checkpoint(stage / "model" / "finetuned.pt", model, ckpt_config, vocab, bundle.params,
                            train_config={"finetune": ft.config.to_dict(),
                                          "corrections": str(getattr(corrections, "path", None) or "")},
                            metrics=ckpt_payload.get("metrics"))
            yield Progress("train", 1, 1, f"fine-tuned on {len(corrections)} corrections")
        elif ckpt_model is not None and train_cfg.epochs == 0:
            model = ckpt_model
            yield Progress("train", 1, 1, f"using checkpoint {checkpoint}")
        else:
            run = TrainingRun(bundle, train_cfg, checkpoint=checkpoint, checkpoint_dir=stage / "model")
            gen = run.iter_train()
            try:
                while True:
                    yield next(gen)
            except StopIteration:
                pass
            model = run.model
            history = run.history
            warnings += check_model_health(model, history=history, trained_epochs=train_cfg.epochs,
                                           pretrained=checkpoint is not None, where="the trained model",
                                           allow=allow_weak_model)
        timings["train"] = time.perf_counter() - t

        # predict
        t = time.perf_counter()
        gen = iter_predict(model, bundle, pred_cfg)
        while True:
            try:
                ev = next(gen)
            except StopIteration as stop:
                prediction = stop.value
                break
            if ev.message.startswith("GPU out of memory"):  # segger.prediction.oom fell back: tell the user
                warnings.append(ev.message)
            yield ev
        result = prediction.assign()
        if corrections is not None:  # user corrections are authoritative
            result = corrections.apply(result)
        timings["predict"] = time.perf_counter() - t

        # export
        t = time.perf_counter()
        yield Progress("export", 0, 4, "writing outputs")
        ref = _reference_column(result, reference_column)
        write_transcripts(result, stage / "segger_transcripts.parquet")
        bounds = cell_boundaries(result, method=boundaries_method)
        write_boundaries(bounds, stage / "segger_boundaries.parquet")
        yield Progress("export", 2, 4, "cells table")
        adata = build_anndata(result, bounds, reference_column=ref or "cell_id")
        write_anndata(adata, stage / "segger_cells.h5ad")
        qc = qc_report(result, reference_column=ref)
        write_qc_json(qc, stage / "qc.json")
        timings["export"] = time.perf_counter() - t
        inputs = [p for p in (sample.transcripts_path or sample.source, sample.nuclei_path) if p]
        inputs += [str(nuclei_labels)] if isinstance(nuclei_labels, (str, os.PathLike)) and str(nuclei_labels) not in inputs else []
        inputs += [str(checkpoint)] if checkpoint else []
        inputs += [str(corrections.path)] if getattr(corrections, "path", None) else []
        write_run_json(
            stage / "segger_run.json",
            parameters={"platform": sample.platform, "min_qv": min_qv, "filter_controls": filter_controls,
                        "nuclei": nuclei, "nuclei_source": sample.nuclei_source, "pixel_size": pixel_size,
                        "graph": graph.to_dict(), "train": train_cfg.to_dict(), "predict": pred_cfg.to_dict(),
                        "checkpoint": str(checkpoint) if checkpoint else None, "device": device,
                        "seed": train_cfg.seed, "finetune": finetune.to_dict() if finetune is not None else None},
            inputs=inputs, timings=timings,
            extra={"filter_report": sample.filter_report.to_dict(), "graph_summary": summ, "warnings": warnings,
                   "training_history": history, "n_cells": int(adata.n_obs)},
        )
        # move into place. segger_run.json marks a complete output: the previous one is moved aside
        # first and the new one written last, so a folder with a run JSON is never a mixture
        files = session.publish()
        yield Progress("export", 4, 4, f"wrote {output}")
    return SegmentResult(output, result, bundle, model, qc, timings, files, warnings)


def no_nuclei_reason(sample) -> str:
    """Why a sample has no nuclei, and the fix that fits (used by segment and train)."""
    about = [w for w in sample.warnings if sample.nuclei_path and w.startswith(sample.nuclei_path)
             and "used as the nuclei" not in w]  # a substitution note is not why polygons were dropped
    why = "; ".join(about) if about else None
    if sample.nuclei_source == "labels":
        return (f"{why + '; ' if why else ''}the label image holds no nucleus over the transcripts: check "
                "--labels-offset X0 Y0 (µm of the image's top-left corner) and --pixel-size against the "
                "transcripts' extent")
    if why:
        return f"{why}; fix or replace that polygons file, or use --nuclei approximate / --nuclei-labels FILE"
    return ("give polygons, --nuclei-labels FILE --pixel-size UM, or a nuclear flag so nuclei can be "
            "approximated")


def segment(input_path, output, callback=None, **kwargs) -> SegmentResult:
    """Run the whole pipeline; ``callback`` receives each :class:`Progress`."""
    from segger.progress import run

    return run(iter_segment(input_path, output, **kwargs), callback)
