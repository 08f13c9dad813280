"""One workflow for the CLI, the napari widgets and Python users.

Each function here is one user-level task, built from the core (read → graph → train / predict →
export) and written once; ``segger`` commands only parse options and print, widgets only turn
layers into these inputs and results into layers.

* :func:`read_input` — read a sample, resolving where its nuclei come from (vendor polygons, a label
  image, or approximated), with one error when there are none;
* :func:`nuclei_for` — the nuclei of in-memory tables (a label image, approximated from nuclear
  transcripts, or given), optionally only those a cropped region can reach;
* :func:`check_vocabulary` / :func:`bundle_for_vocabulary` — match a checkpoint's gene vocabulary
  (one rule: refuse a checkpoint that knows fewer than :data:`MIN_VOCAB_COVERAGE` of the panel's
  genes, warn about the rest);
* :func:`segment` / :func:`iter_segment` — read → graph → train (or reuse / fine-tune a checkpoint)
  → predict → export, into a staged, locked output folder (:mod:`segger.utils.outdir`);
* :func:`train_model` — train only (checkpoints ``model/best.pt`` and ``model/last.pt``);
* :func:`finetune` — fine-tune a checkpoint on a corrections file, then segment.

``segger.pipeline`` re-exports the segment functions under their old names.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import pandas as pd

from segger import schema as S
from segger.data import GraphBundle, GraphParams, build_graph
from segger.errors import SeggerInputError
from segger.progress import Progress
from segger.utils.outdir import (BOUNDARIES_FILE, CELLS_FILE, QC_FILE, RUN_MARKER, TRANSCRIPTS_FILE,
                                 check_output_path, output_session)

#: a checkpoint that knows fewer of the panel's genes than this share is refused (another panel)
MIN_VOCAB_COVERAGE = 0.5


# ----------------------------------------------------------------------------------------------
# nuclei
# ----------------------------------------------------------------------------------------------
def read_input(input_path, *, platform: str = "auto", min_qv: float = 20.0, filter_controls: bool = True,
               nuclei: str = "auto", nuclei_labels=None, pixel_size: float | None = None,
               labels_offset: tuple[float, float] = (0.0, 0.0), require_nuclei: str | None = None):
    """:func:`segger.io.read_sample` (``nuclei="auto"``: a label image when one is given, else the
    vendor polygons, else approximated from nuclear transcripts).

    ``require_nuclei``: when not ``None``, a sample without nuclei is a one-line error naming why
    there are none and the fix, ending with this text (e.g. ``"; training needs nuclei"``).
    """
    from segger.io import read_sample

    sample = read_sample(input_path, platform=platform, min_qv=min_qv, filter_controls=filter_controls, nuclei=nuclei,
                         nuclei_labels=nuclei_labels, pixel_size=pixel_size, labels_offset=tuple(labels_offset))
    if require_nuclei is not None and len(sample.nuclei) == 0:
        raise SeggerInputError(f"{input_path}: no nuclei were found or derived ({no_nuclei_reason(sample)})"
                               f"{require_nuclei}")
    return sample


def nuclei_for(transcripts: pd.DataFrame, *, nuclei: pd.DataFrame | None = None, labels: tuple | None = None,
               approximate: bool = False, crop: tuple[float, float, float, float] | None = None,
               reach: float | None = None, what: str = "the transcripts") -> pd.DataFrame:
    """The nuclei table of in-memory data: ``labels`` (``(image, pixel_size, offset...)``, traced by
    :func:`segger.io.nuclei.nuclei_from_labels`), approximated from nuclear transcripts, or ``nuclei``
    as given. With ``crop`` (x0, y0, x1, y1 µm), only the nuclei whose centroid lies within ``reach``
    µm of it (those a cropped transcript can reach: ``GraphParams.dist_bd``)."""
    if labels is not None:
        from segger.io.nuclei import nuclei_from_labels

        nuclei = nuclei_from_labels(*labels)
    elif approximate:
        from segger.io.nuclei import approximate_nuclei

        nuclei = approximate_nuclei(transcripts)
        if len(nuclei) == 0:
            raise SeggerInputError(f"{what} have no nuclear transcripts with a vendor cell id ('nuclear' and "
                                   "'cell_id'); give nuclei polygons or a label image")
    if nuclei is None:
        raise SeggerInputError(f"no nuclei for {what}: give polygons, a label image, or approximate them")
    if crop is not None and len(nuclei):
        x0, y0, x1, y1 = crop
        r = GraphParams().dist_bd if reach is None else reach
        near = (nuclei[S.X].between(x0 - r, x1 + r) & nuclei[S.Y].between(y0 - r, y1 + r)).to_numpy()
        nuclei = nuclei[near].reset_index(drop=True)
    return nuclei


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


# ----------------------------------------------------------------------------------------------
# a checkpoint's vocabulary
# ----------------------------------------------------------------------------------------------
def check_vocabulary(vocab, genes: Iterable[str], checkpoint=None, min_coverage: float | None = None) -> list[str]:
    """The one vocabulary rule: a checkpoint knowing < :data:`MIN_VOCAB_COVERAGE` of ``genes`` is
    refused (it was trained on another panel); otherwise the warnings about unknown genes.
    ``min_coverage``: the share a checkpoint declares for itself (:func:`vocab_rule`; the bundled
    pretrained model declares 0: it is meant for any panel)."""
    cov, unknown = vocab.coverage(pd.unique(pd.Series(list(genes), dtype=object)))
    name = f"checkpoint {checkpoint}" if checkpoint is not None else "the model"
    if cov < (MIN_VOCAB_COVERAGE if min_coverage is None else min_coverage):
        raise SeggerInputError(
            f"{name} knows only {cov:.0%} of this panel's genes ({len(unknown)} unknown): "
            "it was trained on another panel; train a new model (omit --checkpoint)"
        )
    if unknown:
        return [f"{len(unknown)} genes are not in the checkpoint's vocabulary and use the unknown-gene token"]
    return []


def vocab_rule(payload: dict | None) -> float | None:
    """The ``min_vocab_coverage`` a checkpoint payload declares (a number in [0, 1]), else ``None``
    (the default rule)."""
    v = (payload or {}).get("min_vocab_coverage")
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= float(v) <= 1.0:
        return None
    return float(v)


def bundle_for_vocabulary(bundle: GraphBundle, vocab, checkpoint=None,
                          min_coverage: float | None = None) -> tuple[GraphBundle, list[str]]:
    """``(bundle, warnings)``: ``bundle`` itself when it already uses ``vocab``'s gene tokens, else the
    same graph rebuilt with them — after :func:`check_vocabulary` (so GUI and CLI refuse alike;
    ``min_coverage``: the checkpoint's own rule, ``vocab_rule(payload)``)."""
    warnings = check_vocabulary(vocab, bundle.transcripts[S.GENE].unique(), checkpoint, min_coverage)
    if list(vocab.genes) == list(bundle.vocab.genes):
        return bundle, warnings
    return build_graph(bundle.transcripts, bundle.nuclei, bundle.params, vocab=vocab), warnings


# ----------------------------------------------------------------------------------------------
# segment
# ----------------------------------------------------------------------------------------------
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
    n_corrections: int = 0  # corrections applied (fine-tune runs)


def _reference_column(df: pd.DataFrame, requested: str | None) -> str | None:
    if requested and requested in df.columns and df[requested].notna().any():
        return requested
    return None


def write_cell_outputs(result: pd.DataFrame | str | os.PathLike, stage, *, reference_column: str | None = "cell_id",
                       boundaries_method: str = "smooth"):
    """The outputs derived from an assigned transcripts table — outlines (:data:`BOUNDARIES_FILE`),
    cells × genes (:data:`CELLS_FILE`) and QC (:data:`QC_FILE`) — written into the staging folder
    ``stage``; the one place they are written for in-memory and out-of-core runs. Returns
    ``(adata, qc)``.

    ``result`` is the table, or the path of a transcripts file (an out-of-core run's): then the
    outputs are computed window by window without reading the table whole
    (:func:`segger.export.streamed.streamed_cell_outputs`; the same outputs)."""
    from segger.export import build_anndata, cell_boundaries, write_anndata, write_boundaries
    from segger.validation import qc_report, write_qc_json

    stage = Path(stage)
    if isinstance(result, (str, os.PathLike)):
        from segger.export.streamed import streamed_cell_outputs

        bounds, adata, qc = streamed_cell_outputs(result, reference_column=reference_column,
                                                  boundaries_method=boundaries_method, scratch=stage)
    else:
        ref = _reference_column(result, reference_column)
        bounds = cell_boundaries(result, method=boundaries_method)
        adata = build_anndata(result, bounds, reference_column=ref or "cell_id")
        qc = qc_report(result, reference_column=ref)
    write_boundaries(bounds, stage / BOUNDARIES_FILE)
    write_anndata(adata, stage / CELLS_FILE)
    write_qc_json(qc, stage / QC_FILE)
    return adata, qc


def iter_segment(input_path: str | os.PathLike, output: str | os.PathLike, *, platform: str = "auto",
                 min_qv: float = 20.0, filter_controls: bool = True, nuclei: str = "auto",
                 nuclei_labels: str | os.PathLike | None = None, pixel_size: float | None = None,
                 labels_offset: tuple[float, float] = (0.0, 0.0), graph: GraphParams | None = None,
                 train=None, predict=None, checkpoint: str | os.PathLike | None = None, device: str = "auto",
                 reference_column: str | None = "cell_id", boundaries_method: str = "smooth",
                 corrections=None, finetune=None, allow_weak_model: bool = False) -> Iterator[Progress]:
    """Generator form of :func:`segment` (yields :class:`Progress`, returns :class:`SegmentResult`)."""
    from segger.export import write_run_json, write_transcripts
    from segger.io import input_rows
    from segger.prediction import PredictConfig, iter_predict
    from segger.training import TrainConfig, TrainingRun, load_checkpoint
    from segger.training.health import check_model_health

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
    sample = read_input(input_path, platform=platform, min_qv=min_qv, filter_controls=filter_controls, nuclei=nuclei,
                        nuclei_labels=nuclei_labels, pixel_size=pixel_size, labels_offset=labels_offset,
                        require_nuclei=", so no cell can be formed")
    warnings += list(sample.warnings)
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
        warnings += check_vocabulary(vocab, sample.transcripts[S.GENE].unique(), checkpoint,
                                     min_coverage=vocab_rule(ckpt_payload))
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
        write_transcripts(result, stage / TRANSCRIPTS_FILE,
                          source=input_rows(sample, result[S.TX_ID], pixel_size=pixel_size))
        adata, qc = write_cell_outputs(result, stage, reference_column=reference_column,
                                       boundaries_method=boundaries_method)
        timings["export"] = time.perf_counter() - t
        inputs = [p for p in (sample.transcripts_path or sample.source, sample.nuclei_path) if p]
        inputs += [str(nuclei_labels)] if isinstance(nuclei_labels, (str, os.PathLike)) and str(nuclei_labels) not in inputs else []
        inputs += [str(checkpoint)] if checkpoint else []
        inputs += [str(corrections.path)] if getattr(corrections, "path", None) else []
        write_run_json(
            stage / RUN_MARKER,
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
    return SegmentResult(output, result, bundle, model, qc, timings, files, warnings,
                         n_corrections=len(corrections) if corrections is not None else 0)


def segment(input_path, output, callback=None, **kwargs) -> SegmentResult:
    """Run the whole pipeline; ``callback`` receives each :class:`Progress`."""
    from segger.progress import run

    return run(iter_segment(input_path, output, **kwargs), callback)


# ----------------------------------------------------------------------------------------------
# train only
# ----------------------------------------------------------------------------------------------
@dataclass
class TrainResult:
    output: Path
    model: Any
    history: list[dict]
    bundle: GraphBundle
    warnings: list[str] = field(default_factory=list)
    rank: int = 0  # a DDP worker rank other than 0 has nothing to report


def train_model(input_path, output, callback: Callable[[Progress], Any] | None = None, *,
                graph: GraphParams | None = None, train=None, checkpoint=None, resume: bool = False,
                device: str = "auto", allow_weak_model: bool = False, **read_kwargs) -> TrainResult:
    """Read → graph → train; checkpoints ``OUTPUT/model/best.pt`` and ``last.pt`` (under the output's lock).

    ``checkpoint``: fine-tune from it (its vocabulary is used, :func:`check_vocabulary`); with
    ``resume``, continue its run (epochs and optimiser state; it may lie in ``OUTPUT/model``).
    ``read_kwargs`` go to :func:`read_input`. Multi-process (DDP) training runs in this thread.
    """
    from segger.progress import run
    from segger.training import TrainConfig, TrainingRun, load_checkpoint
    from segger.training.health import check_model_health
    from segger.utils.outdir import RUN_MARKER, OutputLock, sweep_leftovers

    if resume and not checkpoint:
        raise SeggerInputError("--resume continues a checkpoint's run: give --checkpoint OUT/model/last.pt")
    if checkpoint and str(output).strip() and not resume \
            and Path(checkpoint).resolve().parent == (Path(output) / "model").resolve():
        raise SeggerInputError(f"--checkpoint {checkpoint} is in {Path(output) / 'model'}, which this run rewrites: "
                               "pass --resume to continue that run, or choose another --output")
    # only a resumed run may continue from a checkpoint inside its own output
    out = check_output_path(output, [("input", input_path), ("nuclei label image", read_kwargs.get("nuclei_labels")),
                                     ("checkpoint", checkpoint)], allowed=[checkpoint] if resume else [])
    if (out / RUN_MARKER).is_file():
        raise SeggerInputError(f"--output {out} holds a complete segmentation ({RUN_MARKER}); 'segger train' writes "
                               "model/best.pt and model/last.pt: choose another --output so that output stays consistent")
    cfg = dataclasses.replace(train) if train is not None else TrainConfig()
    cfg.device = device
    cfg.validate()
    if cfg.epochs == 0:
        raise SeggerInputError("--epochs 0 trains nothing: give --epochs N (N ≥ 1)")
    graph = (graph or GraphParams()).validate()
    _, _, vocab, _, ckpt_payload = load_checkpoint(checkpoint) if checkpoint else (None,) * 5
    sample = read_input(input_path, require_nuclei="; training needs nuclei", **read_kwargs)
    warnings = list(sample.warnings)
    if vocab is not None:
        warnings += check_vocabulary(vocab, sample.transcripts[S.GENE].unique(), checkpoint,
                                     min_coverage=vocab_rule(ckpt_payload))
    bundle = build_graph(sample.transcripts, sample.nuclei, graph, vocab=vocab)
    out.mkdir(parents=True, exist_ok=True)
    with OutputLock(out, "segger train"):
        sweep_leftovers(out)  # interrupted checkpoint writes (model/.*.tmp-*) of a dead run
        tr = TrainingRun(bundle, cfg, checkpoint=checkpoint, checkpoint_dir=out / "model", resume=resume)
        if tr.multi_process:  # DDP: Lightning launches the other ranks; train in this (main) thread
            tr.fit(callback)
            if tr.global_rank != 0:
                return TrainResult(out, tr.model, tr.history, bundle, warnings, rank=tr.global_rank)
        else:
            run(tr.iter_train(), callback)
    where = f"the model trained into {out / 'model'}"
    warnings += check_model_health(tr.model, history=tr.history, trained_epochs=len(tr.history),
                                   pretrained=checkpoint is not None, where=where, allow=allow_weak_model)
    return TrainResult(out, tr.model, tr.history, bundle, warnings)


# ----------------------------------------------------------------------------------------------
# fine-tune on corrections, then segment
# ----------------------------------------------------------------------------------------------
def load_corrections(corrections):
    """A :class:`~segger.corrections.CorrectionStore` from a store or a corrections file (one-line errors)."""
    from segger.corrections import CorrectionStore

    if isinstance(corrections, CorrectionStore):
        store = corrections
    else:
        path = Path(corrections)
        if not path.is_file():
            raise SeggerInputError(f"corrections file {path} does not exist: give the CSV/parquet written by the "
                                   "Correct widget or CorrectionStore.export")
        store = CorrectionStore.load(path, autosave=False)
    if len(store) == 0:
        raise SeggerInputError(f"corrections file {getattr(store, 'path', None) or corrections} holds no corrections")
    return store


def finetune(input_path, output, checkpoint, corrections, callback=None, *, config=None, graph=None, predict=None,
             **kwargs) -> SegmentResult:
    """Fine-tune ``checkpoint`` on ``corrections`` (a store or a file), then segment ``input_path`` with it
    (``OUTPUT/model/finetuned.pt`` + the segmentation). ``config``: a
    :class:`~segger.corrections.FinetuneConfig`; ``kwargs`` as for :func:`segment`."""
    from segger.corrections import FinetuneConfig
    from segger.training import TrainConfig
    from segger.training.checkpoint import read_checkpoint

    check_output_path(output, [("input", input_path), ("nuclei label image", kwargs.get("nuclei_labels")),
                               ("checkpoint", checkpoint),
                               ("corrections file", corrections if not hasattr(corrections, "effective") else None)])
    store = load_corrections(corrections)
    read_checkpoint(checkpoint)  # validated before anything is read or written
    ft = (config or FinetuneConfig()).validate()
    return segment(input_path, output, callback, graph=graph, train=TrainConfig(epochs=0), predict=predict,
                   checkpoint=checkpoint, corrections=store, finetune=ft, **kwargs)


# --- GUI-facing helpers ---
def iter_export_result(result: pd.DataFrame, output, *, inputs: Iterable = (), parameters: dict | None = None,
                       extra: dict | None = None, sample=None, pixel_size: float | None = None,
                       save_model: Callable[[Path], Any] | None = None,
                       keep: Iterable[str] | None = None, reference_column: str | None = "cell_id",
                       boundaries_method: str = "smooth", command: str = "segger export") -> Iterator[Progress]:
    """Write an assigned result table into ``output`` as :func:`segment` does: the same files
    (:mod:`segger.utils.outdir` names, :func:`write_cell_outputs`), a run JSON, staged under the
    folder's lock and published at the end (the napari Export step; Python users with a result).

    ``inputs``: the input paths (checked against ``output``, recorded in the run JSON); ``sample``:
    the :class:`~segger.io.SpatialSample` the result's transcripts came from (its input rows are
    written as :func:`segment` writes them; ``None`` for a table drawn in napari);
    ``save_model(path)``: writes the model checkpoint (``model/last.pt``); ``keep``: the output files
    to publish (default all; the run JSON always). Yields :class:`Progress`, returns ``{file: path}``.
    """
    from segger.export import writers as W

    inputs = [str(p) for p in inputs if p]
    output = check_output_path(output, [("input", p) for p in inputs])
    keep = None if keep is None else set(keep)
    t = time.perf_counter()
    with output_session(output, command) as session:
        stage = session.stage
        yield Progress("export", 0, 4, f"writing {TRANSCRIPTS_FILE}")
        W.write_transcripts(result, stage / TRANSCRIPTS_FILE, **_input_rows_of(sample, result, pixel_size))
        yield Progress("export", 1, 4, "cell outlines, cells × genes, QC")
        adata, _ = write_cell_outputs(result, stage, reference_column=reference_column,
                                      boundaries_method=boundaries_method)
        if save_model is not None:
            yield Progress("export", 2, 4, "model checkpoint")
            save_model(stage / "model" / "last.pt")
        if keep is not None:
            for name in (TRANSCRIPTS_FILE, BOUNDARIES_FILE, CELLS_FILE, QC_FILE):
                if name not in keep:
                    (stage / name).unlink(missing_ok=True)
        yield Progress("export", 3, 4, f"writing {RUN_MARKER}")
        W.write_run_json(stage / RUN_MARKER, parameters=dict(parameters or {}), inputs=inputs,
                         timings={"export": time.perf_counter() - t},
                         extra={"n_cells": int(adata.n_obs), **(extra or {})})
        files = session.publish()
        yield Progress("export", 4, 4, f"wrote {output}")
    return files


def _input_rows_of(sample, result: pd.DataFrame, pixel_size: float | None) -> dict:
    """``{"source": InputRows}`` for :func:`segger.export.write_transcripts` where the input's rows are
    known (the same rule as :func:`iter_segment`), else ``{}`` (the tidy table is written)."""
    try:
        from segger.io import input_rows
    except ImportError:  # a core without input rows: the tidy table
        return {}
    rows = input_rows(sample, result[S.TX_ID], pixel_size=pixel_size) if sample is not None else None
    return {"source": rows} if rows is not None else {}
