"""segger.prediction.attention_edges on the tiny lung model, for both attention edge types."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from segger.data import TX_BD, TX_CAND, TX_TX
from segger.errors import SeggerInputError
from segger.prediction import attention_edges

pytestmark = pytest.mark.slow  # uses the model trained on the real lung crop


@pytest.fixture(scope="module")
def full(lung_trained, pkg_lung_graph, core_env_ctx):
    """All attention edges of the last layer (top_k large) per edge type."""
    with core_env_ctx():
        return {et: attention_edges(lung_trained.model, pkg_lung_graph, et, top_k=10_000, device="cpu")
                for et in (TX_TX, TX_BD)}


def _edge_keys(ei: np.ndarray, n_dst: int) -> np.ndarray:
    return ei[0].astype(np.int64) * n_dst + ei[1]


@pytest.mark.parametrize("et", [TX_TX, TX_BD], ids=["tx-tx", "tx-bd"])
def test_shapes_and_weights(full, pkg_lung_graph, et):
    df = full[et]
    assert list(df.columns) == ["src", "dst", "weight", "lift"]
    assert df["src"].dtype == np.int64 and df["dst"].dtype == np.int64 and df["weight"].dtype == np.float32
    n_tx, n_bd = pkg_lung_graph.data["tx"].num_nodes, pkg_lung_graph.data["bd"].num_nodes
    n_dst = n_tx if et == TX_TX else n_bd
    assert df["src"].between(0, n_tx - 1).all() and df["dst"].between(0, n_dst - 1).all()
    w = df["weight"].to_numpy()
    assert np.isfinite(w).all() and (w >= 0).all() and (w <= 1 + 1e-6).all()
    # with no top-k cut, these are exactly the graph's edges of that type (no self loops added)
    ei = pkg_lung_graph.data[et].edge_index.numpy()
    assert len(df) == ei.shape[1]
    got = np.sort(_edge_keys(df[["src", "dst"]].to_numpy().T, n_dst))
    np.testing.assert_array_equal(got, np.sort(_edge_keys(ei, n_dst)))
    # softmax over each destination's incoming edges (mean over heads keeps the sum at 1)
    sums = df.groupby("dst")["weight"].sum().to_numpy()
    np.testing.assert_allclose(sums, 1.0, atol=1e-4)


@pytest.mark.parametrize("et", [TX_TX], ids=["tx-tx"])  # tx-bd: see the test below (one edge per tx here)
@pytest.mark.parametrize("top_k", [1, 2, 3])
def test_top_k_respected(lung_trained, pkg_lung_graph, full, et, top_k):
    df = attention_edges(lung_trained.model, pkg_lung_graph, et, top_k=top_k, device="cpu")
    owner = "dst" if et == TX_TX else "src"  # the transcript the edge is about
    assert (full[et].groupby(owner).size() > top_k).sum() > 100  # top-k has something to cut
    assert df.groupby(owner).size().max() <= top_k
    # the kept edges are each owner's strongest
    all_df = full[et]
    kth = all_df.assign(r=all_df.groupby(owner)["weight"].rank(ascending=False, method="first"))
    kth = kth[kth["r"] == top_k].set_index(owner)["weight"]
    kept_min = df.groupby(owner)["weight"].min()
    common = kept_min.index.intersection(kth.index)
    assert (kept_min.loc[common].to_numpy() >= kth.loc[common].to_numpy() - 1e-7).all()
    # every owner keeps min(top_k, its edge count) edges
    counts = all_df.groupby(owner).size().clip(upper=top_k)
    pd.testing.assert_series_equal(df.groupby(owner).size().sort_index(), counts.sort_index(), check_names=False)


def test_min_weight_filter(lung_trained, pkg_lung_graph):
    df = attention_edges(lung_trained.model, pkg_lung_graph, TX_TX, top_k=5, min_weight=0.3, device="cpu")
    assert (df["weight"] >= 0.3).all()
    everything = attention_edges(lung_trained.model, pkg_lung_graph, TX_TX, top_k=5, device="cpu")
    assert len(df) == int((everything["weight"] >= 0.3).sum())


def test_layers_and_heads(lung_trained, pkg_lung_graph):
    from segger.models.attention import attention_layers

    m = lung_trained.model
    names = [name for name, et, _ in attention_layers(m) if et == TX_TX]
    assert len(names) == 3 and names[0].endswith("conv_first") and names[-1].endswith("conv_last")
    first = attention_edges(m, pkg_lung_graph, TX_TX, layer=0, top_k=2, device="cpu")
    named = attention_edges(m, pkg_lung_graph, TX_TX, layer=names[0], top_k=2, device="cpu")
    pd.testing.assert_frame_equal(first, named)
    last = attention_edges(m, pkg_lung_graph, TX_TX, layer=-1, top_k=2, device="cpu")
    assert not first["weight"].equals(last["weight"])
    h0 = attention_edges(m, pkg_lung_graph, TX_TX, head=0, top_k=2, device="cpu")
    hmax = attention_edges(m, pkg_lung_graph, TX_TX, head="max", top_k=2, device="cpu")
    assert ((h0["weight"] >= 0) & (h0["weight"] <= 1)).all() and ((hmax["weight"] <= 1 + 1e-6)).all()
    with pytest.raises(SeggerInputError):
        attention_edges(m, pkg_lung_graph, TX_TX, layer=99, device="cpu")
    with pytest.raises(SeggerInputError):
        attention_edges(m, pkg_lung_graph, TX_TX, layer="no_such_layer", device="cpu")
    with pytest.raises(SeggerInputError):
        attention_edges(m, pkg_lung_graph, TX_TX, head=7, device="cpu")
    with pytest.raises(SeggerInputError, match="attention is recorded"):
        attention_edges(m, pkg_lung_graph, TX_CAND, device="cpu")


def test_attention_leaves_the_model_as_it_was(lung_trained, pkg_lung_graph):
    m = lung_trained.model
    before = {k: v.clone() for k, v in m.state_dict().items()}
    attention_edges(m, pkg_lung_graph, TX_BD, device="cpu")
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())
    assert all(p.device.type == "cpu" for p in m.parameters())
    # capture is switched off again afterwards
    from segger.models.segger_model import AttentionGATv2Conv

    convs = [c for c in m.modules() if isinstance(c, AttentionGATv2Conv)]
    assert convs and not any(c.capture for c in convs)


@pytest.mark.parametrize("top_k", [1, 2, 3])
def test_top_k_tx_bd_with_several_nuclei_per_transcript(lung_trained, pkg_lung_graph, top_k):
    """The real graph has at most one tx→nucleus edge per transcript, so top-k is not exercised
    there: here each transcript sends an edge to each of its candidate nuclei."""
    import copy
    from types import SimpleNamespace

    data = copy.copy(pkg_lung_graph.data)
    data[TX_BD].edge_index = pkg_lung_graph.data[TX_CAND].edge_index.clone()
    b = SimpleNamespace(data=data)
    full = attention_edges(lung_trained.model, b, TX_BD, top_k=10_000, device="cpu")
    per_tx = full.groupby("src").size()
    assert (per_tx > top_k).sum() > 100, "the graph must give many transcripts more than top_k nuclei"
    df = attention_edges(lung_trained.model, b, TX_BD, top_k=top_k, device="cpu")
    pd.testing.assert_series_equal(df.groupby("src").size().sort_index(), per_tx.clip(upper=top_k).sort_index(),
                                   check_names=False)
    # the kept edges are each transcript's strongest: exactly the top_k by weight
    want = full.sort_values(["src", "weight"], ascending=[True, False], kind="stable").groupby("src").head(top_k)
    kth = want.groupby("src")["weight"].min()
    dropped = full[~full.set_index(["src", "dst"]).index.isin(df.set_index(["src", "dst"]).index)]
    assert (dropped["weight"].to_numpy() <= kth.loc[dropped["src"]].to_numpy() + 1e-7).all()


def test_lift_is_the_weight_over_the_uniform_share_and_filters_near_uniform(full, lung_trained, pkg_lung_graph,
                                                                            core_env_ctx):
    """``lift`` = weight × (edges into the same node): 1 is "no preference"; ``uniform_tolerance``
    keeps only the edges whose lift is at least that far from 1 (what napari draws for tx→tx)."""
    df = full[TX_TX]
    n_in = df.groupby("dst")["src"].transform("size").to_numpy()
    np.testing.assert_allclose(df["lift"], df["weight"] * n_in, rtol=1e-5)
    assert df.groupby("dst")["lift"].mean().between(1 - 1e-3, 1 + 1e-3).all()  # the mean lift is 1 per node
    with core_env_ctx():
        picked = attention_edges(lung_trained.model, pkg_lung_graph, TX_TX, top_k=10_000, device="cpu",
                                 uniform_tolerance=0.25)
    far = (df["lift"] - 1).abs() >= 0.25
    assert 0 < len(picked) == int(far.sum()) < len(df)
    assert ((picked["lift"] - 1).abs() >= 0.25).all()


def test_transcript_attention_on_its_receptive_field_equals_the_whole_graph(full, lung_trained, pkg_lung_graph,
                                                                           core_env_ctx):
    """What napari's explain view draws for a clicked transcript: its in-neighbours' last-layer
    weights computed on a few hundred nodes equal those of the whole graph."""
    from segger.prediction import transcript_attention

    df = full[TX_TX]
    rng = np.random.default_rng(0)
    for row in rng.choice(pkg_lung_graph.data["tx"].num_nodes, 5, replace=False):
        with core_env_ctx():
            mine = transcript_attention(lung_trained.model, pkg_lung_graph, int(row))
        ref = df[df["dst"] == row].sort_values("weight", ascending=False)
        assert len(mine) == len(ref) > 0
        np.testing.assert_array_equal(np.sort(mine["src"]), np.sort(ref["src"]))
        got = mine.set_index("src").loc[ref["src"]]
        np.testing.assert_allclose(got["weight"], ref["weight"], atol=1e-5)
        np.testing.assert_allclose(got["lift"], ref["lift"], atol=1e-4)
    # one hop too few changes the weights (the field is not larger than it must be)
    with core_env_ctx():
        short = transcript_attention(lung_trained.model, pkg_lung_graph, int(row), hops=1)
    assert not np.allclose(short.set_index("src").loc[ref["src"], "weight"], ref["weight"], atol=1e-5)
