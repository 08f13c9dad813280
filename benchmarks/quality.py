#!/usr/bin/env python
"""Honest quality benchmark of Segger (issue 10): real crops, simulated tissues with a known truth,
baselines, a peer and ablations, all scored by ONE implementation (:mod:`segger.validation`).

Per dataset (the shared crops ``lung``, ``segtraq``, ``bidcell``; the simulated tissues
``sim_lung``, ``sim_segtraq``, ``sim_bidcell`` from ``benchmarks/simulate.py``; any ``--input PATH``):

* methods, each in its own child process (wall time and peak RSS from that child's rusage):
  - ``segger``: ``segger.pipeline.segment(input, out, train=TrainConfig(...), device="cpu")`` with
    the defaults; ablations ``segger_distance`` / ``segger_expression`` (``TrainConfig.link_terms``)
    when the installed segger has that field, else recorded as skipped;
  - ``nearest_nucleus``: ``segger.prediction.nearest_nucleus_assignment(build_graph(...), max_dist=12)``;
  - ``comseg``: the peer, in its own venv (``benchmarks/peers/setup_comseg.sh``), defaults, vendor
    nuclei as prior (transcripts inside a nucleus polygon), mapped back by transcript id;
  - ``vendor``: the reference ``cell_id`` (no run); ``nearest_nucleus_exact``: the same rule over
    all nuclei (not only the graph's candidates), computed in the scorer (no run).
* metrics (``docs/benchmarks.md`` and ``shared/docs/quality-metrics.md``): assigned fraction;
  best-match and mutual-best-match agreement with the vendor on nucleated vendor cells; MECR on
  all assigned transcripts and at equal coverage for every pair of methods; cells, median
  transcripts per cell; moves away from the nearest nucleus and their gene-likelihood support;
  on simulated tissues transcript-assignment F1 and ARI against the truth.

    python benchmarks/quality.py --json OUT.json [--datasets lung,sim_lung] [--input DIR]...
                                 [--quick] [--epochs N] [--docs docs/benchmarks.md] [--no-comseg]
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
HERE = Path(__file__).resolve().parent
COMSEG_PY = HERE / "peers" / ".venv-comseg" / "bin" / "python"

CROPS = {
    "lung": ("xenium_lung_segger", "15k-transcript human lung crop, vendor nucleus polygons"),
    "segtraq": ("xenium_breast_segtraq", "23.7k-transcript breast crop, vendor nucleus polygons"),
    "bidcell": ("xenium_breast_bidcell", "186k-transcript breast crop, nuclei approximated from nuclear transcripts"),
}
SIMS = {f"sim_{k}": k for k in ("lung", "segtraq", "bidcell")}
ALL = list(CROPS) + list(SIMS)
# Segger's own default epochs everywhere, except the 186k crop (≈16 s/epoch on 2 cores), capped so
# that the full run stays near 15 minutes
EPOCH_CAP = {"bidcell": 8}
ABLATION_DATASETS = ("lung", "segtraq", "sim_lung", "sim_segtraq")
ABLATIONS = {"segger_distance": "distance", "segger_expression": "expression"}
COMSEG_MAX_TX = 60_000

# targets of issue 10
T_MUTUAL = 0.93
T_MECR_REL = -0.05
T_FRACTION = 0.05
T_FRACTION_SPARSE = 0.10
T_SUPPORTED = 0.70
T_F1_OVER_NN = 0.05

METHOD_TITLES = {
    "segger": "Segger", "segger_distance": "Segger, distance only", "segger_expression": "Segger, expression only",
    "vendor": "vendor (cell_id)", "nearest_nucleus": "nearest nucleus (graph, ≤12 µm)",
    "nearest_nucleus_exact": "nearest nucleus (all nuclei, ≤12 µm)", "comseg": "ComSeg (peer)",
}


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def default_data_root() -> Path:
    cand = (REPO / ".." / "shared" / "data").resolve()
    return cand if cand.is_dir() else Path("/work/shared/data")


def machine_info() -> dict:
    info: dict = {"cpu_count": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                  "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None}
    for key, fname, field in (("cpu_model", "/proc/cpuinfo", "model name"), ("ram_gb", "/proc/meminfo", "MemTotal")):
        try:
            for line in Path(fname).read_text().splitlines():
                if line.startswith(field):
                    v = line.split(":", 1)[1].strip()
                    info[key] = round(int(v.split()[0]) / 1024 / 1024, 1) if key == "ram_gb" else v
                    break
        except OSError:
            info[key] = None
    for mod in ("torch", "torch_geometric", "numpy", "pandas", "segger"):
        try:
            info[mod] = __import__(mod).__version__
        except Exception:
            info[mod] = None
    try:
        info["git_commit"] = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True,
                                            text=True, timeout=10).stdout.strip() or None
        info["git_dirty"] = bool(subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "src"],
                                                capture_output=True, text=True, timeout=10).stdout.strip())
    except Exception:
        info["git_commit"] = None
    return info


def run_measured(cmd: list[str], log: Path, cwd: Path = REPO, timeout: float | None = None) -> dict:
    """Run ``cmd`` as a child; rc, wall s, peak RSS MB and CPU s of that child alone (``os.wait4``)."""
    with open(log, "wb") as fh:
        t = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=str(cwd))
        if timeout is None:
            _, status, ru = os.wait4(proc.pid, 0)
        else:
            deadline = t + timeout
            while True:
                pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                if time.perf_counter() > deadline:
                    proc.kill()
                    _, status, ru = os.wait4(proc.pid, 0)
                    break
                time.sleep(0.2)
        wall = time.perf_counter() - t
    rc = os.waitstatus_to_exitcode(status)
    rss_kb = ru.ru_maxrss / 1024 if sys.platform == "darwin" else ru.ru_maxrss
    return {"rc": rc, "wall_s": wall, "peak_rss_mb": rss_kb / 1024, "cpu_s": ru.ru_utime + ru.ru_stime,
            "timed_out": timeout is not None and wall > timeout}


def _num(v):
    if v is None:
        return None
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _tail(path: Path, n: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def has_link_terms() -> bool:
    import dataclasses

    from segger.training import TrainConfig

    return "link_terms" in {f.name for f in dataclasses.fields(TrainConfig)}


# --------------------------------------------------------------------------------------------
# children
# --------------------------------------------------------------------------------------------


def segger_child(crop: str, out: str, link_terms: str, epochs: str, seed: str) -> int:
    """``quality.py --_segger CROP OUT LINK_TERMS EPOCHS SEED``: one Segger run through the Python API."""
    import dataclasses

    import torch

    from segger import schema as S
    from segger.pipeline import segment
    from segger.training import TrainConfig

    kw: dict = {"seed": int(seed)}
    if epochs != "default":
        kw["epochs"] = int(epochs)
    if link_terms != "default":
        kw["link_terms"] = link_terms
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    cfg = TrainConfig(**{k: v for k, v in kw.items() if k in names})
    import inspect

    from segger.pipeline import iter_segment

    extra = {}
    # an ablation is expected to be weak: measure it instead of refusing it (the defaults get no such pass)
    if link_terms != "default" and "allow_weak_model" in inspect.signature(iter_segment).parameters:
        extra["allow_weak_model"] = True
    res = segment(crop, Path(out) / "segger_out", train=cfg, device="cpu", **extra)
    cols = [c for c in (S.TX_ID, S.SEGGER_CELL_ID, S.ASSIGNMENT, S.SCORE) if c in res.result.columns]
    df = res.result[cols].copy()
    df[S.SEGGER_CELL_ID] = df[S.SEGGER_CELL_ID].astype(str)
    if S.ASSIGNMENT in df:
        df[S.ASSIGNMENT] = df[S.ASSIGNMENT].astype(str)
    df.to_parquet(Path(out) / "assignment.parquet", index=False)
    run = json.loads((res.output / "segger_run.json").read_text())
    meta = {"timings": res.timings, "torch_threads": torch.get_num_threads(),
            "training_history": (run.get("extra") or {}).get("training_history") or [],
            "train_config": dataclasses.asdict(cfg), "warnings": list(res.warnings)}
    (Path(out) / "meta.json").write_text(json.dumps(meta, default=str))
    shutil.rmtree(Path(out) / "segger_out", ignore_errors=True)
    return 0


def baseline_child(crop: str, out: str) -> int:
    """``quality.py --_baseline CROP OUT``: nearest-nucleus assignment on segger's graph."""
    from segger import schema as S
    from segger.data import build_graph
    from segger.io import read_sample
    from segger.prediction import nearest_nucleus_assignment

    t = time.perf_counter()
    sample = read_sample(crop)
    bundle = build_graph(sample.transcripts, sample.nuclei)
    res = nearest_nucleus_assignment(bundle, max_dist=12.0)
    df = res[[S.TX_ID, S.SEGGER_CELL_ID]].copy()
    df[S.SEGGER_CELL_ID] = df[S.SEGGER_CELL_ID].astype(str)
    df.to_parquet(Path(out) / "assignment.parquet", index=False)
    (Path(out) / "meta.json").write_text(json.dumps({"seconds": time.perf_counter() - t}))
    return 0


# --------------------------------------------------------------------------------------------
# one dataset
# --------------------------------------------------------------------------------------------


def run_method_child(kind: str, crop: Path, work: Path, link_terms: str = "default", epochs: str = "default",
                     seed: int = 0) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    if kind == "segger":
        cmd = [sys.executable, str(Path(__file__).resolve()), "--_segger", str(crop), str(work), link_terms, epochs,
               str(seed)]
    else:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--_baseline", str(crop), str(work)]
    m = run_measured(cmd, work / "log.txt")
    m["command"] = " ".join(["python"] + cmd[1:])
    if m["rc"] != 0:
        m["error"] = _tail(work / "log.txt")
    return m


def run_comseg(sample, work: Path, timeout: float) -> dict:
    import numpy as np
    import pandas as pd

    from segger import schema as S
    from segger.validation import nearest_nucleus

    if not COMSEG_PY.exists():
        return {"rc": None, "skipped": f"ComSeg venv missing: run `bash benchmarks/peers/setup_comseg.sh` ({COMSEG_PY})"}
    work.mkdir(parents=True, exist_ok=True)
    tx, nuc = sample.transcripts, sample.nuclei.reset_index(drop=True)
    nid, nd = nearest_nucleus(tx[S.X], tx[S.Y], nuc)
    idx = pd.Index(nuc[S.BD_ID].astype(str)).get_indexer(nid)
    prior = np.where(nd == 0, idx + 1, 0)
    pd.DataFrame({"transcript_id": tx[S.TX_ID].to_numpy(np.int64), "x": tx[S.X].to_numpy(), "y": tx[S.Y].to_numpy(),
                  "gene": tx[S.GENE].astype(str).to_numpy(), "in_nucleus": prior}).to_parquet(work / "spots.parquet")
    pd.DataFrame({"in_nucleus": np.arange(1, len(nuc) + 1), "x": nuc[S.X].to_numpy(),
                  "y": nuc[S.Y].to_numpy()}).to_parquet(work / "centroids.parquet")
    cmd = [str(COMSEG_PY), str(HERE / "peers" / "run_comseg.py"), str(work)]
    m = run_measured(cmd, work / "log.txt", cwd=HERE / "peers", timeout=timeout)
    m["command"] = " ".join(cmd)
    if m["rc"] != 0 or not (work / "comseg.parquet").exists():
        m["error"] = ("timed out after %.0f s" % timeout) if m.get("timed_out") else _tail(work / "log.txt")
        return m
    out = pd.read_parquet(work / "comseg.parquet")
    ids = nuc[S.BD_ID].astype(str).to_numpy(dtype=object)
    cell = np.full(len(out), S.UNASSIGNED, dtype=object)
    ok = (out["comseg_cell"].to_numpy() > 0) & (out["comseg_cell"].to_numpy() <= len(ids))
    cell[ok] = ids[out["comseg_cell"].to_numpy()[ok] - 1]
    pd.DataFrame({S.TX_ID: out["transcript_id"].to_numpy(), S.SEGGER_CELL_ID: cell}).to_parquet(
        work / "assignment.parquet", index=False)
    try:
        m["peer"] = json.loads((work / "comseg.json").read_text())
    except OSError:
        pass
    return m


def _history_summary(hist: list[dict]) -> dict:
    def last(key):
        vals = [h.get(key) for h in hist if h.get(key) is not None]
        return _num(vals[-1]) if vals else None

    return {"epochs_run": len(hist), "val_auroc": last("val_auroc"), "val_auroc_dot": last("val_auroc_dot"),
            "val_f1": last("val_f1"), "train_loss": last("loss")}


def score_dataset(frame, methods: list[str], pairs, truth_col: str | None) -> dict:
    """Every metric for every method column of ``frame`` (one shared transcript set)."""
    from segger import schema as S
    from segger.validation import (agreement_scores, fraction_assigned, geometry_moves, mecr, mecr_equal_coverage,
                                   transcripts_per_cell, truth_scores)

    out: dict = {}
    for m in methods:
        tpc = transcripts_per_cell(frame, m)
        ag = agreement_scores(frame, m, S.CELL_ID)
        gm = geometry_moves(frame, m, "nearest_nucleus_id", S.CELL_ID)
        rec = {
            "fraction_assigned": _num(fraction_assigned(frame, m)),
            "agreement_best_match": _num(ag["best_match"]), "agreement_mutual": _num(ag["mutual"]),
            "n_nucleated_vendor_cells": ag["n_ref_cells"], "n_mutual_pairs": ag["n_pairs"],
            "mecr": _num(mecr(frame, pairs, m, min_transcripts=5)) if len(pairs) else None,
            "n_cells": int(tpc["n_cells"]), "transcripts_per_cell_median": _num(tpc["median"]),
            "moved": _num(gm["moved"]), "moves_supported": _num(gm["supported"]),
            "moves_vendor_match": _num(gm["moved_vendor_match"]), "n_moved": gm["n_moved"],
            "in_non_nucleus_cell": _num(gm["in_non_nucleus_cell"]),
        }
        if truth_col is not None:
            ts = truth_scores(frame, m, truth_col)
            rec.update({"truth_f1": _num(ts["f1"]), "truth_ari": _num(ts["ari"]),
                        "truth_precision": _num(ts["precision"]), "truth_recall": _num(ts["recall"]),
                        "truth_background_assigned": _num(ts["background_assigned"])})
        out[m] = rec
    eq: dict = {}
    if len(pairs):
        for i, a in enumerate(methods):
            for b in methods[i + 1:]:
                r = mecr_equal_coverage(frame, pairs, a, b)
                eq[f"{a}|{b}"] = {"a": a, "b": b, "mecr_a": _num(r["a"]), "mecr_b": _num(r["b"]),
                                  "relative": _num(r["relative"]), "shared_fraction": _num(r["shared_fraction"])}
    return {"methods": out, "equal_coverage": eq}


def _eq(d: dict, a: str, b: str) -> dict | None:
    e = d["equal_coverage"].get(f"{a}|{b}")
    if e is not None:
        return e
    e = d["equal_coverage"].get(f"{b}|{a}")
    if e is None:
        return None
    rel = None if e["mecr_a"] in (None, 0) or e["mecr_b"] is None else (e["mecr_b"] - e["mecr_a"]) / e["mecr_a"]
    return {"a": a, "b": b, "mecr_a": e["mecr_b"], "mecr_b": e["mecr_a"], "relative": rel,
            "shared_fraction": e["shared_fraction"]}


def targets(d: dict, method: str = "segger") -> dict:
    ms = d["methods"]
    if method not in ms:
        return {}
    s, v = ms[method], ms["vendor"]
    out: dict = {}
    if s["agreement_mutual"] is not None:
        out["mutual_agreement"] = {"value": s["agreement_mutual"], "target": f"≥ {T_MUTUAL}",
                                   "met": s["agreement_mutual"] >= T_MUTUAL}
    for other in ("vendor", "nearest_nucleus"):
        e = _eq(d, method, other) if other in ms else None
        if e and e["relative"] is not None:
            out[f"mecr_eq_vs_{other}"] = {"value": e["relative"], "segger": e["mecr_a"], "other": e["mecr_b"],
                                          "target": "≤ −5 % (relative)", "met": e["relative"] <= T_MECR_REL}
    if s["fraction_assigned"] is not None and v["fraction_assigned"] is not None:
        tol = T_FRACTION_SPARSE if v["fraction_assigned"] <= 0.80 else T_FRACTION
        diff = s["fraction_assigned"] - v["fraction_assigned"]
        out["fraction_assigned"] = {"value": diff, "target": f"within {tol * 100:.0f} points", "met": abs(diff) <= tol}
    if s["moves_supported"] is not None:
        out["moves_supported"] = {"value": s["moves_supported"], "target": f"≥ {T_SUPPORTED}",
                                  "met": s["moves_supported"] >= T_SUPPORTED}
    if s.get("truth_f1") is not None:
        nn = ms.get("nearest_nucleus", {}).get("truth_f1")
        if nn is not None:
            out["f1_vs_nearest"] = {"value": s["truth_f1"] - nn, "target": "≥ +5 points",
                                    "met": s["truth_f1"] >= nn + T_F1_OVER_NN}
        peer = ms.get("comseg", {}).get("truth_f1")
        if peer is not None:
            out["f1_vs_peer"] = {"value": s["truth_f1"] - peer, "target": "≥ 0", "met": s["truth_f1"] >= peer}
    return out


def scoring_frame(sample):
    """The table every method's assignment is scored on: the sample's transcripts (id, gene, nuclear,
    vendor cell, x, y) with the vendor and nearest-nucleus columns (the baselines)."""
    import numpy as np
    import pandas as pd

    from segger import schema as S
    from segger.validation import nearest_nucleus

    tx = sample.transcripts
    frame = pd.DataFrame({S.TX_ID: tx[S.TX_ID].to_numpy(), S.GENE: tx[S.GENE].astype(str).to_numpy(),
                          S.NUCLEAR: tx[S.NUCLEAR].to_numpy(bool), S.CELL_ID: tx[S.CELL_ID].to_numpy(object),
                          S.X: tx[S.X].to_numpy(), S.Y: tx[S.Y].to_numpy()})
    frame["vendor"] = frame[S.CELL_ID]
    nid, nd = nearest_nucleus(frame[S.X], frame[S.Y], sample.nuclei)
    frame["nearest_nucleus_id"] = nid
    frame["nearest_nucleus_exact"] = np.where(nd <= 12.0, nid, S.UNASSIGNED)
    return frame


def bench_dataset(name: str, crop: Path, work: Path, a, truth_path: Path | None, desc: str) -> dict:
    import numpy as np
    import pandas as pd

    from segger import schema as S
    from segger.io import read_sample
    from segger.validation import quality_gene_pairs

    t0 = time.perf_counter()
    rec: dict = {"input": str(crop), "description": desc, "simulated": truth_path is not None, "runs": {},
                 "load_avg_before": list(os.getloadavg())}
    sample = read_sample(crop)
    frame = scoring_frame(sample)
    rec.update({"n_transcripts": int(len(frame)), "n_nuclei": int(len(sample.nuclei)),
                "nuclei_source": sample.nuclei_source})
    methods = ["vendor", "nearest_nucleus_exact"]

    epochs = str(a.epochs) if a.epochs else ("3" if a.quick else str(EPOCH_CAP.get(name, "default")))
    rec["epochs"] = epochs
    variants = [("segger", "default")]
    if name in a.ablation_datasets or a.ablation_datasets == ["all"]:
        if has_link_terms():
            variants += [(k, v) for k, v in ABLATIONS.items()]
        else:
            for k in ABLATIONS:
                rec["runs"][k] = {"skipped": "TrainConfig has no link_terms field yet (segger.training.train)"}
    for label, lt in variants:
        print(f"[{name}] {label} (epochs {epochs}) ...", file=sys.stderr, flush=True)
        m = run_method_child("segger", crop, work / label, lt, epochs, a.seed)
        rec["runs"][label] = m
        if m["rc"] == 0:
            meta = json.loads((work / label / "meta.json").read_text())
            m.update({"torch_threads": meta.get("torch_threads"), "timings": meta.get("timings"),
                      **_history_summary(meta.get("training_history") or [])})
            m["training_history"] = meta.get("training_history")
            methods.append(label)
        print(f"[{name}] {label} rc={m['rc']} {m['wall_s']:.1f}s {m['peak_rss_mb']:.0f} MB", file=sys.stderr, flush=True)

    print(f"[{name}] nearest nucleus ...", file=sys.stderr, flush=True)
    m = run_method_child("baseline", crop, work / "nearest_nucleus")
    rec["runs"]["nearest_nucleus"] = m
    if m["rc"] == 0:
        methods.append("nearest_nucleus")

    if a.no_comseg:
        rec["runs"]["comseg"] = {"skipped": "--no-comseg"}
    elif len(frame) > a.comseg_max_tx:
        rec["runs"]["comseg"] = {"skipped": f"{len(frame):,} transcripts > --comseg-max-tx {a.comseg_max_tx:,} "
                                            "(ComSeg ≈ 70 s per 13k transcripts here, pure-Python graph code)"}
    else:
        print(f"[{name}] comseg ...", file=sys.stderr, flush=True)
        m = run_comseg(sample, work / "comseg", a.comseg_timeout)
        rec["runs"]["comseg"] = m
        if m.get("rc") == 0 and (work / "comseg" / "assignment.parquet").exists():
            methods.append("comseg")
        print(f"[{name}] comseg rc={m.get('rc')} {m.get('wall_s', 0):.1f}s", file=sys.stderr, flush=True)

    for label in methods:
        if label in ("vendor", "nearest_nucleus_exact"):
            continue
        got = pd.read_parquet(work / label / "assignment.parquet")
        got = got.drop_duplicates(S.TX_ID)
        col = pd.Series(got[S.SEGGER_CELL_ID].to_numpy(object), index=got[S.TX_ID].to_numpy())
        frame[label] = col.reindex(frame[S.TX_ID].to_numpy()).fillna(S.UNASSIGNED).to_numpy(object)
        rec["runs"][label]["same_transcripts"] = bool(np.isin(frame[S.TX_ID], got[S.TX_ID]).all()
                                                      and len(got) == len(frame))
    truth_col = None
    if truth_path is not None:
        truth = pd.read_parquet(truth_path)
        tcol = pd.Series(truth["true_cell"].to_numpy(object), index=truth["transcript_id"].to_numpy())
        frame["truth"] = tcol.reindex(frame[S.TX_ID].to_numpy()).fillna(S.UNASSIGNED).to_numpy(object)
        truth_col = "truth"
        methods.append("truth")  # the truth itself, scored like a method (what a perfect one gets)

    pairs = quality_gene_pairs(frame, S.CELL_ID)
    rec["n_gene_pairs"] = int(len(pairs))
    t = time.perf_counter()
    rec.update(score_dataset(frame, methods, pairs, truth_col))
    rec["scoring_s"] = time.perf_counter() - t
    for label, r in rec["runs"].items():
        if label in rec["methods"]:
            rec["methods"][label].update({k: r.get(k) for k in ("wall_s", "peak_rss_mb", "cpu_s") if r.get(k) is not None})
            for k in ("val_auroc", "val_auroc_dot", "epochs_run", "torch_threads"):
                if r.get(k) is not None:
                    rec["methods"][label][k] = r[k]
    rec["targets"] = targets(rec)
    rec["load_avg_after"] = list(os.getloadavg())
    rec["seconds"] = time.perf_counter() - t0
    return rec


# --------------------------------------------------------------------------------------------
# tables
# --------------------------------------------------------------------------------------------


def _f(v, fmt, scale=1.0, unit=""):
    return "–" if v is None else format(v * scale, fmt) + unit


ORDER = ["segger", "segger_distance", "segger_expression", "vendor", "nearest_nucleus", "nearest_nucleus_exact",
         "comseg", "truth"]


def markdown(results: dict) -> str:
    lines = []
    head = ("| dataset | method | assigned | best-match agr. | **mutual agr.** | MECR | MECR eq. cov. vs vendor | "
            "vs nearest | cells | tx/cell | moved | moves supported | F1 (truth) | ARI | wall s | peak RSS MB | "
            "val AUROC | AUROC dot |")
    lines += ["**Per method** (MECR eq. cov.: this method's MECR / the other's, on the transcripts both assign; "
              "relative difference in brackets)", "", head, "|" + "---|" * 2 + "---:|" * 16]
    for ds, d in results.items():
        if "methods" not in d:
            lines.append(f"| {ds} | FAILED | {d.get('error', '')[:80]} |" + " |" * 15)
            continue
        first = True
        for m in ORDER:
            if m not in d["methods"]:
                if m in d.get("runs", {}) and d["runs"][m].get("skipped"):
                    lines.append(f"| {ds if first else ''} | {METHOD_TITLES.get(m, m)} | skipped: "
                                 f"{d['runs'][m]['skipped']} |" + " |" * 15)
                    first = False
                continue
            r = d["methods"][m]
            cells = []
            for other in ("vendor", "nearest_nucleus"):
                e = _eq(d, m, other) if m != other else None
                cells.append("–" if not e or e["mecr_a"] is None else
                             f"{e['mecr_a']:.4f} / {e['mecr_b']:.4f} ({_f(e['relative'], '+.1f', 100, ' %')})")
            title = METHOD_TITLES.get(m, m) if m != "truth" else "truth (simulated)"
            lines.append(
                f"| {ds if first else ''} | {title} | {_f(r['fraction_assigned'], '.1f', 100, ' %')} | "
                f"{_f(r['agreement_best_match'], '.3f')} | {_f(r['agreement_mutual'], '.3f')} | {_f(r['mecr'], '.4f')} | "
                f"{cells[0]} | {cells[1]} | {r['n_cells']:,} | {_f(r['transcripts_per_cell_median'], '.0f')} | "
                f"{_f(r['moved'], '.1f', 100, ' %')} | {_f(r['moves_supported'], '.1f', 100, ' %')} | "
                f"{_f(r.get('truth_f1'), '.3f')} | {_f(r.get('truth_ari'), '.3f')} | {_f(r.get('wall_s'), '.1f')} | "
                f"{_f(r.get('peak_rss_mb'), '.0f')} | {_f(r.get('val_auroc'), '.3f')} | {_f(r.get('val_auroc_dot'), '.3f')} |")
            first = False
    lines += ["", "**Targets of issue 10 for Segger (defaults)**", "",
              "| dataset | mutual agr. ≥ 0.93 | MECR eq. cov. ≤ −5 % vs vendor | ≤ −5 % vs nearest nucleus | "
              "assigned fraction vs vendor | moves supported ≥ 70 % | sim. F1 ≥ nearest + 5 pts | sim. F1 ≥ peer |",
              "|---|---|---|---|---|---|---|---|"]
    for ds, d in results.items():
        t = d.get("targets") or {}

        def cell(key, fmt, scale=1.0, suffix=""):
            x = t.get(key)
            if not x:
                return "–"
            return f"{'**pass**' if x['met'] else 'miss'} ({_f(x['value'], fmt, scale)}{suffix})"

        lines.append(f"| {ds} | {cell('mutual_agreement', '.3f')} | {cell('mecr_eq_vs_vendor', '+.1f', 100, ' %')} | "
                     f"{cell('mecr_eq_vs_nearest_nucleus', '+.1f', 100, ' %')} | "
                     f"{cell('fraction_assigned', '+.1f', 100, ' pts')} | {cell('moves_supported', '.1f', 100, ' %')} | "
                     f"{cell('f1_vs_nearest', '+.1f', 100, ' pts')} | {cell('f1_vs_peer', '+.1f', 100, ' pts')} |")
    return "\n".join(lines)


DOC_BEGIN = "<!-- quality-table:begin (generated by benchmarks/quality.py from its JSON; do not edit) -->"
DOC_END = "<!-- quality-table:end -->"


def update_docs(doc: Path, table: str, meta: dict) -> None:
    m = meta["machine"]
    info = (f"Run {meta['started']} · commit `{(m.get('git_commit') or '?')[:10]}`"
            f"{' (src dirty)' if m.get('git_dirty') else ''} · {m.get('cpu_model')} ({m.get('cpu_affinity')} cores) · "
            f"torch {m.get('torch')} on {meta.get('torch_threads_used')} thread(s) · total {meta['total_s']:.0f} s · "
            f"`{meta['command']}`")
    from _docs import replace_section

    replace_section(doc, DOC_BEGIN, DOC_END, info + "\n\n" + table, create=False)


# --------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--_segger"]:
        return segger_child(*argv[1:6])
    if argv[:1] == ["--_baseline"]:
        return baseline_child(argv[1], argv[2])
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", required=True, help="write the results here")
    p.add_argument("--datasets", default=",".join(ALL), help=f"comma list from {ALL} ('none' for only --input)")
    p.add_argument("--input", action="append", default=[], help="another Xenium-like folder (repeatable)")
    p.add_argument("--quick", action="store_true", help="3 epochs, for smoke runs")
    p.add_argument("--epochs", type=int, default=None, help="training epochs for every Segger run")
    p.add_argument("--ablations", default=",".join(ABLATION_DATASETS),
                   help="datasets that get the link_terms ablations ('all' or a comma list)")
    p.add_argument("--no-comseg", action="store_true")
    p.add_argument("--comseg-max-tx", type=int, default=COMSEG_MAX_TX)
    p.add_argument("--comseg-timeout", type=float, default=420.0)
    p.add_argument("--data-root", default=None)
    p.add_argument("--workdir", default=None, help="keep the runs here (default: a temporary folder, removed)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--markdown", default=None, help="also write the Markdown tables to this file")
    p.add_argument("--docs", default=None, help="replace the generated table in this Markdown file (docs/benchmarks.md)")
    a = p.parse_args(argv)
    a.ablation_datasets = [s.strip() for s in a.ablations.split(",") if s.strip()]

    names = [] if a.datasets.strip() == "none" else [n.strip() for n in a.datasets.split(",") if n.strip()]
    bad = [n for n in names if n not in ALL]
    if bad:
        p.error(f"unknown dataset(s) {bad}; choose from {ALL}")
    root = Path(a.data_root) if a.data_root else default_data_root()
    tmp = None
    if a.workdir:
        work = Path(a.workdir)
        work.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.mkdtemp(prefix="segger-quality-")
        work = Path(tmp)
    t0 = time.perf_counter()
    started = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    results: dict = {}
    sims: dict = {}
    try:
        need_sims = [SIMS[n] for n in names if n in SIMS]
        if need_sims:
            sys.path.insert(0, str(HERE))
            import simulate

            for t in need_sims:
                sims[f"sim_{t}"] = simulate.simulate(simulate.TISSUES[t], root, work / "sim", seed=a.seed)
        jobs = [(n, (root / CROPS[n][0]) if n in CROPS else Path(sims[n]["folder"]),
                 Path(sims[n]["truth"]) if n in SIMS else None,
                 CROPS[n][1] if n in CROPS else "simulated tissue (benchmarks/simulate.py) from the "
                 f"{SIMS[n]} crop's cells") for n in names]
        for i, path in enumerate(a.input):
            jobs.append((f"input{i + 1}:{Path(path).name}", Path(path), None, f"--input {path}"))
        for name, path, truth, desc in jobs:
            print(f"== {name}: {path}", file=sys.stderr, flush=True)
            try:
                results[name] = bench_dataset(name, path, work / name.replace(":", "_"), a, truth, desc)
                if name in sims:
                    results[name]["simulation"] = {k: v for k, v in sims[name].items() if k not in ("folder", "truth")}
            except Exception as exc:  # keep the other datasets
                import traceback

                traceback.print_exc()
                results[name] = {"input": str(path), "error": f"{type(exc).__name__}: {exc}"}
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    threads = sorted({r.get("torch_threads") for d in results.values() for r in (d.get("runs") or {}).values()
                      if isinstance(r, dict) and r.get("torch_threads") is not None})
    meta = {"started": started, "total_s": time.perf_counter() - t0, "machine": machine_info(),
            "torch_threads_used": threads[0] if len(threads) == 1 else threads,
            "command": "python benchmarks/quality.py " + " ".join(argv),
            "comseg_venv": str(COMSEG_PY.relative_to(REPO)) if COMSEG_PY.exists() else None,
            "link_terms_available": has_link_terms(),
            "definitions": "shared/docs/quality-metrics.md; segger.validation (quality_gene_pairs, agreement_scores, "
                           "mecr(min_transcripts=5), mecr_equal_coverage, geometry_moves, truth_scores)"}
    out = {"meta": meta, "results": results}
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps(out, indent=1, default=str))
    table = markdown(results)
    print(table)
    if a.markdown:
        Path(a.markdown).write_text(table + "\n")
    if a.docs:
        update_docs(Path(a.docs), table, meta)
    return 1 if any("error" in d for d in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
