"""The review queue (issue 12 #11): doubtful cells first, fragments next to nuclei queued, a stable
order, and on a simulated tissue with a known truth its top cells hold more of the real errors
than random cells."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from segger import schema as S
from segger.validation import QUEUE_COLUMNS, review_queue

ROOT = Path(__file__).resolve().parents[2]


def _disc(cid, cx, cy, r=2.0):
    import shapely

    return {S.BD_ID: cid, S.GEOMETRY: shapely.Point(cx, cy).buffer(r, quad_segs=8), S.X: cx, S.Y: cy}


def _case(seed: int = 0):
    """Nuclei A and B 9 µm apart with transcripts spread between them (ambiguous), C and D isolated
    with their transcripts on their nucleus; fragment F1 just past C, fragment F2 far from all."""
    rng = np.random.default_rng(seed)
    nuclei = pd.DataFrame([_disc("A", 0, 0), _disc("B", 9, 0), _disc("C", 100, 0), _disc("D", 0, 100)])
    rows = []

    def add(cell, xy, score=0.95):
        for x, y in xy:
            rows.append({S.X: x, S.Y: y, S.GENE: "G0", S.SEGGER_CELL_ID: cell, S.SCORE: score})

    add("A", rng.normal([0, 0], 0.8, (30, 2)))
    add("B", rng.normal([9, 0], 0.8, (30, 2)))
    mid = np.c_[rng.uniform(3.5, 5.5, 20), rng.normal(0, 1.0, 20)]
    add("A", mid[:10])  # between A and B, nearly as near the rival
    add("B", mid[10:])
    add("C", rng.normal([100, 0], 0.8, (40, 2)))
    add("D", rng.normal([0, 100], 0.8, (40, 2)))
    add("fragment-0", rng.normal([106, 0], 0.7, (15, 2)), score=0.0)  # ~3 µm past C's outline
    add("fragment-1", rng.normal([60, 60], 0.7, (15, 2)), score=0.0)  # far from every nucleus
    df = pd.DataFrame(rows)
    df.insert(0, S.TX_ID, np.arange(len(df)))
    return df, nuclei


def test_ambiguous_cells_first_and_fragments():
    df, nuclei = _case()
    q = review_queue(df, nuclei=nuclei, mecr_flags=False)
    assert list(q.columns) == list(QUEUE_COLUMNS)
    order = list(q["cell_id"])
    assert set(order[:2]) == {"A", "B"}, q
    # the isolated cells, if queued at all, come after the contested pair
    for c in ("C", "D"):
        if c in order:
            assert order.index(c) > 1
            assert q.set_index("cell_id").loc[c, "priority"] < q.set_index("cell_id").loc["A", "priority"] / 2
    # a fragment next to a nucleus is queued; one far from every nucleus is not (or ranks lower)
    assert "fragment-0" in order
    row = q.set_index("cell_id").loc["fragment-0"]
    assert row["kind"] == "fragment" and row["fragment_gap"] < 5 and "fragment" in row["reason"]
    if "fragment-1" in order:
        assert order.index("fragment-1") > order.index("fragment-0")
    a = q.set_index("cell_id").loc["A"]
    assert a["n_contested"] >= 5 and "rival nucleus" in a["reason"]
    assert -1 <= a["x"] <= 6 and abs(a["y"]) < 3  # the view jumps to the contested transcripts
    assert list(q["rank"]) == list(range(len(q)))


def test_order_is_deterministic_and_ties_by_id():
    df, nuclei = _case()
    q1 = review_queue(df, nuclei=nuclei, mecr_flags=False)
    q2 = review_queue(df.sample(frac=1.0, random_state=3).reset_index(drop=True), nuclei=nuclei, mecr_flags=False)
    pd.testing.assert_frame_equal(q1[["cell_id", "priority", "n_transcripts"]],
                                  q2[["cell_id", "priority", "n_transcripts"]], check_exact=False, rtol=1e-9)
    # two identical cells, mirror images: equal priority, ordered by id
    nuc = pd.DataFrame([_disc("n2", 0, 0), _disc("n1", 9, 0)])
    xy = np.c_[np.linspace(2.5, 4.0, 8), np.zeros(8)]
    mirror = np.c_[9 - xy[:, 0], xy[:, 1]]
    t = pd.DataFrame({S.X: np.r_[xy[:, 0], mirror[:, 0]], S.Y: np.r_[xy[:, 1], mirror[:, 1]],
                      S.SEGGER_CELL_ID: ["n2"] * 8 + ["n1"] * 8, S.SCORE: 0.9})
    qt = review_queue(t, nuclei=nuc, mecr_flags=False)
    assert list(qt["cell_id"]) == ["n1", "n2"]
    assert qt["priority"].iloc[0] == pytest.approx(qt["priority"].iloc[1])


def test_mecr_flags_raise_a_cell():
    df, nuclei = _case()
    flags = pd.DataFrame({"cell_id": ["D"], "n_pairs": [40]})
    q = review_queue(df, nuclei=nuclei, mecr_flags=flags)
    assert q["cell_id"].iloc[0] == "D" and "exclusive gene pair" in q["reason"].iloc[0]


def test_prediction_input(synthetic_graph):
    """A Prediction (no model needed: made-up candidate scores) gives the same columns."""
    from segger.data.graph import TX_CAND
    from segger.prediction.predict import PredictConfig, Prediction

    b = synthetic_graph
    c = b.data[TX_CAND].edge_index.numpy()
    d = b.data[TX_CAND].d_abs.numpy()
    rng = np.random.default_rng(0)
    nn = b.data[("tx", "neighbors", "tx")].edge_index.numpy()
    p = Prediction(b, c[0], c[1], np.exp(-d / 8).astype(np.float32), nn[0], nn[1], np.ones(nn.shape[1]),
                   PredictConfig(), cand_d_abs=d, cand_choice=rng.normal(0, 2, len(d)).astype(np.float32))
    q = review_queue(p, mecr_flags=False)
    assert list(q.columns) == list(QUEUE_COLUMNS) and len(q)
    assert q["priority"].is_monotonic_decreasing
    pd.testing.assert_frame_equal(q, review_queue(p, mecr_flags=False))


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def test_queue_finds_more_real_errors_than_random_cells(tmp_path):
    """Simulated tissue (known truth), segmented by the vendor-like nucleus expansion: the
    queue's top 15 cells hold more of the real errors than 15 random cells (mean of 20 draws)."""
    sim = _load("_bench_simulate", ROOT / "benchmarks" / "simulate.py")
    root = sim.default_data_root()
    if not (root / sim.TISSUES["segtraq"].crop).is_dir():
        pytest.skip("shared crops not available")
    corr = _load("_bench_corrections", ROOT / "benchmarks" / "corrections.py")
    from dataclasses import replace

    from segger.io import read_sample

    spec = replace(sim.TISSUES["segtraq"], width=120.0, height=100.0)
    info = sim.simulate(spec, root, tmp_path, seed=0)
    sample = read_sample(info["folder"])
    res = sample.transcripts.copy()
    res[S.SEGGER_CELL_ID] = res[S.CELL_ID].astype(str)
    truth = pd.read_parquet(info["truth"])
    q = review_queue(res, nuclei=sample.nuclei)
    ev = corr.ClickEval(res, truth)
    out = ev.compare(list(q["cell_id"]), [15], seeds=20)["15"]
    assert out["queue"] > 1.3 * out["random_mean"], out


def test_queue_counts_the_same_exclusive_pairs_as_qc(lung_result):
    """The Review/QC tab shows QC's MECR list and the queue's reason side by side: a cell's
    exclusive-pair count must be the same number in both (one set of pairs, the reference's)."""
    from segger.validation import qc_report, review_queue

    df = lung_result.copy()
    # merge vendor cells two by two (by id order): cells that hold two cell types' markers
    ids = df["segger_cell_id"].astype(str).to_numpy()
    uniq = np.unique(ids[ids != S.UNASSIGNED])
    merged = {c: uniq[(i // 2) * 2] for i, c in enumerate(uniq)}
    df["segger_cell_id"] = [merged.get(c, c) for c in ids]
    qc = qc_report(df, reference_column="cell_id")
    flagged = dict(zip(qc["mecr_flagged_cells"], qc["mecr_flagged_counts"]))
    assert len(flagged) >= 10
    q = review_queue(df, score_cut=0.5).set_index("cell_id")
    shown = {c: int(q.loc[c, "mecr_pairs"]) for c in flagged if c in q.index}
    assert len(shown) == len(flagged)
    assert shown == flagged
