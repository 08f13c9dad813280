"""The Segger graph neural network (seed API).

``Segger`` is a homogeneous module that :func:`torch_geometric.nn.to_hetero` turns into the
heterogeneous transcript/boundary model (see :mod:`segger.models.hetero`)::

    input  x  --encoder-->  relu  --conv_first-->  relu  --convs.0--> relu ... --conv_last-->  z

* ``encoder`` routes by tensor rank: 1-D integer ``x`` (gene token ids) goes through
  ``tx_embedding = nn.Embedding(num_tx_tokens, init_emb)``; 2-D float ``x`` (boundary shape
  features, or any per-node feature matrix) goes through ``lin0``, a lazy bias-free
  ``torch_geometric.nn.Linear(-1, init_emb, bias=False)`` after ``nan_to_num``.
* ``conv_first``, ``convs[i]`` (``num_mid_layers`` of them) and ``conv_last`` are
  ``GATv2Conv((-1, -1), ..., heads=heads, add_self_loops=False)``. Heads are concatenated, so
  hidden layers are ``hidden_channels * heads`` wide and **the output is
  ``out_channels * heads`` wide** (e.g. 32 * 3 = 96 with the defaults).
* ``residual=True`` adds lazy linear skip projections (``lin_first``, ``lins[i]``, ``lin_last``):
  ``x = conv(x, edge_index) + lin(x)``. ``dropout > 0`` applies feature dropout after every
  hidden activation. The defaults (``residual=False, dropout=0.0``) are the seed model exactly.

Input checks run inside leaf modules (the encoder and ``conv_first``), which always see real
tensors, so they also run in the model that ``to_hetero`` builds by ``torch.fx`` tracing
(tracing only sees the leaf calls, never the checks). They cost a couple of reductions; pass
``validate=False`` to skip them.

Attention weights: every conv is an :class:`AttentionGATv2Conv`, which can keep the attention
coefficients of its last forward pass; see :mod:`segger.models.attention`.
"""

# No ``from __future__ import annotations`` here: to_hetero copies the forward annotations into
# the fx graph, and string annotations (ForwardRef) make the hetero model unpicklable.

from typing import Optional, Tuple

import torch
from torch import Tensor, nn
from torch_geometric.nn import GATv2Conv, Linear

from segger.errors import SeggerInputError

__all__ = [
    "Segger",
    "InputEncoder",
    "AttentionGATv2Conv",
    "SeggerInputTypeError",
]


class SeggerInputTypeError(SeggerInputError, TypeError):
    """Model input of the wrong type, dtype or rank (a ``SeggerInputError`` and a ``TypeError``)."""


def _is_uninitialized(param: Tensor) -> bool:
    return isinstance(param, nn.parameter.UninitializedParameter)


def _check_positive_int(name: str, value, *, allow_zero: bool = False) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SeggerInputTypeError(
            f"Segger: {name} must be an integer, got {type(value).__name__} {value!r}."
        )
    low = 0 if allow_zero else 1
    if value < low:
        raise SeggerInputError(
            f"Segger: {name} must be {'>= 0' if allow_zero else 'a positive integer'}, "
            f"got {value}."
        )
    return value


class InputEncoder(nn.Module):
    """Rank-routed input layer: 1-D token ids → embedding, 2-D float features → linear.

    A separate (leaf) module so that the routing and the checks also run inside models made by
    ``to_hetero``, which traces ``Segger.forward`` symbolically and copies this module per node
    type. ``build_hetero_model`` drops the branch a node type never uses
    (:meth:`keep_only`).
    """

    def __init__(self, num_tx_tokens: int, init_emb: int, *, validate: bool = True) -> None:
        super().__init__()
        self.num_tx_tokens = num_tx_tokens
        self.init_emb = init_emb
        self.validate = validate
        self.node_type: Optional[str] = None  # set by build_hetero_model, for messages
        self.tx_embedding: Optional[nn.Embedding] = nn.Embedding(num_tx_tokens, init_emb)
        self.lin0: Optional[Linear] = Linear(-1, init_emb, bias=False)

    def reset_parameters(self) -> None:
        if self.tx_embedding is not None:
            self.tx_embedding.reset_parameters()
        if self.lin0 is not None:
            self.lin0.reset_parameters()

    def keep_only(self, kind: str) -> None:
        """Drop the unused branch: ``kind='tokens'`` keeps the embedding, ``'features'`` lin0."""
        if kind == "tokens":
            self.lin0 = None
        elif kind == "features":
            self.tx_embedding = None
        else:
            raise SeggerInputError(f"keep_only: kind must be 'tokens' or 'features', got {kind!r}.")

    def _where(self) -> str:
        return f" for node type '{self.node_type}'" if self.node_type else ""

    def forward(self, x: Tensor) -> Tensor:
        if x is None and self.node_type:
            raise SeggerInputError(
                f"Segger: no input features for node type '{self.node_type}'; x_dict must hold "
                f"'{self.node_type}'."
            )
        if not isinstance(x, Tensor):
            raise SeggerInputTypeError(
                f"Segger: x{self._where()} must be a torch.Tensor, got {type(x).__name__}."
            )
        if x.dim() == 1:
            return self._tokens(x)
        if x.dim() == 2:
            return self._features(x)
        raise SeggerInputTypeError(
            f"Segger: x{self._where()} must be 1-D gene token ids (n,) or a 2-D feature matrix "
            f"(n, f); got a {x.dim()}-D tensor of shape {tuple(x.shape)}."
        )

    def _tokens(self, x: Tensor) -> Tensor:
        if self.tx_embedding is None:
            raise SeggerInputTypeError(
                f"Segger: x{self._where()} is 1-D (token ids) but this model takes a 2-D float "
                f"feature matrix (n, f) there; got shape {tuple(x.shape)}."
            )
        if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
            raise SeggerInputTypeError(
                f"Segger: 1-D x{self._where()} is read as gene token ids and must be an integer "
                f"tensor, got {x.dtype}. Pass x.long() for token ids, or a 2-D (n, f) float "
                "matrix for features."
            )
        if self.validate and x.numel() > 0:
            lo, hi = torch.aminmax(x)
            lo, hi = int(lo), int(hi)
            if lo < 0 or hi >= self.num_tx_tokens:
                raise SeggerInputError(
                    f"Segger: gene token id out of range{self._where()}: the model has "
                    f"{self.num_tx_tokens} tokens (valid ids 0..{self.num_tx_tokens - 1}), but the "
                    f"largest id seen is {hi} and the smallest {lo}. Build the model with "
                    "num_tx_tokens = the gene vocabulary size used to encode the data."
                )
        return self.tx_embedding(x)

    def _features(self, x: Tensor) -> Tensor:
        if self.lin0 is None:
            raise SeggerInputTypeError(
                f"Segger: x{self._where()} is 2-D (features) but this model takes 1-D integer "
                f"token ids there; got shape {tuple(x.shape)}."
            )
        if not x.is_floating_point():
            raise SeggerInputTypeError(
                f"Segger: 2-D x{self._where()} is read as a float feature matrix (n, f), got "
                f"{x.dtype} of shape {tuple(x.shape)}. Pass x.float() for features, or 1-D "
                "x.view(-1) for token ids."
            )
        if x.size(1) == 0:
            raise SeggerInputError(
                f"Segger: 2-D x{self._where()} has no feature columns (shape {tuple(x.shape)})."
            )
        weight = self.lin0.weight
        if not _is_uninitialized(weight) and x.size(1) != weight.size(1):
            raise SeggerInputError(
                f"Segger: x{self._where()} has {x.size(1)} feature columns but the model was "
                f"built for {weight.size(1)}."
            )
        dtype = weight.dtype
        x = torch.nan_to_num(x, nan=0.0).to(dtype)
        return self.lin0(x)


class AttentionGATv2Conv(GATv2Conv):
    """``GATv2Conv`` that can keep its attention coefficients and check ``edge_index``.

    * ``capture`` (default ``False``): when ``True`` the forward pass computes the attention
      weights and stores ``last_attention = (edge_index [2, E] long, alpha [E, heads] float)``
      (detached); it still returns only the node features, so the layer works inside
      ``to_hetero`` (which copies it per edge type). Off, it costs nothing.
    * ``check_edges`` (only set on the first layer): validate ``edge_index`` (type, dtype,
      shape [2, E], indices within the source/destination node counts).
    * ``layer_name`` / ``layer_index``: where the layer sits in :class:`Segger`.
    """

    def __init__(self, *args, layer_name: str = "", layer_index: int = 0,
                 check_edges: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.layer_name = layer_name
        self.layer_index = layer_index
        self.check_edges = check_edges
        self.edge_type: Optional[Tuple[str, str, str]] = None  # set by build_hetero_model
        self.capture = False
        self.last_attention: Optional[Tuple[Tensor, Tensor]] = None

    def _validate_edges(self, x, edge_index) -> None:
        where = f" of edge type {self.edge_type}" if self.edge_type else ""
        if edge_index is None and self.edge_type:
            raise SeggerInputError(
                f"Segger: no edges for edge type {self.edge_type}; edge_index_dict must hold it "
                "(an empty [2, 0] long tensor if there are none)."
            )
        if not isinstance(edge_index, Tensor) or edge_index.is_sparse:
            raise SeggerInputTypeError(
                f"Segger: edge_index{where} must be a dense torch.Tensor of shape [2, E], got "
                f"{type(edge_index).__name__}."
            )
        if edge_index.dtype != torch.long:
            raise SeggerInputTypeError(
                f"Segger: edge_index{where} must be int64 (torch.long), got {edge_index.dtype}; "
                "use edge_index.long()."
            )
        if edge_index.dim() != 2 or edge_index.size(0) != 2:
            raise SeggerInputError(
                f"Segger: edge_index{where} must have shape [2, E] (row 0 sources, row 1 "
                f"destinations), got {tuple(edge_index.shape)}."
                + (" Did you pass its transpose?" if edge_index.dim() == 2
                   and edge_index.size(1) == 2 else "")
            )
        if isinstance(x, (tuple, list)):
            n_src, n_dst = x[0].size(0), x[1].size(0)
        else:
            n_src = n_dst = x.size(0)
        if edge_index.size(1) == 0:
            return
        lo = int(edge_index.min())
        src_max, dst_max = (int(v) for v in edge_index.amax(dim=1))
        if lo < 0 or src_max >= n_src or dst_max >= n_dst:
            raise SeggerInputError(
                f"Segger: edge_index{where} refers to nodes that do not exist: there are {n_src} "
                f"source and {n_dst} destination nodes, but the largest source index is {src_max}, "
                f"the largest destination index {dst_max} and the smallest index {lo}."
            )

    def forward(self, x, edge_index, edge_attr=None,  # type: ignore[override]
                return_attention_weights=None):
        if self.check_edges:
            self._validate_edges(x, edge_index)
        if self.capture and not return_attention_weights:
            out, (ei, alpha) = super().forward(x, edge_index, edge_attr,
                                               return_attention_weights=True)
            self.last_attention = (ei.detach(), alpha.detach())
            return out
        return super().forward(x, edge_index, edge_attr,
                               return_attention_weights=return_attention_weights)


class Segger(nn.Module):
    """Graph attention network embedding transcripts (tx) and boundaries (bd).

    Args:
        num_tx_tokens: number of gene tokens (vocabulary size); valid token ids are
            ``0 .. num_tx_tokens - 1``.
        init_emb: width of the input embedding / linear projection.
        hidden_channels: channels per attention head in the hidden layers (hidden width is
            ``hidden_channels * heads``).
        num_mid_layers: number of middle GATv2 layers (0 allowed).
        out_channels: channels per head of the last layer.
        heads: attention heads per layer; heads are concatenated.
        residual: add linear skip projections around every conv (keyword-only).
        dropout: feature dropout after every hidden activation (keyword-only).
        validate: check inputs in ``forward`` (keyword-only; a few cheap reductions).

    ``forward(x, edge_index)`` returns node embeddings of shape ``(n, out_channels * heads)``.
    """

    def __init__(
        self,
        num_tx_tokens: int,
        init_emb: int = 16,
        hidden_channels: int = 32,
        num_mid_layers: int = 3,
        out_channels: int = 32,
        heads: int = 3,
        *,
        residual: bool = False,
        dropout: float = 0.0,
        validate: bool = True,
    ) -> None:
        super().__init__()
        self.num_tx_tokens = _check_positive_int("num_tx_tokens", num_tx_tokens)
        self.init_emb = _check_positive_int("init_emb", init_emb)
        self.hidden_channels = _check_positive_int("hidden_channels", hidden_channels)
        self.num_mid_layers = _check_positive_int("num_mid_layers", num_mid_layers,
                                                  allow_zero=True)
        self.out_channels = _check_positive_int("out_channels", out_channels)
        self.heads = _check_positive_int("heads", heads)
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) \
                or not 0.0 <= float(dropout) < 1.0:
            raise SeggerInputError(f"Segger: dropout must be a number in [0, 1), got {dropout!r}.")
        self.residual = bool(residual)
        self.dropout = float(dropout)

        self.encoder = InputEncoder(num_tx_tokens, init_emb, validate=validate)

        def gat(channels: int, name: str, index: int, check: bool = False) -> AttentionGATv2Conv:
            return AttentionGATv2Conv((-1, -1), channels, heads=heads, add_self_loops=False,
                                      layer_name=name, layer_index=index,
                                      check_edges=check and validate)

        self.conv_first = gat(hidden_channels, "conv_first", 0, check=True)
        self.convs = nn.ModuleList(
            gat(hidden_channels, f"convs.{i}", i + 1) for i in range(num_mid_layers)
        )
        self.conv_last = gat(out_channels, "conv_last", num_mid_layers + 1)

        if self.residual:
            self.lin_first = Linear(-1, hidden_channels * heads, bias=False)
            self.lins = nn.ModuleList(
                Linear(-1, hidden_channels * heads, bias=False) for _ in range(num_mid_layers)
            )
            self.lin_last = Linear(-1, out_channels * heads, bias=False)
        if self.dropout > 0:
            self.drop = nn.Dropout(self.dropout)

    # Seed attribute names (the modules live in the encoder so that to_hetero copies them).
    @property
    def tx_embedding(self) -> Optional[nn.Embedding]:
        return self.encoder.tx_embedding

    @property
    def lin0(self) -> Optional[Linear]:
        return self.encoder.lin0

    def __setattr__(self, name: str, value) -> None:
        # ``model.tx_embedding = nn.Embedding(...)`` (e.g. pretrained gene embeddings) replaces
        # the encoder's module, which is the one forward uses.
        if name in ("tx_embedding", "lin0") and "encoder" in self.__dict__.get("_modules", {}):
            setattr(self.encoder, name, value)
        else:
            super().__setattr__(name, value)

    @property
    def output_dim(self) -> int:
        """Width of the output embeddings: ``out_channels * heads``."""
        return self.out_channels * self.heads

    def _act(self, x: Tensor) -> Tensor:
        x = x.relu()
        if self.dropout > 0:  # a Python constant, so fx tracing keeps this static
            x = self.drop(x)
        return x

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        """Embed nodes: ``x`` 1-D int64 token ids or 2-D float features, ``edge_index`` [2, E].

        Returns a ``(n, out_channels * heads)`` float tensor.
        """
        x = self.encoder(x)
        x = self._act(x)

        h = self.conv_first(x, edge_index)
        if self.residual:
            h = h + self.lin_first(x)
        x = self._act(h)

        for i in range(self.num_mid_layers):
            h = self.convs[i](x, edge_index)
            if self.residual:
                h = h + self.lins[i](x)
            x = self._act(h)

        h = self.conv_last(x, edge_index)
        if self.residual:
            h = h + self.lin_last(x)
        return h

    @staticmethod
    def decode(z: Tensor, edge_index: Tensor) -> Tensor:
        """Score edges by the dot product of their end points' embeddings: shape (E,)."""
        return (z[edge_index[0]] * z[edge_index[1]]).sum(dim=-1)

    def extra_repr(self) -> str:
        return (f"num_tx_tokens={self.num_tx_tokens}, init_emb={self.init_emb}, "
                f"hidden_channels={self.hidden_channels}, num_mid_layers={self.num_mid_layers}, "
                f"out_channels={self.out_channels}, heads={self.heads}, "
                f"residual={self.residual}, dropout={self.dropout}")
