#!/usr/bin/env python
"""Quality + cost benchmark of ``segger segment`` on the three shared Xenium crops.

For each crop this script

1. runs the real pipeline (``python -m segger.cli.main segment CROP --device cpu --quiet``) in a
   fresh child process and measures its wall time and peak RSS (``os.wait4`` rusage of that
   child, so each run is measured on its own), and reads the pipeline's own stage timings,
   training history (val AUROC) and cell count from ``segger_run.json``;
2. runs the nearest-nucleus baseline (``segger.prediction.nearest_nucleus_assignment`` on a graph
   from ``segger.data.build_graph(segger.io.read_sample(CROP))``, same reader and graph defaults
   as the pipeline) in a child process too, measured the same way;
3. scores three assignments of the *same* filtered transcripts with :mod:`segger.validation`:
   Segger (``segger_cell_id``), the vendor (``cell_id``) and the baseline — fraction assigned,
   agreement with the vendor cell id (nucleus-bearing vendor cells) and MECR on ONE set of
   exclusive gene pairs found on the vendor's nucleus-only profiles and used for all three.

Writes a JSON file (``--json``) and prints a Markdown table. ``make bench`` runs
``python benchmarks/quality.py --json benchmarks/quality.json``; docs/benchmarks.md explains
the numbers.

    python benchmarks/quality.py --json OUT [--datasets lung,segtraq,bidcell]
                                 [--epochs N | --epochs lung=30,bidcell=8] [--data-root DIR]
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# name -> (folder under the data root, default epochs, note)
DATASETS: dict[str, tuple[str, int, str]] = {
    "lung": ("xenium_lung_segger", 30, "15k-transcript human lung crop, vendor nucleus polygons"),
    "segtraq": ("xenium_breast_segtraq", 30, "23.7k-transcript breast crop, vendor nucleus polygons"),
    "bidcell": ("xenium_breast_bidcell", 8,
                "186k-transcript breast crop, no polygons: nuclei approximated from nuclear transcripts"),
}

# exclusive gene pairs: the qc_report defaults, so the numbers match `segger qc`
PAIR_KW = dict(nuclear_only=True, min_cells_frac=0.05, max_pairs=100, max_rate=0.02)

TARGET_AGREEMENT = 0.90
TARGET_FRACTION_POINTS = 0.10


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def default_data_root() -> Path:
    cand = (REPO / ".." / "shared" / "data").resolve()
    return cand if cand.is_dir() else Path("/work/shared/data")


def machine_info() -> dict:
    info: dict = {
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": None,
        "ram_gb": None,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                info["ram_gb"] = round(int(line.split()[1]) / 1024 / 1024, 1)
                break
    except OSError:
        pass
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    except Exception:  # pragma: no cover - torch is a hard dependency
        info["torch"] = None
    for mod in ("torch_geometric", "pytorch_lightning", "numpy", "pandas"):
        try:
            info[mod] = __import__(mod).__version__
        except Exception:
            info[mod] = None
    try:
        import segger

        info["segger"] = segger.__version__
    except Exception:
        info["segger"] = None
    try:
        info["git_commit"] = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True,
                                            text=True, timeout=10).stdout.strip() or None
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain"], capture_output=True, text=True,
                               timeout=10).stdout.strip()
        info["git_dirty"] = bool(dirty)
    except Exception:
        info["git_commit"] = None
    return info


def run_measured(cmd: list[str], log: Path, env: dict | None = None) -> dict:
    """Run ``cmd`` as a child; return rc, wall seconds, peak RSS (MB) and CPU seconds of that child alone."""
    with open(log, "wb") as fh:
        t = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=str(REPO), env=env)
        _, status, ru = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t
        proc.returncode = os.waitstatus_to_exitcode(status)
    # ru_maxrss is in KiB on Linux (bytes on macOS)
    rss_kb = ru.ru_maxrss / 1024 if sys.platform == "darwin" else ru.ru_maxrss
    return {"rc": proc.returncode, "wall_s": wall, "peak_rss_mb": rss_kb / 1024, "cpu_user_s": ru.ru_utime,
            "cpu_sys_s": ru.ru_stime}


def _num(v):
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def _tail(path: Path, n: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


# --------------------------------------------------------------------------------------------
# child: nearest-nucleus baseline (run as `quality.py --_baseline CROP OUT.parquet`)
# --------------------------------------------------------------------------------------------


def baseline_child(crop: str, out: str) -> int:
    from segger.data import GraphParams, build_graph
    from segger.io import read_sample
    from segger.prediction import nearest_nucleus_assignment
    from segger import schema as S

    t = time.perf_counter()
    sample = read_sample(crop)  # same defaults as `segger segment`: qv ≥ 20, controls dropped, nuclei auto
    t_read = time.perf_counter() - t
    t = time.perf_counter()
    bundle = build_graph(sample.transcripts, sample.nuclei, GraphParams())
    t_graph = time.perf_counter() - t
    t = time.perf_counter()
    res = nearest_nucleus_assignment(bundle)
    t_assign = time.perf_counter() - t
    cols = [c for c in (S.TX_ID, S.GENE, S.NUCLEAR, S.CELL_ID, S.SEGGER_CELL_ID, S.ASSIGNMENT) if c in res.columns]
    res = res[cols].copy()
    res[S.SEGGER_CELL_ID] = res[S.SEGGER_CELL_ID].astype(str)
    res[S.CELL_ID] = res[S.CELL_ID].astype(object).where(res[S.CELL_ID].notna(), None)
    res.to_parquet(out)
    Path(out).with_suffix(".json").write_text(json.dumps(
        {"timings": {"read": t_read, "graph": t_graph, "assign": t_assign}, "n_nuclei": int(len(sample.nuclei)),
         "nuclei_source": sample.nuclei_source}))
    return 0


# --------------------------------------------------------------------------------------------
# scoring
# --------------------------------------------------------------------------------------------


def score_methods(seg_df, base_df) -> dict:
    """Score Segger, vendor and baseline with the same exclusive gene pairs (from the vendor's nuclei)."""
    import numpy as np

    from segger import schema as S
    from segger.validation import (agreement, agreement_per_cell, find_exclusive_gene_pairs, fraction_assigned,
                                   mecr, mecr_flagged_cells, transcripts_per_cell)

    pairs = find_exclusive_gene_pairs(seg_df, cell_col=S.CELL_ID, **PAIR_KW)
    per_ref = agreement_per_cell(seg_df, S.SEGGER_CELL_ID, S.CELL_ID)

    def one(df, col, is_reference=False):
        tpc = transcripts_per_cell(df, col)
        out = {
            "cell_column": col,
            "n_transcripts": int(len(df)),
            "fraction_assigned": _num(fraction_assigned(df, col)),
            "agreement": 1.0 if is_reference else _num(agreement(df, col, S.CELL_ID)),
            "mecr": _num(mecr(df, pairs, col)) if len(pairs) else None,
            "n_mecr_flagged_cells": int(len(mecr_flagged_cells(df, pairs, col, top=None))) if len(pairs) else None,
            "n_cells": int(tpc["n_cells"]),
            "transcripts_per_cell_median": _num(tpc["median"]),
            "transcripts_per_cell_p10": _num(tpc["p10"]),
            "transcripts_per_cell_p90": _num(tpc["p90"]),
        }
        if S.ASSIGNMENT in df.columns and not is_reference:
            vc = df[S.ASSIGNMENT].astype(str).value_counts()
            out["assignment_counts"] = {str(k): int(v) for k, v in vc.items()}
        return out

    same_tx = bool(len(seg_df) == len(base_df) and np.array_equal(
        np.sort(seg_df[S.TX_ID].to_numpy()), np.sort(base_df[S.TX_ID].to_numpy())))
    return {
        "segger": one(seg_df, S.SEGGER_CELL_ID),
        "vendor": one(seg_df, S.CELL_ID, is_reference=True),
        "nearest_nucleus": one(base_df, S.SEGGER_CELL_ID),
        "mecr_gene_pairs": [[a, b] for a, b in zip(pairs["gene_a"], pairs["gene_b"])],
        "n_mecr_gene_pairs": int(len(pairs)),
        "n_nucleus_bearing_vendor_cells": int(len(per_ref)),
        "baseline_same_transcripts": same_tx,
    }


def targets(d: dict) -> dict:
    seg, ven = d["segger"], d["vendor"]
    out = {}
    if seg.get("agreement") is not None:
        out["agreement_ge_0.90"] = {"met": seg["agreement"] >= TARGET_AGREEMENT,
                                    "value": seg["agreement"], "target": TARGET_AGREEMENT}
    if seg.get("mecr") is not None and ven.get("mecr") is not None:
        out["mecr_le_vendor"] = {"met": seg["mecr"] <= ven["mecr"], "segger": seg["mecr"], "vendor": ven["mecr"],
                                 "difference": seg["mecr"] - ven["mecr"]}
    if seg.get("fraction_assigned") is not None and ven.get("fraction_assigned") is not None:
        diff = seg["fraction_assigned"] - ven["fraction_assigned"]
        out["fraction_within_10_points"] = {"met": abs(diff) <= TARGET_FRACTION_POINTS, "difference_points": 100 * diff}
    if out:
        out["all_met"] = all(v["met"] for v in out.values())
    return out


# --------------------------------------------------------------------------------------------
# one dataset
# --------------------------------------------------------------------------------------------


def bench_dataset(name: str, crop: Path, epochs: int, work: Path, seed: int) -> dict:
    import pandas as pd

    out_dir = work / name
    if out_dir.exists():
        shutil.rmtree(out_dir)
    work.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "segger.cli.main", "--quiet", "segment", str(crop), "--output", str(out_dir),
           "--device", "cpu", "--epochs", str(epochs), "--seed", str(seed)]
    print(f"[{name}] {' '.join(cmd[1:])}", file=sys.stderr, flush=True)
    load_before = list(os.getloadavg())
    seg_run = run_measured(cmd, work / f"{name}.segment.log")
    rec: dict = {"input": str(crop), "epochs": epochs, "seed": seed, "command": " ".join(["python"] + cmd[1:]),
                 "finished": seg_run["rc"] == 0, "returncode": seg_run["rc"], "wall_s": seg_run["wall_s"],
                 "peak_rss_mb": seg_run["peak_rss_mb"], "cpu_user_s": seg_run["cpu_user_s"],
                 "cpu_sys_s": seg_run["cpu_sys_s"], "load_avg_before": load_before,
                 "load_avg_after": list(os.getloadavg()), "description": DATASETS[name][2]}
    print(f"[{name}] segment rc={seg_run['rc']} wall {seg_run['wall_s']:.1f}s peak RSS {seg_run['peak_rss_mb']:.0f} MB",
          file=sys.stderr, flush=True)
    if seg_run["rc"] != 0:
        rec["error"] = _tail(work / f"{name}.segment.log")
        return rec

    run = json.loads((out_dir / "segger_run.json").read_text())
    rec["timings"] = run.get("timings", {})
    extra = run.get("extra", {})
    hist = extra.get("training_history") or []
    aurocs = [h["val_auroc"] for h in hist if h.get("val_auroc") is not None]
    rec["val_auroc"] = _num(aurocs[-1]) if aurocs else None
    rec["val_auroc_best"] = _num(max(aurocs)) if aurocs else None
    rec["val_f1"] = _num(hist[-1].get("val_f1")) if hist else None
    rec["train_loss"] = _num(hist[-1].get("loss")) if hist else None
    rec["epochs_run"] = len(hist)
    rec["n_cells_run_json"] = extra.get("n_cells")
    rec["nuclei_source"] = run.get("parameters", {}).get("nuclei_source")
    rec["graph_summary"] = extra.get("graph_summary")
    rec["filter_report"] = extra.get("filter_report")
    rec["warnings"] = extra.get("warnings")
    qc = json.loads((out_dir / "qc.json").read_text())

    # baseline in its own child process, measured the same way
    base_pq = work / f"{name}.baseline.parquet"
    bcmd = [sys.executable, str(Path(__file__).resolve()), "--_baseline", str(crop), str(base_pq)]
    base_run = run_measured(bcmd, work / f"{name}.baseline.log")
    print(f"[{name}] baseline rc={base_run['rc']} wall {base_run['wall_s']:.1f}s", file=sys.stderr, flush=True)
    if base_run["rc"] != 0:
        rec["error"] = "baseline failed: " + _tail(work / f"{name}.baseline.log")
        return rec
    base_df = pd.read_parquet(base_pq)
    base_meta = json.loads(base_pq.with_suffix(".json").read_text())

    seg_df = pd.read_parquet(out_dir / "segger_transcripts.parquet")
    t = time.perf_counter()
    scores = score_methods(seg_df, base_df)
    rec["scoring_s"] = time.perf_counter() - t
    rec.update(scores)
    rec["nearest_nucleus"].update({"wall_s": base_run["wall_s"], "peak_rss_mb": base_run["peak_rss_mb"],
                                   "timings": base_meta["timings"]})
    # cross-check against the pipeline's own qc.json (same pair finder, same definitions)
    rec["qc_json_crosscheck"] = {
        "segger_mecr": _num(qc.get("mecr")), "vendor_mecr": _num((qc.get("reference") or {}).get("mecr")),
        "agreement": _num(qc.get("agreement")), "fraction_assigned": _num(qc.get("fraction_assigned")),
    }
    rec["targets"] = targets(rec)
    return rec


# --------------------------------------------------------------------------------------------
# table
# --------------------------------------------------------------------------------------------


def _f(v, fmt):
    return "–" if v is None else format(v, fmt)


def markdown_table(results: dict) -> str:
    head = ("| dataset | method | fraction assigned | agreement | MECR | cells | wall s | peak RSS MB | val AUROC |\n"
            "|---|---|---:|---:|---:|---:|---:|---:|---:|")
    rows = [head]
    for name, d in results.items():
        label = f"{name} ({d.get('epochs')} ep)"
        if not d.get("finished") or "segger" not in d:
            rows.append(f"| {label} | segger | FAILED (rc {d.get('returncode')}) | | | | {_f(d.get('wall_s'), '.1f')} | "
                        f"{_f(d.get('peak_rss_mb'), '.0f')} | |")
            continue
        for meth, title in (("segger", "Segger"), ("vendor", "vendor (cell_id)"), ("nearest_nucleus", "nearest nucleus")):
            m = d[meth]
            frac = _f(None if m["fraction_assigned"] is None else 100 * m["fraction_assigned"], ".1f")
            agr = "1 (ref.)" if meth == "vendor" else _f(m["agreement"], ".3f")
            if meth == "segger":
                wall, rss, auc = d["wall_s"], d["peak_rss_mb"], d.get("val_auroc")
            elif meth == "nearest_nucleus":
                wall, rss, auc = m.get("wall_s"), m.get("peak_rss_mb"), None
            else:
                wall = rss = auc = None
            rows.append(f"| {label if meth == 'segger' else ''} | {title} | {frac}% | {agr} | {_f(m['mecr'], '.4f')} | "
                        f"{m['n_cells']:,} | {_f(wall, '.1f')} | {_f(rss, '.0f')} | {_f(auc, '.3f')} |")
    return "\n".join(rows)


# --------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------


def parse_epochs(spec: str | None, names: list[str]) -> dict[str, int]:
    eps = {n: DATASETS[n][1] for n in names}
    if not spec:
        return eps
    if spec.strip().isdigit():
        return {n: int(spec) for n in names}
    for part in spec.split(","):
        k, _, v = part.partition("=")
        k = k.strip()
        if k not in DATASETS or not v.strip().isdigit():
            raise SystemExit(f"--epochs: expected N or name=N[,name=N] with names {list(DATASETS)}, got {spec!r}")
        if k in eps:
            eps[k] = int(v)
    return eps


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--_baseline"]:
        return baseline_child(argv[1], argv[2])
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", required=True, help="write the results here")
    p.add_argument("--datasets", default=",".join(DATASETS), help=f"comma list from {list(DATASETS)}")
    p.add_argument("--epochs", default=None,
                   help="training epochs: N for every crop, or name=N[,name=N] "
                        f"(default {', '.join(f'{k}={v[1]}' for k, v in DATASETS.items())})")
    p.add_argument("--data-root", default=None,
                   help="folder holding the crops (default ../shared/data from the repository, else /work/shared/data)")
    p.add_argument("--workdir", default=None, help="keep segger outputs here (default: a temporary folder, removed)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--markdown", default=None, help="also write the Markdown table to this file")
    a = p.parse_args(argv)

    names = [n.strip() for n in a.datasets.split(",") if n.strip()]
    bad = [n for n in names if n not in DATASETS]
    if bad:
        p.error(f"unknown dataset(s) {bad}; choose from {list(DATASETS)}")
    epochs = parse_epochs(a.epochs, names)
    root = Path(a.data_root) if a.data_root else default_data_root()
    tmp = None
    if a.workdir:
        work = Path(a.workdir)
    else:
        tmp = tempfile.mkdtemp(prefix="segger-bench-")
        work = Path(tmp)

    started = _dt.datetime.now(_dt.timezone.utc)
    load_start = list(os.getloadavg())
    t0 = time.perf_counter()
    results: dict = {}
    try:
        for n in names:
            crop = root / DATASETS[n][0]
            if not crop.is_dir():
                results[n] = {"input": str(crop), "finished": False, "error": f"{crop} not found (use --data-root)"}
                print(f"[{n}] missing {crop}", file=sys.stderr)
                continue
            results[n] = bench_dataset(n, crop, epochs[n], work, a.seed)
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)

    out = {
        "created_utc": started.isoformat(timespec="seconds"),
        "command": "python benchmarks/quality.py " + " ".join(argv),
        "total_wall_s": time.perf_counter() - t0,
        "machine": {**machine_info(), "load_avg_at_start": load_start, "load_avg_at_end": list(os.getloadavg())},
        "settings": {"device": "cpu", "epochs": epochs, "seed": a.seed, "data_root": str(root),
                     "gene_pairs": {"source": "vendor cell_id, nucleus-only profiles", **PAIR_KW},
                     "targets": {"agreement_min": TARGET_AGREEMENT, "mecr": "segger <= vendor",
                                 "fraction_assigned_max_diff_points": 100 * TARGET_FRACTION_POINTS}},
        "datasets": results,
    }
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps(out, indent=1, allow_nan=False, default=str) + "\n")
    table = markdown_table(results)
    if a.markdown:
        Path(a.markdown).write_text(table + "\n")
    print(table)
    print(f"\nwrote {a.json} ({out['total_wall_s']:.0f} s)")
    return 0 if all(r.get("finished") and "segger" in r for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
