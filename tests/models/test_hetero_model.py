"""``build_hetero_model``, ``ModelConfig`` and checkpoint round trips."""

import io

import pytest
import torch

from segger.errors import SeggerInputError
from segger.models import METADATA, ModelConfig, build_hetero_model

from _model_graphs import N_TOKENS, make_hetero_graph

SMALL = dict(init_emb=8, hidden_channels=8, num_mid_layers=2, out_channels=6, heads=2)


def test_metadata():
    assert METADATA == (["tx", "bd"], [("tx", "belongs", "bd"), ("tx", "neighbors", "tx")])


def test_forward_shapes_defaults(hetero_graph):
    x_dict, edge_index_dict = hetero_graph
    model = build_hetero_model(N_TOKENS)
    out = model(x_dict, edge_index_dict)
    assert set(out) == {"tx", "bd"}
    assert out["tx"].shape == (40, 32 * 3)
    assert out["bd"].shape == (6, 32 * 3)
    assert model.config == ModelConfig(num_tx_tokens=N_TOKENS)
    assert model.config.output_dim == 96


def test_all_parameters_initialised_without_data():
    model = build_hetero_model(N_TOKENS, **SMALL)
    params = list(model.parameters())
    assert not any(isinstance(p, torch.nn.parameter.UninitializedParameter) for p in params)
    assert sum(p.numel() for p in params) > 0
    keys = model.state_dict().keys()
    assert "encoder.tx.tx_embedding.weight" in keys and "encoder.bd.lin0.weight" in keys
    # the unused branch of each node type is dropped
    assert "encoder.tx.lin0.weight" not in keys and "encoder.bd.tx_embedding.weight" not in keys


def test_orphan_bd_nodes_get_finite_embeddings(hetero_graph):
    x_dict, edge_index_dict = hetero_graph  # bd 4 and 5 have no incoming edge
    for residual in (False, True):
        model = build_hetero_model(N_TOKENS, residual=residual, **SMALL)
        out = model(x_dict, edge_index_dict)
        assert torch.isfinite(out["bd"]).all() and torch.isfinite(out["tx"]).all()
    no_edges = dict(edge_index_dict)
    no_edges[("tx", "belongs", "bd")] = torch.empty(2, 0, dtype=torch.long)
    out = model(x_dict, no_edges)
    assert out["bd"].shape == (6, 12) and torch.isfinite(out["bd"]).all()


def test_backward_finite_grads(hetero_graph):
    x_dict, edge_index_dict = hetero_graph
    model = build_hetero_model(N_TOKENS, residual=True, dropout=0.1, **SMALL)
    out = model(x_dict, edge_index_dict)
    (out["tx"].pow(2).mean() + out["bd"].pow(2).mean()).backward()
    named = dict(model.named_parameters())
    for name, p in named.items():
        if p.grad is not None:
            assert torch.isfinite(p.grad).all(), name
    assert named["encoder.tx.tx_embedding.weight"].grad is not None
    assert named["encoder.bd.lin0.weight"].grad is not None
    assert named["conv_last.tx__belongs__bd.att"].grad.abs().sum() > 0


def test_residual_through_to_hetero(hetero_graph):
    x_dict, edge_index_dict = hetero_graph
    model = build_hetero_model(N_TOKENS, residual=True, **SMALL)
    keys = model.state_dict().keys()
    assert {"lin_first.tx.weight", "lin_first.bd.weight", "lins.1.bd.weight",
            "lin_last.tx.weight"} <= set(keys)
    out = model(x_dict, edge_index_dict)
    assert out["tx"].shape == (40, 12) and out["bd"].shape == (6, 12)
    # orphan bd nodes differ through their own features (skip path), unlike without residual
    assert not torch.allclose(out["bd"][4], out["bd"][5])


@pytest.mark.parametrize("aggr", ["sum", "mean"])
def test_state_dict_round_trip_through_config(hetero_graph, aggr):
    x_dict, edge_index_dict = hetero_graph
    torch.manual_seed(0)
    model = build_hetero_model(N_TOKENS, residual=True, aggr=aggr, **SMALL).eval()
    buf = io.BytesIO()
    torch.save({"config": model.config.to_dict(), "state_dict": model.state_dict()}, buf)
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=True)

    torch.manual_seed(999)  # different init, then overwritten by the checkpoint
    rebuilt = ModelConfig.from_dict(ckpt["config"]).build().eval()
    rebuilt.load_state_dict(ckpt["state_dict"])
    a, b = model(x_dict, edge_index_dict), rebuilt(x_dict, edge_index_dict)
    assert torch.equal(a["tx"], b["tx"]) and torch.equal(a["bd"], b["bd"])


def test_deterministic_under_manual_seed(hetero_graph):
    x_dict, edge_index_dict = hetero_graph
    outs = []
    for _ in range(2):
        torch.manual_seed(7)
        outs.append(build_hetero_model(N_TOKENS, **SMALL)(x_dict, edge_index_dict))
    assert torch.equal(outs[0]["tx"], outs[1]["tx"]) and torch.equal(outs[0]["bd"], outs[1]["bd"])
    torch.manual_seed(8)
    other = build_hetero_model(N_TOKENS, **SMALL)(x_dict, edge_index_dict)
    assert not torch.equal(other["tx"], outs[0]["tx"])


def test_build_leaves_training_mode_and_no_attention(hetero_graph):
    from segger.models import collect_attention
    from segger.models.segger_model import AttentionGATv2Conv

    model = build_hetero_model(N_TOKENS, **SMALL)
    assert model.training
    convs = [m for m in model.modules() if isinstance(m, AttentionGATv2Conv)]
    assert convs and not any(c.capture for c in convs)
    model(*hetero_graph)  # a forward pass records no attention unless asked to
    assert collect_attention(model) == {} and all(c.last_attention is None for c in convs)
    model.eval()
    assert not model.training


def test_config_round_trip_and_validation():
    cfg = ModelConfig(num_tx_tokens=12, heads=4, residual=True, dropout=0.2, aggr="mean")
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.to_dict()["bd_in_channels"] == 4
    with pytest.raises(SeggerInputError, match="unknown key"):
        ModelConfig.from_dict({**cfg.to_dict(), "foo": 1})
    with pytest.raises(SeggerInputError, match="num_tx_tokens"):
        ModelConfig.from_dict({"heads": 2})
    with pytest.raises(SeggerInputError, match="aggr"):
        ModelConfig(num_tx_tokens=3, aggr="avg")
    with pytest.raises(SeggerInputError, match="heads"):
        ModelConfig(num_tx_tokens=3, heads=0)
    with pytest.raises(SeggerInputError, match="aggr"):
        build_hetero_model(3, aggr="avg")


def test_bd_in_channels():
    model = build_hetero_model(N_TOKENS, bd_in_channels=7, **SMALL)
    x_dict, edge_index_dict = make_hetero_graph()
    x_dict["bd"] = torch.randn(6, 7)
    assert model(x_dict, edge_index_dict)["bd"].shape == (6, 12)
    x_dict["bd"] = torch.randn(6, 4)
    with pytest.raises(SeggerInputError, match="built for 7"):
        model(x_dict, edge_index_dict)


def test_hetero_input_errors(hetero_graph):
    x_dict, edge_index_dict = hetero_graph
    model = build_hetero_model(N_TOKENS, **SMALL)
    too_big = f"{N_TOKENS} tokens.*largest id seen is {N_TOKENS + 3}"
    with pytest.raises(SeggerInputError, match=too_big):
        model(dict(x_dict, tx=torch.tensor([0, 1, N_TOKENS + 3] + [0] * 37)), edge_index_dict)
    with pytest.raises(SeggerInputError, match="'bd'"):
        model({"tx": x_dict["tx"]}, edge_index_dict)
    with pytest.raises(SeggerInputError, match="neighbors"):
        model(x_dict, {("tx", "belongs", "bd"): edge_index_dict[("tx", "belongs", "bd")]})
    bad = dict(edge_index_dict)
    bad[("tx", "neighbors", "tx")] = torch.tensor([[0, 40], [1, 2]])
    with pytest.raises(SeggerInputError, match=r"\('tx', 'neighbors', 'tx'\).*40 source"):
        model(x_dict, bad)
    with pytest.raises(SeggerInputError, match="token ids"):
        model(dict(x_dict, tx=torch.randn(40, 4)), edge_index_dict)


def test_deepcopy_and_pickle_keep_config_and_outputs(hetero_graph):
    import copy

    x_dict, edge_index_dict = hetero_graph
    model = build_hetero_model(N_TOKENS, **SMALL).eval()
    expected = model(x_dict, edge_index_dict)
    clone = copy.deepcopy(model)
    assert clone.config == model.config
    buf = io.BytesIO()
    torch.save(model, buf)  # whole-module pickling (e.g. multiprocessing) must work
    buf.seek(0)
    loaded = torch.load(buf, weights_only=False)
    assert loaded.config == model.config
    for other in (clone, loaded):
        out = other(x_dict, edge_index_dict)
        assert torch.equal(out["tx"], expected["tx"]) and torch.equal(out["bd"], expected["bd"])
    with pytest.raises(SeggerInputError, match="40 source"):  # checks survive the copies
        bad = dict(edge_index_dict)
        bad[("tx", "neighbors", "tx")] = torch.tensor([[40], [0]])
        loaded(x_dict, bad)
