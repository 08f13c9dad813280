#!/usr/bin/env python
"""Does the GNN's expression term tell right from wrong where geometry is in doubt?

For each real crop: train Segger with the defaults (CPU, seed 0), then for every transcript take
its nearest nucleus (boundary distance, within the reach) and the expression logit of that pair
(``LinkHead.expression_logit``, the term that decides moves). Per distance bin, "right" means the
vendor puts the transcript in that nucleus's cell; the AUROC of the expression logit for right vs
wrong says whether the expression term could fix the nearest-nucleus rule there (0.5 = no
information; < 0.5 = it points the wrong way).

    python benchmarks/expression_diagnostic.py --json benchmarks/results/expression_diagnostic.json
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))
CROPS = {"lung": "xenium_lung_segger", "segtraq": "xenium_breast_segtraq"}
BINS = [(0.0, 1e-6), (1e-6, 2.0), (2.0, 4.0), (4.0, 6.0), (6.0, 8.0), (8.0, 11.0), (11.0, 15.0)]


def diagnose(folder: Path, epochs: int) -> list[dict]:
    from torchmetrics.functional.classification import binary_auroc
    import torch

    from segger import schema as S
    from segger.data import build_graph
    from segger.io import read_sample
    from segger.prediction import predict
    from segger.progress import run
    from segger.training import TrainConfig, TrainingRun

    s = read_sample(folder)
    b = build_graph(s.transcripts, s.nuclei)
    tr = TrainingRun(b, TrainConfig(epochs=epochs, device="cpu"))
    run(tr.iter_train())
    p = predict(tr.model, b)
    near = p.nearest_bd
    sel = p.cand_bd == near[p.cand_tx]
    e = np.full(p.n_tx, np.nan)
    d = np.full(p.n_tx, np.nan)
    e[p.cand_tx[sel]] = p.cand_choice[sel]
    d[p.cand_tx[sel]] = p.cand_d_abs[sel]
    ids = b.nuclei[S.BD_ID].astype(str).to_numpy()
    vendor = b.transcripts[S.CELL_ID].astype(str).to_numpy()
    right = (near >= 0) & (ids[np.maximum(near, 0)] == vendor)
    rows = []
    for lo, hi in BINS:
        m = (d >= lo) & (d < hi)
        r = right[m]
        auc = float("nan")
        if m.sum() and 0 < r.mean() < 1:
            auc = float(binary_auroc(torch.as_tensor(e[m]), torch.as_tensor(r).long()))
        rows.append({"d_lo_um": lo, "d_hi_um": hi, "n": int(m.sum()), "nearest_right": float(r.mean()) if m.sum() else None,
                     "auroc_expression_right_vs_wrong": auc})
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", required=True)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--data-root", default=str((REPO / ".." / "shared" / "data").resolve()))
    a = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    out = {"epochs": a.epochs, "crops": {}}
    for name, sub in CROPS.items():
        out["crops"][name] = diagnose(Path(a.data_root) / sub, a.epochs)
        for r in out["crops"][name]:
            print(f"{name:8s} d [{r['d_lo_um']:g}, {r['d_hi_um']:g}) µm  n {r['n']:5d}  nearest right "
                  f"{r['nearest_right'] or float('nan'):.3f}  AUROC {r['auroc_expression_right_vs_wrong']:.3f}")
    Path(a.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
