"""segger.data.graph.knn_edges: k cap, true radius bound, no self edges, duplicates."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import cKDTree

from segger.data import knn_edges


def _pairs(qi, ni):
    return set(zip(qi.tolist(), ni.tolist()))


def test_radius_is_a_true_upper_bound():
    # the reference implementation passed the radius into cKDTree's ``eps`` slot, so the far
    # point still got its k nearest neighbours at ~99 µm
    pts = np.array([[0.0, 0.0], [1.0, 0.0], [100.0, 0.0]])
    qi, ni, d = knn_edges(pts, k=2, max_dist=5.0)
    assert _pairs(qi, ni) == {(0, 1), (1, 0)}
    assert 2 not in qi and 2 not in ni
    np.testing.assert_allclose(d, 1.0)


def test_every_edge_within_radius_and_matches_brute_force():
    rng = np.random.default_rng(1)
    pts = rng.uniform(0, 30, size=(300, 2))
    k, r = 4, 2.5
    qi, ni, d = knn_edges(pts, k=k, max_dist=r)
    true = np.linalg.norm(pts[qi] - pts[ni], axis=1)
    np.testing.assert_allclose(d, true, rtol=1e-12, atol=1e-12)
    assert (d <= r).all()
    # brute force: the neighbours are exactly the (up to) k nearest others within r
    full = np.linalg.norm(pts[:, None] - pts[None], axis=2)
    np.fill_diagonal(full, np.inf)
    for i in range(len(pts)):
        got = np.sort(d[qi == i])
        within = np.sort(full[i][full[i] < r])[:k]
        np.testing.assert_allclose(got, within)


def test_k_cap_and_no_self_edges():
    rng = np.random.default_rng(2)
    pts = rng.uniform(0, 5, size=(200, 2))  # dense: everybody has > k neighbours within r
    for k in (1, 3, 7):
        qi, ni, _ = knn_edges(pts, k=k, max_dist=10.0)
        counts = np.bincount(qi, minlength=len(pts))
        assert (counts == k).all()
        assert not (qi == ni).any()
        assert len(_pairs(qi, ni)) == len(qi), "an edge is listed twice"


def test_k_larger_than_point_count():
    pts = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    qi, ni, _ = knn_edges(pts, k=50, max_dist=10.0)
    assert _pairs(qi, ni) == {(a, b) for a in range(3) for b in range(3) if a != b}


def test_single_and_empty_inputs():
    qi, ni, d = knn_edges(np.array([[3.0, 4.0]]), k=5, max_dist=10.0)
    assert len(qi) == len(ni) == len(d) == 0
    qi, ni, d = knn_edges(np.zeros((0, 2)), k=5, max_dist=10.0)
    assert len(qi) == len(ni) == len(d) == 0
    qi, ni, d = knn_edges(np.zeros((4, 2)), k=2, max_dist=1.0, query=np.zeros((0, 2)))
    assert len(qi) == 0


@pytest.mark.parametrize("k", [1, 2, 3])
def test_duplicate_points(k):
    # five molecules at the very same spot plus one nearby: duplicates may push the node itself
    # out of its own k+1 list; it must still get at most k edges, none to itself
    pts = np.array([[0.0, 0.0]] * 5 + [[0.5, 0.0]])
    qi, ni, d = knn_edges(pts, k=k, max_dist=2.0)
    assert not (qi == ni).any()
    counts = np.bincount(qi, minlength=len(pts))
    assert (counts == k).all()
    assert len(_pairs(qi, ni)) == len(qi)
    assert (d <= 2.0).all()


def test_query_mode_keeps_zero_distance_matches():
    # with an explicit query (transcripts → nuclei) a coincident point is a real match
    points = np.array([[0.0, 0.0], [3.0, 0.0], [50.0, 0.0]])
    query = np.array([[0.0, 0.0], [2.0, 0.0], [200.0, 0.0]])
    qi, ni, d = knn_edges(points, k=2, max_dist=5.0, query=query)
    assert _pairs(qi, ni) == {(0, 0), (0, 1), (1, 0), (1, 1)}
    np.testing.assert_allclose(d, np.linalg.norm(query[qi] - points[ni], axis=1))


def test_three_d_points():
    pts = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 10.0]])
    qi, ni, _ = knn_edges(pts, k=2, max_dist=2.0)
    assert _pairs(qi, ni) == {(0, 1), (1, 0)}


def test_agrees_with_ckdtree_on_real_spacing(pkg_lung_sample):
    xy = pkg_lung_sample.transcripts[["x", "y"]].to_numpy(float)[:3000]
    qi, ni, d = knn_edges(xy, k=5, max_dist=5.0)
    assert (d <= 5.0).all() and not (qi == ni).any()
    assert np.bincount(qi, minlength=len(xy)).max() <= 5
    # the number of points with at least one neighbour within 5 µm is the same as cKDTree's
    pairs = cKDTree(xy).query_pairs(5.0, output_type="ndarray")
    has = np.zeros(len(xy), bool)
    has[pairs.ravel()] = True
    got = np.zeros(len(xy), bool)
    got[qi] = True
    assert (has == got).all()
