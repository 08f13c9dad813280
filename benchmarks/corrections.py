"""Simulated-click benchmark: do a few corrections on one half improve the other half?

For N in --clicks: pick the N most confidently wrong transcripts (predicted cell ≠ the reference
cell, highest score first) in the left half of the crop (x < median), correct them to the
reference cell, fine-tune, re-predict, and report agreement with the reference on the right half
before and after, plus the wall time from "fine-tune" to updated assignments.

    python benchmarks/corrections.py --input src/segger/sample_data/xenium_breast --json out.json
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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--input", required=True, help="input folder (Xenium with nucleus polygons)")
    ap.add_argument("--clicks", default="10,25,50", help="comma-separated N (default 10,25,50)")
    ap.add_argument("--json", required=True, help="output JSON")
    ap.add_argument("--reference-column", default="cell_id")
    ap.add_argument("--epochs", type=int, default=30, help="base model training epochs")
    ap.add_argument("--checkpoint", default=None, help="use this base model instead of training one")
    ap.add_argument("--steps", type=int, default=15, help="fine-tuning steps")
    ap.add_argument("--correction-weight", type=float, default=5.0)
    ap.add_argument("--save-model", default=None, help="save the base model here (reuse with --checkpoint)")
    a = ap.parse_args(argv)

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


if __name__ == "__main__":
    sys.exit(main())
