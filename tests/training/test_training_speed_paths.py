"""The fast training paths (issue 13) learn what the plain paths learn.

* ``prepare_tiles`` finds each tile's belongs edges through the CSR index instead of scanning all
  edges per tile, and ``geometry_labels`` takes the second-nearest candidate from the sorted order
  instead of ``np.minimum.at``: the training tiles are the same tensors as the plain path's, so a
  fixed batch with fixed weights gives the same loss;
* a validation tile cut to the receptive field of its labels (``hops``) gives the logits, loss and
  AUROC of the whole tile (within 1e-6);
* ``deterministic=True`` (one intra-op thread) still repeats bit for bit.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from segger.data.graph import TX_BD, TX_CAND, graph_max_distance, make_tiles, subgraph, tile_size_for
from segger.data.sampling import geometry_labels, sample_labels, spatial_holdout
from segger.training import TrainConfig, TrainingRun, message_graph, prepare_tiles
from segger.training.train import receptive_field


def _geometry_labels_plain(candidates, d_abs, n_tx, eligible_tx, has_nucleus, reach, gap):
    """The plain implementation (``np.minimum.at`` over the non-nearest candidates)."""
    empty = (torch.zeros((2, 0), dtype=torch.long), torch.zeros(0))
    if candidates.numel() == 0:
        return empty
    t, b = candidates[0].long(), candidates[1].long()
    tn, dn = t.numpy(), d_abs.float().numpy()
    order = np.lexsort((np.arange(len(tn)), dn, tn))
    first = np.zeros(len(tn), dtype=bool)
    first[order[np.r_[True, tn[order][1:] != tn[order][:-1]]]] = True
    d1 = np.full(n_tx, np.inf)
    d2 = np.full(n_tx, np.inf)
    d1[tn[first]] = dn[first]
    np.minimum.at(d2, tn[~first], dn[~first])
    d1, d2 = torch.from_numpy(d1), torch.from_numpy(d2)
    use = eligible_tx & ~has_nucleus
    pos_tx = use & (d1 <= reach) & ((d2 - d1) >= gap)
    bg_tx = use & (d1 > reach) & torch.isfinite(d1)
    keep = pos_tx[t] | bg_tx[t]
    if not bool(keep.any()):
        return empty
    labels = (pos_tx[t] & ~torch.from_numpy(~first)).float()
    return torch.stack([t[keep], b[keep]]), labels[keep]


def _train_tiles_plain(bundle, config):
    """The training tiles as the plain path builds them (an ``np.isin`` scan of all belongs edges
    per tile, the plain geometry labels)."""
    data = bundle.data
    bel = data[TX_BD].edge_index
    pos = data["tx"].pos.numpy()[:, :2].astype(np.float64)
    val_tx = spatial_holdout(pos, config.val_block, config.val_fraction, config.seed)
    gen = torch.Generator().manual_seed(config.seed + 7919)
    hidden_mask, _, _ = sample_labels(bel, torch.zeros((2, 0), dtype=torch.long), data["bd"].num_nodes,
                                      torch.from_numpy(val_tx)[bel[0]], gen,
                                      supervision_ratio=config.supervision_ratio, neg_ratio=0.0)
    out = []
    for tile in make_tiles(bundle, tile_size_for(bundle, config.tile_tx), config.tile_margin):
        sub = subgraph(data, tile.tx_idx, tile.bd_idx)
        keep = torch.from_numpy(np.isin(bel[0].numpy(), tile.tx_idx) & np.isin(bel[1].numpy(), tile.bd_idx))
        sub.hidden = hidden_mask[torch.arange(bel.shape[1])[keep]]
        sub.far = torch.tensor(float(bundle.params.dist_bd))
        sub.train_tx = torch.from_numpy(tile.core_mask) & ~torch.from_numpy(val_tx[tile.tx_idx])
        has_nuc = torch.zeros(int(sub["tx"].num_nodes), dtype=torch.bool)
        has_nuc[sub[TX_BD].edge_index[0]] = True
        sub.geo_index, sub.geo_labels = _geometry_labels_plain(
            sub[TX_CAND].edge_index, sub[TX_CAND].d_abs, int(sub["tx"].num_nodes), sub.train_tx, has_nuc,
            graph_max_distance(data), config.pseudo_gap)
        if bool(sub.train_tx.any()) and sub[TX_BD].edge_index.shape[1]:
            out.append(sub)
    return out


@pytest.fixture(scope="module")
def lung_cfg():
    return TrainConfig(hidden_channels=16, out_channels=16, heads=2, num_mid_layers=1, epochs=1, device="cpu",
                       seed=0, tile_tx=1500)


def test_geometry_labels_match_the_plain_implementation():
    g = torch.Generator().manual_seed(5)
    for n_tx, n_e in ((1, 3), (50, 200), (400, 2500)):
        cand = torch.stack([torch.randint(0, n_tx, (n_e,), generator=g), torch.randint(0, 30, (n_e,), generator=g)])
        d = (torch.rand(n_e, generator=g) * 20).round(decimals=1)  # ties on purpose
        elig = torch.rand(n_tx, generator=g) > 0.3
        has = torch.rand(n_tx, generator=g) > 0.7
        a = geometry_labels(cand, d, n_tx, elig, has, 10.0, 2.0)
        b = _geometry_labels_plain(cand, d, n_tx, elig, has, 10.0, 2.0)
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_training_tiles_and_fixed_batch_loss_unchanged(pkg_lung_graph, lung_cfg):
    fast, _, _ = prepare_tiles(pkg_lung_graph, lung_cfg, hops=lung_cfg.num_mid_layers + 2)
    plain = _train_tiles_plain(pkg_lung_graph, lung_cfg)
    assert len(fast) == len(plain) > 1
    for a, b in zip(fast, plain):
        for attr in ("hidden", "train_tx", "geo_index", "geo_labels"):
            assert torch.equal(a[attr], b[attr]), attr
        assert torch.equal(a["tx"].x, b["tx"].x)
        for et in a.edge_types:
            assert torch.equal(a[et].edge_index, b[et].edge_index), et
    # same weights, same batch (same label draw) -> the same loss
    run = TrainingRun(pkg_lung_graph, lung_cfg)
    m = run.module
    losses = []
    for tile in (fast[0], plain[0]):
        m._gen = torch.Generator().manual_seed(123)
        losses.append(float(m.training_step(tile, 0)))
    assert abs(losses[0] - losses[1]) <= 1e-6


def test_validation_receptive_field_gives_the_whole_tile_metrics(pkg_lung_graph, lung_cfg):
    hops = lung_cfg.num_mid_layers + 2
    whole_items = prepare_tiles(pkg_lung_graph, lung_cfg)[1]
    cut_items = prepare_tiles(pkg_lung_graph, lung_cfg, hops=hops)[1]
    assert len(whole_items) == len(cut_items) > 0
    assert sum(int(v["tx"].num_nodes) for v in cut_items) < sum(int(v["tx"].num_nodes) for v in whole_items)
    torch.manual_seed(0)
    model = TrainingRun(pkg_lung_graph, lung_cfg).module.model.eval()
    with torch.no_grad():
        def logits(v):
            z = model(*message_graph(v, v.hidden))
            return model.head(model.dot(z, v.label_index), v.label_geo)

        for w, c in zip(whole_items, cut_items):
            assert torch.equal(w.labels, c.labels) and torch.equal(w.label_geo, c.label_geo)
            lw, lc = logits(w), logits(c)
            assert torch.allclose(lw, lc, atol=1e-6, rtol=0)
            assert abs(float(F.binary_cross_entropy_with_logits(lw, w.labels))
                       - float(F.binary_cross_entropy_with_logits(lc, c.labels))) <= 1e-6


def test_receptive_field_of_one_hop_keeps_exactly_the_in_neighbours():
    from segger.data.graph import TX_TX
    from torch_geometric.data import HeteroData

    d = HeteroData()
    d["tx"].x = torch.arange(5)
    d["tx"].num_nodes = 5
    d["bd"].x = torch.zeros(2, 4)
    d["bd"].num_nodes = 2
    d[TX_TX].edge_index = torch.tensor([[1, 2, 3, 4], [0, 1, 2, 3]])  # a chain 4 -> 3 -> 2 -> 1 -> 0
    d[TX_BD].edge_index = torch.tensor([[4], [1]])  # nucleus 1 is not labelled
    d[TX_CAND].edge_index = torch.tensor([[0, 4], [0, 1]])
    d[TX_CAND].d_abs = torch.tensor([1.0, 2.0])
    d.hidden = torch.tensor([False])
    d.train_tx = torch.ones(5, dtype=torch.bool)
    out, tx_map = receptive_field(copy.copy(d), torch.tensor([[0], [0]]), hops=2)
    assert tx_map.tolist() == [0, 1, 2, -1, -1]
    assert out[TX_TX].edge_index.tolist() == [[1, 2], [0, 1]]
    assert out[TX_BD].edge_index.shape[1] == 0 and out.hidden.numel() == 0
    assert out[TX_CAND].edge_index.tolist() == [[0], [0]] and out[TX_CAND].d_abs.tolist() == [1.0]
    assert d["tx"].num_nodes == 5 and d[TX_TX].edge_index.shape[1] == 4  # the input is untouched


def test_deterministic_mode_repeats_bit_for_bit(synthetic_graph, tiny_train_config):
    prev = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        runs = [TrainingRun(synthetic_graph, tiny_train_config(epochs=1, deterministic=True, tile_tx=200)).fit()
                for _ in range(2)]
        assert torch.get_num_threads() == 2  # restored after the run
    finally:
        torch.set_num_threads(prev)
    sa, sb = runs[0].model.state_dict(), runs[1].model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
