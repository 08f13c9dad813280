"""segger.data.vocab.GeneVocab: tokens, the unknown token 0, coverage."""

from __future__ import annotations

import numpy as np
import pandas as pd

from segger.data import UNKNOWN_GENE, GeneVocab


def test_tokens_are_sorted_positions_plus_one():
    v = GeneVocab.from_genes(["KRT8", "ACTA2", "KRT8", "CD3E"])
    assert v.genes == ("ACTA2", "CD3E", "KRT8")
    assert len(v) == 4  # 3 genes + the unknown token
    assert v.unknown_token == 0
    np.testing.assert_array_equal(v.encode(["ACTA2", "CD3E", "KRT8"]), [1, 2, 3])


def test_unknown_genes_map_to_token_zero():
    v = GeneVocab.from_genes(["A", "B"])
    tok = v.encode(["B", "nope", "A", "", UNKNOWN_GENE])
    assert tok.dtype == np.int64
    np.testing.assert_array_equal(tok, [2, 0, 1, 0, 0])


def test_encode_accepts_series_arrays_and_categoricals():
    v = GeneVocab.from_genes(["A", "B", "C"])
    expected = [3, 1, 0]
    for genes in (["C", "A", "Z"], np.array(["C", "A", "Z"], dtype=object), pd.Series(["C", "A", "Z"]),
                  pd.Series(["C", "A", "Z"], dtype="category"), pd.Series(["C", "A", "Z"], dtype="string")):
        np.testing.assert_array_equal(v.encode(genes), expected)
    assert v.encode([]).shape == (0,)


def test_unknown_name_and_none_are_not_genes():
    v = GeneVocab.from_genes(["A", None, UNKNOWN_GENE])
    assert v.genes == ("A",)


def test_coverage():
    v = GeneVocab.from_genes(["A", "B", "C", "D"])
    frac, unknown = v.coverage(["A", "B", "X", "Y", "A"])
    assert frac == 0.5 and unknown == ["X", "Y"]
    assert v.coverage(["A"]) == (1.0, [])
    assert v.coverage([]) == (1.0, [])


def test_list_round_trip_keeps_tokens():
    v = GeneVocab.from_genes(["b", "a", "c"])
    w = GeneVocab.from_list(v.to_list())
    assert w == v
    genes = ["c", "a", "zzz", "b"]
    np.testing.assert_array_equal(v.encode(genes), w.encode(genes))


def test_another_panel_shares_only_common_genes():
    trained = GeneVocab.from_genes(["A", "B", "C"])
    other_panel = ["B", "C", "D", "E"]
    tok = trained.encode(other_panel)
    np.testing.assert_array_equal(tok, [2, 3, 0, 0])
    assert trained.coverage(other_panel) == (0.5, ["D", "E"])


def test_lung_vocab_covers_its_own_panel(pkg_lung_graph):
    v = pkg_lung_graph.vocab
    genes = pkg_lung_graph.transcripts["gene"]
    assert v.coverage(genes) == (1.0, [])
    tok = pkg_lung_graph.data["tx"].x.numpy()
    assert tok.min() >= 1 and tok.max() == len(v) - 1
