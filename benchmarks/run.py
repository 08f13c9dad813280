#!/usr/bin/env python
"""Scale benchmark suite: wall time and peak RSS per stage at 15 k / 186 k / 1 M / 10 M transcripts.

    python benchmarks/run.py --sizes 15k,186k,1m,10m --json benchmarks/results/scale.json \
        [--device cpu|cuda] [--markdown table.md] [--scratch /tmp/segger_scale] [--no-ttq]

Sizes: ``15k`` = the real lung crop (vendor nucleus polygons), ``186k`` = the real breast crop
(BIDCell; nuclei approximated from the nuclear transcripts), ``1m`` / ``10m`` (any ``<n>k`` /
``<n>m`` from 187k up) = copies of the 186 k crop side by side with unique ids per copy
(:func:`segger.scale.tile_copies`), written once to ``--scratch`` (parquet, 250 k-row row groups;
never committed).

Each size runs in a fresh Python process (so peak RSS is that size's alone). In-memory stages
(sizes up to ``--max-in-memory``, default 1 M): ``read`` (:func:`segger.io.read_sample`),
``graph`` (:func:`segger.data.build_graph`), ``train_epoch`` (one epoch, default
:class:`~segger.training.TrainConfig`), ``predict`` (``iter_predict`` + ``assign`` with a trained
model: the default deterministic one-thread mode, and ``predict_mt`` with all threads),
``baseline_predict`` (nearest-nucleus assignment on the same graph), ``export`` (transcripts
parquet + cell outlines + AnnData, as the pipeline writes them). Every size also runs
``out_of_core`` (:func:`segger.scale.predict_out_of_core`, read → tiles → graph → predict →
parquet, default local Dask cluster) with a model trained on the 186 k crop (the lung size uses
its own). ``time_to_quality`` trains on the 186 k crop with the default settings until the
validation AUROC reaches 0.90 (or 2 minutes pass).

Peak RSS: a sampler thread (20 ms) reads the RSS of the process and its children; each stage
reports the highest value seen while it ran (memory held from earlier stages included) and the
CPU seconds it used (``cpu_s / wall_s`` near the thread count means the machine was not
contended). The load average before and after each size is recorded: numbers taken while other
work ran are marked in the Markdown table.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SEGGER_SHARED_DATA", ROOT.parent / "shared" / "data"))
if not SHARED.is_dir():
    SHARED = Path("/work/shared/data")
LUNG = SHARED / "xenium_lung_segger"
BIDCELL = SHARED / "xenium_breast_bidcell"
PKG = ROOT / "src" / "segger" / "sample_data"
TTQ_TARGET = 0.90
TTQ_BUDGET_S = 120.0


def parse_size(s: str) -> int:
    s = s.strip().lower()
    mult = {"k": 1_000, "m": 1_000_000}.get(s[-1], 1)
    return int(float(s[:-1] if s[-1] in "km" else s) * mult)


def data_for(size: str, scratch: Path) -> tuple[Path, str]:
    """(input folder or file, description) of a size label."""
    if size == "15k":
        lung = LUNG if (LUNG / "transcripts.parquet").is_file() else PKG / "xenium_lung"
        return lung, "real Xenium lung crop (nucleus polygons)"
    if size == "186k":
        return BIDCELL, "real Xenium breast crop (BIDCell; nuclei approximated)"
    n = parse_size(size)
    from segger.scale import tile_copies

    out = scratch / size / "transcripts.parquet"
    info = tile_copies(BIDCELL / "transcripts.parquet", n, out)
    return out.parent, f"{info['copies']} copies of the 186k breast crop side by side ({info['grid'][0]}×{info['grid'][1]})"


# ----------------------------------------------------------------------------------------------
# measurement helpers (child process)
class Sampler:
    """Peak RSS (process + children) and CPU time per stage."""

    def __init__(self, interval: float = 0.02):
        import psutil

        self.proc = psutil.Process()
        self.interval = interval
        self.peak = 0
        self.tag: str | None = None  # the step inside a stage (e.g. bucket / predict of out_of_core)
        self.tag_peaks: dict[str, int] = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def rss(self) -> int:
        total = 0
        try:
            total = self.proc.memory_info().rss
            for c in self.proc.children(recursive=True):
                try:
                    total += c.memory_info().rss
                except Exception:  # noqa: BLE001 - a child that just ended
                    pass
        except Exception:  # noqa: BLE001
            pass
        return total

    def _run(self):
        while not self._stop.is_set():
            r = self.rss()
            with self._lock:
                self.peak = max(self.peak, r)
                if self.tag is not None:
                    self.tag_peaks[self.tag] = max(self.tag_peaks.get(self.tag, 0), r)
            time.sleep(self.interval)

    def reset(self) -> None:
        with self._lock:
            self.peak = self.rss()
            self.tag = None
            self.tag_peaks = {}

    def set_tag(self, tag: str) -> None:
        r = self.rss()
        with self._lock:
            self.tag = tag
            self.tag_peaks[tag] = max(self.tag_peaks.get(tag, 0), r)

    def stop(self):
        self._stop.set()


class Stage:
    def __init__(self, sampler: Sampler, results: dict, name: str, **extra):
        self.s, self.results, self.name, self.extra = sampler, results, name, extra

    def __enter__(self):
        self.s.reset()
        self.cpu0 = _cpu()
        self.sys0 = _system_busy()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, et, ev, tb):
        wall = time.perf_counter() - self.t0
        mine = _cpu() - self.cpu0
        others = max(0.0, (_system_busy() - self.sys0) - mine) / max(wall, 1e-9)
        rec = {"wall_s": round(wall, 3), "cpu_s": round(mine, 2), "others_cores": round(others, 2),
               "peak_rss_gb": round(max(self.s.peak, self.s.rss()) / 1e9, 3)}
        if et is not None:
            rec["error"] = f"{et.__name__}: {str(ev).splitlines()[0][:300] if str(ev) else ''}"
        rec.update(self.extra)
        self.results[self.name] = rec
        print(f"  {self.name}: {rec}", flush=True)
        return False  # errors are recorded, then raised (the child writes what it has)


def _system_busy() -> float:
    """CPU seconds all processes on the machine have used (psutil; busy = total - idle - iowait)."""
    import psutil

    t = psutil.cpu_times()
    return sum(t) - t.idle - getattr(t, "iowait", 0.0)


def _cpu() -> float:
    a = resource.getrusage(resource.RUSAGE_SELF)
    b = resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


def _quiet():
    import logging
    import warnings

    for name in ("pytorch_lightning", "lightning", "lightning.pytorch", "lightning_fabric",
                 "pytorch_lightning.utilities.rank_zero", "lightning_fabric.utilities.rank_zero", "distributed"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")


def reference_checkpoint(scratch: Path, device: str) -> Path:
    """A model trained 1 epoch (defaults) on the 186 k crop, written once to the scratch folder."""
    ck = scratch / f"ref-model-{device}" / "model" / "best.pt"
    if ck.is_file():
        return ck
    _quiet()
    from segger.data import build_graph
    from segger.io import read_sample
    from segger.training import TrainConfig, TrainingRun

    s = read_sample(BIDCELL)
    b = build_graph(s.transcripts, s.nuclei)
    TrainingRun(b, TrainConfig(epochs=1, device=device), checkpoint_dir=ck.parent).fit()
    return ck


def child(size: str, device: str, scratch: Path, out_json: Path, max_in_memory: int, ooc_workers: int | None) -> None:
    res: dict = {}
    info: dict = {"size": size}
    try:
        _child(size, device, scratch, max_in_memory, ooc_workers, res, info)
    except BaseException as exc:  # noqa: BLE001 - keep what was measured
        info["error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
        raise
    finally:
        out_json.write_text(json.dumps({"info": info, "stages": res}, indent=1, default=str))


def _child(size, device, scratch, max_in_memory, ooc_workers, res, info) -> None:
    _quiet()
    t_start = time.perf_counter()
    sampler = Sampler()
    path, desc = data_for(size, scratch)
    n_nominal = parse_size(size)
    import torch

    from segger.scale import OutOfCoreConfig, predict_out_of_core

    info.update({"size": size, "input": str(path), "input_desc": desc, "device": device,
                 "torch_threads": torch.get_num_threads(), "load_before": os.getloadavg()})
    ckpt_dir = Path(tempfile.mkdtemp(prefix="segger-bench-", dir=scratch))
    ref_ckpt = None if size == "15k" or SEGMENT_E2E.get("only") else reference_checkpoint(scratch, device)
    n_tx = None
    if n_nominal <= max_in_memory:
        from segger.data import build_graph
        from segger.io import read_sample
        from segger.prediction import PredictConfig, iter_predict, nearest_nucleus_assignment
        from segger.progress import run as run_gen
        from segger.training import TrainConfig, TrainingRun, load_checkpoint

        with Stage(sampler, res, "read"):
            sample = read_sample(path)
        n_tx = len(sample.transcripts)
        info["n_tx"], info["n_nuclei"], info["nuclei_source"] = n_tx, len(sample.nuclei), sample.nuclei_source
        vocab = load_checkpoint(ref_ckpt)[2] if ref_ckpt else None
        with Stage(sampler, res, "graph"):
            bundle = build_graph(sample.transcripts, sample.nuclei, vocab=vocab)
        info["graph"] = bundle.summary()
        res["graph"]["tx_per_s"] = round(n_tx / res["graph"]["wall_s"])
        cfg = TrainConfig(epochs=1, device=device)
        run = TrainingRun(bundle, cfg, checkpoint_dir=ckpt_dir / "model")
        with Stage(sampler, res, "train_epoch"):
            run.fit()
        res["train_epoch"].update({k: run.info.get(k) for k in ("n_train_tiles", "n_val_tiles", "seconds")})
        res["train_epoch"]["val_auroc"] = run.history[-1].get("val_auroc") if run.history else None
        model = load_checkpoint(ref_ckpt)[0] if ref_ckpt else run.model
        ooc_ckpt = ref_ckpt or (ckpt_dir / "model" / "best.pt")
        # on a GPU the whole graph is one tile (no CPU-side tiling between the GPU steps)
        ptile = max(n_tx, PredictConfig().tile_tx) if device == "cuda" else PredictConfig().tile_tx
        for name, det in (("predict", True), ("predict_mt", False)):
            with Stage(sampler, res, name, deterministic=det, tile_tx=ptile):
                t0 = time.perf_counter()
                pred = run_gen(iter_predict(model, bundle, PredictConfig(device=device, deterministic=det, tile_tx=ptile)))
                t1 = time.perf_counter()
                result = pred.assign()
                t2 = time.perf_counter()
            res[name].update({"tx_per_s": round(n_tx / res[name]["wall_s"]), "score_s": round(t1 - t0, 3),
                              "assign_s": round(t2 - t1, 3), "score_tx_per_s": round(n_tx / (t1 - t0))})
        with Stage(sampler, res, "baseline_predict", method="nearest-nucleus (segger.prediction.nearest_nucleus_assignment)"):
            base = nearest_nucleus_assignment(bundle)
        res["baseline_predict"]["tx_per_s"] = round(n_tx / res["baseline_predict"]["wall_s"])
        ref_col = "cell_id" if "cell_id" in result.columns and result["cell_id"].notna().any() else None
        info["assigned_fraction"] = float((result["assignment"] != "none").mean())
        info["baseline_assigned_fraction"] = float((base["assignment"] != "none").mean())
        if ref_col:
            from segger.validation import qc_report

            try:
                q = qc_report(result, reference_column=ref_col)
                qb = qc_report(base, reference_column=ref_col)
                info["qc"] = {"agreement": q.get("agreement"), "mecr": q.get("mecr"), "fraction_assigned": q.get("fraction_assigned")}
                info["baseline_qc"] = {"agreement": qb.get("agreement"), "mecr": qb.get("mecr"),
                                       "fraction_assigned": qb.get("fraction_assigned")}
            except Exception as exc:  # noqa: BLE001 - QC is informative only
                info["qc_error"] = str(exc)[:200]
        with Stage(sampler, res, "export"):
            from segger.export import build_anndata, cell_boundaries, write_anndata, write_boundaries, write_transcripts

            out = ckpt_dir / "export"
            write_transcripts(result, out / "segger_transcripts.parquet")
            bounds = cell_boundaries(result)
            write_boundaries(bounds, out / "segger_boundaries.parquet")
            write_anndata(build_anndata(result, bounds, reference_column=ref_col or "cell_id"), out / "segger_cells.h5ad")
        in_mem = result[["transcript_id", "segger_cell_id", "assignment"]].set_index("transcript_id")
        del sample, bundle, pred, result, base, run
        import gc

        gc.collect()
    else:
        ooc_ckpt = ref_ckpt
        in_mem = None
        if ooc_ckpt is None and not SEGMENT_E2E.get("only"):
            raise SystemExit("the 15k lung size trains its own model in its in-memory stages; run it without --only-out-of-core")
    if SEGMENT_E2E.get("on"):
        _segment_stage(path, ckpt_dir, device, ooc_workers, sampler, res, info)
        if SEGMENT_E2E.get("only"):
            _finish(ckpt_dir, info, t_start, sampler)
            return
    out_pq = ckpt_dir / "ooc.parquet"
    cfg = OutOfCoreConfig(device=device, workers=ooc_workers)
    with Stage(sampler, res, "out_of_core", scheduler="local (default)"):
        # RSS samples tagged by step: bucketing starts at the "plan" event and ends at the first "bucket"
        # event (the runner reports the bucket pass once it is done); the tiles run from then on
        step = {"plan": "bucket", "bucket": "predict", "predict": "predict"}
        r = predict_out_of_core(path, ooc_ckpt, out_pq, cfg, callback=lambda ev: sampler.set_tag(step.get(ev.stage, ev.stage)))
    res["out_of_core"].update({"n_rows": r.n_rows, "n_tiles": r.n_tiles, "scheduler": r.scheduler,
                               "timings": {k: round(v, 2) for k, v in r.timings.items()},
                               "tile_size_um": round(r.plan["tile_size"], 1), "tx_per_s": round(r.n_rows / res["out_of_core"]["wall_s"]),
                               "tile_s_median": round(sorted(r.tile_seconds)[len(r.tile_seconds) // 2], 2),
                               "tile_s": [round(v, 2) for v in r.tile_seconds],
                               "peak_rss_gb_by_step": {k: round(v / 1e9, 3) for k, v in sampler.tag_peaks.items()}})
    n_tx = n_tx or r.n_rows
    info["n_tx"] = n_tx
    if in_mem is not None:
        import pandas as pd

        o = pd.read_parquet(out_pq, columns=["transcript_id", "segger_cell_id", "assignment"]).set_index("transcript_id")
        o = o.loc[in_mem.index]
        cell = in_mem["assignment"].isin(["nucleus", "cytoplasm"])
        info["ooc_vs_in_memory_same_cell"] = float((o.loc[cell, "segger_cell_id"] == in_mem.loc[cell, "segger_cell_id"]).mean())
    _finish(ckpt_dir, info, t_start, sampler)


def _finish(ckpt_dir, info, t_start, sampler) -> None:
    import shutil

    shutil.rmtree(ckpt_dir, ignore_errors=True)
    info["load_after"] = os.getloadavg()
    info["total_s"] = round(time.perf_counter() - t_start, 1)
    info["max_rss_gb_self"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 3)
    sampler.stop()


#: ``--segment`` (end to end ``segment_out_of_core``), ``--only-segment``, ``--segment-train-tiles``
SEGMENT_E2E: dict = {}


def _segment_stage(path, ckpt_dir, device, ooc_workers, sampler, res, info) -> None:
    """``segment_out_of_core`` end to end (the code of ``segger segment --out-of-core``): bucket → train one
    epoch on ``train_tiles`` streamed tiles → bucket again and predict every tile → the cell outputs
    window by window → every output file. RSS peaks tagged by step from its progress events."""
    from segger.scale import OutOfCoreConfig
    from segger.scale.segment import segment_out_of_core
    from segger.training import TrainConfig

    n_train = SEGMENT_E2E.get("train_tiles", 4)
    seen: set = set()

    def tag(ev) -> None:
        st = ev.stage
        if st in ("plan", "bucket"):
            step = "bucket (predict)" if "train" in seen else "bucket (train)"
        elif st == "predict" and ev.total and ev.step >= ev.total:
            step = "cell outputs"  # the last tile is written: the windows come next
        elif st in ("train", "predict"):
            step = st
        else:
            step = st
        seen.add(st)
        sampler.set_tag(step)

    out = ckpt_dir / "segment"
    with Stage(sampler, res, "segment_out_of_core", train_tiles=n_train, epochs=1, scheduler="local (default)"):
        r = segment_out_of_core(path, out, train=TrainConfig(epochs=1, device=device), train_tiles=n_train, val_tiles=1,
                                config=OutOfCoreConfig(device=device, workers=ooc_workers), callback=tag)
    rec = res["segment_out_of_core"]
    files = {f.name: round(f.stat().st_size / 1e6, 1) for f in sorted(out.iterdir()) if f.is_file()}
    rec.update({"n_rows": r.predict.n_rows, "n_tiles": r.predict.n_tiles, "n_cells": r.n_cells,
                "timings": {k: round(v, 2) for k, v in r.timings.items()},
                "tx_per_s": round(r.predict.n_rows / rec["wall_s"]),
                "peak_rss_gb_by_step": {k: round(v / 1e9, 3) for k, v in sampler.tag_peaks.items()},
                "files_mb": files, "fraction_assigned": r.qc.get("fraction_assigned"),
                "agreement": r.qc.get("agreement"), "mecr": r.qc.get("mecr")})
    info["n_tx"] = r.predict.n_rows


def ttq_child(device: str, out_json: Path) -> None:
    """Time to quality on the 186 k crop: wall seconds until the validation AUROC ≥ 0.90."""
    _quiet()
    from segger.data import build_graph
    from segger.io import read_sample
    from segger.training import TrainConfig, TrainingRun

    t0 = time.perf_counter()
    s = read_sample(BIDCELL)
    b = build_graph(s.transcripts, s.nuclei)
    t_data = time.perf_counter() - t0
    run = TrainingRun(b, TrainConfig(epochs=50, device=device))
    curve = []
    reached = None
    t1 = time.perf_counter()
    gen = run.iter_train()
    try:
        for ev in gen:
            if "val_auroc" in ev.metrics and "done" in ev.message:
                el = time.perf_counter() - t1
                auc = float(ev.metrics["val_auroc"])
                curve.append({"epoch": int(ev.metrics.get("epoch", 0)), "s": round(el, 2), "val_auroc": round(auc, 4)})
                print(f"  ttq: epoch {curve[-1]['epoch']} {el:.1f}s AUROC {auc:.4f}", flush=True)
                if reached is None and auc >= TTQ_TARGET:
                    reached = el
                    break
                if el > TTQ_BUDGET_S:
                    break
    finally:
        gen.close()
    best = max((c["val_auroc"] for c in curve if not math.isnan(c["val_auroc"])), default=float("nan"))
    out_json.write_text(json.dumps({
        "target_auroc": TTQ_TARGET, "budget_s": TTQ_BUDGET_S, "seconds_to_target": None if reached is None else round(reached, 2),
        "seconds_to_target_incl_read_graph": None if reached is None else round(reached + t_data, 2),
        "read_graph_s": round(t_data, 2), "best_auroc": best, "curve": curve, "train_config": "TrainConfig() defaults",
        "n_train_tiles": run.info.get("n_train_tiles"), "load": os.getloadavg()}, indent=1))


# ----------------------------------------------------------------------------------------------
# parent
def machine() -> dict:
    import torch

    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = None
    try:
        import psutil

        mem = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu": cpu, "cpus": os.cpu_count(), "affinity": len(os.sched_getaffinity(0)), "ram_gib": mem, "gpu": gpu,
            "python": platform.python_version(), "torch": torch.__version__, "platform": platform.platform()}


def _run_child(args: list[str], log_prefix: str) -> dict | None:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = Path(f.name)
    cmd = [sys.executable, str(Path(__file__).resolve())] + args + ["--child-json", str(out)]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + env.get("PYTHONPATH", "")
    t = time.perf_counter()
    p = subprocess.run(cmd, env=env)
    print(f"{log_prefix}: exit {p.returncode} after {time.perf_counter() - t:.0f} s", flush=True)
    try:
        return json.loads(out.read_text()) if out.stat().st_size else {"error": f"exit code {p.returncode}"}
    except (OSError, json.JSONDecodeError):
        return {"error": f"exit code {p.returncode}"}
    finally:
        out.unlink(missing_ok=True)


def _fmt_s(v):
    return "—" if v is None else (f"{v:.2f}" if v < 10 else f"{v:.1f}" if v < 100 else f"{v:.0f}")


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = [f"Machine: {m['cpu']}, {m['affinity']} CPU cores usable, {m['ram_gib']} GiB RAM"
             + (f", GPU {m['gpu']}" if m.get("gpu") else ", no GPU") + f"; Python {m['python']}, torch {m['torch']}; "
             f"device `{report['device']}`. Command: `{report['command']}` ({report['date']}).", ""]
    stages = ["read", "graph", "train_epoch", "predict", "predict_mt", "baseline_predict", "export", "out_of_core",
              "segment_out_of_core"]
    names = {"read": "read", "graph": "graph build", "train_epoch": "train 1 epoch", "predict": "predict (1 thread, default)",
             "predict_mt": "predict (all threads)", "baseline_predict": "baseline predict (nearest nucleus)",
             "export": "export", "out_of_core": "out-of-core predict, end to end",
             "segment_out_of_core": "segment --out-of-core, end to end (every output)"}
    sizes = list(report["sizes"])
    lines.append("| stage | " + " | ".join(f"{s} ({report['sizes'][s].get('info', {}).get('n_tx', 0):,} tx)" for s in sizes) + " |")
    lines.append("|---|" + "---|" * len(sizes))
    for st in stages:
        cells = []
        for s in sizes:
            r = report["sizes"][s].get("stages", {}).get(st)
            if not r:
                cells.append("—")
                continue
            if "error" in r:
                cells.append(f"error: {r['error'][:60]}")
                continue
            c = f"{_fmt_s(r['wall_s'])} s, {r['peak_rss_gb']:.2f} GB"
            if r.get("others_cores", 0) >= 0.25:
                c += " †"
            if "tx_per_s" in r:
                c += f", {r['tx_per_s'] / 1000:.0f} k tx/s"
            cells.append(c)
        if any(c != "—" for c in cells):
            lines.append(f"| {names[st]} | " + " | ".join(cells) + " |")
    busy = []
    for s in sizes:
        for st, r in report["sizes"][s].get("stages", {}).items():
            if r.get("others_cores", 0) >= 0.25:
                busy.append(f"{s} {names.get(st, st)} ({r['others_cores']:.1f})")
    lines += ["", "Cells: wall seconds, peak RSS of the process tree during the stage (memory kept from earlier "
              "stages included), throughput. Marked with † where other programs on the machine used ≥ 0.25 "
              "CPU cores on average during the stage (the times there are inflated): "
              + ("; ".join(busy) if busy else "none" if any("others_cores" in r for v in report["sizes"].values()
                                                              for r in v.get("stages", {}).values())
                 else "not measured in this run") + "."]
    t = report.get("time_to_quality")
    if t:
        if t.get("seconds_to_target") is not None:
            lines += ["", f"Time to quality (186 k crop, default `TrainConfig`): validation AUROC ≥ {t['target_auroc']} after "
                      f"**{t['seconds_to_target']:.1f} s** of training ({t['seconds_to_target_incl_read_graph']:.1f} s "
                      f"including read + graph); curve: " + ", ".join(f"epoch {c['epoch']} {c['s']:.0f} s {c['val_auroc']:.3f}" for c in t["curve"]) + "."]
        else:
            lines += ["", f"Time to quality: AUROC {t['target_auroc']} not reached in {t['budget_s']:.0f} s; best {t['best_auroc']:.3f}."]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------
# generated docs sections (docs/benchmarks.md): the out-of-core run and its extrapolation
OOC_BEGIN = "<!-- scale-ooc:begin (generated by benchmarks/run.py from its JSON; do not edit) -->"
OOC_END = "<!-- scale-ooc:end -->"
EX_BEGIN = "<!-- scale-extrapolation:begin (generated by benchmarks/run.py --extrapolate from its JSON; do not edit) -->"
EX_END = "<!-- scale-extrapolation:end -->"
#: issue 13's out-of-core targets: wall-time growth between sizes and the peak RSS at every size
OOC_TARGETS = {("1m", "10m"): 11.0, ("10m", "30m"): 3.3}
OOC_RSS_TARGET_GB = 4.0
BASELINE = ROOT / "benchmarks" / "results" / "scale-cpu-ooc.json"


SEG_BEGIN = "<!-- scale-segment:begin (generated by benchmarks/run.py from its JSON; do not edit) -->"
SEG_END = "<!-- scale-segment:end -->"


def _ooc(report: dict, stage: str = "out_of_core") -> dict[str, dict]:
    """size → its ``stage`` record (sizes that ran it without an error), in size order."""
    out = {}
    for size, rec in report.get("sizes", {}).items():
        r = (rec or {}).get("stages", {}).get(stage)
        if r and "error" not in r:
            out[size] = r
    return dict(sorted(out.items(), key=lambda kv: kv[1]["n_rows"]))


def _met(ok: bool) -> str:
    return "met" if ok else "**missed**"


def _waits(report: dict) -> str:
    w = {s: v["waited_for_quiet"] for s, v in report["sizes"].items() if v and "waited_for_quiet" in v}
    if not w:
        return ""
    lim = next(iter(w.values()))["below"]
    return (f"; each size started once the load average was below {lim:g} (`--wait-quiet`; waited "
            + ", ".join(f"{s} {x['seconds']} s" + ("" if x["reached"] else " and gave up") for s, x in w.items()) + ")")


def _step_peaks(r: dict) -> str:
    p = r.get("peak_rss_gb_by_step") or {}
    return " / ".join(f"{p[k]:.2f}" for k in ("bucket", "predict") if k in p) or "—"


def _dagger(size: str, r: dict, busy: list[str]) -> str:
    """`` †`` (and the size noted in ``busy``) where other programs used ≥ 0.25 cores during the run."""
    if r.get("others_cores", 0.0) < 0.25:
        return ""
    busy.append(f"{size} ({r['others_cores']:.2f} cores)")
    return " †"


def _growth(recs: dict[str, dict], note) -> str:
    """The growth targets between sizes (``note(a, b)``: what else to say of a pair) and the RSS target."""
    out = []
    for (a, b), limit in OOC_TARGETS.items():
        if a in recs and b in recs:
            g = recs[b]["wall_s"] / recs[a]["wall_s"]
            out.append(f"{b.upper().replace('M', ' M')} / {a.upper().replace('M', ' M')} = {g:.2f}× "
                       f"(target ≤ {limit:g}×: {_met(g <= limit)}; {note(a, b)})")
    if recs:
        worst = max(recs.items(), key=lambda kv: kv[1]["peak_rss_gb"])
        ok = all(r["peak_rss_gb"] <= OOC_RSS_TARGET_GB for r in recs.values())
        out.append(f"peak RSS at most {worst[1]['peak_rss_gb']:.2f} GB ({worst[0]}; target ≤ {OOC_RSS_TARGET_GB:g} GB "
                   f"at every size: {_met(ok)})")
    return "; ".join(out)


def ooc_section(report: dict, json_name: str, baseline: dict | None = None) -> str:
    """The docs section of an out-of-core run (``--only-out-of-core``), every number from ``report``."""
    ooc = _ooc(report)
    others = max((r.get("others_cores", 0.0) for r in ooc.values()), default=0.0)
    loads = [v["info"]["load_before"][0] for v in report["sizes"].values() if v and "info" in v and "load_before" in v["info"]]
    names = ", ".join(s.upper().replace("M", " M").replace("K", " k") for s in ooc)
    lines = [OOC_BEGIN, "", f"## Out of core at {names} ({report['date'][:10]})", "",
             f"`{report['command']}`", "",
             f"Machine: {report['machine']['cpu']}, {report['machine']['affinity']} cores, torch {report['machine']['torch']}; "
             f"other programs used up to {others:.2f} cores during a run (1-minute load average before each size: "
             + ", ".join(f"{v:.1f}" for v in loads) + ")" + _waits(report) + ". Default local cluster (2 worker threads, one torch thread "
             "per tile), a model trained one epoch on the 186 k crop; `predict_out_of_core`, i.e. read → tiles → "
             "graph → predict → the transcripts parquet (not the cell outputs). Generated from "
             f"`{json_name}`.", "",
             "| size | tiles | bucket | predict | end to end | CPU s | peak RSS | peak RSS bucket / predict (GB) "
             "| tile median | throughput |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    busy: list[str] = []
    for size, r in ooc.items():
        t = r["timings"]
        dag = _dagger(size, r, busy)
        lines.append(f"| {size} | {r['n_tiles']} | {_fmt_s(t['bucket'])} s | {_fmt_s(t['predict'])} s | "
                     f"{_fmt_s(r['wall_s'])} s{dag} | {r['cpu_s']:.0f} | {r['peak_rss_gb']:.2f} GB | {_step_peaks(r)} | "
                     f"{r['tile_s_median']:.1f} s | {r['tx_per_s'] / 1000:.0f} k tx/s |")
    if busy:
        lines += ["", "† other programs used ≥ 0.25 CPU cores on average during that run (the wall time is "
                      "inflated; the CPU seconds are the steadier measure): " + ", ".join(busy) + "."]
    lines += ["", "Growth of the end-to-end time: "
              + _growth(ooc, lambda a, b: f"CPU seconds {ooc[b]['cpu_s'] / ooc[a]['cpu_s']:.2f}×") + "."]
    if baseline:
        b_ooc = _ooc(baseline)
        cmp = [f"{size} {_fmt_s(br['wall_s'])} s (tile median {br['tile_s_median']:.1f} s)" for size, br in b_ooc.items()]
        lines += ["", f"The run of {baseline['date'][:10]} (`{BASELINE.relative_to(ROOT)}`, the code of that day): "
                  + ", ".join(cmp) + ". What made the tiles slower since, and what was done, with the measurements: "
                  "[docs/scale.md, Performance](scale.md#performance-of-the-tile-path)."]
    lines += ["", OOC_END, ""]
    return "\n".join(lines)


def segment_section(report: dict, json_name: str) -> str:
    """The docs section of the end-to-end ``segment_out_of_core`` stage (``--segment``), from ``report``."""
    seg = _ooc(report, "segment_out_of_core")
    names = ", ".join(s.upper().replace("M", " M") for s in seg)
    first = next(iter(seg.values()))
    lines = [SEG_BEGIN, "", f"## `segger segment --out-of-core` end to end at {names} ({report['date'][:10]})", "",
             f"`{report['command']}` (the same run as the table above). Generated from `{json_name}`.", "",
             "`segment_out_of_core`, the code of `segger segment --out-of-core`: bucket the input → train one epoch "
             f"on {first['train_tiles']} streamed tiles (+1 held out; the graph of a tile is built when the stream "
             "reaches it) → bucket again and predict every tile on the default local cluster → the cell outputs "
             "window by window (`segger.export.streamed`) → every file of an in-memory run (transcripts parquet, "
             "outlines, AnnData, QC, run JSON), staged and published. The training sample is the same size at "
             "every size, so its cost is a constant here.", "",
             "| size | tiles | cells | bucket | train | bucket + predict | cell outputs | end to end | CPU s | "
             "peak RSS | peak RSS train / predict / cell outputs (GB) | output files |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    busy: list[str] = []
    for size, r in seg.items():
        t = r["timings"]
        p = r.get("peak_rss_gb_by_step") or {}
        dag = _dagger(size, r, busy)
        mb = sum((r.get("files_mb") or {}).values())
        lines.append(f"| {size} | {r['n_tiles']} | {r['n_cells']:,} | {_fmt_s(t['bucket'])} s | {_fmt_s(t['train'])} s | "
                     f"{_fmt_s(t['predict'])} s | {_fmt_s(t['export'])} s | {_fmt_s(r['wall_s'])} s{dag} | {r['cpu_s']:.0f} | "
                     f"{r['peak_rss_gb']:.2f} GB | "
                     + " / ".join(f"{p[k]:.2f}" if k in p else "—" for k in ("train", "predict", "cell outputs"))
                     + f" | {len(r.get('files_mb') or {})} files, {mb:,.0f} MB |")
    if busy:
        lines += ["", "† other programs used ≥ 0.25 CPU cores on average during that run: " + ", ".join(busy) + "."]
    def no_train(a, b):
        return (f"without the constant training "
                f"{(seg[b]['wall_s'] - seg[b]['timings']['train']) / (seg[a]['wall_s'] - seg[a]['timings']['train']):.2f}×")

    lines += ["", "Growth of the end-to-end time: " + _growth(seg, no_train) + "."]
    q = [f"{s}: {r['fraction_assigned']:.3f} assigned, agreement {r['agreement']:.3f}, MECR {r['mecr']:.4f}"
         for s, r in seg.items() if r.get("agreement") is not None and r.get("mecr") is not None]
    if q:
        lines += ["", "QC of the written outputs (`qc.json`, against the input's own cells where it has them): "
                  + "; ".join(q) + "."]
    lines += ["", SEG_END, ""]
    return "\n".join(lines)


def _power_fit(ns: list[float], vs: list[float]) -> tuple[float, float] | None:
    """``(c, k)`` of ``v = c · n^k`` by least squares in log-log (all values > 0, ≥ 2 sizes)."""
    import numpy as np

    if len(ns) < 2 or min(vs) <= 0:
        return None
    k, a = np.polyfit(np.log(ns), np.log(vs), 1)
    return float(np.exp(a)), float(k)


def extrapolate(report: dict, target: int, json_name: str) -> dict:
    """Each out-of-core quantity at ``target`` transcripts from the measured sizes: linear from the two
    largest sizes (their slope: what one more million transcripts cost there) and a power law fitted to
    every size (its exponent says how far from linear the growth is)."""
    ooc = _ooc(report)
    if len(ooc) < 2:
        raise SystemExit(f"{json_name}: need the out_of_core stage at ≥ 2 sizes to extrapolate")
    sizes = list(ooc)
    ns = [float(ooc[s]["n_rows"]) for s in sizes]
    quantities = {
        "bucket_s": ("bucket (stream the parquet into tile files)", "s", lambda r: r["timings"]["bucket"]),
        "predict_s": ("predict every tile (graph + model + assign + write)", "s", lambda r: r["timings"]["predict"]),
        "wall_s": ("end to end", "s", lambda r: r["wall_s"]),
        "cpu_s": ("CPU seconds", "s", lambda r: r["cpu_s"]),
        "n_tiles": ("tiles", "", lambda r: r["n_tiles"]),
        "peak_rss_gb": ("peak RSS, whole run", "GB", lambda r: r["peak_rss_gb"]),
        "peak_rss_bucket_gb": ("peak RSS while bucketing", "GB", lambda r: (r.get("peak_rss_gb_by_step") or {}).get("bucket")),
        "peak_rss_predict_gb": ("peak RSS while predicting", "GB", lambda r: (r.get("peak_rss_gb_by_step") or {}).get("predict")),
    }
    out = {"command": None, "date": time.strftime("%Y-%m-%d %H:%M"), "source": json_name, "source_date": report["date"],
           "source_command": report["command"], "machine": report["machine"], "target_n": int(target),
           "measured_sizes": {s: int(n) for s, n in zip(sizes, ns)},
           "method": {"linear": f"value at {sizes[-1]} + slope between {sizes[-2]} and {sizes[-1]} × (target − {sizes[-1]})",
                      "power": "v = c·n^k, least squares in log-log over every measured size"},
           "quantities": {},
           "gpu": {"measured": False, "why": "this task had no GPU; benchmarks/gpu_check.sh runs the suite with --device cuda"},
           "not_extrapolated": {"cell outputs": "segger segment/predict --out-of-core then build outlines, AnnData and QC "
                                                "from the whole result table read back (docs/scale.md, Limitations): not "
                                                "part of predict_out_of_core, not measured here; that step holds the "
                                                "slide's table in memory"}}
    seg = _ooc(report, "segment_out_of_core")
    if list(seg) == sizes:  # the end-to-end run at the same sizes: its stages too
        quantities.update({
            "segment_cells_s": ("segment end to end: cell outputs (window by window)", "s", lambda r: r["seg"]["timings"]["export"]),
            "segment_wall_s": ("segment end to end (training a fixed sample of tiles)", "s", lambda r: r["seg"]["wall_s"]),
            "segment_peak_rss_gb": ("segment end to end: peak RSS", "GB", lambda r: r["seg"]["peak_rss_gb"]),
            "segment_cells_rss_gb": ("segment end to end: peak RSS of the cell outputs", "GB",
                                     lambda r: (r["seg"].get("peak_rss_gb_by_step") or {}).get("cell outputs")),
        })
        ooc = {s: {**ooc[s], "seg": seg[s]} for s in sizes}
        out["not_extrapolated"] = {"training": "a fixed sample of tiles (--segment-train-tiles) at every size: a "
                                               "constant, which the slope between the two largest sizes leaves out"}
    for key, (label, unit, get) in quantities.items():
        vs = [get(ooc[s]) for s in sizes]
        if any(v is None for v in vs):
            continue
        vs = [float(v) for v in vs]
        slope = (vs[-1] - vs[-2]) / (ns[-1] - ns[-2])
        lin = vs[-1] + slope * (target - ns[-1])
        pw = _power_fit(ns, vs)
        out["quantities"][key] = {"label": label, "unit": unit, "measured": dict(zip(sizes, vs)),
                                  "slope_per_million": slope * 1e6, "linear": lin,
                                  "power": None if pw is None else {"c": pw[0], "k": pw[1], "value": pw[0] * target ** pw[1]}}
    return out


def _fmt_q(v: float, unit: str) -> str:
    if unit == "GB":
        return f"{v:.2f} GB"
    if unit == "s":
        return f"{_fmt_s(v)} s" + (f" ({v / 3600:.1f} h)" if v >= 3600 else "")
    return f"{v:,.0f}"


def extrapolation_section(ex: dict, json_name: str) -> str:
    n = ex["target_n"]
    sizes = list(ex["measured_sizes"])
    label_n = f"{n / 1e6:g} M"
    lines = [EX_BEGIN, "", f"## Extrapolation to a {label_n}-transcript slide (CPU; an extrapolation, not a measurement)", "",
             f"`{ex['command']}` — computed from `{ex['source']}` ({ex['source_date']}, sizes "
             + ", ".join(sizes) + f"), not run at {label_n}. Generated into `{json_name}`.", "",
             f"*Linear*: the value at {sizes[-1]} plus the slope measured between {sizes[-2]} and {sizes[-1]} "
             f"(the cost of one more million transcripts at that size) times the rest; *power law*: `c·n^k` fitted to "
             "every measured size (k = 1 is linear growth). Same machine, same settings (default local cluster of 2 "
             "threads, 545 µm tiles of ~250 k transcripts); GPU: not measured (no GPU in this task).", "",
             "| quantity | " + " | ".join(f"measured {s}" for s in sizes) + " | slope per 1 M tx | "
             f"{label_n} linear | {label_n} power law | {label_n} GPU |",
             "|---|" + "---|" * len(sizes) + "---|---|---|---|"]
    for q in ex["quantities"].values():
        u = q["unit"]
        meas = " | ".join(_fmt_q(q["measured"][s], u) for s in sizes)
        slope = q["slope_per_million"]
        sl = (f"{slope:+.3f} GB" if u == "GB" else f"{slope:+.1f} s" if u == "s" else f"{slope:+.2f}")
        pw = q["power"]
        pws = "—" if pw is None else f"{_fmt_q(pw['value'], u)}, k = {pw['k']:.2f}"
        lines.append(f"| {q['label']} | {meas} | {sl} | **{_fmt_q(max(q['linear'], 0.0), u)}** | {pws} | not measured |")
    qs = ex["quantities"]
    notes = []
    if "wall_s" in qs:
        w = qs["wall_s"]
        notes.append(f"End to end at {label_n}: about {w['linear'] / 3600:.1f} h by the linear model "
                     + (f"({w['power']['value'] / 3600:.1f} h by the power law, k = {w['power']['k']:.2f})" if w["power"] else "")
                     + " on these 2 shared cores. The tiles are independent Dask tasks, so more workers should "
                       "divide the predict part (not measured beyond 2 threads here); the bucket pass is one "
                       "stream of the input in the calling process.")
    bound = {"peak_rss_bucket_gb": "the bucket pass holds one input batch (1 M rows) and the flush buffer (256 MB)",
             "peak_rss_predict_gb": "the tile work holds the tiles in flight (2 × workers), each bounded by the tile size",
             "peak_rss_gb": "the larger of the two passes",
             "segment_cells_rss_gb": "the cell outputs hold 18 bytes of codes a transcript (0.54 GB at 30 M, 3.6 GB at "
                                     "200 M: this part does grow with the slide) and the windows in flight"}
    for key in ("peak_rss_bucket_gb", "peak_rss_predict_gb", "peak_rss_gb", "segment_cells_rss_gb"):
        if key not in qs:
            continue
        m = qs[key]
        vals = list(m["measured"].values())
        flat = m["linear"] <= 1.25 * max(vals)
        notes.append(f"{m['label'][0].upper() + m['label'][1:]}: measured {', '.join(f'{v:.2f}' for v in vals)} GB, "
                     f"slope {m['slope_per_million'] * 1000:+.1f} MB per million transcripts → {m['linear']:.2f} GB at "
                     f"{label_n} (linear)" + (f", {m['power']['value']:.2f} GB (power law)" if m["power"] else "")
                     + f". By design {bound[key]}, not the slide"
                     + ("; the measured peaks agree (flat within the spread of a peak sampled every 20 ms)." if flat else
                        "; the linear model reads the 10 M → 30 M difference of two sampled peaks as growth, which "
                        "three sizes cannot tell from run-to-run spread: an upper estimate."))
    notes.append("Not extrapolated: " + "; ".join(f"{k} — {v}" for k, v in ex["not_extrapolated"].items()) + ".")
    lines += [""] + [f"* {t}" for t in notes] + ["", EX_END, ""]
    return "\n".join(lines)


def splice(doc: Path, begin: str, end: str, section: str, after: str | None = None) -> None:
    """Write a rendered ``section`` (its own begin / end markers included) into ``doc`` through the one
    section writer (``benchmarks/_docs.py``)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _docs import replace_section

    body = section.split(begin, 1)[1].rsplit(end, 1)[0]
    replace_section(doc, begin, end, body, after=after)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="15k,186k,1m,10m")
    ap.add_argument("--json", default=None, help="write the full report here")
    ap.add_argument("--markdown", default=None, help="write the Markdown table here")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--scratch", default=os.environ.get("SEGGER_SCALE_SCRATCH", "/tmp/segger_scale"))
    ap.add_argument("--max-in-memory", default="1m", help="largest size that also runs the in-memory stages (default 1m)")
    ap.add_argument("--ooc-workers", type=int, default=None, help="workers of the out-of-core local cluster")
    ap.add_argument("--no-ttq", action="store_true", help="skip the time-to-quality run")
    ap.add_argument("--only-out-of-core", action="store_true",
                    help="run only the out-of-core stage at every size (e.g. to time 1m against 10m on a quiet machine)")
    ap.add_argument("--docs", default=None, help="write the generated out-of-core section (or, with --extrapolate, the "
                                               "extrapolation section) into this Markdown file, e.g. docs/benchmarks.md")
    ap.add_argument("--render-only", action="store_true", help="measure nothing: re-render --markdown / --docs from --json")
    ap.add_argument("--extrapolate", default=None, metavar="SIZE",
                    help="measure nothing: extrapolate the out-of-core run in --json to SIZE transcripts (e.g. 200m)")
    ap.add_argument("--extrapolation-json", default=None, help="with --extrapolate: write the extrapolation here (+ .md)")
    ap.add_argument("--wait-quiet", type=float, default=None, metavar="LOAD",
                    help="on a shared machine: before each size wait (at most --wait-max s) until the 1-minute load "
                         "average is below LOAD; the wait is recorded with the size")
    ap.add_argument("--wait-max", type=float, default=900.0, help="longest wait of --wait-quiet per size (s)")
    ap.add_argument("--segment", action="store_true",
                    help="also run segment_out_of_core end to end (train on streamed tiles, predict, every output)")
    ap.add_argument("--only-segment", action="store_true", help="run only the end-to-end segment_out_of_core stage")
    ap.add_argument("--segment-train-tiles", type=int, default=4, help="tiles the end-to-end run trains on (1 epoch)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--ttq-child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--child-json", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    scratch = Path(a.scratch)
    scratch.mkdir(parents=True, exist_ok=True)
    if a.segment or a.only_segment:
        SEGMENT_E2E.update(on=True, only=a.only_segment, train_tiles=a.segment_train_tiles)
    if a.child:
        child(a.child, a.device, scratch, Path(a.child_json), parse_size(a.max_in_memory), a.ooc_workers)
        return 0
    if a.ttq_child:
        ttq_child(a.device, Path(a.child_json))
        return 0
    cmd = " ".join(["python benchmarks/run.py"] + (argv if argv is not None else sys.argv[1:]))
    if a.extrapolate or a.render_only:
        if not a.json:
            raise SystemExit("--extrapolate / --render-only read the results of --json")
        report = json.loads(Path(a.json).read_text())
        json_name = _rel(Path(a.json))
        if a.extrapolate:
            ex = extrapolate(report, parse_size(a.extrapolate), json_name)
            ex["command"] = cmd
            out = Path(a.extrapolation_json) if a.extrapolation_json else None
            sec = extrapolation_section(ex, _rel(out) if out else "(not written)")
            if out:
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_text(json.dumps(ex, indent=1) + "\n")
                out.with_suffix(".md").write_text(sec.split("\n", 2)[2].rsplit(EX_END, 1)[0].strip() + "\n")
            if a.docs:
                splice(Path(a.docs), EX_BEGIN, EX_END, sec, after=OOC_END)
            print(sec)
            return 0
        _write_outputs(report, a, json_name)
        return 0
    report = {"command": cmd,
              "date": time.strftime("%Y-%m-%d %H:%M"), "device": a.device, "machine": machine(), "sizes": {}}
    sizes = [s.strip().lower() for s in a.sizes.split(",") if s.strip()]
    for s in sizes:
        data_for(s, scratch)  # build the scale inputs before any timing
    extra = ["--device", a.device, "--scratch", str(scratch),
             "--max-in-memory", "0" if a.only_out_of_core or a.only_segment else a.max_in_memory]
    seg_args = ["--only-segment", "--segment-train-tiles", str(a.segment_train_tiles)]
    if a.only_segment:
        extra += seg_args
    if a.ooc_workers:
        extra += ["--ooc-workers", str(a.ooc_workers)]
    for s in sizes:
        waited = _wait_quiet(a.wait_quiet, a.wait_max) if a.wait_quiet else None
        print(f"== {s}", flush=True)
        report["sizes"][s] = _run_child(["--child", s] + extra, s)
        if a.segment and not a.only_segment and isinstance(report["sizes"][s], dict):
            # the end-to-end run in a process of its own (its peak RSS is its own, and it leaves nothing
            # behind for the stages above)
            got = _run_child(["--child", s] + extra + seg_args, f"{s} segment") or {}
            report["sizes"][s].setdefault("stages", {}).update(got.get("stages", {}))
            report["sizes"][s]["segment_info"] = got.get("info", got)
        if waited is not None and isinstance(report["sizes"][s], dict):
            report["sizes"][s]["waited_for_quiet"] = waited
        if a.json:
            Path(a.json).parent.mkdir(parents=True, exist_ok=True)
            Path(a.json).write_text(json.dumps(report, indent=1, default=str))
    if not a.no_ttq:
        print("== time to quality", flush=True)
        report["time_to_quality"] = _run_child(["--ttq-child", "--device", a.device, "--scratch", str(scratch)], "ttq")
    if a.json:
        Path(a.json).write_text(json.dumps(report, indent=1, default=str))
    _write_outputs(report, a, _rel(Path(a.json)) if a.json else "(not written)")
    return 0


def _wait_quiet(load: float, longest: float) -> dict:
    """Wait until the 1-minute load average is below ``load`` (other programs' work: this process is
    idle between sizes), at most ``longest`` seconds; what happened, for the report."""
    t = time.perf_counter()
    while os.getloadavg()[0] >= load and time.perf_counter() - t < longest:
        time.sleep(10)
    return {"below": load, "seconds": round(time.perf_counter() - t), "load": os.getloadavg()[0],
            "reached": os.getloadavg()[0] < load}


def _rel(p: Path) -> str:
    try:
        return str(p.resolve().relative_to(ROOT))
    except ValueError:
        return str(p)


def _write_outputs(report: dict, a, json_name: str) -> None:
    md = markdown(report)
    print(md)
    if a.markdown:
        Path(a.markdown).write_text(md)
    if a.docs and _ooc(report):
        base = json.loads(BASELINE.read_text()) if BASELINE.is_file() and _rel(BASELINE) != json_name else None
        splice(Path(a.docs), OOC_BEGIN, OOC_END, ooc_section(report, json_name, base))
    if a.docs and _ooc(report, "segment_out_of_core"):
        splice(Path(a.docs), SEG_BEGIN, SEG_END, segment_section(report, json_name), after=OOC_END)


if __name__ == "__main__":
    sys.exit(main())
