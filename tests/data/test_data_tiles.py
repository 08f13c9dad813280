"""segger.data.graph.make_tiles / subgraph / tile_size_for."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from segger.data import TX_BD, TX_CAND, TX_TX, make_tiles, subgraph, tile_size_for
from segger.errors import SeggerInputError


def _edge_set(ei: torch.Tensor) -> set[tuple[int, int]]:
    return set(map(tuple, ei.T.tolist()))


@pytest.mark.parametrize("tile_size,margin", [(40.0, 10.0), (60.0, 0.0), (500.0, 20.0), (17.3, 5.0)])
def test_every_transcript_in_exactly_one_core(pkg_lung_graph, tile_size, margin):
    b = pkg_lung_graph
    n = b.data["tx"].num_nodes
    tiles = make_tiles(b, tile_size, margin)
    cores = np.concatenate([t.tx_idx[t.core_mask] for t in tiles])
    assert len(cores) == n
    np.testing.assert_array_equal(np.sort(cores), np.arange(n))
    assert sum(t.n_core for t in tiles) == n
    assert all(t.n_core > 0 for t in tiles)  # empty tiles are skipped


def test_margins_contain_the_core_and_everything_nearby(pkg_lung_graph):
    b = pkg_lung_graph
    pos = b.data["tx"].pos.numpy()[:, :2].astype(np.float64)
    bpos = b.data["bd"].pos.numpy().astype(np.float64)
    margin = 12.0
    tiles = make_tiles(b, 50.0, margin)
    assert len(tiles) > 4
    for t in tiles:
        assert (np.diff(t.tx_idx) > 0).all() and (np.diff(t.bd_idx) > 0).all()  # sorted, unique
        assert t.core_mask.shape == t.tx_idx.shape
        x0, y0, x1, y1 = t.bounds
        assert x1 - x0 == pytest.approx(50.0) and y1 - y0 == pytest.approx(50.0)
        core = pos[t.tx_idx[t.core_mask]]
        eps = 1e-6
        assert ((core[:, 0] >= x0 - eps) & (core[:, 0] <= x1 + eps)).all()
        assert ((core[:, 1] >= y0 - eps) & (core[:, 1] <= y1 + eps)).all()
        # the seen transcripts are exactly those inside the core square grown by the margin
        lo, hi = np.array([x0 - margin, y0 - margin]), np.array([x1 + margin, y1 + margin])
        inside = np.flatnonzero(np.all((pos >= lo) & (pos <= hi), axis=1))
        assert set(t.tx_idx.tolist()) == set(inside.tolist())
        binside = np.flatnonzero(np.all((bpos >= lo) & (bpos <= hi), axis=1))
        np.testing.assert_array_equal(t.bd_idx, binside)


def test_one_big_tile_holds_everything(pkg_lung_graph):
    b = pkg_lung_graph
    tiles = make_tiles(b, 1e4, 0.0)
    assert len(tiles) == 1
    assert tiles[0].core_mask.all()
    assert len(tiles[0].tx_idx) == b.data["tx"].num_nodes
    assert len(tiles[0].bd_idx) == b.data["bd"].num_nodes


@pytest.mark.parametrize("size,margin", [(0.0, 1.0), (-5.0, 1.0), (10.0, -1.0)])
def test_bad_tile_sizes(synthetic_graph, size, margin):
    with pytest.raises(SeggerInputError):
        make_tiles(synthetic_graph, size, margin)


def test_tile_size_for_density(pkg_lung_graph):
    b = pkg_lung_graph
    n = b.data["tx"].num_nodes
    side = tile_size_for(b, 3000)
    tiles = make_tiles(b, side, 0.0)
    mean_core = n / len(tiles)
    assert 0.3 * 3000 < mean_core < 3.0 * 3000
    assert tile_size_for(b, 1) == 10.0  # floor
    assert tile_size_for(b, 10 * n) > tile_size_for(b, n)


def test_subgraph_reindexes(synthetic_graph):
    d = synthetic_graph.data
    rng = np.random.default_rng(0)
    tx_idx = np.sort(rng.choice(d["tx"].num_nodes, size=200, replace=False))
    bd_idx = np.array([0, 2, 3, 7])
    sub = subgraph(d, tx_idx, bd_idx)
    assert sub["tx"].num_nodes == 200 and sub["bd"].num_nodes == 4
    np.testing.assert_array_equal(sub["tx"].global_index.numpy(), tx_idx)
    np.testing.assert_array_equal(sub["bd"].global_index.numpy(), bd_idx)
    assert torch.equal(sub["tx"].x, d["tx"].x[torch.from_numpy(tx_idx)])
    assert torch.equal(sub["tx"].pos, d["tx"].pos[torch.from_numpy(tx_idx)])
    for key in ("x", "pos", "area"):
        assert torch.equal(sub["bd"][key], d["bd"][key][torch.from_numpy(bd_idx)])
    gmap = {TX_TX: (tx_idx, tx_idx), TX_BD: (tx_idx, bd_idx), TX_CAND: (tx_idx, bd_idx)}
    for et, (gs, gd) in gmap.items():
        ei = sub[et].edge_index.numpy()
        assert ei.shape[0] == 2
        if ei.size:
            assert ei[0].max() < len(gs) and ei[1].max() < len(gd)
        back = {(int(gs[a]), int(gd[c])) for a, c in ei.T}
        full = _edge_set(d[et].edge_index)
        expected = {(a, c) for a, c in full if a in set(tx_idx.tolist()) and c in set(gd.tolist())}
        assert back == expected, et
    if "d_rel" in d[TX_CAND]:
        # the per-edge attribute follows its edge
        gei = d[TX_CAND].edge_index.numpy()
        lookup = {(int(a), int(c)): float(v) for (a, c), v in zip(gei.T, d[TX_CAND].d_rel.numpy())}
        sei = sub[TX_CAND].edge_index.numpy()
        got = sub[TX_CAND].d_rel.numpy()
        assert len(got) == sei.shape[1]
        for (a, c), v in zip(sei.T, got):
            assert lookup[(int(tx_idx[a]), int(bd_idx[c]))] == pytest.approx(v)


def test_subgraph_empty_selection(synthetic_graph):
    sub = subgraph(synthetic_graph.data, np.zeros(0, np.int64), np.zeros(0, np.int64))
    assert sub["tx"].num_nodes == 0 and sub["bd"].num_nodes == 0
    for et in (TX_TX, TX_BD, TX_CAND):
        assert sub[et].edge_index.shape == (2, 0)
