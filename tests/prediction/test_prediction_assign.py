"""Prediction on a tiny model trained on the lung crop: assignment, re-thresholding, fragments, tiles."""

from __future__ import annotations

import importlib
import re

import numpy as np
import pandas as pd
import pytest
import torch

from segger import schema as S
from segger.data import TX_BD, TX_CAND
from segger.errors import SeggerInputError
from segger.prediction import PredictConfig, Prediction, iter_predict, predict
from segger.progress import Progress

pytestmark = pytest.mark.slow  # trains on the real lung crop (shared session fixture)

FRAGMENT_RE = re.compile(r"^fragment-(\d+)$")
CUTS = [0.0, 0.2, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0]


def _assigned(df: pd.DataFrame) -> np.ndarray:
    return df[S.ASSIGNMENT].isin(["nucleus", "cytoplasm"]).to_numpy()


def _has_candidate(bundle) -> np.ndarray:
    """Transcripts with a candidate nucleus outline within the graph's reach (max_distance)."""
    cand = bundle.data[TX_CAND].edge_index.numpy()
    ok = bundle.data[TX_CAND].d_abs.numpy() <= bundle.max_distance
    has = np.zeros(bundle.data["tx"].num_nodes, bool)
    has[cand[0][ok]] = True
    return has


def test_prediction_scores(lung_prediction, pkg_lung_graph):
    p = lung_prediction
    n_cand = pkg_lung_graph.data[TX_CAND].edge_index.shape[1]
    assert len(p.cand_score) == n_cand and p.cand_score.dtype == np.float32
    assert np.isfinite(p.cand_score).all()
    assert (p.cand_score >= 0).all() and (p.cand_score <= 1).all()
    assert p.n_tx == pkg_lung_graph.data["tx"].num_nodes
    # the winner's score is its own candidate score
    has = p.best_bd >= 0
    key = dict(zip((p.cand_tx * 10**6 + p.cand_bd).tolist(), p.cand_score.tolist()))
    t = np.flatnonzero(has)
    np.testing.assert_array_equal(p.best_score[t], np.array([key[k] for k in (t * 10**6 + p.best_bd[t]).tolist()],
                                                            dtype=np.float32))
    assert (p.best_score[~has] == 0).all()
    assert ((p.best_bd >= 0) == _has_candidate(pkg_lung_graph)).all()
    assert np.isfinite(p.nn_sim).all() and (np.abs(p.nn_sim) <= 1 + 1e-5).all()


def test_iter_predict_yields_progress(lung_trained, pkg_lung_graph):
    gen = iter_predict(lung_trained.model, pkg_lung_graph, PredictConfig(device="cpu"))
    events = []
    while True:
        try:
            events.append(next(gen))
        except StopIteration as stop:
            pred = stop.value
            break
    assert events and all(isinstance(e, Progress) and e.stage == "predict" for e in events)
    assert isinstance(pred, Prediction) and pred.seconds > 0


def test_score_cut_one_assigns_exactly_the_scores_of_one(lung_prediction):
    """assigned ⇔ score ≥ cut holds at 1.0 too: a saturated float32 score of 1.0 is kept."""
    p = lung_prediction
    df = p.assign(score_cut=1.0)
    np.testing.assert_array_equal(_assigned(df), (p.best_bd >= 0) & (p.best_score == np.float32(1.0)))
    assert not df.loc[~_assigned(df), S.ASSIGNMENT].isin(["nucleus", "cytoplasm"]).any()


def test_score_cut_zero_assigns_every_transcript_with_a_candidate(lung_prediction, pkg_lung_graph):
    df = lung_prediction.assign(score_cut=0.0)
    has = _has_candidate(pkg_lung_graph)
    assert (_assigned(df) == has).all()
    assert df.loc[~has, S.ASSIGNMENT].isin(["none", "fragment"]).all()
    assert (df.loc[~has, S.SCORE] == 0).all()


def test_higher_cut_assigns_fewer_monotone(lung_prediction):
    prev = None
    counts = []
    for cut in CUTS:
        a = _assigned(lung_prediction.assign(score_cut=cut, fragments=False))
        counts.append(int(a.sum()))
        if prev is not None:
            assert not (a & ~prev).any(), f"cut {cut} assigns a transcript a lower cut left out"
        prev = a
    assert counts == sorted(counts, reverse=True)
    assert counts[0] > counts[-1]
    # assigned ⇔ best score ≥ cut
    p = lung_prediction
    for cut in (0.3, 0.5, 0.8):
        a = _assigned(p.assign(score_cut=cut, fragments=False))
        assert (a == ((p.best_bd >= 0) & (p.best_score >= cut))).all()


def test_assignment_table_is_consistent(lung_prediction, pkg_lung_graph):
    b = pkg_lung_graph
    df = lung_prediction.assign()
    # the transcripts table, unchanged and in order, plus the three result columns
    assert list(df.columns[: len(b.transcripts.columns)]) == list(b.transcripts.columns)
    pd.testing.assert_frame_equal(df[b.transcripts.columns], b.transcripts)
    assert {S.SEGGER_CELL_ID, S.SCORE, S.ASSIGNMENT} <= set(df.columns)
    assert list(df[S.ASSIGNMENT].cat.categories) == list(S.ASSIGNMENT_KINDS)
    assert df[S.ASSIGNMENT].notna().all()
    assert df[S.SCORE].dtype == np.float32
    assert ((df[S.SCORE] >= 0) & (df[S.SCORE] <= 1)).all()

    ids = df[S.SEGGER_CELL_ID].astype(str).to_numpy()
    kind = df[S.ASSIGNMENT].astype(str).to_numpy()
    nucleus_ids = set(b.nuclei[S.BD_ID].astype(str))
    is_nuc_id = np.isin(ids, list(nucleus_ids))
    is_frag = np.array([bool(FRAGMENT_RE.match(x)) for x in ids])
    is_none = ids == S.UNASSIGNED
    assert (is_nuc_id | is_frag | is_none).all()
    assert ((kind == "nucleus") | (kind == "cytoplasm")).tolist() == is_nuc_id.tolist()
    assert (kind == "fragment").tolist() == is_frag.tolist()
    assert (kind == "none").tolist() == is_none.tolist()
    # nucleus ⇔ the cell is the transcript's own nucleus
    own = np.full(len(df), -1)
    bel = b.data[TX_BD].edge_index.numpy()
    own[bel[0]] = bel[1]
    bd_ids = b.nuclei[S.BD_ID].astype(str).to_numpy()
    own_id = np.where(own >= 0, bd_ids[np.maximum(own, 0)], None)
    nuc = kind == "nucleus"
    assert (ids[nuc] == own_id[nuc]).all()
    cyto = kind == "cytoplasm"
    assert not (ids[cyto] == own_id[cyto]).any()
    # the assigned cell is the best-scoring candidate
    p = lung_prediction
    assigned = nuc | cyto
    assert (ids[assigned] == bd_ids[p.best_bd[assigned]]).all()
    np.testing.assert_array_equal(df[S.SCORE].to_numpy(), p.best_score)


def test_rethreshold_does_not_call_the_model(lung_trained, pkg_lung_graph, monkeypatch):
    pred = predict(lung_trained.model, pkg_lung_graph, PredictConfig(device="cpu"))

    def boom(*a, **k):
        raise AssertionError("the GNN was called during re-thresholding")

    # (the package re-exports a function named ``predict``: fetch the module itself)
    monkeypatch.setattr(importlib.import_module("segger.prediction.predict"), "embed", boom)
    monkeypatch.setattr(lung_trained.model, "forward", boom)
    for cut in CUTS:
        df = pred.assign(score_cut=cut)
        assert len(df) == pred.n_tx
    pred.assign(fragments=False)
    pred.assign(fragment_similarity=0.5, min_fragment_size=3)


def test_fragments_respect_min_size(lung_prediction):
    p = lung_prediction
    frag_counts = []
    for mfs in (2, 5, 10, 40):
        df = p.assign(score_cut=0.9, min_fragment_size=mfs)
        frag = df[S.ASSIGNMENT] == "fragment"
        sizes = df.loc[frag, S.SEGGER_CELL_ID].value_counts()
        assert (sizes >= mfs).all()
        # ids fragment-0 … fragment-(n-1)
        nums = sorted(int(FRAGMENT_RE.match(x).group(1)) for x in sizes.index)
        assert nums == list(range(len(nums)))
        # fragments form only among transcripts left unassigned by the score cut
        nofrag = p.assign(score_cut=0.9, fragments=False)
        assert (nofrag.loc[frag, S.ASSIGNMENT] == "none").all()
        frag_counts.append(int(frag.sum()))
    assert frag_counts == sorted(frag_counts, reverse=True)


def test_fragments_are_connected_and_switchable(lung_prediction, pkg_lung_graph):
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    p = lung_prediction
    df = p.assign(score_cut=0.9, min_fragment_size=5, fragment_similarity=0.9)
    labels = df[S.SEGGER_CELL_ID].to_numpy()
    frag = (df[S.ASSIGNMENT] == "fragment").to_numpy()
    assert frag.any(), "the lung crop has transcripts beyond the reach: fragments must form"
    # each fragment is one connected piece of the tx–tx graph edges with similarity ≥ 0.9
    keep = frag[p.nn_src] & frag[p.nn_dst] & (p.nn_sim >= 0.9) & (labels[p.nn_src] == labels[p.nn_dst])
    g = coo_matrix((np.ones(keep.sum()), (p.nn_src[keep], p.nn_dst[keep])), shape=(p.n_tx, p.n_tx))
    _, comp = connected_components(g, directed=True, connection="weak")
    for fid in np.unique(labels[frag]):
        assert len(np.unique(comp[labels == fid])) == 1, fid
    off = p.assign(score_cut=0.9, fragments=False)
    assert not (off[S.ASSIGNMENT] == "fragment").any()
    # without the size/extent caps, a stricter similarity only splits fragments: never more fragment
    # transcripts (with the caps, splitting can bring a too-large component under them)
    uncapped = PredictConfig(max_fragment_size=10**9, max_fragment_extent=1e9)
    p.config, saved = uncapped, p.config
    try:
        loose = p.assign(score_cut=0.9, min_fragment_size=5, fragment_similarity=0.9)
        strict = p.assign(score_cut=0.9, fragment_similarity=0.99, min_fragment_size=5)
    finally:
        p.config = saved
    assert (strict[S.ASSIGNMENT] == "fragment").sum() <= (loose[S.ASSIGNMENT] == "fragment").sum()


def test_fragment_numbering_is_deterministic(lung_prediction):
    a = lung_prediction.assign(score_cut=0.9)
    b = lung_prediction.assign(score_cut=0.9)
    assert (a[S.SEGGER_CELL_ID].to_numpy() == b[S.SEGGER_CELL_ID].to_numpy()).all()


def test_tiled_prediction_matches_whole_graph(lung_trained, pkg_lung_graph, lung_prediction):
    tiled = predict(lung_trained.model, pkg_lung_graph, PredictConfig(device="cpu", tile_tx=3000))
    whole = lung_prediction
    # every candidate edge is scored exactly once
    assert len(tiled.cand_score) == len(whole.cand_score)
    kw = np.lexsort((whole.cand_bd, whole.cand_tx))
    kt = np.lexsort((tiled.cand_bd, tiled.cand_tx))
    np.testing.assert_array_equal(whole.cand_tx[kw], tiled.cand_tx[kt])
    np.testing.assert_array_equal(whole.cand_bd[kw], tiled.cand_bd[kt])
    a = whole.assign(fragments=False)[S.SEGGER_CELL_ID].to_numpy()
    t = tiled.assign(fragments=False)[S.SEGGER_CELL_ID].to_numpy()
    # the 30 µm tile margin covers the GNN's receptive field: the same cells, kinds and scores
    np.testing.assert_array_equal(a, t)
    ka = whole.assign()[[S.SEGGER_CELL_ID, S.ASSIGNMENT]].astype(str).to_numpy()
    kt_ = tiled.assign()[[S.SEGGER_CELL_ID, S.ASSIGNMENT]].astype(str).to_numpy()
    np.testing.assert_array_equal(ka, kt_)
    np.testing.assert_allclose(whole.best_score, tiled.best_score, atol=1e-6)


@pytest.mark.parametrize("kw", [{"score_cut": 1.5}, {"score_cut": -0.1}, {"fragment_similarity": 1.5},
                                {"min_fragment_size": 1}])
def test_predict_config_validation(kw):
    with pytest.raises(SeggerInputError):
        PredictConfig(**kw).validate()


def test_predict_without_nuclei_is_an_input_error(lung_trained, pkg_lung_sample):
    from segger.data import build_graph

    b = build_graph(pkg_lung_sample.transcripts.head(500), pkg_lung_sample.nuclei.iloc[:0],
                    vocab=lung_trained.bundle.vocab)
    with pytest.raises(SeggerInputError, match="no nuclei"):
        predict(lung_trained.model, b, PredictConfig(device="cpu"))


def test_predict_on_missing_gpu_is_an_input_error(lung_trained, pkg_lung_graph, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SeggerInputError, match="no CUDA GPU"):
        predict(lung_trained.model, pkg_lung_graph, PredictConfig(device="cuda"))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_prediction_matches_cpu(lung_trained, pkg_lung_graph, lung_prediction):
    gpu = predict(lung_trained.model, pkg_lung_graph, PredictConfig(device="cuda"))
    assert all(p.device.type == "cpu" for p in lung_trained.model.parameters())  # handed back
    a = lung_prediction.assign(fragments=False)[S.SEGGER_CELL_ID].to_numpy()
    g = gpu.assign(fragments=False)[S.SEGGER_CELL_ID].to_numpy()
    assert (a == g).mean() > 0.95  # bf16 autocast on the GPU
