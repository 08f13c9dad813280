"""The ``segger`` command: segment, train, predict, qc, export.

Bad input ends with exit code 2 and one line on stderr naming the file/column and the fix
(``--debug`` shows the traceback instead).
"""

from __future__ import annotations

import argparse
import errno
import logging
import signal
import sys
import warnings
from pathlib import Path

from segger import __version__
from segger.errors import SeggerError, SeggerInputError, one_line

EXIT_INPUT = 2
EXIT_INTERNAL = 1


def _add_input(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", help="Xenium / MERSCOPE / CosMx output folder, a transcripts table (.parquet/.csv), "
                                 "or a SpatialData .zarr store")
    p.add_argument("--platform", default="auto", choices=["auto", "xenium", "merscope", "cosmx", "table", "spatialdata"],
                   help="input layout (default: detected from the files)")
    p.add_argument("--min-qv", type=float, default=20.0, help="drop transcripts with quality below this (default 20)")
    p.add_argument("--keep-controls", action="store_true", help="keep control probes (NegControl*, BLANK*, ...)")
    p.add_argument("--nuclei", default="auto", choices=["auto", "polygons", "approximate", "labels"],
                   help="nuclei from vendor polygons, approximated from nuclear transcripts, or a label image "
                        "(default auto: polygons when present, else approximated)")
    p.add_argument("--nuclei-labels", default=None, help="2-D nucleus label image (.tif/.npy), e.g. from Cellpose/StarDist")
    p.add_argument("--pixel-size", type=float, default=None,
                   help="µm per pixel of --nuclei-labels (and of CosMx coordinates; default 0.12028 for CosMx)")
    p.add_argument("--labels-offset", type=float, nargs=2, default=(0.0, 0.0), metavar=("X0", "Y0"),
                   help="µm position of the label image's top-left corner")


def _add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default auto)")


def _add_health(p: argparse.ArgumentParser) -> None:
    p.add_argument("--allow-weak-model", action="store_true",
                   help="segment even with an untrained, diverged or at-chance model (a warning instead of an "
                        "error; NaN weights are always refused)")


def _add_reference(p: argparse.ArgumentParser) -> None:
    p.add_argument("--reference-column", default="cell_id",
                   help="reference (vendor) cell id column for QC (default cell_id)")


def _add_params(p: argparse.ArgumentParser, *kinds: str) -> None:
    """The options of the parameter dataclasses, generated from their declarations (segger.params):
    one help text and one default per parameter, the dataclass's."""
    from segger.corrections import FinetuneConfig
    from segger.data import GraphParams
    from segger.params import add_options
    from segger.prediction import PredictConfig
    from segger.training import TrainConfig

    classes = {"graph": GraphParams, "training": TrainConfig, "prediction": PredictConfig, "fine-tuning": FinetuneConfig}
    specs: list = []
    for kind in kinds:
        add_options(p, classes[kind], title=kind, specs=specs)
    p.set_defaults(_params=specs)


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line (the full usage stays under --help)."""

    def error(self, message: str):
        self.exit(EXIT_INPUT, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _add_scale(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("whole slide (out of core, Dask)")
    g.add_argument("--out-of-core", action="store_true",
                   help="stream a parquet input tile by tile (memory set by --tile-size, not the slide); writes "
                        "every output of an in-memory run (segment: trains on streamed tiles)")
    g.add_argument("--tile-size", type=float, default=None,
                   help="µm side of a tile (default: ~250k transcripts per tile at the slide's density)")
    g.add_argument("--tile-margin", type=float, default=30.0, help="µm of context around each tile (default 30)")
    g.add_argument("--scheduler", default=None,
                   help="Dask scheduler ADDRESS (tcp://host:port) of an existing cluster, or local | processes | "
                        "synchronous (default: a local cluster sized to this machine)")
    g.add_argument("--workers", type=int, default=None, help="workers of the local cluster (default: the CPUs)")
    g.add_argument("--work-dir", default=None,
                   help="folder for the tile bucket files (default: beside the output; must be visible to the workers)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="segger", description="Segger: GNN cell segmentation for imaging-based spatial transcriptomics.")
    parser.add_argument("--version", action="version", version=f"segger {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    common = _Parser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show full tracebacks")
    common.add_argument("--quiet", action="store_true", default=argparse.SUPPRESS, help="no progress bar")
    sub = parser.add_subparsers(dest="command", required=True)
    _orig = sub.add_parser

    def add_parser(name, **kw):
        return _orig(name, parents=[common], **kw)

    sub.add_parser = add_parser  # type: ignore[method-assign]

    p = sub.add_parser("segment", help="read → graph → train (or reuse --checkpoint) → predict → export")
    _add_input(p)
    p.add_argument("--output", "-o", required=True, help="output folder")
    _add_device(p)
    ck = p.add_mutually_exclusive_group()
    ck.add_argument("--checkpoint", default=None, help="reuse a trained model (no training unless --epochs > 0 is given)")
    ck.add_argument("--pretrained", action="store_true",
                    help="start from the bundled pretrained model (as --checkpoint: no training unless --epochs > 0, "
                         "which fine-tunes it); see segger/models/pretrained/MODEL_CARD.md")
    _add_reference(p)
    _add_params(p, "graph", "training", "prediction")
    _add_health(p)
    _add_scale(p)
    g = p.add_argument_group("whole slide training (with --out-of-core)")
    g.add_argument("--train-tiles", type=float, default=0.5,
                   help="tiles streamed for training: a fraction (≤ 1) or a count (> 1) of the slide's tiles, seeded "
                        "by --seed (default 0.5)")
    g.add_argument("--val-tiles", type=int, default=1, help="tiles held out for validation (default 1)")

    p = sub.add_parser("train", help="train a model and save a checkpoint (model/best.pt, model/last.pt)")
    _add_input(p)
    p.add_argument("--output", "-o", required=True, help="folder for the checkpoints")
    _add_device(p)
    p.add_argument("--checkpoint", default=None, help="fine-tune from this checkpoint")
    p.add_argument("--resume", action="store_true", help="resume the checkpoint's run (epochs and optimiser state)")
    _add_params(p, "graph", "training")
    _add_health(p)

    p = sub.add_parser("predict", help="segment with a trained model (no training)")
    _add_input(p)
    ck = p.add_mutually_exclusive_group(required=True)
    ck.add_argument("--checkpoint", default=None, help="a checkpoint written by segger train/segment")
    ck.add_argument("--pretrained", action="store_true",
                    help="the bundled pretrained model (no training; see segger/models/pretrained/MODEL_CARD.md)")
    p.add_argument("--output", "-o", required=True, help="output folder")
    _add_device(p)
    _add_reference(p)
    _add_params(p, "graph", "prediction")
    _add_health(p)
    _add_scale(p)

    p = sub.add_parser("finetune", help="fine-tune a model on point-and-click corrections, then segment")
    _add_input(p)
    p.add_argument("--checkpoint", required=True, help="the model to fine-tune")
    p.add_argument("--corrections", required=True, help="corrections file (CSV/parquet: transcript_id, previous_cell, new_cell)")
    p.add_argument("--output", "-o", required=True, help="output folder (model/finetuned.pt + segmentation)")
    _add_device(p)
    _add_reference(p)
    _add_params(p, "graph", "prediction", "fine-tuning")
    _add_health(p)

    p = sub.add_parser("qc", help="QC table of a segger output folder (writes qc.json)")
    p.add_argument("output", help="a folder written by segger segment/predict")
    _add_reference(p)
    p.add_argument("--json", default=None, help="write the report here instead of OUTPUT/qc.json")

    from segger.cli.export_cmd import add_export_parser

    add_export_parser(sub)
    return parser


class _Bar:
    """Progress on stderr, silent when --quiet: a tqdm bar per stage on a terminal; in a log (stderr
    not a TTY) one line per stage and per new message (e.g. each epoch), never a repainted bar."""

    def __init__(self, quiet: bool, stream=None):
        self.quiet = quiet
        self.stream = stream
        self.bar = None
        self.stage = None
        self.last_line = None

    @property
    def _out(self):
        return self.stream if self.stream is not None else sys.stderr

    def _tty(self) -> bool:
        try:
            return bool(self._out.isatty())
        except (AttributeError, ValueError):
            return False

    @staticmethod
    def _post(ev) -> dict:
        return {k: f"{v:.3f}" for k, v in ev.metrics.items() if k in ("loss", "val_auroc")}

    def __call__(self, ev) -> None:
        if self.quiet:
            return
        if not self._tty():
            return self._log(ev)
        from tqdm import tqdm

        if ev.stage != self.stage or self.bar is None:
            self.close()
            self.stage = ev.stage
            self.bar = tqdm(total=ev.total, desc=ev.stage, file=self._out, leave=True, dynamic_ncols=True)
        if ev.total and self.bar.total != ev.total:
            self.bar.total = ev.total
        self.bar.n = ev.step
        post = self._post(ev)
        if post:
            self.bar.set_postfix(post, refresh=False)
        if ev.message:  # the label follows the work: "train: epoch 3", not the first message forever
            self.bar.set_description_str(f"{ev.stage}: {ev.message[:70]}", refresh=False)
        self.bar.refresh()

    def _log(self, ev) -> None:
        """One line when the stage or its message changes (an epoch ends a line, a step does not)."""
        key = (ev.stage, ev.message)
        if key == self.last_line or (ev.stage == "train" and ev.message.startswith("epoch ")
                                     and not ev.message.endswith("done")):
            return  # a training step: the epoch's line comes when it is done
        self.last_line = key
        count = f" [{ev.step}/{ev.total}]" if ev.total else ""
        post = self._post(ev)
        metrics = " " + " ".join(f"{k} {v}" for k, v in post.items()) if post else ""
        print(f"{ev.stage}{count}: {ev.message}{metrics}".rstrip(": "), file=self._out, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _graph_params(a):
    from segger.data import GraphParams
    from segger.params import from_args

    return from_args(GraphParams, a)


def _train_config(a, **overrides):
    from segger.params import from_args
    from segger.training import TrainConfig

    return from_args(TrainConfig, a, **overrides)


def _predict_config(a):
    from segger.params import from_args
    from segger.prediction import PredictConfig

    return from_args(PredictConfig, a)


def _finetune_config(a):
    from segger.corrections import FinetuneConfig
    from segger.params import from_args

    return from_args(FinetuneConfig, a)


def _read_kwargs(a) -> dict:
    """The reader options (segger.workflows.read_input; nuclei 'auto' takes --nuclei-labels when given)."""
    nuclei = "labels" if a.nuclei == "auto" and a.nuclei_labels else a.nuclei
    return dict(platform=a.platform, min_qv=a.min_qv, filter_controls=not a.keep_controls, nuclei=nuclei,
                nuclei_labels=a.nuclei_labels, pixel_size=a.pixel_size, labels_offset=tuple(a.labels_offset))


# ----------------------------------------------------------------------------------------------
# validation before anything is read or written
# ----------------------------------------------------------------------------------------------
def _check_float(a, name: str, low: float, high: float, *, low_open: bool = False) -> None:
    import math

    v = getattr(a, name, None)
    if v is None:
        return
    opt = "--" + name.replace("_", "-")
    if not math.isfinite(v) or v < low or v > high or (low_open and v == low):
        raise SeggerInputError(f"{opt} {v} is out of range: use a number {'>' if low_open else '≥'} {low:g} and ≤ {high:g}")


def _check_options(a) -> None:
    """Every numeric option in range (one line naming the option), before any file is touched: the
    parameter dataclasses' options by their declared ranges, the whole-slide options here."""
    from segger.params import check_args

    check_args(a, getattr(a, "_params", ()))
    if getattr(a, "workers", None) is not None and not 1 <= a.workers <= 100_000:
        raise SeggerInputError(f"--workers {a.workers} is out of range: use an integer from 1 to 100,000")
    _check_float(a, "tile_size", 0.0, 1e7, low_open=True)
    _check_float(a, "tile_margin", 0.0, 1e4)


def _inputs(a) -> list[tuple[str, object]]:
    return [("input", getattr(a, "input", None)), ("nuclei label image", getattr(a, "nuclei_labels", None)),
            ("checkpoint", getattr(a, "checkpoint", None)), ("corrections file", getattr(a, "corrections", None))]


def _print_result(res, extra: str = "") -> None:
    from segger.validation import format_qc_table

    for w in res.warnings:
        print(f"warning: {w}", file=sys.stderr)
    print(format_qc_table(res.qc))
    print("timings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in res.timings.items()))
    print(f"{extra}wrote {res.output}")


# ----------------------------------------------------------------------------------------------
# commands
# ----------------------------------------------------------------------------------------------
def _resolve_pretrained(a) -> None:
    """``--pretrained``: the bundled checkpoint stands in for ``--checkpoint`` (argparse keeps them exclusive)."""
    if getattr(a, "pretrained", False):
        from segger.models.pretrained import bundled_checkpoint

        a.checkpoint = str(bundled_checkpoint())


def cmd_segment(a, bar) -> int:
    from segger.utils.outdir import check_output_path
    from segger.workflows import segment

    _resolve_pretrained(a)
    check_output_path(a.output, _inputs(a))
    if getattr(a, "out_of_core", False):
        return _segment_out_of_core(a, bar)
    train = _train_config(a, **({"epochs": 0} if a.checkpoint and a.epochs is None else {}))
    if train.epochs and (str(train.devices) not in ("1", "auto") or train.num_nodes > 1 or train.strategy.startswith("ddp")):
        raise SeggerInputError("multi-process training (--devices N / --strategy ddp / --num-nodes) runs in 'segger train'; "
                               "train there, then 'segger segment --checkpoint OUT/model/best.pt'")
    res = segment(a.input, a.output, callback=bar, graph=_graph_params(a), train=train, predict=_predict_config(a),
                  checkpoint=a.checkpoint, device=a.device, reference_column=a.reference_column,
                  allow_weak_model=a.allow_weak_model, **_read_kwargs(a))
    bar.close()
    _print_result(res)
    return 0


def _segment_out_of_core(a, bar) -> int:
    """``segger segment --out-of-core``: train on streamed tiles, predict every tile (segger.scale.segment)."""
    from segger.scale import OutOfCoreConfig, segment_out_of_core
    from segger.utils.outdir import OUTPUT_FILES, check_output_path

    if a.checkpoint:
        raise SeggerInputError("segment --out-of-core trains a new model on streamed tiles; to segment with a trained "
                               "model use 'segger predict --out-of-core --checkpoint MODEL.pt'")
    if a.nuclei_labels or a.nuclei == "labels":
        raise SeggerInputError("--out-of-core takes vendor polygons or approximated nuclei (--nuclei polygons | "
                               "approximate), not a label image")
    train = _train_config(a)
    if train.epochs and (str(train.devices) not in ("1", "auto") or train.num_nodes > 1 or train.strategy.startswith("ddp")):
        raise SeggerInputError("multi-process training (--devices N / --strategy ddp) is not run by 'segger segment "
                               "--out-of-core': see 'Whole slides on a cluster' in docs/scale.md")
    if a.work_dir:
        check_output_path(a.work_dir, [("input", a.input)], option="--work-dir")
    train.device = a.device
    device = "cpu" if a.device in ("auto", None) else a.device
    cfg = OutOfCoreConfig(tile_size=a.tile_size, margin=a.tile_margin, scheduler=a.scheduler, workers=a.workers,
                          work_dir=a.work_dir, device=device, min_qv=a.min_qv, filter_controls=not a.keep_controls,
                          nuclei=a.nuclei)
    tiles = int(a.train_tiles) if a.train_tiles > 1 else a.train_tiles
    res = segment_out_of_core(a.input, a.output, train=train, graph=_graph_params(a), predict=_predict_config(a),
                              config=cfg, train_tiles=tiles, val_tiles=a.val_tiles, platform=a.platform,
                              pixel_size=a.pixel_size, reference_column=a.reference_column,
                              allow_weak_model=a.allow_weak_model, callback=bar)
    bar.close()
    for w in res.warnings:
        print(f"warning: {w}", file=sys.stderr)
    p = res.predict
    n = max(p.n_rows, 1)
    kinds = ", ".join(f"{k} {p.counts.get(k, 0) / n:.1%}" for k in ("nucleus", "cytoplasm", "fragment", "none"))
    last = res.history[-1] if res.history else {}
    print(f"trained on {len(res.train_tiles)} streamed tiles ({len(res.val_tiles)} held out; at most "
          f"{res.train_info.get('peak_transcripts', 0):,} transcripts held); val AUROC {last.get('val_auroc', float('nan')):.3f}")
    print(f"{p.n_rows:,} transcripts in {p.n_tiles} tiles ({p.scheduler}, {res.timings['total']:.1f} s): {kinds}")
    print(f"{res.n_cells:,} cells; wrote {res.output} ({', '.join(OUTPUT_FILES)}, model/)")
    return 0


def cmd_predict(a, bar) -> int:
    from segger.utils.outdir import check_output_path

    _resolve_pretrained(a)
    check_output_path(a.output, _inputs(a) + [("work folder", a.work_dir)])
    if getattr(a, "out_of_core", False):
        return _predict_out_of_core(a, bar)
    from segger.workflows import segment

    res = segment(a.input, a.output, callback=bar, graph=_graph_params(a), train=_train_config(a, epochs=0),
                  predict=_predict_config(a), checkpoint=a.checkpoint, device=a.device,
                  reference_column=a.reference_column, allow_weak_model=a.allow_weak_model, **_read_kwargs(a))
    bar.close()
    _print_result(res)
    return 0


def _predict_out_of_core(a, bar) -> int:
    import time

    from segger.export import write_run_json
    from segger.scale import OutOfCoreConfig, predict_out_of_core
    from segger.training.checkpoint import read_checkpoint
    from segger.training.health import check_model_health
    from segger.utils.outdir import OUTPUT_FILES, RUN_MARKER, TRANSCRIPTS_FILE, check_output_path, output_session
    from segger.workflows import write_cell_outputs

    out = Path(a.output)
    if a.work_dir:
        check_output_path(a.work_dir, [("input", a.input), ("checkpoint", a.checkpoint)], option="--work-dir")
    payload = read_checkpoint(a.checkpoint)  # validated (and health-checked) before anything is written
    warns = check_model_health(payload["state_dict"], metrics=payload.get("metrics"), where=f"checkpoint {a.checkpoint}",
                               allow=a.allow_weak_model)
    graph, predict = _graph_params(a).validate(), _predict_config(a).validate()
    device = "cpu" if a.device in ("auto", None) else a.device
    with output_session(out, "segger predict --out-of-core") as session:
        work = session.work_dir(a.work_dir) if a.work_dir else None
        cfg = OutOfCoreConfig(tile_size=a.tile_size, margin=a.tile_margin, scheduler=a.scheduler, workers=a.workers,
                              work_dir=str(work) if work else None, device=device, min_qv=a.min_qv,
                              filter_controls=not a.keep_controls, nuclei="labels" if a.nuclei_labels else a.nuclei)
        try:
            res = predict_out_of_core(a.input, a.checkpoint, session.stage / TRANSCRIPTS_FILE, cfg,
                                      callback=bar, graph=graph, predict=predict, pixel_size=a.pixel_size)
        finally:
            if work is not None:
                import shutil

                shutil.rmtree(work, ignore_errors=True)
        # outlines, cells × genes and QC from the streamed result, window by window, written as an
        # in-memory run writes them
        t = time.perf_counter()
        adata, _ = write_cell_outputs(session.stage / TRANSCRIPTS_FILE, session.stage,
                                      reference_column=a.reference_column)
        n_cells = int(adata.n_obs)
        del adata
        res.timings["export"] = time.perf_counter() - t
        bar.close()
        write_run_json(session.stage / RUN_MARKER,
                       parameters={"mode": "out-of-core", "scale": res.config, "plan": res.plan,
                                   "graph": graph.to_dict(), "predict": predict.to_dict(),
                                   "checkpoint": str(a.checkpoint), "scheduler": res.scheduler},
                       inputs=[res.input_path or a.input, a.checkpoint], timings=res.timings,
                       extra={"counts": res.counts, "warnings": warns, "n_cells": n_cells})
        session.publish()
    for w in warns:
        print(f"warning: {w}", file=sys.stderr)
    n = max(res.n_rows, 1)
    kinds = ", ".join(f"{k} {res.counts.get(k, 0) / n:.1%}" for k in ("nucleus", "cytoplasm", "fragment", "none"))
    print(f"{res.n_rows:,} transcripts in {res.n_tiles} tiles ({res.scheduler}, {res.timings['total']:.1f} s): {kinds}")
    print(f"{n_cells:,} cells; wrote {out} ({', '.join(f for f in OUTPUT_FILES)})")
    return 0


def cmd_train(a, bar) -> int:
    from segger.workflows import train_model

    res = train_model(a.input, a.output, bar, graph=_graph_params(a), train=_train_config(a), checkpoint=a.checkpoint,
                      resume=a.resume, device=a.device, allow_weak_model=a.allow_weak_model, **_read_kwargs(a))
    bar.close()
    if res.rank != 0:
        return 0
    for w in res.warnings:
        print(f"warning: {w}", file=sys.stderr)
    last = res.history[-1] if res.history else {}
    print(f"trained {len(res.history)} epochs; last val AUROC {last.get('val_auroc', float('nan')):.3f}; "
          f"checkpoints in {res.output / 'model'} (best.pt, last.pt)")
    return 0


def cmd_qc(a, bar) -> int:
    from segger.export import read_transcripts_output
    from segger.utils.outdir import (OUTPUT_FILES, QC_FILE, TRANSCRIPTS_FILE, OutputLock, check_output_path,
                                     require_complete)
    from segger.validation import format_qc_table, qc_report, write_qc_json

    out = require_complete(a.output, "qc")
    target = out / QC_FILE
    if a.json is not None:
        target = check_output_path(a.json, [("transcripts table", out / TRANSCRIPTS_FILE)] +
                                   [(f"output file {f}", out / f) for f in OUTPUT_FILES if f != QC_FILE],
                                   option="--json", kind="file")
    df = read_transcripts_output(out / TRANSCRIPTS_FILE)
    ref = a.reference_column if a.reference_column in df.columns else None
    report = qc_report(df, reference_column=ref)
    if target.resolve().parent == out.resolve():  # a file of the output folder: under its lock
        with OutputLock(out, "segger qc"):
            require_complete(out, "qc")
            write_qc_json(report, target)
    else:
        write_qc_json(report, target)
    print(format_qc_table(report))
    return 0


def cmd_export(a, bar) -> int:
    from segger.cli.export_cmd import cmd_export as run_export

    return run_export(a, bar)


def cmd_finetune(a, bar) -> int:
    from segger.workflows import finetune

    res = finetune(a.input, a.output, a.checkpoint, a.corrections, bar, config=_finetune_config(a),
                   graph=_graph_params(a), predict=_predict_config(a), device=a.device,
                   reference_column=a.reference_column, allow_weak_model=a.allow_weak_model, **_read_kwargs(a))
    bar.close()
    _print_result(res, f"fine-tuned on {res.n_corrections} corrections; model {res.output / 'model' / 'finetuned.pt'}; ")
    return 0


COMMANDS = {"segment": cmd_segment, "finetune": cmd_finetune, "train": cmd_train, "predict": cmd_predict, "qc": cmd_qc, "export": cmd_export}


def _quiet_libraries() -> None:
    for name in ("pytorch_lightning", "lightning", "lightning.pytorch", "lightning_fabric",
                 "pytorch_lightning.utilities.rank_zero", "pytorch_lightning.accelerators.cuda",
                 "lightning_fabric.utilities.rank_zero"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    # GPU out-of-memory fallbacks reach the user as 'warning:' lines (pipeline warnings), once
    warnings.filterwarnings("ignore", message="GPU out of memory")


class Terminated(KeyboardInterrupt):
    """SIGTERM (what SLURM, Kubernetes and ``kill`` send): unwinds like Ctrl-C, so staging is removed."""


def _on_sigterm(signum, frame):
    raise Terminated()


#: OS errors that are the user's to fix (disk full, read-only, permissions): exit 2, one line
USER_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, getattr(errno, "EDQUOT", errno.ENOSPC)}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    a = parser.parse_args(argv)
    if not a.debug:
        _quiet_libraries()
    bar = _Bar(a.quiet)
    previous = None
    try:
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread (e.g. called from a GUI worker): leave signals alone
        pass
    try:
        _check_options(a)
        return COMMANDS[a.command](a, bar)
    except SeggerError as exc:
        bar.close()
        if a.debug:
            raise
        print(f"segger: error: {one_line(exc)}", file=sys.stderr)
        return EXIT_INPUT
    except Terminated:
        bar.close()
        print("segger: terminated (SIGTERM); staging was removed, no partial output was left "
              "(a previous complete output is unchanged)", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        bar.close()
        print("segger: interrupted; no partial output was left", file=sys.stderr)
        return 130
    except OSError as exc:
        bar.close()
        if a.debug or exc.errno not in USER_ERRNOS:
            if a.debug:
                raise
            print(f"segger: internal error: {one_line(exc)} (rerun with --debug for the traceback)", file=sys.stderr)
            return EXIT_INTERNAL
        where = exc.filename or getattr(a, "output", None) or "the output"
        print(f"segger: error: {where}: {exc.strerror or exc} — free some space, check its permissions, or choose "
              "a writable --output; nothing was published", file=sys.stderr)
        return EXIT_INPUT
    except Exception as exc:  # noqa: BLE001 - the CLI's last line of defence
        bar.close()
        if a.debug:
            raise
        print(f"segger: internal error: {one_line(exc)} (rerun with --debug for the traceback)", file=sys.stderr)
        return EXIT_INTERNAL
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
