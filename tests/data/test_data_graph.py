"""segger.data.graph.build_graph / GraphParams: structure, bounds, validation, belongs modes."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import shapely
import torch

from segger.data import TX_BD, TX_CAND, TX_TX, GraphParams, build_graph, nucleus_features
from segger.errors import SeggerInputError

# ----------------------------------------------------------------------------------------------
# GraphParams.validate


@pytest.mark.parametrize("kw", [
    {"k_tx": 0}, {"k_bd": 0}, {"k_tx": -3}, {"k_tx": 101}, {"k_tx": 2.5}, {"k_bd": True}, {"k_tx": "5"},
    {"dist_tx": 0.0}, {"dist_tx": -1.0}, {"dist_bd": -15.0}, {"dist_tx": math.nan}, {"dist_bd": math.inf},
    {"dist_tx": -math.inf}, {"dist_bd": 1e6}, {"dist_tx": "5"}, {"belongs": "vendor"},
])
def test_graph_params_reject_nonsense(kw):
    with pytest.raises(SeggerInputError) as exc:
        GraphParams(**kw).validate()
    name = next(iter(kw))
    assert name in str(exc.value)
    assert "\n" not in str(exc.value)


def test_graph_params_accept_and_round_trip():
    p = GraphParams(k_tx=1, dist_tx=0.5, k_bd=100, dist_bd=1000, use_z=True, belongs="polygon").validate()
    assert GraphParams.from_dict({**p.to_dict(), "unknown_key": 1}) == p
    GraphParams(k_tx=np.int64(3), dist_tx=np.float32(2.0)).validate()


def test_build_graph_validates_params(synthetic_tables):
    tx, nuc = synthetic_tables(n_side=2, per_cell=10)
    with pytest.raises(SeggerInputError, match="k_tx"):
        build_graph(tx, nuc, GraphParams(k_tx=0))
    with pytest.raises(SeggerInputError, match="dist_bd"):
        build_graph(tx, nuc, GraphParams(dist_bd=float("nan")))


# ----------------------------------------------------------------------------------------------
# bad tables


def test_rejects_nan_coordinates(synthetic_tables):
    tx, nuc = synthetic_tables(n_side=2, per_cell=10)
    bad = tx.copy()
    bad.loc[3, "x"] = np.nan
    bad.loc[5, "y"] = np.inf
    with pytest.raises(SeggerInputError, match="2 rows with NaN/inf"):
        build_graph(bad, nuc)


@pytest.mark.parametrize("col", ["x", "y", "gene"])
def test_rejects_missing_transcript_column(synthetic_tables, col):
    tx, nuc = synthetic_tables(n_side=2, per_cell=10)
    with pytest.raises(SeggerInputError, match=repr(col)):
        build_graph(tx.drop(columns=[col]), nuc)


@pytest.mark.parametrize("col", ["bd_id", "geometry", "x", "y"])
def test_rejects_missing_nuclei_column(synthetic_tables, col):
    tx, nuc = synthetic_tables(n_side=2, per_cell=10)
    with pytest.raises(SeggerInputError, match="nuclei table lacks"):
        build_graph(tx, nuc.drop(columns=[col]))


def test_rejects_duplicate_nucleus_ids(synthetic_tables):
    tx, nuc = synthetic_tables(n_side=2, per_cell=10)
    dup = nuc.copy()
    dup.loc[1, "bd_id"] = dup.loc[0, "bd_id"]
    with pytest.raises(SeggerInputError, match="duplicate id 'cell-0'"):
        build_graph(tx, dup)


def test_rejects_empty_transcripts(synthetic_tables):
    tx, nuc = synthetic_tables(n_side=2, per_cell=10)
    with pytest.raises(SeggerInputError, match="empty"):
        build_graph(tx.iloc[:0], nuc)


def test_inputs_are_not_modified(synthetic_tables):
    tx, nuc = synthetic_tables(n_side=2, per_cell=10)
    tx2 = tx.set_axis(np.arange(len(tx)) * 7 + 3)  # a non-default index
    before_tx, before_nuc = tx2.copy(), nuc.copy()
    b = build_graph(tx2, nuc)
    pd.testing.assert_frame_equal(tx2, before_tx)
    pd.testing.assert_frame_equal(nuc, before_nuc)
    # tx node i is row i of bundle.transcripts (re-indexed from 0)
    assert (b.transcripts.index == np.arange(len(tx))).all()
    np.testing.assert_array_equal(b.transcripts["transcript_id"].to_numpy(), tx2["transcript_id"].to_numpy())


def test_no_nuclei_gives_an_empty_but_valid_graph(synthetic_tables):
    tx, nuc = synthetic_tables(n_side=2, per_cell=10)
    b = build_graph(tx, nuc.iloc[:0])
    s = b.summary()
    assert s["n_bd"] == 0 and s["n_belongs"] == 0 and s["n_candidates"] == 0
    assert s["n_tx"] == len(tx) and s["n_tx_tx"] > 0


# ----------------------------------------------------------------------------------------------
# structure on a synthetic sample


def test_synthetic_graph_structure(synthetic_graph):
    b = synthetic_graph
    d = b.data
    n_tx, n_bd = len(b.transcripts), len(b.nuclei)
    assert d["tx"].num_nodes == n_tx and d["bd"].num_nodes == n_bd
    assert d["tx"].x.dtype == torch.int64 and d["tx"].x.shape == (n_tx,)
    assert d["tx"].pos.shape == (n_tx, 3)
    assert d["bd"].x.shape == (n_bd, 4) and d["bd"].pos.shape == (n_bd, 2)
    assert d["bd"].area.shape == (n_bd,)
    for et, (ns, nd) in {TX_TX: (n_tx, n_tx), TX_BD: (n_tx, n_bd), TX_CAND: (n_tx, n_bd)}.items():
        ei = d[et].edge_index
        assert ei.dtype == torch.int64 and ei.shape[0] == 2
        if ei.numel():
            assert 0 <= int(ei[0].min()) and int(ei[0].max()) < ns
            assert 0 <= int(ei[1].min()) and int(ei[1].max()) < nd
    # the belongs edges are exactly the flagged transcripts with their vendor cell id
    bel = d[TX_BD].edge_index.numpy()
    flagged = np.flatnonzero(b.transcripts["nuclear"].to_numpy())
    assert sorted(bel[0].tolist()) == flagged.tolist()
    assert (b.nuclei["bd_id"].to_numpy()[bel[1]] == b.transcripts["cell_id"].to_numpy()[bel[0]]).all()
    assert b.info["belongs_mode"] == "flag"
    # gene tokens decode back to the gene names
    genes = np.array(b.vocab.genes, dtype=object)
    assert (genes[d["tx"].x.numpy() - 1] == b.transcripts["gene"].to_numpy()).all()


def test_use_z_changes_tx_neighbours():
    pts = pd.DataFrame({"transcript_id": np.arange(3), "x": [0.0, 0.0, 0.3], "y": [0.0, 0.0, 0.0],
                        "z": [0.0, 10.0, 0.0], "gene": ["a", "b", "c"]})
    nuc = pd.DataFrame({"bd_id": ["n"], "geometry": [shapely.Point(0, 0).buffer(1)], "x": [0.0], "y": [0.0]})
    flat = build_graph(pts, nuc, GraphParams(k_tx=2, dist_tx=5.0, belongs="polygon"))
    deep = build_graph(pts, nuc, GraphParams(k_tx=2, dist_tx=5.0, belongs="polygon", use_z=True))
    e2 = set(map(tuple, flat.data[TX_TX].edge_index.T.tolist()))
    e3 = set(map(tuple, deep.data[TX_TX].edge_index.T.tolist()))
    assert (1, 0) in e2 and (1, 0) not in e3  # 10 µm apart in z: no longer neighbours in 3-D


def test_nucleus_features_are_finite_and_sensible():
    circle = shapely.Point(0, 0).buffer(5, quad_segs=32)
    rect = shapely.box(0, 0, 20, 2)
    degenerate = shapely.Polygon([(0, 0), (1, 1), (2, 2), (0, 0)])  # zero area
    f = nucleus_features(np.array([circle, rect, degenerate], dtype=object))
    assert f.shape == (3, 4) and f.dtype == np.float32
    assert np.isfinite(f).all()
    np.testing.assert_allclose(f[0, 0], np.log1p(circle.area), rtol=1e-5)
    assert f[0, 3] > f[1, 3]  # a disc is rounder than a 20 × 2 bar
    assert nucleus_features(np.zeros(0, dtype=object)).shape == (0, 4)


# ----------------------------------------------------------------------------------------------
# the real lung crop


def test_lung_graph_counts_are_consistent(pkg_lung_graph, pkg_lung_sample):
    b = pkg_lung_graph
    s = b.summary()
    assert s["n_tx"] == len(pkg_lung_sample.transcripts) == b.data["tx"].num_nodes
    assert s["n_bd"] == len(pkg_lung_sample.nuclei) == b.data["bd"].num_nodes
    assert s["n_tx_tx"] <= b.params.k_tx * s["n_tx"]
    assert s["n_belongs"] <= s["n_tx"]
    assert s["n_belongs"] <= s["n_candidates"] <= (b.params.k_bd + 1) * s["n_tx"]
    # each transcript has at most one nucleus
    bel = b.data[TX_BD].edge_index.numpy()
    assert len(np.unique(bel[0])) == bel.shape[1]
    # the candidate edges are unique pairs, and at most k_bd (+ the own nucleus) per transcript
    cand = b.data[TX_CAND].edge_index.numpy()
    keys = cand[0] * s["n_bd"] + cand[1]
    assert len(np.unique(keys)) == len(keys)
    assert np.bincount(cand[0], minlength=s["n_tx"]).max() <= b.params.k_bd + 1
    # tx–tx: at most k_tx incoming edges per transcript, no self edges, no repeats
    e = b.data[TX_TX].edge_index.numpy()
    assert np.bincount(e[1], minlength=s["n_tx"]).max() <= b.params.k_tx
    assert not (e[0] == e[1]).any()
    assert len(np.unique(e[0] * s["n_tx"] + e[1])) == e.shape[1]


def test_lung_graph_every_edge_within_its_bound(pkg_lung_graph):
    b = pkg_lung_graph
    pos = b.data["tx"].pos.numpy().astype(np.float64)[:, :2]
    bpos = b.data["bd"].pos.numpy().astype(np.float64)
    e = b.data[TX_TX].edge_index.numpy()
    d = np.linalg.norm(pos[e[0]] - pos[e[1]], axis=1)
    assert d.max() <= b.params.dist_tx + 1e-4
    cand = b.data[TX_CAND].edge_index.numpy()
    bel = b.data[TX_BD].edge_index.numpy()
    own = np.full(len(pos), -1)
    own[bel[0]] = bel[1]
    dc = np.linalg.norm(pos[cand[0]] - bpos[cand[1]], axis=1)
    # a candidate is within dist_bd of the centroid, unless it is the transcript's own nucleus
    far = dc > b.params.dist_bd + 1e-4
    assert (own[cand[0][far]] == cand[1][far]).all()


def test_lung_candidates_include_own_nucleus(pkg_lung_graph):
    b = pkg_lung_graph
    n_bd = b.data["bd"].num_nodes
    cand = b.data[TX_CAND].edge_index.numpy()
    bel = b.data[TX_BD].edge_index.numpy()
    assert bel.shape[1] > 1000
    assert np.isin(bel[0] * n_bd + bel[1], cand[0] * n_bd + cand[1]).all()


def test_lung_bd_features(pkg_lung_graph):
    x = pkg_lung_graph.data["bd"].x.numpy()
    assert x.shape == (pkg_lung_graph.data["bd"].num_nodes, 4)
    assert np.isfinite(x).all()
    area = pkg_lung_graph.data["bd"].area.numpy()
    assert (area > 0).all()
    np.testing.assert_allclose(x[:, 0], np.log1p(area), rtol=1e-4)


def test_lung_candidate_relative_distance(pkg_lung_graph):
    """``d_rel`` (if the graph carries it): ≥ 0, and 0 for each transcript's nearest nucleus outline."""
    b = pkg_lung_graph
    if "d_rel" not in b.data[TX_CAND]:
        pytest.skip("this version's graph carries no d_rel")
    d_rel = b.data[TX_CAND].d_rel.numpy()
    cand = b.data[TX_CAND].edge_index.numpy()
    assert d_rel.shape == (cand.shape[1],) and np.isfinite(d_rel).all() and (d_rel >= 0).all()
    best = np.full(b.data["tx"].num_nodes, np.inf)
    np.minimum.at(best, cand[0], d_rel)
    has = np.isfinite(best)
    np.testing.assert_allclose(best[has], 0.0, atol=1e-6)


def test_lung_belongs_flag_and_polygon_agree(pkg_lung_sample):
    tx, nuc = pkg_lung_sample.transcripts, pkg_lung_sample.nuclei
    flag = build_graph(tx, nuc, GraphParams(belongs="flag"))
    poly = build_graph(tx, nuc, GraphParams(belongs="polygon"))
    assert flag.info["belongs_mode"] == "flag" and poly.info["belongs_mode"] == "polygon"
    auto = build_graph(tx, nuc)
    assert auto.info["belongs_mode"] == "flag"  # the lung crop has the flag and matching cell ids
    f = flag.data[TX_BD].edge_index.numpy()
    p = poly.data[TX_BD].edge_index.numpy()
    n_bd = len(nuc)
    fk, pk = f[0] * n_bd + f[1], p[0] * n_bd + p[1]
    both = np.isin(fk, pk).sum()
    # SOURCE.md: 92.9 % of the flagged molecules lie in their own nucleus polygon
    assert both / len(fk) > 0.85
    assert both / len(pk) > 0.85
    # every polygon link really is inside (covers) its nucleus
    pts = shapely.points(tx["x"].to_numpy()[p[0]], tx["y"].to_numpy()[p[0]])
    assert shapely.covers(nuc["geometry"].to_numpy()[p[1]], pts).all()


def test_belongs_flag_without_columns_raises(synthetic_tables):
    tx, nuc = synthetic_tables(n_side=2, per_cell=10)
    with pytest.raises(SeggerInputError, match="belongs='flag'"):
        build_graph(tx.drop(columns=["nuclear"]), nuc, GraphParams(belongs="flag"))
    # auto falls back to polygons
    b = build_graph(tx.drop(columns=["nuclear"]), nuc)
    assert b.info["belongs_mode"] == "polygon"


def test_polygon_belongs_overlapping_nuclei_nearest_centroid():
    a = shapely.Point(0, 0).buffer(3)
    c = shapely.Point(2, 0).buffer(3)
    tx = pd.DataFrame({"transcript_id": [0, 1, 2], "x": [0.5, 1.6, 10.0], "y": [0.0, 0.0, 0.0],
                       "gene": ["g", "g", "g"]})
    nuc = pd.DataFrame({"bd_id": ["A", "C"], "geometry": [a, c], "x": [0.0, 2.0], "y": [0.0, 0.0]})
    b = build_graph(tx, nuc, GraphParams(belongs="polygon"))
    bel = b.data[TX_BD].edge_index.numpy()
    assert dict(zip(bel[0].tolist(), bel[1].tolist())) == {0: 0, 1: 1}
