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
            time.sleep(self.interval)

    def reset(self) -> None:
        with self._lock:
            self.peak = self.rss()

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
    ref_ckpt = None if size == "15k" else reference_checkpoint(scratch, device)
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
        if ooc_ckpt is None:
            raise SystemExit("the 15k lung size trains its own model in its in-memory stages; run it without --only-out-of-core")
    out_pq = ckpt_dir / "ooc.parquet"
    cfg = OutOfCoreConfig(device=device, workers=ooc_workers)
    with Stage(sampler, res, "out_of_core", scheduler="local (default)"):
        r = predict_out_of_core(path, ooc_ckpt, out_pq, cfg)
    res["out_of_core"].update({"n_rows": r.n_rows, "n_tiles": r.n_tiles, "scheduler": r.scheduler,
                               "timings": {k: round(v, 2) for k, v in r.timings.items()},
                               "tile_size_um": round(r.plan["tile_size"], 1), "tx_per_s": round(r.n_rows / res["out_of_core"]["wall_s"]),
                               "tile_s_median": round(sorted(r.tile_seconds)[len(r.tile_seconds) // 2], 2)})
    n_tx = n_tx or r.n_rows
    info["n_tx"] = n_tx
    if in_mem is not None:
        import pandas as pd

        o = pd.read_parquet(out_pq, columns=["transcript_id", "segger_cell_id", "assignment"]).set_index("transcript_id")
        o = o.loc[in_mem.index]
        cell = in_mem["assignment"].isin(["nucleus", "cytoplasm"])
        info["ooc_vs_in_memory_same_cell"] = float((o.loc[cell, "segger_cell_id"] == in_mem.loc[cell, "segger_cell_id"]).mean())
    import shutil

    shutil.rmtree(ckpt_dir, ignore_errors=True)
    info["load_after"] = os.getloadavg()
    info["total_s"] = round(time.perf_counter() - t_start, 1)
    info["max_rss_gb_self"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 3)
    sampler.stop()


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
    stages = ["read", "graph", "train_epoch", "predict", "predict_mt", "baseline_predict", "export", "out_of_core"]
    names = {"read": "read", "graph": "graph build", "train_epoch": "train 1 epoch", "predict": "predict (1 thread, default)",
             "predict_mt": "predict (all threads)", "baseline_predict": "baseline predict (nearest nucleus)",
             "export": "export", "out_of_core": "out-of-core predict, end to end"}
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
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--ttq-child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--child-json", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    scratch = Path(a.scratch)
    scratch.mkdir(parents=True, exist_ok=True)
    if a.child:
        child(a.child, a.device, scratch, Path(a.child_json), parse_size(a.max_in_memory), a.ooc_workers)
        return 0
    if a.ttq_child:
        ttq_child(a.device, Path(a.child_json))
        return 0
    report = {"command": " ".join(["python benchmarks/run.py"] + (argv if argv is not None else sys.argv[1:])),
              "date": time.strftime("%Y-%m-%d %H:%M"), "device": a.device, "machine": machine(), "sizes": {}}
    sizes = [s.strip().lower() for s in a.sizes.split(",") if s.strip()]
    for s in sizes:
        data_for(s, scratch)  # build the scale inputs before any timing
    extra = ["--device", a.device, "--scratch", str(scratch),
             "--max-in-memory", "0" if a.only_out_of_core else a.max_in_memory]
    if a.ooc_workers:
        extra += ["--ooc-workers", str(a.ooc_workers)]
    for s in sizes:
        print(f"== {s}", flush=True)
        report["sizes"][s] = _run_child(["--child", s] + extra, s)
        if a.json:
            Path(a.json).parent.mkdir(parents=True, exist_ok=True)
            Path(a.json).write_text(json.dumps(report, indent=1, default=str))
    if not a.no_ttq:
        print("== time to quality", flush=True)
        report["time_to_quality"] = _run_child(["--ttq-child", "--device", a.device, "--scratch", str(scratch)], "ttq")
    md = markdown(report)
    print(md)
    if a.json:
        Path(a.json).write_text(json.dumps(report, indent=1, default=str))
    if a.markdown:
        Path(a.markdown).write_text(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
