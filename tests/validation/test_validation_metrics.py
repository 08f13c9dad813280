from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from segger.errors import SeggerInputError
from segger.validation import (
    agreement,
    agreement_per_cell,
    factorize_cells,
    find_exclusive_gene_pairs,
    format_qc_table,
    fraction_assigned,
    mecr,
    mecr_flagged_cells,
    mecr_per_pair,
    qc_report,
    transcripts_per_cell,
    unassigned_mask,
    write_qc_json,
)

# ---------------------------------------------------------------------------- ids


def test_factorize_cells_unassigned_forms():
    codes, labels = factorize_cells(pd.Series(["b", "UNASSIGNED", None, np.nan, "-1", "a", "b", ""]))
    assert list(labels) == ["a", "b"]
    assert list(codes) == [1, -1, -1, -1, -1, 0, 1, -1]


def test_factorize_cells_int_and_float_ids():
    codes, labels = factorize_cells(pd.Series([43516, -1, 7, 43516], dtype="int32"))
    assert list(labels) == ["43516", "7"]
    assert list(codes) == [0, -1, 1, 0]
    codes, labels = factorize_cells(pd.Series([5.0, np.nan, -1.0]))
    assert list(labels) == ["5"] and list(codes) == [0, -1, -1]


def test_unassigned_mask_and_fraction_assigned():
    df = pd.DataFrame({"segger_cell_id": ["a", "UNASSIGNED", None, np.nan, "-1", "b"]})
    assert list(unassigned_mask(df["segger_cell_id"])) == [False, True, True, True, True, False]
    assert fraction_assigned(df) == pytest.approx(2 / 6)
    assert math.isnan(fraction_assigned(df.iloc[:0]))
    with pytest.raises(SeggerInputError, match="cell_id"):
        fraction_assigned(df, "cell_id")


def test_transcripts_per_cell_known():
    ids = ["a"] * 1 + ["b"] * 2 + ["c"] * 3 + ["d"] * 10 + ["UNASSIGNED"] * 5
    out = transcripts_per_cell(pd.DataFrame({"c": ids}), "c")
    assert out["n_cells"] == 4
    assert out["median"] == pytest.approx(2.5)
    assert out["mean"] == pytest.approx(4.0)
    assert out["p10"] == pytest.approx(np.percentile([1, 2, 3, 10], 10))
    assert out["p90"] == pytest.approx(np.percentile([1, 2, 3, 10], 90))
    empty = transcripts_per_cell(pd.DataFrame({"c": ["UNASSIGNED"]}), "c")
    assert empty["n_cells"] == 0 and math.isnan(empty["median"])


def test_real_crops_reference_fraction(lung_tx, segtraq_tx):
    # numbers from the crops' SOURCE.md
    assert fraction_assigned(lung_tx, "cell_id") == pytest.approx(1 - 262 / 15000)
    assert transcripts_per_cell(lung_tx, "cell_id")["n_cells"] == 250
    assert fraction_assigned(segtraq_tx, "cell_id") == pytest.approx(1 - 1243 / 23691)
    assert transcripts_per_cell(segtraq_tx, "cell_id")["median"] == 116


# ---------------------------------------------------------------------------- agreement


def _hand_table() -> pd.DataFrame:
    rows = [
        # ref, nuclear, pred
        ("A", True, "p1"),
        ("A", True, "p1"),
        ("A", False, "p1"),
        ("A", False, "p2"),  # A: matched p1, 3/4 agree
        ("B", True, "p3"),
        ("B", False, "UNASSIGNED"),
        ("B", False, "p3"),  # B: matched p3, 2/3 agree
        ("C", False, "p1"),
        ("C", False, "p1"),  # C: no nuclear transcript -> not nucleus-bearing
        (None, False, "p1"),  # reference-unassigned: ignored
        ("UNASSIGNED", True, "p9"),
    ]
    return pd.DataFrame(rows, columns=["cell_id", "nuclear", "segger_cell_id"])


def test_agreement_hand_built_fraction():
    df = _hand_table()
    assert agreement(df) == pytest.approx(5 / 7)
    per = agreement_per_cell(df).set_index("ref_cell_id")
    assert list(per.index) == ["A", "B"]
    assert per.loc["A", "matched_cell_id"] == "p1" and per.loc["A", "n_agree"] == 3
    assert per.loc["B", "matched_cell_id"] == "p3" and per.loc["B", "n_transcripts"] == 3
    # explicit nucleus-bearing set: only A; then A and C (C matched by all its transcripts)
    assert agreement(df, nucleus_bearing={"A"}) == pytest.approx(3 / 4)
    assert agreement(df, nucleus_bearing=["A", "C"]) == pytest.approx(5 / 6)


def test_agreement_tie_unmatched_and_int_ids():
    df = pd.DataFrame(
        {
            "cell_id": [1, 1, 1, 2, 2, -1],
            "nuclear": [1, 1, 0, 1, 0, 0],
            # ref 1: nuclear tie q5/q4 -> q4 (smallest); ref 2: nucleus not assigned -> 0 agree
            "segger_cell_id": ["q5", "q4", "q5", "UNASSIGNED", "q4", "q4"],
        }
    )
    per = agreement_per_cell(df).set_index("ref_cell_id")
    assert per.loc["1", "matched_cell_id"] == "q4" and per.loc["1", "n_agree"] == 1
    assert per.loc["2", "matched_cell_id"] == "UNASSIGNED" and per.loc["2", "n_agree"] == 0
    assert agreement(df) == pytest.approx(1 / 5)


def test_agreement_needs_nuclear_or_set():
    df = _hand_table().drop(columns="nuclear")
    with pytest.raises(SeggerInputError, match="nuclear"):
        agreement(df)
    assert agreement(df, nucleus_bearing={"A", "B"}) == pytest.approx(5 / 7)


def test_agreement_identity_relabelled(lung_result, segtraq_result):
    assert agreement(lung_result) == 1.0
    assert agreement(segtraq_result) == 1.0


def _agreement_naive(df, pred="segger_cell_id", ref="cell_id"):
    """Slow per-cell loop implementation of the documented definition (test oracle)."""
    un = {"UNASSIGNED", "-1", "None", "nan", ""}
    num = den = 0
    r_ids = df[ref].astype(str)
    p_ids = df[pred].astype(str)
    for r in sorted(set(r_ids) - un):
        rows = np.flatnonzero((r_ids == r).to_numpy())
        nuc = [i for i in rows if df["nuclear"].iat[i]]
        if not nuc:
            continue
        preds = [p_ids.iat[i] for i in nuc if p_ids.iat[i] not in un]
        match = None
        if preds:
            vals, cnt = np.unique(preds, return_counts=True)
            match = vals[np.flatnonzero(cnt == cnt.max())[0]]
        den += len(rows)
        num += sum(1 for i in rows if match is not None and p_ids.iat[i] == match)
    return num / den


def test_agreement_vectorised_matches_naive_on_perturbed_crop(lung_result):
    df = lung_result.copy()
    rng = np.random.default_rng(1)
    # perturb: drop 10% of assignments, move 10% to random other cells, split some cells
    ids = df["segger_cell_id"].to_numpy(dtype=object).copy()
    cells = np.unique(ids[ids != "UNASSIGNED"])
    drop = rng.random(len(df)) < 0.1
    move = rng.random(len(df)) < 0.1
    ids[drop] = "UNASSIGNED"
    ids[move] = rng.choice(cells, move.sum())
    split = (df["x"].to_numpy() % 3 < 1) & (ids != "UNASSIGNED")
    ids[split] = np.char.add(ids[split].astype(str), "-b")
    df["segger_cell_id"] = ids
    got = agreement(df)
    assert 0.2 < got < 0.95
    assert got == pytest.approx(_agreement_naive(df))


# ---------------------------------------------------------------------------- MECR


def _mecr_table() -> pd.DataFrame:
    rows = [
        ("c1", "A"), ("c1", "B"), ("c1", "A"),
        ("c2", "A"),
        ("c3", "B"), ("c3", "C"),
        ("c4", "A"), ("c4", "C"),
        ("UNASSIGNED", "A"), ("UNASSIGNED", "B"), ("UNASSIGNED", "C"),
    ]
    return pd.DataFrame(rows, columns=["segger_cell_id", "gene"])


def test_mecr_hand_computed():
    df = _mecr_table()
    # (A,B): both {c1}, either {c1,c2,c3,c4} -> 1/4 ; (B,C): both {c3}, either {c1,c3,c4} -> 1/3
    assert mecr(df, [("A", "B"), ("B", "C")]) == pytest.approx((1 / 4 + 1 / 3) / 2)
    per = mecr_per_pair(df, [("A", "B"), ("B", "C"), ("A", "Z"), ("Y", "Z")])
    assert list(per["n_both"]) == [1, 1, 0, 0]
    assert list(per["n_either"]) == [4, 3, 3, 0]
    assert np.isnan(per["rate"].iat[3])
    # pair with an absent gene counts (rate 0), a pair no cell expresses is skipped
    assert mecr(df, [("A", "B"), ("A", "Z"), ("Y", "Z")]) == pytest.approx(1 / 8)
    assert math.isnan(mecr(df, []))
    pairs_df = pd.DataFrame({"gene_a": ["A"], "gene_b": ["B"]})
    assert mecr(df, pairs_df) == pytest.approx(0.25)


def test_mecr_flagged_cells_hand():
    df = _mecr_table()
    flagged = mecr_flagged_cells(df, [("A", "B"), ("B", "C"), ("A", "C")])
    # c1: A,B ; c3: B,C ; c4: A,C  -> one pair each ; c2 none
    assert list(flagged["cell_id"]) == ["c1", "c3", "c4"]
    assert list(flagged["n_pairs"]) == [1, 1, 1]
    df2 = pd.concat([df, pd.DataFrame({"segger_cell_id": ["c1"], "gene": ["C"]})])
    flagged = mecr_flagged_cells(df2, [("A", "B"), ("B", "C"), ("A", "C")], top=2)
    assert list(flagged["cell_id"]) == ["c1", "c3"] and flagged["n_pairs"].iat[0] == 3


def test_find_exclusive_pairs_tiny():
    # 20 nuclei: X in 0-9, Y in 10-19 (never together), Z everywhere, W in one cell only
    rows = []
    for i in range(20):
        rows.append((f"n{i}", "X" if i < 10 else "Y", True))
        rows.append((f"n{i}", "Z", True))
        rows.append((f"n{i}", "Y", False))  # cytoplasmic Y everywhere: ignored (nuclear only)
    rows.append(("n0", "W", True))
    rows.append(("n0", "NegControlProbe_1", True))
    df = pd.DataFrame(rows, columns=["cell_id", "gene", "nuclear"])
    pairs = find_exclusive_gene_pairs(df, min_cells_frac=0.1, max_rate=0.02)
    assert list(zip(pairs["gene_a"], pairs["gene_b"])) == [("X", "Y")]
    assert pairs["rate"].iat[0] == 0 and pairs["n_either"].iat[0] == 20
    # with all transcripts, Y is in every cell -> no exclusive pair
    assert find_exclusive_gene_pairs(df, nuclear_only=False, min_cells_frac=0.1).empty
    # W passes the expression filter at 1/20 = 0.05
    pairs = find_exclusive_gene_pairs(df, min_cells_frac=0.05, max_rate=0.2)
    assert ("W", "Y") in set(zip(pairs["gene_a"], pairs["gene_b"]))
    assert not pairs["gene_a"].str.startswith("NegControl").any()
    assert pairs["rate"].is_monotonic_increasing


def test_find_exclusive_pairs_real_crop(lung_tx, segtraq_tx):
    for tx in (lung_tx, segtraq_tx):
        pairs = find_exclusive_gene_pairs(tx, max_pairs=100, max_rate=0.02)
        assert 0 < len(pairs) <= 100
        assert (pairs["rate"] <= 0.02).all()
        assert (pairs["gene_a"] < pairs["gene_b"]).all()
        assert not pairs.duplicated(["gene_a", "gene_b"]).any()
        # rates agree with mecr_per_pair on nucleus-only profiles
        per = mecr_per_pair(tx[tx["nuclear"]], pairs, cell_col="cell_id")
        np.testing.assert_allclose(per["rate"], pairs["rate"])


def test_mecr_vendor_vs_vendor_and_merge(lung_tx, lung_result):
    pairs = find_exclusive_gene_pairs(lung_tx)
    ref = mecr(lung_tx, pairs, "cell_id")
    assert 0 <= ref < 1
    assert mecr(lung_result, pairs, "segger_cell_id") == ref  # relabelled: identical
    assert mecr(lung_result, pairs, "cell_id") == ref
    # a segmentation that merges neighbours (40 µm grid "cells") co-expresses more exclusive pairs
    merged = lung_tx.copy()
    merged["grid"] = (merged["x"] // 40).astype(int).astype(str) + "_" + (merged["y"] // 40).astype(int).astype(str)
    assert mecr(merged, pairs, "grid") > ref + 0.1


# ---------------------------------------------------------------------------- report


def test_qc_report_real_crop(segtraq_result, tmp_path):
    rep = qc_report(segtraq_result)
    assert rep["agreement"] == 1.0
    assert rep["fraction_assigned"] == pytest.approx(rep["reference"]["fraction_assigned"])
    assert rep["transcripts_per_cell"] == rep["reference"]["transcripts_per_cell"]
    assert rep["mecr"] == rep["reference"]["mecr"] and rep["mecr"] is not None
    assert len(rep["mecr_gene_pairs"]) > 0
    assert rep["agreement_best_match"] == 1.0 and rep["agreement_nucleus"] == 1.0
    assert rep["assignment_counts"]["none"] == 1243
    assert sum(rep["assignment_counts"].values()) == len(segtraq_result)
    assert sum(rep["score"]["counts"]) == len(segtraq_result)
    assert len(rep["score"]["bins"]) == len(rep["score"]["counts"]) + 1
    assert rep["n_mecr_flagged_cells"] >= len(rep["mecr_flagged_cells"]) > 0
    assert all(c.startswith("seg-") for c in rep["mecr_flagged_cells"])
    assert rep["mecr_flagged_counts"] == sorted(rep["mecr_flagged_counts"], reverse=True)
    table = format_qc_table(rep)
    assert "fraction assigned" in table and "MECR" in table and "agreement" in table
    assert "reference (cell_id)" in table.splitlines()[0]
    out = write_qc_json(rep, tmp_path / "qc.json")
    assert json.loads(out.read_text())["agreement"] == 1.0


def test_qc_report_without_reference(tmp_path):
    df = _mecr_table()
    df["score"] = np.nan
    rep = qc_report(df, reference_column=None)
    assert rep["reference"] is None and rep["agreement"] is None and rep["mecr"] is None
    assert rep["fraction_assigned"] == pytest.approx(8 / 11)
    assert rep["assignment_counts"] is None
    assert "-" in format_qc_table(rep)
    # reference column named but absent -> same
    assert qc_report(df, reference_column="cell_id")["reference"] is None
    # NaN survives as JSON null
    rep["extra"] = float("nan")
    loaded = json.loads(write_qc_json(rep, tmp_path / "q.json").read_text())
    assert loaded["extra"] is None
