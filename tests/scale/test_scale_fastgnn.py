"""The inference fast path equals the PyG forward pass of the model (up to float rounding)."""

from __future__ import annotations

import pytest
import torch

from segger.data.graph import TX_BD, TX_TX
from segger.models import SeggerLinkModel, build_hetero_model, capture_attention
from segger.scale import fastgnn


def _inputs(bundle):
    d = bundle.data
    return {"tx": d["tx"].x, "bd": d["bd"].x}, {TX_TX: d[TX_TX].edge_index, TX_BD: d[TX_BD].edge_index}


def _model(n_tokens, **kw):
    torch.manual_seed(0)
    return SeggerLinkModel(build_hetero_model(n_tokens, **kw), spatial=True).eval()


@pytest.mark.parametrize("kw", [{}, {"residual": True}, {"heads": 1, "num_mid_layers": 0}, {"heads": 4, "hidden_channels": 8}])
def test_fast_forward_matches_pyg(pkg_lung_graph, one_thread, kw):
    model = _model(len(pkg_lung_graph.vocab), **kw)
    x, ei = _inputs(pkg_lung_graph)
    with torch.no_grad():
        ref = model(x, ei)
    for chunk in (None, 333):
        z = fastgnn.forward(model, x, ei, chunk=chunk)
        assert z is not None
        for k in ("tx", "bd"):
            assert z[k].shape == ref[k].shape
            torch.testing.assert_close(z[k], ref[k], rtol=1e-4, atol=1e-5)


def test_fast_forward_isolated_nodes_and_empty_edges(synthetic_graph, one_thread):
    model = _model(len(synthetic_graph.vocab))
    x, ei = _inputs(synthetic_graph)
    # drop every edge into the first 50 tx nodes and all belongs edges of nucleus 0
    tt = ei[TX_TX]
    ei2 = {TX_TX: tt[:, tt[1] >= 50], TX_BD: ei[TX_BD][:, ei[TX_BD][1] != 0]}
    for e in (ei2, {TX_TX: tt[:, :0], TX_BD: ei[TX_BD][:, :0]}):
        with torch.no_grad():
            ref = model(x, e)
        z = fastgnn.forward(model, x, e)
        for k in ("tx", "bd"):
            assert torch.isfinite(z[k]).all()
            torch.testing.assert_close(z[k], ref[k], rtol=1e-4, atol=1e-5)


def test_fast_forward_falls_back(synthetic_graph, one_thread):
    model = _model(len(synthetic_graph.vocab))
    x, ei = _inputs(synthetic_graph)
    assert fastgnn.supported(model)
    with capture_attention(model):
        assert not fastgnn.supported(model)  # attention read-out needs the PyG layers
        assert fastgnn.forward(model, x, ei) is None
    # a graph with a huge in-degree does not fit the dense table
    n = synthetic_graph.data["tx"].num_nodes
    star = torch.stack([torch.arange(1, n), torch.zeros(n - 1, dtype=torch.long)])
    assert fastgnn.dense_neighbours(star, n) is None
    assert fastgnn.forward(model, x, {TX_TX: star, TX_BD: ei[TX_BD]}) is None


def test_embed_uses_fast_path_and_attention_still_works(pkg_lung_graph, one_thread):
    from segger.prediction import attention_edges, embed

    model = _model(len(pkg_lung_graph.vocab))
    z = embed(model, pkg_lung_graph.data, torch.device("cpu"))
    x, ei = _inputs(pkg_lung_graph)
    with torch.no_grad():
        ref = model(x, ei)
    torch.testing.assert_close(z["tx"], ref["tx"], rtol=1e-4, atol=1e-5)
    att = attention_edges(model, pkg_lung_graph, TX_TX, layer=0, device="cpu")
    assert len(att) > 0


def test_fast_forward_bf16_autocast(pkg_lung_graph, one_thread):
    """The GPU path runs under bf16 autocast; the same code must work (and stay close) with it."""
    model = _model(len(pkg_lung_graph.vocab))
    x, ei = _inputs(pkg_lung_graph)
    with torch.no_grad():
        ref = model(x, ei)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z = fastgnn.forward(model, x, ei)
    for k in ("tx", "bd"):
        assert (z[k].float() - ref[k]).abs().max() < 0.05 * ref[k].abs().max() + 1e-3


def test_fast_forward_token_check(synthetic_graph, one_thread):
    from segger.errors import SeggerInputError

    model = _model(len(synthetic_graph.vocab))
    x, ei = _inputs(synthetic_graph)
    x = dict(x, tx=x["tx"].clone())
    x["tx"][0] = 10_000
    with pytest.raises(SeggerInputError, match="out of range"):
        fastgnn.forward(model, x, ei)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fast_forward_cuda_matches_cpu(pkg_lung_graph):
    model = _model(len(pkg_lung_graph.vocab))
    x, ei = _inputs(pkg_lung_graph)
    ref = fastgnn.forward(model, x, ei)
    m = model.cuda()
    xc = {k: v.cuda() for k, v in x.items()}
    ec = {k: v.cuda() for k, v in ei.items()}
    z = fastgnn.forward(m, xc, ec)
    for k in ("tx", "bd"):
        torch.testing.assert_close(z[k].cpu(), ref[k], rtol=1e-3, atol=1e-4)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        zb = fastgnn.forward(m, xc, ec)
    assert torch.isfinite(zb["tx"].float()).all()


def test_model_infer_is_the_fused_path_with_a_fallback(pkg_lung_graph, one_thread, monkeypatch):
    """``SeggerLinkModel.infer`` (what predict uses) runs the fused path where it applies and the
    plain forward where it refuses; both give the model's own forward values."""
    model = _model(len(pkg_lung_graph.vocab))
    x, ei = _inputs(pkg_lung_graph)
    with torch.no_grad():
        ref = model(x, ei)
    calls = []
    real = fastgnn.forward
    monkeypatch.setattr(fastgnn, "forward", lambda *a, **k: calls.append(1) or real(*a, **k))
    z = model.infer(x, ei)
    assert calls, "infer did not take the fused path"
    for k in ("tx", "bd"):
        torch.testing.assert_close(z[k], ref[k], rtol=1e-4, atol=1e-5)
    monkeypatch.setattr(fastgnn, "supported", lambda m: False)  # a configuration it refuses
    z2 = model.infer(x, ei)
    for k in ("tx", "bd"):
        torch.testing.assert_close(z2[k], ref[k], rtol=1e-5, atol=1e-6)
