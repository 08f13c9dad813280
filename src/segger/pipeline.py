"""End-to-end segmentation: read → graph → train (or reuse a checkpoint) → predict → export.

Used by ``segger segment`` and ``make demo``; every step is the same core function the napari
widgets call. Outputs are staged in a hidden folder inside the output folder and moved into
place only when everything succeeded, so a failed or killed run leaves the previous complete
output (or none), never a half-written one. Inputs are only read.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pandas as pd

from segger import schema as S
from segger.data import GraphBundle, GraphParams, build_graph
from segger.errors import SeggerInputError
from segger.progress import Progress

STAGING_PREFIX = ".segger-staging-"
BACKUP_PREFIX = ".segger-previous-"
OUTPUT_FILES = ("segger_transcripts.parquet", "segger_boundaries.parquet", "segger_cells.h5ad", "qc.json",
                "segger_run.json")


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
                 corrections=None) -> Iterator[Progress]:
    """Generator form of :func:`segment` (yields :class:`Progress`, returns :class:`SegmentResult`)."""
    from segger.export import build_anndata, cell_boundaries, write_anndata, write_boundaries, write_run_json, write_transcripts
    from segger.io import read_sample
    from segger.prediction import PredictConfig, iter_predict
    from segger.training import TrainConfig, TrainingRun, load_checkpoint
    from segger.validation import qc_report, write_qc_json

    input_path = Path(input_path)
    output = Path(output)
    if output.exists() and not output.is_dir():
        raise SeggerInputError(f"output {output} exists and is not a folder: choose a folder path for --output")
    if output.resolve() == input_path.resolve():
        raise SeggerInputError(f"output {output} is the input folder: choose another --output so inputs stay untouched")
    graph = (graph or GraphParams()).validate()
    train_cfg = dataclasses.replace(train) if train is not None else TrainConfig()  # never mutate the caller's
    pred_cfg = dataclasses.replace(predict) if predict is not None else PredictConfig()
    train_cfg.device = device
    pred_cfg.device = device
    train_cfg.validate()
    pred_cfg.validate()
    timings: dict[str, float] = {}
    warnings: list[str] = []

    # read
    t = time.perf_counter()
    yield Progress("read", 0, 1, f"reading {input_path}")
    sample = read_sample(input_path, platform=platform, min_qv=min_qv, filter_controls=filter_controls,
                         nuclei=nuclei, nuclei_labels=nuclei_labels, pixel_size=pixel_size, labels_offset=labels_offset)
    warnings += list(sample.warnings)
    if len(sample.nuclei) == 0:
        # name the polygons file and why its polygons were all dropped, when that is the reason
        why = next((w for w in sample.warnings if sample.nuclei_path and w.startswith(sample.nuclei_path)), None)
        raise SeggerInputError(
            f"{input_path}: no nuclei were found or derived{f' ({why})' if why else ''}, so no cell can be "
            "formed; give polygons, --nuclei-labels FILE --pixel-size UM, or a nuclear flag so nuclei can be approximated"
        )
    timings["read"] = time.perf_counter() - t
    yield Progress("read", 1, 1, f"{len(sample.transcripts):,} transcripts, {len(sample.nuclei):,} nuclei "
                   f"({sample.nuclei_source}); {sample.filter_report.summary()}")

    # graph
    t = time.perf_counter()
    vocab = None
    ckpt_model = None
    if checkpoint is not None:
        ckpt_model, _, vocab, _, _ = load_checkpoint(checkpoint)
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

    # stage outputs inside the output folder, move into place at the end
    created = not output.exists()
    output.mkdir(parents=True, exist_ok=True)
    sweep_stale(output, STAGING_PREFIX)  # left by a killed run
    stage = output / f"{STAGING_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}"
    stage.mkdir()
    complete = False
    try:
        # train (or reuse)
        t = time.perf_counter()
        history: list[dict] = []
        if ckpt_model is not None and train_cfg.epochs == 0:
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
        inputs = [sample.source] + ([str(nuclei_labels)] if isinstance(nuclei_labels, (str, os.PathLike)) else [])
        inputs += [str(checkpoint)] if checkpoint else []
        write_run_json(
            stage / "segger_run.json",
            parameters={"platform": sample.platform, "min_qv": min_qv, "filter_controls": filter_controls,
                        "nuclei": nuclei, "nuclei_source": sample.nuclei_source, "pixel_size": pixel_size,
                        "graph": graph.to_dict(), "train": train_cfg.to_dict(), "predict": pred_cfg.to_dict(),
                        "checkpoint": str(checkpoint) if checkpoint else None, "device": device,
                        "seed": train_cfg.seed},
            inputs=inputs, timings=timings,
            extra={"filter_report": sample.filter_report.to_dict(), "graph_summary": summ, "warnings": warnings,
                   "training_history": history, "n_cells": int(adata.n_obs)},
        )
        # move into place. segger_run.json marks a complete output: the previous one is removed
        # first and the new one written last, so a folder with a run JSON is never a mixture
        files = publish(stage, output)
        complete = True
        sweep_stale(output, BACKUP_PREFIX)  # a killed run's backup is stale once a new output is complete
        yield Progress("export", 4, 4, f"wrote {output}")
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        if not complete and created and output.is_dir() and not any(output.iterdir()):
            output.rmdir()  # a failed first run leaves no empty folder behind
    return SegmentResult(output, result, bundle, model, qc, timings, files, warnings)


def publish(stage: Path, output: Path) -> dict[str, Path]:
    """Move the staged outputs into ``output`` (same file system, each move atomic).

    The previous run's files are first moved aside (``segger_run.json``, the completeness marker,
    first) and the new ones moved in with the new marker last; if a move fails, the new files are
    taken out again and the previous ones restored. A kill part-way leaves a folder without
    ``segger_run.json`` (plus the ``.segger-previous-*`` backup), never a mixture that looks complete.
    """
    rels = [f"model/{f.name}" for f in sorted((stage / "model").iterdir())] if (stage / "model").is_dir() else []
    rels += list(OUTPUT_FILES)  # segger_run.json last
    backup = output / f"{BACKUP_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}"
    saved: list[str] = []
    placed: list[str] = []
    try:
        for rel in ["segger_run.json"] + [r for r in rels if r != "segger_run.json"]:
            if (output / rel).exists():
                (backup / rel).parent.mkdir(parents=True, exist_ok=True)
                os.replace(output / rel, backup / rel)
                saved.append(rel)
        for rel in rels:
            (output / rel).parent.mkdir(parents=True, exist_ok=True)
            os.replace(stage / rel, output / rel)
            placed.append(rel)
    except BaseException:
        for rel in placed:
            (output / rel).unlink(missing_ok=True)
        for rel in reversed(saved):
            os.replace(backup / rel, output / rel)
        if (output / "model").is_dir() and not any((output / "model").iterdir()):
            (output / "model").rmdir()
        raise
    finally:
        shutil.rmtree(backup, ignore_errors=True)
    return {rel: output / rel for rel in rels}


def _pid_alive(pid: int) -> bool:
    if os.name == "nt":  # os.kill(pid, 0) would terminate the process there: assume alive
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. PermissionError: it exists
        return True
    return True


def sweep_stale(output: Path, prefix: str) -> list[Path]:
    """Remove ``output/{prefix}{pid}-*`` folders whose process no longer runs (a run killed with
    SIGKILL or a power cut cannot clean up after itself). Folders of live processes are kept."""
    removed = []
    for p in sorted(Path(output).glob(f"{prefix}*")):
        try:
            pid = int(p.name[len(prefix):].split("-", 1)[0])
        except ValueError:
            continue
        if p.is_dir() and pid != os.getpid() and not _pid_alive(pid):
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


def segment(input_path, output, callback=None, **kwargs) -> SegmentResult:
    """Run the whole pipeline; ``callback`` receives each :class:`Progress`."""
    from segger.progress import run

    return run(iter_segment(input_path, output, **kwargs), callback)
