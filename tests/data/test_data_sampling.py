"""segger.data.sampling: supervised links, negatives, spatial hold-out."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from segger.data import TX_BD, TX_CAND, draw_negatives, sample_labels, spatial_holdout


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def lung_edges(pkg_lung_graph):
    d = pkg_lung_graph.data
    return d[TX_BD].edge_index, d[TX_CAND].edge_index, int(d["bd"].num_nodes)


def _own(bel: torch.Tensor, n_tx: int) -> torch.Tensor:
    own = torch.full((n_tx,), -1, dtype=torch.long)
    own[bel[0]] = bel[1]
    return own


def test_sample_labels_deterministic_under_seeded_generator(lung_edges):
    bel, cand, n_bd = lung_edges
    eligible = torch.ones(bel.shape[1], dtype=torch.bool)
    a = sample_labels(bel, cand, n_bd, eligible, _gen(3))
    b = sample_labels(bel, cand, n_bd, eligible, _gen(3))
    c = sample_labels(bel, cand, n_bd, eligible, _gen(4))
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    assert not torch.equal(a[0], c[0])


def test_sample_labels_shapes_and_supervised_share(lung_edges):
    bel, cand, n_bd = lung_edges
    n_e = bel.shape[1]
    eligible = torch.zeros(n_e, dtype=torch.bool)
    eligible[: n_e // 2] = True
    sup, idx, labels = sample_labels(bel, cand, n_bd, eligible, _gen(), supervision_ratio=0.5, neg_ratio=3.0)
    assert sup.dtype == torch.bool and sup.shape == (n_e,)
    assert not (sup & ~eligible).any(), "only eligible links are supervised"
    assert int(sup.sum()) == round(int(eligible.sum()) * 0.5)
    assert idx.shape == (2, labels.numel()) and idx.dtype == torch.long
    n_pos = int(labels.sum())
    assert n_pos == int(sup.sum())
    # the positives are exactly the supervised belongs edges, listed first
    pos = idx[:, :n_pos]
    assert torch.equal(labels[:n_pos], torch.ones(n_pos)) and torch.equal(labels[n_pos:], torch.zeros(labels.numel() - n_pos))
    assert {tuple(p) for p in pos.T.tolist()} == {tuple(p) for p in bel[:, sup].T.tolist()}
    assert labels.numel() - n_pos == round(3.0 * n_pos)
    assert int(idx[1].max()) < n_bd and int(idx[1].min()) >= 0


def test_negatives_never_the_own_nucleus(lung_edges):
    bel, cand, n_bd = lung_edges
    n_tx = int(max(bel[0].max(), cand[0].max())) + 1
    own = _own(bel, n_tx)
    eligible = torch.ones(bel.shape[1], dtype=torch.bool)
    for seed in range(5):
        for hard in (0.0, 0.5, 1.0):
            _, idx, labels = sample_labels(bel, cand, n_bd, eligible, _gen(seed), supervision_ratio=0.7,
                                           neg_ratio=4.0, hard_fraction=hard)
            neg = idx[:, labels == 0]
            assert neg.shape[1] > 0
            assert not (neg[1] == own[neg[0]]).any()
            # negatives are drawn for supervised transcripts only
            pos_tx = set(idx[0, labels == 1].tolist())
            assert set(neg[0].tolist()) <= pos_tx


def test_hard_negatives_come_from_candidate_edges(lung_edges):
    bel, cand, n_bd = lung_edges
    n_bd_ = n_bd
    pos = bel[:, :300]
    negs = draw_negatives(pos, cand, n_bd_, _gen(1), neg_ratio=1.0, hard_fraction=1.0)
    assert negs.shape == (2, 300)
    ckeys = set((cand[0] * n_bd_ + cand[1]).tolist())
    keys = (negs[0] * n_bd_ + negs[1]).tolist()
    # with hard_fraction 1 every negative is a candidate pair (there are enough of them)
    n_avail = 0
    own = _own(pos, int(cand[0].max()) + 1)
    c_own = own[cand[0]]
    n_avail = int(((c_own >= 0) & (cand[1] != c_own)).sum())
    assert n_avail >= 300
    assert all(k in ckeys for k in keys)


def test_hard_and_random_ratio_roughly_respected(lung_edges):
    bel, cand, n_bd = lung_edges
    pos = bel[:, :400]
    negs = draw_negatives(pos, cand, n_bd, _gen(2), neg_ratio=3.0, hard_fraction=0.5)
    assert negs.shape[1] == 1200
    ckeys = set((cand[0] * n_bd + cand[1]).tolist())
    in_cand = np.mean([k in ckeys for k in (negs[0] * n_bd + negs[1]).tolist()])
    # half are hard (candidates) by construction; random other nuclei are rarely candidates too
    assert 0.45 <= in_cand <= 0.65


def test_few_hard_candidates_are_topped_up_with_random():
    # 2 positives, only 1 hard candidate available: still neg_ratio × positives negatives
    pos = torch.tensor([[0, 1], [0, 1]])
    cand = torch.tensor([[0, 0, 1], [0, 2, 1]])  # tx 0 → nucleus 2 is the only hard negative
    negs = draw_negatives(pos, cand, 5, _gen(), neg_ratio=2.0, hard_fraction=1.0)
    assert negs.shape == (2, 4)
    assert (0, 2) in set(map(tuple, negs.T.tolist()))
    own = {0: 0, 1: 1}
    assert all(int(d) != own[int(s)] for s, d in negs.T)


def test_degenerate_cases():
    bel = torch.tensor([[0, 1, 2], [0, 0, 1]])
    none = torch.zeros(3, dtype=torch.bool)
    sup, idx, lab = sample_labels(bel, torch.zeros((2, 0), dtype=torch.long), 2, none, _gen())
    assert not sup.any() and idx.shape == (2, 0) and lab.numel() == 0
    # a single nucleus: no negative is possible
    negs = draw_negatives(bel[:, :1], torch.zeros((2, 0), dtype=torch.long), 1, _gen(), 3.0, 0.5)
    assert negs.shape == (2, 0)
    # neg_ratio 0: positives only
    sup, idx, lab = sample_labels(bel, bel, 2, torch.ones(3, dtype=torch.bool), _gen(), supervision_ratio=1.0,
                                  neg_ratio=0.0)
    assert sup.all() and lab.tolist() == [1.0, 1.0, 1.0]


# ----------------------------------------------------------------------------------------------
# spatial_holdout


def test_spatial_holdout_fraction_of_blocks():
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 200, size=(20000, 2))
    block = 50.0
    for frac in (0.1, 0.2, 0.5):
        mask = spatial_holdout(xy, block, frac, seed=0)
        ij = np.floor((xy - xy.min(axis=0)) / block).astype(int)
        keys = ij[:, 0] * 100 + ij[:, 1]
        n_blocks = len(np.unique(keys))
        held = np.unique(keys[mask])
        assert len(held) == max(1, round(frac * n_blocks))
        # whole blocks only: a block is either fully held out or not at all
        assert not np.isin(keys[~mask], held).any()
        # uniform density: the transcript share follows the block share
        assert abs(mask.mean() - len(held) / n_blocks) < 0.05


def test_spatial_holdout_deterministic_and_edge_cases():
    rng = np.random.default_rng(1)
    xy = rng.uniform(0, 100, size=(1000, 2))
    a = spatial_holdout(xy, 25.0, 0.25, seed=7)
    assert np.array_equal(a, spatial_holdout(xy, 25.0, 0.25, seed=7))
    assert a.dtype == bool and a.shape == (1000,) and 0 < a.sum() < 1000
    assert not spatial_holdout(xy, 25.0, 0.0, seed=7).any()
    assert spatial_holdout(np.zeros((0, 2)), 25.0, 0.2, seed=0).shape == (0,)
    # a single block cannot be split: nothing is held out
    assert not spatial_holdout(xy, 1000.0, 0.5, seed=0).any()


def test_spatial_holdout_on_lung(pkg_lung_graph):
    xy = pkg_lung_graph.data["tx"].pos.numpy()[:, :2].astype(np.float64)
    mask = spatial_holdout(xy, 50.0, 0.2, seed=0)
    assert 0.05 < mask.mean() < 0.4
