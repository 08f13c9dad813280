"""The seed ``Segger`` module: API examples, input routing, validation, gradients."""

import pytest
import torch
from torch_geometric.nn import to_hetero

from segger.errors import SeggerError, SeggerInputError
from segger.models import METADATA, Segger, SeggerInputTypeError
from segger.models.segger_model import AttentionGATv2Conv



def _graph(n=30, e=120, n_tokens=5000, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, n_tokens, (n,), generator=g)
    edge_index = torch.randint(0, n, (2, e), generator=g)
    return x, edge_index


def test_seed_basic_usage_example():
    x, edge_index = _graph(n_tokens=5000)
    # verbatim from the API reference
    model = Segger(
        num_tx_tokens=5000,
        init_emb=32,
        hidden_channels=64,
        num_mid_layers=3,
        out_channels=128,
        heads=4
    )

    # Forward pass
    output = model(x, edge_index)
    assert output.shape == (x.numel(), 128 * 4)
    assert model.output_dim == 512
    assert torch.isfinite(output).all()


def test_seed_training_configuration_example():
    import torch.nn as nn
    import torch.optim as optim

    x, edge_index = _graph(n_tokens=10000)
    model = Segger(
        num_tx_tokens=10000,
        hidden_channels=128,
        out_channels=256
    )
    out = model(x, edge_index)  # materialise lazy parameters before the optimizer
    assert out.shape == (x.numel(), 256 * 3)
    labels = torch.randint(0, 256 * 3, (x.numel(),))

    optimizer = optim.AdamW(model.parameters(), lr=0.001)
    criterion = nn.CrossEntropyLoss()
    losses = []
    for epoch in range(3):
        optimizer.zero_grad()
        out = model(x, edge_index)
        loss = criterion(out, labels)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))


def test_defaults_and_layer_structure():
    model = Segger(num_tx_tokens=7)
    assert isinstance(model.tx_embedding, torch.nn.Embedding)
    assert model.tx_embedding.num_embeddings == 7
    assert model.tx_embedding.embedding_dim == 16
    assert model.lin0.bias is None
    assert len(model.convs) == 3
    convs = [model.conv_first, *model.convs, model.conv_last]
    assert all(isinstance(c, AttentionGATv2Conv) for c in convs)
    assert all(c.heads == 3 and c.add_self_loops is False and c.concat for c in convs)
    assert [c.out_channels for c in convs] == [32, 32, 32, 32, 32]
    assert not hasattr(model, "lin_first") and not hasattr(model, "drop")


def test_zero_mid_layers():
    model = Segger(num_tx_tokens=20, num_mid_layers=0, out_channels=5, heads=2)
    x, ei = _graph(n_tokens=20)
    assert model(x, ei).shape == (30, 10)


def test_rank_routing_1d_tokens_vs_2d_features():
    model = Segger(num_tx_tokens=20, init_emb=8, hidden_channels=4, num_mid_layers=1,
                   out_channels=4, heads=2)
    calls = []
    model.encoder.tx_embedding.register_forward_hook(lambda *a: calls.append("emb"))
    model.encoder.lin0.register_forward_hook(lambda *a: calls.append("lin"))
    x, ei = _graph(n_tokens=20)
    assert model(x, ei).shape == (30, 8)
    assert calls == ["emb"]
    feats = torch.randn(30, 6, dtype=torch.float64)
    feats[0, 0] = float("nan")  # nan_to_num before the linear layer
    out = model(feats, ei)
    assert calls == ["emb", "lin"]
    assert out.shape == (30, 8) and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    assert model.lin0.weight.shape == (8, 6)


def test_backward_gives_finite_grads():
    model = Segger(num_tx_tokens=50, init_emb=8, hidden_channels=8, num_mid_layers=2,
                   out_channels=8, heads=2, residual=True, dropout=0.1)
    x, ei = _graph(n_tokens=50)
    model(x, ei).pow(2).mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    # lin0 is unused (and lazy) for token input
    assert all(g is not None and torch.isfinite(g).all() for g in grads
               if g is not None)
    assert model.conv_first.att.grad is not None and model.tx_embedding.weight.grad is not None


def test_residual_changes_output_and_keeps_shape():
    x, ei = _graph(n_tokens=50)
    torch.manual_seed(0)
    plain = Segger(50, 8, 8, 1, 8, 2)
    torch.manual_seed(0)
    res = Segger(50, 8, 8, 1, 8, 2, residual=True)
    assert res(x, ei).shape == plain(x, ei).shape == (30, 16)
    assert not torch.allclose(res(x, ei), plain(x, ei))


def test_dropout_respects_eval_mode():
    model = Segger(50, 8, 8, 1, 8, 2, dropout=0.5)
    x, ei = _graph(n_tokens=50)
    model.eval()
    assert torch.equal(model(x, ei), model(x, ei))
    model.train()
    assert not torch.equal(model(x, ei), model(x, ei))


def test_deterministic_under_manual_seed():
    x, ei = _graph(n_tokens=100)
    outs = []
    for _ in range(2):
        torch.manual_seed(123)
        model = Segger(100, 8, 8, 1, 8, 2)
        outs.append(model(x, ei))
    assert torch.equal(outs[0], outs[1])


def test_token_out_of_range_message():
    model = Segger(num_tx_tokens=10)
    x = torch.tensor([0, 3, 12, 9])
    with pytest.raises(SeggerInputError) as info:
        model(x, torch.tensor([[0, 1], [1, 2]]))
    msg = str(info.value)
    assert "10 tokens" in msg and "12" in msg
    assert isinstance(info.value, ValueError) and isinstance(info.value, SeggerError)
    with pytest.raises(SeggerInputError, match="smallest -1"):
        model(torch.tensor([0, -1]), torch.tensor([[0], [1]]))


@pytest.mark.parametrize(
    "x, match",
    [
        (torch.tensor([0.0, 1.0, 2.0]), "integer"),
        (torch.zeros(3, 2, dtype=torch.long), "float feature matrix"),
        (torch.zeros(3, 2, 2), "3-D"),
        ([0, 1, 2], "torch.Tensor"),
        (torch.zeros(3, 0), "no feature columns"),
    ],
)
def test_bad_x_dtype_or_rank(x, match):
    model = Segger(num_tx_tokens=10)
    with pytest.raises(SeggerInputError, match=match) as info:
        model(x, torch.tensor([[0, 1], [1, 2]]))
    if match != "no feature columns":
        assert isinstance(info.value, SeggerInputTypeError)
        assert isinstance(info.value, TypeError)


@pytest.mark.parametrize(
    "edge_index, match",
    [
        (torch.tensor([[0, 1, 2], [1, 2, 3], [0, 0, 0]]), r"shape \[2, E\]"),
        (torch.tensor([[0, 1], [1, 2], [2, 0]]), "transpose"),
        (torch.tensor([[0, 1], [1, 5]]), "largest destination index 5"),
        (torch.tensor([[0, -1], [1, 2]]), "smallest index -1"),
        (torch.tensor([[0, 1], [1, 2]], dtype=torch.int32), "int64"),
        (torch.tensor([[0.0, 1.0], [1.0, 2.0]]), "int64"),
        ([[0, 1], [1, 2]], "torch.Tensor"),
    ],
)
def test_bad_edge_index(edge_index, match):
    model = Segger(num_tx_tokens=10)
    with pytest.raises(SeggerInputError, match=match):
        model(torch.tensor([0, 1, 2]), edge_index)


def test_empty_edges_are_fine():
    model = Segger(num_tx_tokens=10, heads=2)
    out = model(torch.tensor([0, 1, 2]), torch.empty(2, 0, dtype=torch.long))
    assert out.shape == (3, 64) and torch.isfinite(out).all()


def test_validation_can_be_switched_off():
    model = Segger(num_tx_tokens=10, validate=False)
    assert model.encoder.validate is False and model.conv_first.check_edges is False
    model(torch.tensor([0, 1, 2]), torch.tensor([[0, 1], [1, 2]]))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(num_tx_tokens=0), "num_tx_tokens"),
        (dict(num_tx_tokens=10, init_emb=0), "init_emb"),
        (dict(num_tx_tokens=10, hidden_channels=-1), "hidden_channels"),
        (dict(num_tx_tokens=10, num_mid_layers=-1), "num_mid_layers"),
        (dict(num_tx_tokens=10, out_channels=0), "out_channels"),
        (dict(num_tx_tokens=10, heads=0), "heads"),
        (dict(num_tx_tokens=10.5), "integer"),
        (dict(num_tx_tokens=10, dropout=1.0), "dropout"),
    ],
)
def test_constructor_rejects_bad_sizes(kwargs, match):
    with pytest.raises(SeggerInputError, match=match):
        Segger(**kwargs)


def test_plain_to_hetero_keeps_validation(hetero_graph):
    """Checks live in leaf modules, so they also run in a to_hetero (fx-traced) model."""
    x_dict, edge_index_dict = hetero_graph
    model = to_hetero(Segger(num_tx_tokens=50, init_emb=8, hidden_channels=8, num_mid_layers=1,
                             out_channels=8, heads=2), METADATA, aggr="sum")
    out = model(x_dict, edge_index_dict)
    assert out["tx"].shape == (40, 16) and out["bd"].shape == (6, 16)
    bad = dict(x_dict, tx=x_dict["tx"] + 50)
    with pytest.raises(SeggerInputError, match="50 tokens"):
        model(bad, edge_index_dict)
    bad_edges = dict(edge_index_dict)
    bad_edges[("tx", "belongs", "bd")] = torch.tensor([[0], [6]])
    with pytest.raises(SeggerInputError, match="6 destination nodes"):
        model(x_dict, bad_edges)


def test_replacing_tx_embedding_is_used():
    model = Segger(num_tx_tokens=10, init_emb=4, hidden_channels=4, num_mid_layers=0,
                   out_channels=4, heads=1)
    pretrained = torch.nn.Embedding(10, 4)
    model.tx_embedding = pretrained
    assert model.tx_embedding is pretrained and model.encoder.tx_embedding is pretrained
    assert sum(1 for k in model.state_dict() if "tx_embedding" in k) == 1
