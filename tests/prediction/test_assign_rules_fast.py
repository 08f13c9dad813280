"""The score-cut and fragment rules of ``Prediction.assign`` on hand-set scores (no training: fast).

A :class:`segger.prediction.Prediction` is built directly from a small synthetic graph with chosen
candidate scores and tx–tx similarities, so each rule is checked exactly, including scores of
exactly 0 and 1.0 (a saturated float32 sigmoid, which a well-trained model reaches).

The score-cut rule: a transcript is assigned ⇔ it has a winning nucleus within the reach and the
winner's score is ≥ ``score_cut`` — for every cut in [0, 1]. So cut 0 assigns every transcript with a
candidate within the reach, and cut 1.0 keeps exactly the scores equal to 1.0 (it does not promise
"nothing").
"""

from __future__ import annotations

import numpy as np
import pytest

from segger import schema as S
from segger.data import TX_CAND, TX_TX, build_graph
from segger.prediction import PredictConfig, Prediction

CUTS = [0.0, 0.1, 0.5, 0.9, 0.999, np.float32(1.0) - np.float32(2**-24), 1.0]


@pytest.fixture(scope="module")
def graph(synthetic_graph):
    return synthetic_graph


def _prediction(bundle, scores=None, sim=None, seed=0, **cfg) -> Prediction:
    rng = np.random.default_rng(seed)
    cand = bundle.data[TX_CAND].edge_index.numpy()
    nn = bundle.data[TX_TX].edge_index.numpy()
    if scores is None:
        scores = rng.uniform(0, 1, cand.shape[1]).astype(np.float32)
        scores[rng.random(cand.shape[1]) < 0.15] = 1.0  # saturated
        scores[rng.random(cand.shape[1]) < 0.05] = 0.0
    if sim is None:
        sim = np.ones(nn.shape[1], np.float32)
    return Prediction(bundle, cand[0], cand[1], scores, nn[0], nn[1], sim, PredictConfig(**cfg),
                      cand_d_abs=bundle.data[TX_CAND].d_abs.numpy(), cand_choice=None)


def _assigned(p: Prediction, cut, fragments=False) -> np.ndarray:
    _, kind = p.assign_codes(score_cut=cut, fragments=fragments)
    return kind <= 1  # nucleus / cytoplasm


def test_assigned_iff_score_at_least_cut_for_every_cut(graph):
    p = _prediction(graph)
    assert (p.best_score == 1.0).sum() > 10 and ((p.best_score > 0) & (p.best_score < 1)).sum() > 10
    for cut in CUTS:
        a = _assigned(p, cut)
        np.testing.assert_array_equal(a, (p.best_bd >= 0) & (p.best_score >= cut), err_msg=f"cut {cut}")


def test_score_cut_one_keeps_exactly_the_scores_of_one(graph):
    p = _prediction(graph)
    a = _assigned(p, 1.0)
    ones = (p.best_bd >= 0) & (p.best_score == np.float32(1.0))
    assert ones.sum() > 10
    np.testing.assert_array_equal(a, ones)
    # the largest float32 below 1.0 is left out at cut 1.0 and kept just below it
    q = _prediction(graph, scores=np.full(graph.data[TX_CAND].edge_index.shape[1], np.float32(1.0) - np.float32(2**-24)))
    assert not _assigned(q, 1.0).any()
    assert _assigned(q, float(np.float32(1.0) - np.float32(2**-24))).sum() == (q.best_bd >= 0).sum() > 0


def test_score_cut_zero_assigns_every_transcript_with_a_candidate_even_at_score_zero(graph):
    n = graph.data[TX_CAND].edge_index.shape[1]
    p = _prediction(graph, scores=np.zeros(n, np.float32))
    has = p.best_bd >= 0
    assert has.any() and (p.best_score[has] == 0).all()
    np.testing.assert_array_equal(_assigned(p, 0.0), has)
    assert not _assigned(p, 1e-6).any()


def test_higher_cut_assigns_a_subset(graph):
    p = _prediction(graph, seed=3)
    prev = None
    for cut in CUTS:
        a = _assigned(p, cut)
        if prev is not None:
            assert not (a & ~prev).any()
        prev = a


def test_assignment_kind_nucleus_vs_cytoplasm(graph):
    p = _prediction(graph)
    code, kind = p.assign_codes(score_cut=0.0, fragments=False)
    a = kind <= 1
    np.testing.assert_array_equal(code[a], p.best_bd[a])
    np.testing.assert_array_equal(kind[a] == 0, p.own_bd[a] == p.best_bd[a])
    assert (code[~a] == -1).all() and (kind[~a] == 3).all()


# ---------------------------------------------------------------------------------------------
# fragments: only transcripts that no nucleus can claim (no candidate within the reach)

@pytest.fixture(scope="module")
def far_graph(synthetic_tables):
    """Nuclei reach only 1 µm: most transcripts have no candidate within the reach."""
    from segger.data import GraphParams

    tx, nuc = synthetic_tables()
    return build_graph(tx, nuc, GraphParams(max_distance=1.0))


def test_fragments_only_beyond_the_reach(far_graph):
    p = _prediction(far_graph, max_fragment_size=10**6, max_fragment_extent=1e5, min_fragment_size=2)
    free = p.best_bd < 0
    assert free.sum() > 100 and (~free).sum() > 10
    df = p.assign(score_cut=1.0)  # nearly nothing assigned: a low score must not make a fragment
    frag = (df[S.ASSIGNMENT] == "fragment").to_numpy()
    assert frag.any()
    assert not (frag & ~free).any(), "a transcript with a candidate nucleus within the reach joined a fragment"
    none = (df[S.ASSIGNMENT] == "none").to_numpy()
    assert (none & ~free).any()  # below the cut near a nucleus: unassigned, not a fragment
    off = p.assign(score_cut=1.0, fragments=False)
    assert not (off[S.ASSIGNMENT] == "fragment").any()


def test_fragment_size_and_extent_caps(far_graph):
    base = dict(max_fragment_size=10**6, max_fragment_extent=1e5)
    p = _prediction(far_graph, min_fragment_size=2, **base)
    sizes = p.assign()[S.SEGGER_CELL_ID].loc[lambda s: s.str.startswith("fragment-")].value_counts()
    assert len(sizes) >= 2
    # min size: components smaller than it stay unassigned
    mid = int(np.median(sizes))
    q = _prediction(far_graph, min_fragment_size=mid + 1, **base)
    s2 = q.assign()[S.SEGGER_CELL_ID].loc[lambda s: s.str.startswith("fragment-")].value_counts()
    assert (s2 >= mid + 1).all() and len(s2) < len(sizes)
    # max size: the largest component is not one cell
    q = _prediction(far_graph, min_fragment_size=2, max_fragment_size=int(sizes.max()) - 1, max_fragment_extent=1e5)
    s3 = q.assign()[S.SEGGER_CELL_ID].loc[lambda s: s.str.startswith("fragment-")].value_counts()
    assert (s3 < sizes.max()).all() and len(s3) == (sizes < sizes.max()).sum()
    # extent: a tiny box cap leaves no fragment
    q = _prediction(far_graph, min_fragment_size=2, max_fragment_size=10**6, max_fragment_extent=0.01)
    assert not (q.assign()[S.ASSIGNMENT] == "fragment").any()
    # ids fragment-0 … fragment-(n-1)
    nums = sorted(int(x.split("-")[1]) for x in sizes.index)
    assert nums == list(range(len(nums)))


def test_fragment_edges_need_similar_embeddings(far_graph):
    n_nn = far_graph.data[TX_TX].edge_index.shape[1]
    caps = dict(max_fragment_size=10**6, max_fragment_extent=1e5, min_fragment_size=2)
    low = _prediction(far_graph, sim=np.full(n_nn, 0.5, np.float32), fragment_similarity=0.9, **caps)
    assert not (low.assign()[S.ASSIGNMENT] == "fragment").any()
    high = _prediction(far_graph, sim=np.full(n_nn, 0.95, np.float32), fragment_similarity=0.9, **caps)
    assert (high.assign()[S.ASSIGNMENT] == "fragment").any()
