"""Simulated-click benchmark: do a few corrections on one half improve the other half?

For N in --clicks: pick the N most confidently wrong transcripts (predicted cell ≠ the reference
cell, highest score first) in the left half of the crop (x < median), correct them to the
reference cell, fine-tune, re-predict, and report agreement with the reference on the right half
before and after, plus the wall time from "fine-tune" to updated assignments.

    python benchmarks/corrections.py --input src/segger/sample_data/xenium_breast --json out.json

Review-queue mode (issue 12 #11), on simulated tissues with a known truth (``benchmarks/simulate.py``):
clicks on whole cells (:class:`ClickEval`), picked from ``segger.validation.review_queue`` in order
or at random (``--seeds`` draws), N = 5/10/25/50; the errors each removes and the ratio go into the
JSON's ``review_queue`` key (other keys kept):

    python benchmarks/corrections.py --review-queue --sims /tmp/sim --tissues lung,segtraq,bidcell \
        --json benchmarks/results/corrections.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd



# --------------------------------------------------------------------------------------------
# review-queue mode (issue 12 #11): clicks on whole cells of a simulated tissue with a known truth
# --------------------------------------------------------------------------------------------


class ClickEval:
    """Errors of a result against a simulated truth, and the errors that clicks on cells remove.

    The truth label of a transcript, in the result's label space: its true cell's nucleus id; for a
    cell without a nucleus in the plane its true cell (``true-…``); ``UNASSIGNED`` for background.
    A predicted fragment stands for the nucleus-free true cell it holds most of (one fragment per
    true cell, the one holding most of it); any other label stands for itself. A transcript is
    **wrong** when the label it stands for is not its truth label.

    A **click on cell c** fixes that cell the way a person would: every transcript in ``c`` and
    every transcript of the true cell ``c`` stands for is corrected to its truth (the existing
    benchmark's click, ``new_cell`` = the truth, for all of them). The errors removed by clicks
    on cells ``c1 … cN`` = the wrong transcripts among the union of their fixed sets.
    """

    def __init__(self, result: pd.DataFrame, truth: pd.DataFrame):
        from segger import schema as S

        t = truth.set_index("transcript_id").loc[result[S.TX_ID].to_numpy()]
        tn = t["true_nucleus"].astype(str).to_numpy(dtype=object)
        tc = t["true_cell"].astype(str).to_numpy(dtype=object)
        self.truth = np.where(tn != S.UNASSIGNED, tn, tc)
        from segger.validation import unassigned_mask

        pred = result[S.SEGGER_CELL_ID].astype(str).to_numpy(dtype=object)
        pred[unassigned_mask(result[S.SEGGER_CELL_ID])] = S.UNASSIGNED
        nuc_ids = set(truth["true_nucleus"].astype(str)) - {S.UNASSIGNED}
        is_frag = np.array([v != S.UNASSIGNED and v not in nuc_ids for v in pred])
        stands = pred.copy()
        if is_frag.any():
            free = is_frag & (tn == S.UNASSIGNED) & (tc != S.UNASSIGNED)
            ct = pd.DataFrame({"frag": pred[free], "true": tc[free]}).value_counts().reset_index(name="n")
            ct = ct.sort_values(["n", "frag", "true"], ascending=[False, True, True], kind="stable")
            ct = ct.drop_duplicates("true").drop_duplicates("frag")
            m = dict(zip(ct["frag"], ct["true"]))
            stands[is_frag] = [m.get(v, v) for v in pred[is_frag]]
        self.pred, self.stands = pred, stands
        self.wrong = stands != self.truth
        self.cells = np.array(sorted(set(pred) - {S.UNASSIGNED}), dtype=object)
        by_pred = pd.Series(np.arange(len(pred))).groupby(pred).indices
        by_truth = pd.Series(np.arange(len(pred))).groupby(self.truth).indices
        rep = dict(zip(pred, stands))
        empty = np.zeros(0, dtype=np.int64)
        self.fixes = {c: np.union1d(by_pred.get(c, empty), by_truth.get(rep[c], empty)) for c in self.cells}
        self.errors_per_cell = {c: int(self.wrong[self.fixes[c]].sum()) for c in self.cells}

    def removed(self, clicks: list, ns: list[int]) -> dict[int, int]:
        """Errors removed after the first N clicks, for each N in ``ns``."""
        fixed = np.zeros(len(self.wrong), dtype=bool)
        out, done = {}, 0
        for n in sorted(ns):
            for c in clicks[done:n]:
                fixed[self.fixes.get(c, np.zeros(0, dtype=np.int64))] = True
            done = max(done, n)
            out[n] = int((fixed & self.wrong).sum())
        return out

    def compare(self, queue_cells: list, ns: list[int], seeds: int = 10) -> dict:
        """Errors removed by the queue's top cells vs random cells (``seeds`` draws) vs the oracle."""
        q = self.removed(list(queue_cells), ns)
        rnd = np.array([[v for _, v in sorted(self.removed(
            list(np.random.default_rng(s).permutation(self.cells)), ns).items())] for s in range(seeds)])
        oracle = sorted(self.cells, key=lambda c: (-self.errors_per_cell[c], c))
        o = self.removed(oracle, ns)
        out = {}
        for i, n in enumerate(sorted(ns)):
            r = float(rnd[:, i].mean())
            out[str(n)] = {"queue": q[n], "random_mean": r, "random_sd": float(rnd[:, i].std()),
                           "random_min": int(rnd[:, i].min()), "random_max": int(rnd[:, i].max()),
                           "oracle": o[n], "ratio": (q[n] / r) if r > 0 else float("nan")}
        return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--input", help="input folder (Xenium with nucleus polygons)")
    ap.add_argument("--review-queue", action="store_true", help="the review-queue mode on simulated tissues")
    ap.add_argument("--sims", default="/tmp/sim", help="simulate.py output folder (made when missing)")
    ap.add_argument("--tissues", default="lung,segtraq,bidcell", help="NAME or NAME@SEED, comma-separated")
    ap.add_argument("--queue-clicks", default="5,10,25,50")
    ap.add_argument("--seeds", type=int, default=10, help="random-click draws")
    ap.add_argument("--checkpoint-dir", default=None, help="reuse CHECKPOINT_DIR/<tissue>.ckpt when present")
    ap.add_argument("--clicks", default="10,25,50", help="comma-separated N (default 10,25,50)")
    ap.add_argument("--json", required=True, help="output JSON")
    ap.add_argument("--reference-column", default="cell_id")
    ap.add_argument("--epochs", type=int, default=30, help="base model training epochs")
    ap.add_argument("--checkpoint", default=None, help="use this base model instead of training one")
    ap.add_argument("--steps", type=int, default=15, help="fine-tuning steps")
    ap.add_argument("--correction-weight", type=float, default=5.0)
    ap.add_argument("--save-model", default=None, help="save the base model here (reuse with --checkpoint)")
    a = ap.parse_args(argv)
    if a.review_queue:
        return main_queue(a)
    if not a.input:
        ap.error("--input is required (or --review-queue)")

    from segger import schema as S
    from segger.corrections import FinetuneConfig, FinetuneRun, corrections_from_table
    from segger.data import build_graph
    from segger.io import read_sample
    from segger.prediction import predict
    from segger.progress import run
    from segger.training import TrainConfig, TrainingRun, load_checkpoint
    from segger.validation import agreement

    sample = read_sample(a.input)
    if a.checkpoint:
        model, _, vocab, params, _ = load_checkpoint(a.checkpoint)
        bundle = build_graph(sample.transcripts, sample.nuclei, params, vocab=vocab)
    else:
        bundle = build_graph(sample.transcripts, sample.nuclei)
        tr = TrainingRun(bundle, TrainConfig(epochs=a.epochs))
        run(tr.iter_train())
        model = tr.model
    if a.save_model:
        from segger.training import save_checkpoint

        save_checkpoint(a.save_model, model, model.config, bundle.vocab, bundle.params)
    pred = predict(model, bundle)
    before = pred.assign()
    ref_col = a.reference_column
    x = before[S.X].to_numpy()
    left = x < np.median(x)
    bd_ids = set(bundle.nuclei[S.BD_ID].astype(str))
    ref = before[ref_col].astype("string").fillna(S.UNASSIGNED).to_numpy(dtype=object)
    has_bd = np.array([r in bd_ids for r in ref])
    wrong = left & has_bd & (before[S.SEGGER_CELL_ID].to_numpy() != ref)
    order = np.flatnonzero(wrong)[np.argsort(-before[S.SCORE].to_numpy()[wrong], kind="stable")]

    def right_agreement(df: pd.DataFrame) -> float:
        return float(agreement(df[~left], ref_col=ref_col))

    base = right_agreement(before)
    out = {"input": a.input, "reference_column": ref_col, "n_transcripts": int(len(before)),
           "candidates_left_half": int(wrong.sum()), "base_agreement_right_half": base,
           "finetune_steps": a.steps, "correction_weight": a.correction_weight, "clicks": {},
           "machine": {"python": sys.version.split()[0], "platform": platform.platform()}}
    for n in [int(v) for v in a.clicks.split(",")]:
        pick = order[:n]
        table = pd.DataFrame({"transcript_id": before[S.TX_ID].to_numpy()[pick],
                              "previous_cell": before[S.SEGGER_CELL_ID].to_numpy()[pick],
                              "new_cell": ref[pick]})
        store = corrections_from_table(table)
        t0 = time.perf_counter()
        ft = FinetuneRun(model, bundle, store.effective(), FinetuneConfig(steps=a.steps, correction_weight=a.correction_weight))
        run(ft.iter_finetune())
        after = store.apply(predict(ft.model, bundle).assign())
        seconds = time.perf_counter() - t0
        fixed = float((after[S.SEGGER_CELL_ID].to_numpy()[pick] == ref[pick]).mean()) if n else float("nan")
        out["clicks"][str(n)] = {"before": base, "after": right_agreement(after), "seconds": seconds,
                                 "n_corrections": int(len(pick))}
        print(f"N={n:3d}: right-half agreement {base:.4f} -> {out['clicks'][str(n)]['after']:.4f} "
              f"({seconds:.1f} s; corrected transcripts now right: {fixed:.0%})", flush=True)
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps(out, indent=2))
    return 0


def main_queue(a) -> int:
    """The review-queue mode: per tissue, train (or load) a model, predict, queue, click."""
    import simulate as sim

    from segger.data import build_graph
    from segger.io import read_sample
    from segger.prediction import predict
    from segger.progress import run
    from segger.training import TrainConfig, TrainingRun, load_checkpoint
    from segger.validation import review_queue

    ns = [int(v) for v in a.queue_clicks.split(",")]
    sims = Path(a.sims)
    rec = {"what": "errors removed by N clicks on whole cells (ClickEval) of simulated tissues with a known truth: "
                   "cells from segger.validation.review_queue in order vs uniformly random cells",
           "clicks": ns, "random_draws": a.seeds, "epochs": a.epochs, "tissues": {}}
    for item in [v.strip() for v in a.tissues.split(",") if v.strip()]:
        name, _, seed = item.partition("@")
        seed = int(seed or 0)
        key = name if seed == 0 else f"{name}@{seed}"
        folder = sims / (f"seed{seed}" if seed else "") / f"sim_{name}"
        truth_path = folder.parent / f"sim_{name}.truth.parquet"
        if not truth_path.exists():
            sim.simulate(sim.TISSUES[name], sim.default_data_root(), folder.parent, seed=seed)
        sample = read_sample(folder)
        t0 = time.perf_counter()
        ck = Path(a.checkpoint_dir) / f"{name if seed == 0 else name + str(seed)}.ckpt" if a.checkpoint_dir else None
        if ck is not None and ck.exists():
            model, _, vocab, params, _ = load_checkpoint(ck)
            bundle = build_graph(sample.transcripts, sample.nuclei, params, vocab=vocab)
        else:
            bundle = build_graph(sample.transcripts, sample.nuclei)
            tr = TrainingRun(bundle, TrainConfig(epochs=a.epochs))
            run(tr.iter_train())
            model = tr.model
        pred = predict(model, bundle)
        res = pred.assign()
        t1 = time.perf_counter()
        q = review_queue(pred)
        tq = time.perf_counter() - t1
        ev = ClickEval(res, pd.read_parquet(truth_path))
        cmp = ev.compare(list(q["cell_id"]), ns, seeds=a.seeds)
        sz = pd.Series(ev.pred[ev.pred != "UNASSIGNED"]).value_counts()
        by_size = ev.removed(sorted(sz.index, key=lambda c: (-sz[c], c)), ns)
        for n in ns:
            cmp[str(n)]["largest_cells_first"] = by_size[n]
        rec["tissues"][key] = {"n_transcripts": int(len(res)), "n_cells": int(len(ev.cells)),
                               "n_errors": int(ev.wrong.sum()), "queue_length": int(len(q)),
                               "queue_seconds": tq, "model_seconds": t1 - t0, "by_clicks": cmp}
        print(f"[{key}] errors {ev.wrong.sum()} of {len(res)}; " + "; ".join(
            f"N={n}: queue {v['queue']} vs random {v['random_mean']:.0f} (x{v['ratio']:.2f})" for n, v in cmp.items()),
            flush=True)
    r = [t["by_clicks"]["25"]["ratio"] for t in rec["tissues"].values() if "25" in t["by_clicks"]]
    rec["ratio_25_min"] = float(min(r)) if r else float("nan")
    rec["ratio_25_mean"] = float(np.mean(r)) if r else float("nan")
    rec["target_ratio_25"] = 1.5
    rec["met"] = bool(r) and min(r) >= 1.5
    rec["machine"] = {"python": sys.version.split()[0], "platform": platform.platform()}
    path = Path(a.json)
    data = json.loads(path.read_text()) if path.exists() else {}
    data["review_queue"] = rec
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
