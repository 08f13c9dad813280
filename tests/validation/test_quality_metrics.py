"""The benchmark's metrics (shared/docs/quality-metrics.md) on tiny tables whose answer is known by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import shapely

from segger.validation import (
    adjusted_rand_index,
    agreement,
    agreement_scores,
    best_match_agreement,
    find_exclusive_gene_pairs,
    geometry_moves,
    match_cells,
    mecr,
    mecr_equal_coverage,
    mutual_agreement,
    nearest_nucleus,
    qc_report,
    quality_gene_pairs,
    truth_scores,
)


def _table(ref, pred, nuclear=None, gene=None):
    n = len(ref)
    return pd.DataFrame({
        "cell_id": ref,
        "segger_cell_id": pred,
        "nuclear": [True] * n if nuclear is None else nuclear,
        "gene": ["g"] * n if gene is None else gene,
    })


# ------------------------------------------------------------------ best match / mutual best match


def test_split_costs_mutual_not_best_match():
    # reference A (10 tx) and B (10 tx); the prediction splits A into P1 (6) + P2 (4)
    df = _table(["A"] * 10 + ["B"] * 10, ["P1"] * 6 + ["P2"] * 4 + ["Q"] * 10)
    sc = agreement_scores(df)
    assert sc["best_match"] == pytest.approx(1.0)  # both pieces map to A
    assert sc["mutual"] == pytest.approx(16 / 20)  # only P1 is A's largest overlap
    assert sc["n_pairs"] == 2 and sc["n_ref_cells"] == 2
    assert best_match_agreement(df) == sc["best_match"] and mutual_agreement(df) == sc["mutual"]


def test_merge_costs_mutual_agreement():
    # reference A (10) and B (6) merged into one predicted cell P
    df = _table(["A"] * 10 + ["B"] * 6, ["P"] * 16)
    assert mutual_agreement(df) == pytest.approx(10 / 16)  # P pairs with A only; B unpaired
    assert best_match_agreement(df) == pytest.approx(10 / 16)
    m = match_cells(df)
    assert list(m["paired"]) == [True]
    assert list(m["pred_labels"][m["ref_best"]]) == ["P", "P"]
    # the older nucleus-plurality agreement does not see merges at all
    assert agreement(df) == pytest.approx(1.0)


def test_identity_relabelled_is_one_and_unassigned_disagrees():
    df = _table(["A"] * 5 + ["B"] * 5, ["x"] * 5 + ["y"] * 5)
    assert mutual_agreement(df) == 1.0 and best_match_agreement(df) == 1.0
    df.loc[0, "segger_cell_id"] = "UNASSIGNED"
    assert mutual_agreement(df) == pytest.approx(9 / 10)


def test_only_nucleated_reference_cells_count():
    # C has no nuclear transcript: its (wrongly merged) transcripts are not scored
    ref = ["A"] * 4 + ["C"] * 4
    pred = ["P"] * 4 + ["Q", "Q", "R", "S"]
    nuclear = [True] * 4 + [False] * 4
    sc = agreement_scores(_table(ref, pred, nuclear))
    assert sc["mutual"] == 1.0 and sc["n_transcripts"] == 4 and sc["n_ref_cells"] == 1
    assert mutual_agreement(_table(ref, pred, nuclear), nucleus_bearing={"A", "C"}) == pytest.approx(6 / 8)


def test_qc_report_uses_mutual_agreement():
    rep = qc_report(_table(["A"] * 10 + ["B"] * 10, ["P1"] * 6 + ["P2"] * 4 + ["Q"] * 10))
    assert rep["agreement"] == pytest.approx(0.8)
    assert rep["agreement_best_match"] == pytest.approx(1.0)


# ------------------------------------------------------------------ MECR: gene pairs, sizes, equal coverage


def _pairs_table():
    # 40 nuclei: X in 0-19, Y in 20-39, Z in all, W in 0-9 and 20-29, V in 2 nuclei only (5 %)
    rows = []
    for i in range(40):
        c = f"n{i}"
        rows += [(c, "X" if i < 20 else "Y", True), (c, "Z", True)]
        if i % 20 < 10:
            rows.append((c, "W", True))
        if i in (0, 20):
            rows.append((c, "V", True))
    return pd.DataFrame(rows, columns=["cell_id", "gene", "nuclear"])


def test_quality_gene_pairs_rule_and_top_genes():
    df = _pairs_table()
    got = set(zip(*quality_gene_pairs(df)[["gene_a", "gene_b"]].to_numpy().T))
    # V is in 2/40 = 5 % of nuclei (kept); rate(V, X) = 1/21 > 0.03 -> not exclusive
    assert got == {("X", "Y")}
    # top_genes keeps the most frequently detected genes: Z (40), W (20), X (20) -> no (X, Y) pair
    assert find_exclusive_gene_pairs(df, max_rate=0.03, max_pairs=None, top_genes=3).empty
    assert len(find_exclusive_gene_pairs(df, max_rate=0.03, max_pairs=None, top_genes=4)) == 1


def test_mecr_min_transcripts():
    # c1: X+Y (2 tx, too small at 5), c2: X x5, c3: Y x5
    df = pd.DataFrame({"c": ["c1", "c1"] + ["c2"] * 5 + ["c3"] * 5,
                       "gene": ["X", "Y"] + ["X"] * 5 + ["Y"] * 5})
    assert mecr(df, [("X", "Y")], "c") == pytest.approx(1 / 3)
    assert mecr(df, [("X", "Y")], "c", min_transcripts=5) == 0.0


def test_mecr_equal_coverage_ignores_transcripts_one_method_assigns():
    # a puts an extra Y into c1 that b leaves unassigned; otherwise identical
    genes = ["X"] * 5 + ["Y"] + ["Y"] * 5
    a = ["c1"] * 6 + ["c2"] * 5
    b = ["d1"] * 5 + ["UNASSIGNED"] + ["d2"] * 5
    df = pd.DataFrame({"gene": genes, "a": a, "b": b})
    pairs = [("X", "Y")]
    assert mecr(df, pairs, "a", min_transcripts=5) == pytest.approx(0.5)  # c1 has both, c2 has Y
    assert mecr(df, pairs, "b", min_transcripts=5) == 0.0
    eq = mecr_equal_coverage(df, pairs, "a", "b")
    assert eq["a"] == 0.0 and eq["b"] == 0.0 and eq["n_shared"] == 10
    assert eq["shared_fraction"] == pytest.approx(10 / 11)
    # cell sizes are counted on the shared transcripts: c1 keeps 5 of 6, still counts
    df2 = df.copy()
    df2.loc[0, "b"] = "UNASSIGNED"  # now c1 has 4 shared transcripts (< 5): dropped from both sides
    eq2 = mecr_equal_coverage(df2, pairs, "a", "b")
    assert eq2["n_shared"] == 9 and eq2["a"] == 0.0


# ------------------------------------------------------------------ truth: F1 and ARI


def test_truth_perfect_labelling():
    truth = ["A"] * 4 + ["B"] * 4 + ["UNASSIGNED"] * 2
    pred = ["p"] * 4 + ["q"] * 4 + ["UNASSIGNED"] * 2
    sc = truth_scores(pd.DataFrame({"pred": pred, "truth": truth}), "pred", "truth")
    assert sc["f1"] == 1.0 and sc["precision"] == 1.0 and sc["recall"] == 1.0 and sc["ari"] == 1.0
    assert sc["background_assigned"] == 0.0


def test_truth_permuted_labelling():
    # each predicted cell holds 2 of A and 2 of B
    truth = ["A"] * 4 + ["B"] * 4
    pred = ["p", "p", "q", "q", "p", "p", "q", "q"]
    sc = truth_scores(pd.DataFrame({"pred": pred, "truth": truth}), "pred", "truth")
    # only p-A is mutually paired (ties go to the smallest id): 2 right of 8
    assert sc["precision"] == pytest.approx(0.25) and sc["recall"] == pytest.approx(0.25)
    assert sc["f1"] == pytest.approx(0.25)
    # by hand: sum_ij = 4, sum_a = sum_b = 12, total = 28 -> (4 - 36/7) / (12 - 36/7) = -1/6
    assert sc["ari"] == pytest.approx(-1 / 6)


def test_truth_background_assigned_costs_precision():
    truth = ["A"] * 4 + ["UNASSIGNED"] * 4
    pred = ["p"] * 8
    sc = truth_scores(pd.DataFrame({"pred": pred, "truth": truth}), "pred", "truth")
    assert sc["precision"] == pytest.approx(0.5) and sc["recall"] == 1.0
    assert sc["f1"] == pytest.approx(2 / 3)
    assert sc["background_assigned"] == 1.0
    assert sc["ari"] == 1.0  # ARI is over transcripts both assign


def test_ari_matches_reference_formula_on_random_labels():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 6, 300)
    b = np.where(rng.random(300) < 0.7, a, rng.integers(0, 6, 300))
    # naive pair counting
    same_a = a[:, None] == a[None, :]
    same_b = b[:, None] == b[None, :]
    iu = np.triu_indices(300, 1)
    sa, sb = same_a[iu], same_b[iu]
    n11 = np.sum(sa & sb)
    exp = sa.sum() * sb.sum() / sa.size
    want = (n11 - exp) / ((sa.sum() + sb.sum()) / 2 - exp)
    assert adjusted_rand_index(a, b) == pytest.approx(want)
    assert adjusted_rand_index(a, a.astype(str)) == pytest.approx(1.0)


# ------------------------------------------------------------------ moves away from geometry


def test_nearest_nucleus_boundary_distance():
    nuc = pd.DataFrame({"bd_id": ["n1", "n2"],
                        "geometry": [shapely.box(0, 0, 2, 2), shapely.box(10, 0, 12, 10)]})
    ids, d = nearest_nucleus([1, 5, 7], [1, 1, 9], nuc)
    assert list(ids) == ["n1", "n1", "n2"]
    np.testing.assert_allclose(d, [0.0, 3.0, 3.0])


def test_geometry_moves_and_gene_support():
    # nuclear profiles: n1 = 8 x G1 + 2 x G2, n2 = 2 x G1 + 8 x G2 (reference, nuclear)
    prof = pd.DataFrame({
        "cell_id": ["n1"] * 10 + ["n2"] * 10,
        "gene": ["G1"] * 8 + ["G2"] * 2 + ["G1"] * 2 + ["G2"] * 8,
        "nuclear": True,
    })
    prof["pred"] = prof["cell_id"]
    prof["near"] = prof["cell_id"]
    # 4 cytoplasmic transcripts nearest n1; the prediction moves 3 of them to n2, one stays
    cyto = pd.DataFrame({
        "cell_id": ["n1"] * 4, "gene": ["G2", "G2", "G1", "G1"], "nuclear": False,
        "pred": ["n2", "n2", "n2", "n1"], "near": ["n1"] * 4,
    })
    # one in a fragment (not a nucleus), one unassigned
    extra = pd.DataFrame({"cell_id": ["n1", None], "gene": ["G1", "G1"], "nuclear": False,
                          "pred": ["fragment-0", "UNASSIGNED"], "near": ["n1", "n1"]})
    df = pd.concat([prof, cyto, extra], ignore_index=True)
    out = geometry_moves(df, "pred", "near")
    assert out["n_scored"] == 24 and out["n_moved"] == 3
    assert out["moved"] == pytest.approx(3 / 24)
    # G2 is likelier under n2 ((8+1)/(10+2) > (2+1)/(10+2)); G1 is not
    assert out["supported"] == pytest.approx(2 / 3)
    assert out["moved_vendor_match"] == 0.0  # the reference keeps them in n1
    assert out["in_non_nucleus_cell"] == pytest.approx(1 / 26)
    # pseudo-count matters: a gene absent from both nuclei is not "supported"
    df.loc[len(prof), "gene"] = "G3"
    assert geometry_moves(df, "pred", "near")["supported"] == pytest.approx(1 / 3)


def test_metrics_nan_on_empty():
    df = _table(["UNASSIGNED"] * 3, ["a", "a", "b"])
    assert math.isnan(mutual_agreement(df))
