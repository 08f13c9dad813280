"""Link scoring head: the Segger dot product, optionally with a learned relative-distance term.

``logit(tx, bd) = <z_tx, z_bd> + b - softplus(s) * d_rel``

``d_rel`` is how much farther (µm) the nucleus's outline is from the transcript than the nearest
candidate nucleus's outline (0 for the nearest one). The GNN embeddings carry no coordinates, so
on its own the dot product cannot tell two neighbouring nuclei of the same cell type apart; the
relative term adds a learned proximity prior without miscalibrating the score of a transcript's
nearest nucleus (its ``d_rel`` is 0 whether the transcript is nuclear or cytoplasmic).
With ``spatial=False`` the head is the plain Segger score ``<z_tx, z_bd>``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LinkHead(nn.Module):
    """Turns ``<z_tx, z_bd>`` (and optionally ``d_rel``) into a link logit; see the module docstring."""

    def __init__(self, spatial: bool = True):
        super().__init__()
        self.spatial = bool(spatial)
        self.bias = nn.Parameter(torch.zeros(()))
        self.raw_slope = nn.Parameter(torch.zeros(()))

    @property
    def slope(self) -> torch.Tensor:
        return F.softplus(self.raw_slope)

    def forward(self, dot: torch.Tensor, d_rel: torch.Tensor | None = None) -> torch.Tensor:
        """Logit ``dot + b - softplus(s) * d_rel`` (``d_rel`` ignored when ``spatial`` is off)."""
        out = dot + self.bias
        if self.spatial and d_rel is not None:
            out = out - self.slope * d_rel.to(out.dtype)
        return out


class SeggerLinkModel(nn.Module):
    """The heterogeneous GNN (``gnn``) plus its link head (``head``); called like the GNN."""

    def __init__(self, gnn: nn.Module, spatial: bool = True):
        super().__init__()
        self.gnn = gnn
        self.head = LinkHead(spatial)

    @property
    def config(self):
        return getattr(self.gnn, "config", None)

    def forward(self, x_dict, edge_index_dict):
        """Node embeddings ``{'tx': ..., 'bd': ...}`` from the heterogeneous GNN."""
        return self.gnn(x_dict, edge_index_dict)

    def logits(self, z: dict, index: torch.Tensor, d_rel: torch.Tensor | None = None) -> torch.Tensor:
        """Link logits for the listed (tx, bd) pairs only (never a dense matrix)."""
        dot = (z["tx"][index[0]] * z["bd"][index[1]]).sum(dim=-1)
        return self.head(dot, d_rel)
