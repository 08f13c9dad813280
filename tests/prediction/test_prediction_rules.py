"""The assignment rule on small hand-made graphs (fast, no training): reach ("no cell"), geometry
where it is unambiguous, expression where it is not, bounded fragments, collision-free fragment ids."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import shapely

from segger import schema as S
from segger.data import GraphParams, build_graph
from segger.data.graph import TX_CAND
from segger.prediction import PredictConfig, Prediction


def _square(cx, cy, r=2.0):
    return shapely.box(cx - r, cy - r, cx + r, cy + r)


def _bundle(tx_xy, nuclei_xy, ids=None, max_distance=5.0):
    tx = pd.DataFrame({S.TX_ID: np.arange(len(tx_xy)), S.X: [p[0] for p in tx_xy], S.Y: [p[1] for p in tx_xy],
                       S.Z: 0.0, S.GENE: "g"})
    ids = ids or [f"n{i}" for i in range(len(nuclei_xy))]
    bd = pd.DataFrame({S.BD_ID: ids, S.GEOMETRY: [_square(x, y) for x, y in nuclei_xy],
                       S.X: [x for x, _ in nuclei_xy], S.Y: [y for _, y in nuclei_xy], S.BD_SOURCE: "polygon"})
    return build_graph(tx, bd, GraphParams(k_bd=4, dist_bd=50.0, max_distance=max_distance))


def _prediction(bundle, score=None, choice=None, config=None, nn=None):
    """A Prediction with given per-candidate scores/choice logits (default: score 0.9, choice 0)."""
    c = bundle.data[TX_CAND].edge_index.numpy()
    d_abs = bundle.data[TX_CAND].d_abs.numpy()
    score = np.full(c.shape[1], 0.9, np.float32) if score is None else score(c, d_abs)
    choice = np.zeros(c.shape[1], np.float32) if choice is None else choice(c, d_abs)
    src, dst, sim = nn if nn is not None else (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32))
    return Prediction(bundle, c[0], c[1], score, src, dst, sim, config or PredictConfig(), cand_d_abs=d_abs,
                      cand_choice=choice)


def test_transcript_beyond_the_reach_joins_no_nucleus():
    # nucleus at the origin (half-width 2 µm); transcripts 1, 4.9, 5.1 and 30 µm outside its outline
    b = _bundle([(3, 0), (6.9, 0), (7.1, 0), (32, 0)], [(0, 0)], max_distance=5.0)
    df = _prediction(b).assign(score_cut=0.0, fragments=False)
    assert df[S.SEGGER_CELL_ID].tolist() == ["n0", "n0", S.UNASSIGNED, S.UNASSIGNED]
    # a larger reach given at prediction time takes the 5.1 µm one in, never the 30 µm one
    p = _prediction(b, config=PredictConfig(max_distance=6.0))
    assert p.assign(score_cut=0.0, fragments=False)[S.SEGGER_CELL_ID].tolist() == ["n0", "n0", "n0", S.UNASSIGNED]


def test_geometry_decides_where_it_is_unambiguous():
    # nuclei at x=0 and x=10 (outlines at 2 and 8): a transcript at x=3 is 1 µm from n0, 5 µm from n1
    b = _bundle([(3, 0)], [(0, 0), (10, 0)], max_distance=10.0)
    # the expression strongly prefers n1, but n1 is 4 µm farther than n0 (> ambiguity 1 µm)
    prefer_n1 = lambda c, d: np.where(c[1] == 1, 10.0, 0.0).astype(np.float32)  # noqa: E731
    p = _prediction(b, choice=prefer_n1)
    assert p.assign(score_cut=0.0)[S.SEGGER_CELL_ID].tolist() == ["n0"]
    # with a 5 µm ambiguity window the expression may move it
    p.set_rule(ambiguity=5.0)
    assert p.assign(score_cut=0.0)[S.SEGGER_CELL_ID].tolist() == ["n1"]


def test_expression_decides_between_equidistant_nuclei_only_past_the_margin():
    # x=4.9: 2.9 µm from n0's outline, 3.1 µm from n1's: ambiguous
    b = _bundle([(4.9, 0)], [(0, 0), (10, 0)], max_distance=10.0)
    for margin, expected in ((0.5, "n1"), (5.0, "n0")):  # n1 wins by 1.0 log-odds
        p = _prediction(b, choice=lambda c, d: np.where(c[1] == 1, 1.0, 0.0).astype(np.float32),
                        config=PredictConfig(move_margin=margin))
        assert p.assign(score_cut=0.0)[S.SEGGER_CELL_ID].tolist() == [expected]
        assert p.nearest_bd.tolist() == [0]


def test_score_cut_applies_to_the_winner():
    b = _bundle([(3, 0), (6, 0)], [(0, 0)], max_distance=10.0)
    p = _prediction(b, score=lambda c, d: np.where(d < 2, 0.8, 0.3).astype(np.float32))
    assert p.assign(score_cut=0.5, fragments=False)[S.ASSIGNMENT].tolist() == ["cytoplasm", "none"]
    assert p.assign(score_cut=0.2, fragments=False)[S.ASSIGNMENT].tolist() == ["cytoplasm", "cytoplasm"]


def _cluster(cx, cy, n, spacing=1.0):
    k = int(np.ceil(np.sqrt(n)))
    return [(cx + spacing * (i % k), cy + spacing * (i // k)) for i in range(n)]


def _chain_nn(n):
    src = np.arange(n - 1, dtype=np.int64)
    return np.r_[src, src + 1], np.r_[src + 1, src], np.ones(2 * (n - 1), np.float32)


def test_fragments_form_only_beyond_the_reach():
    # 12 transcripts next to the nucleus (below the score cut) and 12 far from it, all similar
    near = _cluster(3, -2, 12)
    far = _cluster(60, 60, 12)
    b = _bundle(near + far, [(0, 0)], max_distance=8.0)
    p = _prediction(b, score=lambda c, d: np.full(len(d), 0.1, np.float32), nn=_chain_nn(24))
    df = p.assign(score_cut=0.5, min_fragment_size=5)
    kinds = df[S.ASSIGNMENT].tolist()
    assert kinds[:12] == ["none"] * 12  # a nucleus can claim them: they never split its cell
    assert kinds[12:] == ["fragment"] * 12


@pytest.mark.parametrize("cap", ["size", "extent"])
def test_fragments_are_bounded_in_size_and_extent(cap):
    far = _cluster(100, 100, 49, spacing=1.0)  # a 7 × 7 µm patch of 49 transcripts
    b = _bundle(far, [(0, 0)], max_distance=5.0)
    nn = _chain_nn(49)
    ok = _prediction(b, nn=nn).assign(min_fragment_size=5)
    assert (ok[S.ASSIGNMENT] == "fragment").all()
    cfg = PredictConfig(max_fragment_size=48) if cap == "size" else PredictConfig(max_fragment_extent=5.0)
    capped = _prediction(b, nn=nn, config=cfg).assign(min_fragment_size=5)
    assert (capped[S.ASSIGNMENT] == "none").all()  # too large to be one cell: left unassigned


def test_fragment_ids_never_collide_with_nucleus_ids():
    far = _cluster(100, 100, 10)
    b = _bundle(far, [(0, 0)], ids=["fragment-0"], max_distance=5.0)
    df = _prediction(b, nn=_chain_nn(10)).assign(min_fragment_size=5)
    ids = set(df[S.SEGGER_CELL_ID])
    assert "fragment-0" not in ids and ids == {"segger-fragment-0"}


def test_predict_config_rejects_bad_rules():
    from segger.errors import SeggerInputError

    for kw in ({"ambiguity": -1}, {"move_margin": float("nan")}, {"max_distance": -2.0},
               {"max_fragment_size": 3, "min_fragment_size": 10}, {"max_fragment_extent": 0}):
        with pytest.raises(SeggerInputError):
            PredictConfig(**kw).validate()


def test_rethreshold_reuses_fragments_only_while_their_rule_holds():
    """The napari slider's path: fragments are cached across score cuts (they form only where no
    nucleus can claim a transcript, which no cut changes), and recomputed when their rule or the
    reach changes — always the same table as a fresh prediction."""
    import dataclasses

    near = _cluster(3, -2, 12)
    far = _cluster(20, 0, 12)  # 18 µm beyond the outline: a candidate, but out of the 8 µm reach
    b = _bundle(near + far, [(0, 0)], max_distance=8.0)
    score = lambda c, d: np.linspace(0.05, 0.95, len(d)).astype(np.float32)  # noqa: E731
    p = _prediction(b, score=score, nn=_chain_nn(24))
    for cut in (0.5, 0.2, 0.8, 0.5):
        fresh = _prediction(b, score=score, nn=_chain_nn(24)).assign(score_cut=cut, min_fragment_size=5)
        pd.testing.assert_frame_equal(p.assign(score_cut=cut, min_fragment_size=5), fresh)
    assert (p.assign(min_fragment_size=5)[S.ASSIGNMENT] == "fragment").sum() == 12
    # a new size cap after the cache was filled: the cached fragments must not be reused
    p.config = dataclasses.replace(p.config, max_fragment_size=11)
    assert (p.assign(min_fragment_size=5)[S.ASSIGNMENT] == "fragment").sum() == 0
    p.config = dataclasses.replace(p.config, max_fragment_size=400)
    # a longer reach lets the nucleus claim the far cluster: no fragments left
    p.set_rule(max_distance=200.0)
    assert (p.assign(score_cut=0.0, min_fragment_size=5)[S.ASSIGNMENT] == "fragment").sum() == 0


def test_assign_codes_name_the_same_cells_as_the_table():
    far = _cluster(100, 100, 10)
    b = _bundle(_cluster(3, -2, 6) + far, [(0, 0)], ids=["fragment-0"], max_distance=5.0)
    p = _prediction(b, nn=_chain_nn(16))
    df, codes = p.assign_with_codes(score_cut=0.5, min_fragment_size=5)
    ids = codes.categories.to_numpy(dtype=object)[codes.cell_codes]
    assert ids.tolist() == df[S.SEGGER_CELL_ID].tolist()
    assert set(ids) == {"fragment-0", "segger-fragment-0"}
    assert codes.categories[-1] == S.UNASSIGNED
    assert list(codes.kind_categorical().astype(str)) == df[S.ASSIGNMENT].astype(str).tolist()
    assert df[S.SEGGER_CELL_ID].dtype == object
