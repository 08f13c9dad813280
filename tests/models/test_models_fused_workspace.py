"""The fused inference path reusing one :class:`segger.models.fused.Workspace` across calls."""

import torch

from segger.models import build_hetero_model
from segger.models import fused

from _model_graphs import N_TOKENS, make_hetero_graph


def _model(residual):
    torch.manual_seed(0)
    m = build_hetero_model(N_TOKENS, residual=residual, hidden_channels=8, out_channels=8, heads=2, num_mid_layers=1)
    m.eval()
    x, ei = make_hetero_graph(n_tx=40, n_bd=6)
    with torch.no_grad():
        m(x, ei)  # materialise the lazy layers
    return m


def test_shared_workspace_gives_the_fresh_results_and_never_aliases_them():
    for residual in (False, True):
        model = _model(residual)
        assert fused.supported(model)
        ws = fused.Workspace()
        graphs = [make_hetero_graph(n_tx=n, n_bd=6, seed=s) for n, s in ((60, 1), (25, 2), (80, 3))]
        fresh = [fused.forward(model, x, ei) for x, ei in graphs]
        shared = [fused.forward(model, x, ei, workspace=ws) for x, ei in graphs]  # the buffers grow and shrink
        for a, b in zip(fresh, shared):
            for k in ("tx", "bd"):
                assert torch.equal(a[k], b[k])
        # earlier results survive later calls: the outputs are not workspace buffers
        again = [fused.forward(model, x, ei) for x, ei in graphs]
        for a, b in zip(again, shared):
            assert torch.equal(a["tx"], b["tx"]) and torch.equal(a["bd"], b["bd"])
        assert ws._bufs, "the workspace was not used"
        # the fused path still equals the model's own forward pass
        x, ei = graphs[0]
        with torch.no_grad():
            ref = model(x, ei)
        assert torch.allclose(ref["tx"], fresh[0]["tx"], atol=1e-5)
