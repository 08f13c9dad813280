"""The memory-lean paths of ``segger.validation.metrics`` give the same numbers as the general ones.

A whole slide's QC runs on categorical columns (``segger.export.streamed``: integer codes with the
slide's labels as categories, some unused in a window); the metrics then take the categorical codes
directly, count (cell, gene) and (cell, cell) pairs a chunk of rows at a time and reuse columns that
are already compact. These tests build the same table twice — plain object / int columns, and the
categoricals a streamed run passes — and demand identical results, with the chunk smaller than the
table so the chunk merging runs.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from segger import schema
from segger.validation import metrics as M
from segger.validation import qc_report


def _table(n: int = 6000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ref = rng.integers(0, 150, n)
    # some cells split in two, some pairs of neighbours merged (MECR > 0), a fifth unassigned
    pred = np.where(ref < 60, ref // 2, ref + rng.integers(0, 2, n) * 1000)
    pred = np.where(rng.random(n) < 0.8, pred, -1)
    genes = np.array([f"G{i:02d}" for i in range(40)] + ["NegControlProbe_1"])
    # genes tied to the reference cell's "type" so that exclusive pairs exist
    gene = genes[(ref % 5) * 8 + rng.integers(0, 8, n)]
    gene[rng.random(n) < 0.02] = genes[-1]
    df = pd.DataFrame({
        schema.SEGGER_CELL_ID: np.where(pred >= 0, pred.astype(str), schema.UNASSIGNED).astype(object),
        schema.CELL_ID: np.where(rng.random(n) < 0.9, ref, -1),
        schema.GENE: gene.astype(object),
        schema.NUCLEAR: rng.random(n) < 0.4,
        schema.SCORE: rng.random(n).astype(np.float32),
        schema.ASSIGNMENT: rng.choice(list(schema.ASSIGNMENT_KINDS), n),
    })
    df.loc[df.index[:7], schema.SCORE] = np.nan
    return df


def _categorical(df: pd.DataFrame) -> pd.DataFrame:
    """The frame a streamed run builds: sorted str categories (plus unused ones), codes."""
    out = df.copy()
    for col in (schema.SEGGER_CELL_ID, schema.CELL_ID):
        codes, labels = M.factorize_cells(df[col])
        labels = np.sort(np.r_[labels, ["zz-unused-1", "zz-unused-2"]])
        pos = {lab: i for i, lab in enumerate(labels)}
        lab_of = M.factorize_cells(df[col])[1]
        cc = np.array([pos[lab_of[c]] if c >= 0 else -1 for c in codes])
        out[col] = pd.Categorical.from_codes(cc, categories=labels)
    out[schema.GENE] = pd.Categorical(df[schema.GENE], categories=sorted(set(df[schema.GENE])) + ["ZZZ_unused"])
    out[schema.ASSIGNMENT] = df[schema.ASSIGNMENT].astype("category")
    return out


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(M, "_CHUNK", 1000)  # the table is 6 chunks: merging across chunks runs


def test_factorize_cells_of_a_categorical_equals_the_general_path(small_chunks):
    df = _table()
    for col in (schema.SEGGER_CELL_ID, schema.CELL_ID):
        plain = M.factorize_cells(df[col])
        for series in (_categorical(df)[col], df[col].astype("category")):
            codes, labels = M.factorize_cells(series)
            assert codes.dtype == np.int64
            np.testing.assert_array_equal(labels, plain[1])
            np.testing.assert_array_equal(codes, plain[0])
            narrow, labels32 = M._cell_codes(series)
            assert narrow.dtype == np.int32
            np.testing.assert_array_equal(narrow, plain[0])
    # an "UNASSIGNED" category and missing values are unassigned on both paths
    s = pd.Series(pd.Categorical(["b", schema.UNASSIGNED, None, "a", "b"]))
    codes, labels = M.factorize_cells(s)
    assert labels.tolist() == ["a", "b"] and codes.tolist() == [1, -1, -1, 0, 1]


def test_pair_counts_equal_numpy_unique(small_chunks):
    rng = np.random.default_rng(1)
    a, b = rng.integers(0, 50, 5500), rng.integers(0, 30, 5500)
    mask = rng.random(5500) < 0.7
    keys, counts = M._pair_counts(a, b, 30, mask)
    ref_keys, ref_counts = np.unique(a[mask].astype(np.int64) * 30 + b[mask], return_counts=True)
    np.testing.assert_array_equal(keys, ref_keys)
    np.testing.assert_array_equal(counts, ref_counts)


def test_binary_matrix_equals_the_dense_definition(small_chunks):
    df = _categorical(_table())
    B, cells, genes = M._binary_matrix(df, schema.SEGGER_CELL_ID, schema.GENE)
    plain = _table()
    assigned = plain[plain[schema.SEGGER_CELL_ID] != schema.UNASSIGNED]
    dense = pd.crosstab(assigned[schema.SEGGER_CELL_ID], assigned[schema.GENE]) > 0
    assert cells.tolist() == sorted(dense.index) and genes.tolist() == sorted(set(plain[schema.GENE]))
    np.testing.assert_array_equal(B.toarray() > 0, dense.reindex(index=cells, columns=genes, fill_value=False).to_numpy())
    assert set(np.unique(B.data)) == {1} and B.has_sorted_indices


def test_qc_report_is_the_same_on_categorical_and_plain_columns(small_chunks):
    df = _table()
    plain = qc_report(df, reference_column=schema.CELL_ID)
    lean = qc_report(_categorical(df), reference_column=schema.CELL_ID)
    assert plain["mecr_gene_pairs"], "the table must give exclusive pairs, or MECR is not compared"
    assert plain["agreement"] is not None and 0 < plain["agreement"] < 1
    assert plain["mecr"] > 0 and plain["mecr_flagged_cells"]
    assert json.dumps(lean, sort_keys=True) == json.dumps(plain, sort_keys=True)
