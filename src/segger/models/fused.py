"""Inference-only forward pass of the Segger GNN, same maths as the PyG model, far less memory traffic.

The model (:func:`segger.models.build_hetero_model`) is a stack of ``GATv2Conv`` layers made
heterogeneous by ``to_hetero``: tx nodes receive from their ``k_tx`` nearest transcripts, bd
nodes from the transcripts inside them. PyG evaluates each layer edge-wise over the whole graph:
it gathers ``x_i`` and ``x_j`` for every edge (``E × heads × channels`` tensors of hundreds of MB),
scatters them back, and runs every element-wise step as a separate pass over memory. On a CPU
that is memory-bound: ~4 k transcripts/s on 2 cores.

Here the tx ← tx messages use the graph's shape: a transcript has at most ``k_tx`` incoming
edges, so its neighbours fit a dense ``(n, D)`` table (``D`` = the largest in-degree, padded with
-1). The nodes are processed in cache-sized chunks: gather, ``leaky_relu(x_l[j] + x_r[i])``,
per-head attention logits, a masked softmax over the ``D`` slots and the weighted sum all run on
a ``chunk × D × heads × channels`` block that stays in cache, and no scatter is needed. The bd ←
tx messages (few edges) use a segment softmax with ``index_add``. Results equal the PyG forward
pass up to float rounding (tests check ``allclose``).

Only the standard model layout is handled (``GATv2Conv`` without edge features, self-loops or
GATv2-internal residuals; the optional Segger ``residual`` skips are handled). :func:`supported`
says whether a model qualifies; :func:`infer` (and :meth:`segger.models.link.SeggerLinkModel.infer`,
used by :func:`segger.prediction.embed`) falls back to the PyG forward pass otherwise, and while
attention weights are being captured.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from segger.schema import TX_BD, TX_TX

_TT, _TB = "tx__neighbors__tx", "tx__belongs__bd"

#: Largest in-degree handled by the dense neighbour table (kNN graphs have ``k_tx`` ≤ 100).
MAX_DENSE_DEGREE = 128
#: Nodes per block: 2048 × 5 neighbours × 96 floats ≈ 4 MB (stays in cache on a CPU).
CPU_CHUNK = 2048
GPU_CHUNK = 1 << 18


def _gnn(model):
    return getattr(model, "gnn", model)


def _layers(gnn) -> list | None:
    """``[(conv_dict, skip_dict_or_None), ...]`` in forward order, or None for another layout."""
    try:
        convs = [gnn.conv_first] + list(gnn.convs) + [gnn.conv_last]
    except AttributeError:
        return None
    skips = None
    if hasattr(gnn, "lin_first"):
        try:
            skips = [gnn.lin_first] + list(gnn.lins) + [gnn.lin_last]
        except AttributeError:
            return None
    out = []
    for i, c in enumerate(convs):
        if not (hasattr(c, _TT) and hasattr(c, _TB)):
            return None
        out.append((c, None if skips is None else skips[i]))
    return out


def _conv_ok(conv) -> bool:
    return (
        getattr(conv, "concat", False) is True
        and getattr(conv, "add_self_loops", True) is False
        and getattr(conv, "lin_edge", None) is None
        and getattr(conv, "res", None) is None
        and not getattr(conv, "capture", False)
        and not getattr(conv, "share_weights", False)
    )


def supported(model) -> bool:
    """True when :func:`forward` can evaluate ``model`` (the standard Segger layout, no capture)."""
    gnn = _gnn(model)
    enc = getattr(gnn, "encoder", None)
    if enc is None or not hasattr(enc, "tx") or not hasattr(enc, "bd"):
        return False
    if getattr(enc.tx, "tx_embedding", None) is None or getattr(enc.bd, "lin0", None) is None:
        return False
    layers = _layers(gnn)
    if not layers:
        return False
    for convs, _ in layers:
        if not (_conv_ok(getattr(convs, _TT)) and _conv_ok(getattr(convs, _TB))):
            return False
    return True


def dense_neighbours(edge_index: Tensor, n_dst: int) -> tuple[Tensor, Tensor] | None:
    """``(nbr (n_dst, D) long with -1 padding, mask)`` of the sources of each destination, in edge
    order; None when the largest in-degree exceeds :data:`MAX_DENSE_DEGREE`."""
    src, dst = edge_index[0], edge_index[1]
    dev = edge_index.device
    if src.numel() == 0:
        return torch.full((n_dst, 1), -1, dtype=torch.long, device=dev), torch.zeros((n_dst, 1), dtype=torch.bool, device=dev)
    deg = torch.bincount(dst, minlength=n_dst)
    d = int(deg.max())
    if d > MAX_DENSE_DEGREE:
        return None
    order = torch.argsort(dst, stable=True)
    ds, ss = dst[order], src[order]
    ptr = torch.zeros(n_dst + 1, dtype=torch.long, device=dev)
    ptr[1:] = torch.cumsum(deg, 0)
    slot = torch.arange(ds.numel(), device=dev) - ptr[ds]
    nbr = torch.full((n_dst, d), -1, dtype=torch.long, device=dev)
    nbr[ds, slot] = ss
    return nbr, nbr >= 0


class Workspace:
    """Node-long buffers reused by every layer of one forward pass (``ws.take(name, rows, cols)``).

    On a CPU a fresh ``(n, heads × channels)`` tensor per step is a fresh mapping from the OS, and
    filling its pages costs about as much as the layer's arithmetic; reusing a few buffers keeps
    the pages. :func:`forward` does without it under autocast, whose ops take no ``out=``.
    """

    def __init__(self, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu", enabled: bool = True):
        self.dtype, self.device, self.enabled = dtype, torch.device(device), enabled
        self._bufs: dict[str, Tensor] = {}

    def take(self, name: str, rows: int, cols: int) -> Tensor | None:
        if not self.enabled:
            return None
        buf = self._bufs.get(name)
        if buf is None or buf.numel() < rows * cols:
            buf = self._bufs[name] = torch.empty(rows * cols, dtype=self.dtype, device=self.device)
        return buf[:rows * cols].view(rows, cols)


def _linear(lin, x: Tensor, out: Tensor | None) -> Tensor:
    """``lin(x)``, written into ``out`` when given (same kernel: ``addmm`` / ``mm``)."""
    if out is None:
        return lin(x)
    w, b = lin.weight, getattr(lin, "bias", None)
    return torch.mm(x, w.t(), out=out) if b is None else torch.addmm(b, x, w.t(), out=out)


def _dense_gat(conv, x: Tensor, nbr: Tensor, invalid: Tensor, chunk: int, ws: Workspace | None = None,
               out_name: str | None = None) -> Tensor:
    """GATv2 tx ← tx layer on the dense neighbour table, in node chunks (see the module docstring).

    With a :class:`Workspace` the projections and work buffers are its buffers, and so is the
    output when ``out_name`` names one (consecutive layers alternate two)."""
    H, C = conv.heads, conv.out_channels
    HC = H * C
    n, d = nbr.shape
    ws = ws if ws is not None and ws.enabled and x.dtype == ws.dtype else None
    xl = _linear(conv.lin_l, x, ws.take("xl", n, HC) if ws else None).contiguous()
    xr = _linear(conv.lin_r, x, ws.take("xr", n, HC) if ws else None)
    att = conv.att.detach().reshape(1, 1, H, C).to(xl.dtype)
    out = ws.take(out_name, n, HC) if ws and out_name else torch.empty((n, HC), dtype=xl.dtype, device=xl.device)
    slope = float(conv.negative_slope)
    floor = torch.finfo(xl.dtype).min
    nb_all = nbr.clamp_min(0)
    # two chunk-sized work buffers, reused by every chunk: fresh per-chunk tensors would be
    # allocated and returned to the OS each time (page faults cost as much as the arithmetic)
    rows = min(chunk, n)
    g_buf = torch.empty((rows * d, HC), dtype=xl.dtype, device=xl.device)
    t_buf = torch.empty((rows, d, HC), dtype=xl.dtype, device=xl.device)
    for s in range(0, n, chunk):
        e = min(s + chunk, n)
        c = e - s
        g = torch.index_select(xl, 0, nb_all[s:e].reshape(-1), out=g_buf[:c * d]).view(c, d, HC)
        t = torch.add(g, xr[s:e].unsqueeze(1), out=t_buf[:c])
        F.leaky_relu(t, slope, inplace=True)
        a = t.view(c, d, H, C).mul_(att).sum(-1)  # per-head <att, t>: in place, no GEMM with 3 columns
        a.masked_fill_(invalid[s:e].unsqueeze(-1), float("-inf"))
        # softmax over the D slots; a row without neighbours gets weights 0 (PyG: output = bias)
        amax = a.amax(1, keepdim=True).clamp_min_(floor)
        w = a.sub_(amax).exp_()
        w.div_(w.sum(1, keepdim=True).add_(1e-16))  # PyG's softmax adds the same 1e-16
        g4 = g.view(c, d, H, C)
        o = out[s:e].view(c, H, C)
        torch.mul(g4[:, 0], w[:, 0].unsqueeze(-1), out=o)
        for j in range(1, d):
            o.addcmul_(g4[:, j], w[:, j].unsqueeze(-1))
    if conv.bias is not None:
        out += conv.bias.to(out.dtype)
    return out


def _segment_gat(conv, x_src: Tensor, x_dst: Tensor, edge_index: Tensor, ws: Workspace | None = None) -> Tensor:
    """GATv2 layer with a scatter softmax (bd ← tx: few edges, unbounded in-degree); the edge-long
    tensors go into the :class:`Workspace` buffers when one is given."""
    H, C = conv.heads, conv.out_channels
    n_dst = x_dst.shape[0]
    src, dst = edge_index[0], edge_index[1]
    xr_all = conv.lin_r(x_dst)
    out = torch.zeros((n_dst, H, C), dtype=xr_all.dtype, device=x_dst.device)
    if src.numel():
        n_e = src.numel()
        ws = ws if ws is not None and ws.enabled and x_src.dtype == ws.dtype == xr_all.dtype else None
        x_e = torch.index_select(x_src, 0, src, out=ws.take("seg_x", n_e, x_src.shape[1]) if ws else None)
        xl = _linear(conv.lin_l, x_e, ws.take("seg_xl", n_e, H * C) if ws else None).view(-1, H, C)  # the edges' sources
        t = torch.index_select(xr_all, 0, dst, out=ws.take("seg_t", n_e, H * C) if ws else None).view(-1, H, C)
        t.add_(xl)
        F.leaky_relu(t, float(conv.negative_slope), inplace=True)
        a = t.mul_(conv.att.to(t.dtype)).sum(-1)  # (E, H)
        amax = torch.full((n_dst, H), float("-inf"), dtype=a.dtype, device=a.device)
        amax = amax.scatter_reduce(0, dst.view(-1, 1).expand_as(a), a, reduce="amax", include_self=True)
        w = (a - amax.index_select(0, dst)).exp()
        den = torch.zeros((n_dst, H), dtype=w.dtype, device=w.device).index_add_(0, dst, w)
        w = w / (den.index_select(0, dst) + 1e-16)
        out.index_add_(0, dst, xl.mul_(w.unsqueeze(-1)))
    out = out.view(n_dst, H * C)
    if conv.bias is not None:
        out = out + conv.bias.to(out.dtype)
    return out


def _check_tokens(enc, tokens: Tensor) -> None:
    if tokens.numel() and getattr(enc, "validate", True):
        lo, hi = (int(v) for v in torch.aminmax(tokens))
        if lo < 0 or hi >= enc.num_tx_tokens:
            from segger.errors import SeggerInputError

            raise SeggerInputError(
                f"Segger: gene token id out of range for node type 'tx': the model has {enc.num_tx_tokens} "
                f"tokens (valid ids 0..{enc.num_tx_tokens - 1}), but the largest id seen is {hi} and the smallest {lo}."
            )


@torch.no_grad()
def forward(model, x_dict: dict, edge_index_dict: dict, chunk: int | None = None,
            workspace: Workspace | None = None) -> dict[str, Tensor] | None:
    """``{'tx': z_tx, 'bd': z_bd}`` like ``model(x_dict, edge_index_dict)`` in eval mode, or None
    when the model or the graph does not fit this path (the caller then runs the model).

    ``workspace``: buffers to reuse (a caller embedding tile after tile passes one
    :class:`Workspace` to every call); by default a fresh one per call. The returned tensors never
    live in it."""
    if not supported(model):
        return None
    gnn = _gnn(model)
    tokens, feats = x_dict["tx"], x_dict["bd"]
    tt, tb = edge_index_dict[TX_TX], edge_index_dict[TX_BD]
    n_tx = tokens.shape[0]
    dense = dense_neighbours(tt, n_tx)
    if dense is None:
        return None
    nbr, mask = dense
    invalid = ~mask
    if chunk is None:
        chunk = CPU_CHUNK if tokens.device.type == "cpu" else GPU_CHUNK
    enc = gnn.encoder
    _check_tokens(enc.tx, tokens)
    h_tx = enc.tx.tx_embedding(tokens).relu()
    lin0 = enc.bd.lin0
    h_bd = lin0(torch.nan_to_num(feats, nan=0.0).to(lin0.weight.dtype)).relu()
    layers = _layers(gnn)
    ws = workspace if workspace is not None else Workspace(h_tx.dtype, h_tx.device)
    if torch.is_autocast_enabled(h_tx.device.type):
        ws = None
    for i, (convs, skip) in enumerate(layers):
        # outputs alternate two buffers (a layer reads the previous layer's output); the last
        # layer's is a new tensor, so the result outlives the workspace's next use
        last = i == len(layers) - 1
        new_tx = _dense_gat(getattr(convs, _TT), h_tx, nbr, invalid, chunk, ws, None if last else f"h{i % 2}")
        new_bd = _segment_gat(getattr(convs, _TB), h_tx, h_bd, tb, ws)
        if skip is not None:
            new_tx += skip.tx(h_tx)
            new_bd = new_bd + skip.bd(h_bd)
        if i < len(layers) - 1:
            new_tx, new_bd = new_tx.relu_(), new_bd.relu()
        h_tx, h_bd = new_tx, new_bd
    return {"tx": h_tx, "bd": h_bd}


@torch.no_grad()
def infer(model, x_dict: dict, edge_index_dict: dict, workspace: Workspace | None = None) -> dict[str, Tensor]:
    """``model(x_dict, edge_index_dict)`` in eval mode through the fused path where
    :func:`supported` (and the graph's in-degree) allow it, else through the model itself."""
    z = forward(model, x_dict, edge_index_dict, workspace=workspace)
    return z if z is not None else model(x_dict, edge_index_dict)
