"""Per-layer, per-edge-type, per-head attention read-out."""

import pytest
import torch
from torch_geometric.utils import scatter

from segger.errors import SeggerInputError
from segger.models import (Segger, build_hetero_model, capture_attention, clear_attention,
                           collect_attention, reduce_heads)
from segger.models.segger_model import AttentionGATv2Conv

from _model_graphs import N_TOKENS

LAYERS = ["conv_first", "convs.0", "convs.1", "conv_last"]
EDGE_TYPES = [("tx", "belongs", "bd"), ("tx", "neighbors", "tx")]


def _assert_softmax_per_destination(edge_index, alpha, n_dst):
    sums = scatter(alpha, edge_index[1], dim=0, dim_size=n_dst, reduce="sum")  # [n_dst, heads]
    has_in = torch.zeros(n_dst, dtype=torch.bool)
    has_in[edge_index[1]] = True
    assert torch.allclose(sums[has_in], torch.ones_like(sums[has_in]), atol=1e-5)
    assert (sums[~has_in] == 0).all()
    assert (alpha >= 0).all()


def test_hetero_attention_per_layer_edge_type_and_head(hetero_graph):
    x_dict, edge_index_dict = hetero_graph
    model = build_hetero_model(N_TOKENS, init_emb=8, hidden_channels=8, num_mid_layers=2,
                               out_channels=6, heads=3).eval()
    with capture_attention(model) as captured:
        out = model(x_dict, edge_index_dict)
        inside = collect_attention(model)
    att = collect_attention(model)
    assert list(att) == [(layer, et) for layer in LAYERS for et in EDGE_TYPES]
    assert list(captured) == list(att) == list(inside)
    n_nodes = {"tx": 40, "bd": 6}
    for (layer, et), (ei, alpha) in att.items():
        E = edge_index_dict[et].size(1)
        assert ei.dtype == torch.long and ei.shape == (2, E)
        assert torch.equal(ei, edge_index_dict[et])
        assert alpha.shape == (E, 3) and alpha.dtype == torch.float32
        assert not alpha.requires_grad
        _assert_softmax_per_destination(ei, alpha, n_nodes[et[2]])
    # heads differ
    alpha = att[("conv_first", ("tx", "neighbors", "tx"))][1]
    assert not torch.allclose(alpha[:, 0], alpha[:, 1])
    # capture does not change the output and is off again after the block
    assert torch.equal(out["tx"], model(x_dict, edge_index_dict)["tx"])
    assert not any(m.capture for m in model.modules() if isinstance(m, AttentionGATv2Conv))


def test_plain_model_attention():
    model = Segger(num_tx_tokens=20, init_emb=4, hidden_channels=4, num_mid_layers=1,
                   out_channels=4, heads=2)
    x = torch.randint(0, 20, (15,))
    ei = torch.randint(0, 15, (2, 45))
    with capture_attention(model):
        model(x, ei)
    att = collect_attention(model)
    assert list(att) == [("conv_first", None), ("convs.0", None), ("conv_last", None)]
    for ei_l, alpha in att.values():
        assert alpha.shape == (45, 2)
        _assert_softmax_per_destination(ei_l, alpha, 15)


def test_capture_off_by_default(hetero_graph):
    x_dict, edge_index_dict = hetero_graph
    model = build_hetero_model(N_TOKENS, num_mid_layers=1, heads=2)
    model(x_dict, edge_index_dict)
    convs = [m for m in model.modules() if isinstance(m, AttentionGATv2Conv)]
    assert len(convs) == 3 * 2
    assert all(c.capture is False and c.last_attention is None for c in convs)
    assert collect_attention(model) == {}


def test_clear_and_recapture(hetero_graph):
    x_dict, edge_index_dict = hetero_graph
    model = build_hetero_model(N_TOKENS, num_mid_layers=0, heads=2)
    with capture_attention(model):
        model(x_dict, edge_index_dict)
    assert len(collect_attention(model)) == 4
    clear_attention(model)
    assert collect_attention(model) == {}
    with capture_attention(model):  # nothing run inside: nothing stored
        pass
    assert collect_attention(model) == {}


def test_capture_with_training_backward(hetero_graph):
    x_dict, edge_index_dict = hetero_graph
    model = build_hetero_model(N_TOKENS, num_mid_layers=0, heads=2, residual=True)
    with capture_attention(model):
        out = model(x_dict, edge_index_dict)
        out["tx"].sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_reduce_heads():
    alpha = torch.tensor([[0.1, 0.5, 0.3], [0.9, 0.2, 0.4]])
    assert torch.equal(reduce_heads(alpha, 1), torch.tensor([0.5, 0.2]))
    assert torch.allclose(reduce_heads(alpha, "mean"), torch.tensor([0.3, 0.5]))
    assert torch.equal(reduce_heads(alpha, "max"), torch.tensor([0.5, 0.9]))
    assert torch.equal(reduce_heads(torch.tensor([0.2, 0.3]), 0), torch.tensor([0.2, 0.3]))
    with pytest.raises(SeggerInputError, match="3 heads"):
        reduce_heads(alpha, 3)
    with pytest.raises(SeggerInputError, match="'mean' or 'max'"):
        reduce_heads(alpha, "median")
    with pytest.raises(SeggerInputError):
        reduce_heads(alpha, 1.0)


def test_attention_on_non_segger_model_errors():
    with pytest.raises(SeggerInputError, match="no attention layers"):
        with capture_attention(torch.nn.Linear(2, 2)):
            pass
