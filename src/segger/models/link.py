"""Link scoring head: the Segger expression term plus a learned geometric term.

For a candidate pair (transcript ``t``, nucleus ``n``) with GNN embeddings ``z_t``, ``z_n``::

    expression(t, n) = <z_t, z_n>
    geometry(t, n)   = b - softplus(a) * relu(d_abs - softplus(r)) - softplus(s) * d_rel
    logit(t, n)      = expression + geometry                  (terms="full", the default)

``d_abs`` is the distance (µm) from the transcript to the nucleus outline (0 inside) and ``d_rel``
the same distance minus the smallest one among the transcript's candidates (0 for the nearest
nucleus). The ``d_abs`` term starts at a learned onset ``softplus(r)`` (µm; initially 5): within it a
cell's cytoplasm is as likely as its nucleus, beyond it a far transcript becomes unlikely for *every*
nucleus, so "no cell" is an outcome the score can express (a transcript 12 µm from its nearest
nucleus no longer scores like one inside it); ``d_rel`` prefers the nearer of two nuclei.

Training (``segger.training``) fits the sum on all labels and, separately, fits the expression term
alone (``expression_logit = <z_t, z_n> + b_e``) on nucleus links and their negatives, where the
geometry is hidden from it. Without that second objective the distance terms solve the training
labels by themselves and the expression term learns nothing (validation AUROC 0.997 from distance
alone). Because both terms are log-odds, their sum is a naive-Bayes combination of the geometric
prior and the expression evidence.

Ablations (``terms``): ``"distance"`` uses the geometry only (the nearest-nucleus rule with a learned
reach), ``"expression"`` the dot product only (the plain Segger score ``<z_t, z_n> + b``).

Shapes:
    dot: ``(L,)``; geo: ``(L, 2)`` float ``[d_abs, d_rel]`` (see
    :func:`segger.data.graph.edge_geometry`) → logits ``(L,)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: the values of ``terms``
LINK_TERMS = ("full", "distance", "expression")


class LinkHead(nn.Module):
    """Turns ``<z_tx, z_bd>`` and the pair's geometry into a link logit (see the module docstring).

    Args:
        terms: ``"full"`` (expression + geometry), ``"distance"`` or ``"expression"``.
        spatial: legacy switch: ``False`` means ``terms="expression"``, ``True`` ``"full"``.
    """

    def __init__(self, terms: str = "full", spatial: bool | None = None):
        super().__init__()
        if spatial is not None:
            terms = "full" if spatial else "expression"
        if terms not in LINK_TERMS:
            raise ValueError(f"terms={terms!r}: use one of {', '.join(LINK_TERMS)}")
        self.terms = terms
        self.bias = nn.Parameter(torch.zeros(()))
        self.raw_slope = nn.Parameter(torch.zeros(()))  # d_rel slope, softplus
        self.raw_abs_slope = nn.Parameter(torch.zeros(()))  # d_abs slope, softplus
        self.raw_onset = nn.Parameter(torch.tensor(4.9933))  # d_abs onset (µm), softplus: 5.0
        self.expr_bias = nn.Parameter(torch.zeros(()))  # bias of the expression-only objective

    @property
    def spatial(self) -> bool:
        """True when the score uses the geometry."""
        return self.terms != "expression"

    @property
    def slope(self) -> torch.Tensor:
        return F.softplus(self.raw_slope)

    @property
    def abs_slope(self) -> torch.Tensor:
        return F.softplus(self.raw_abs_slope)

    @property
    def onset(self) -> torch.Tensor:
        return F.softplus(self.raw_onset)

    def config(self) -> dict:
        """What a checkpoint stores to rebuild this head."""
        return {"terms": self.terms, "spatial": self.spatial}

    @classmethod
    def from_config(cls, cfg: dict | None) -> "LinkHead":
        cfg = dict(cfg or {})
        if "terms" in cfg:
            return cls(terms=str(cfg["terms"]))
        return cls(spatial=bool(cfg.get("spatial", False)))

    def geometry(self, geo: torch.Tensor) -> torch.Tensor:
        """``b - softplus(a) * relu(d_abs - onset) - softplus(s) * d_rel`` for ``geo`` ``(L, 2)``."""
        geo = geo.to(self.bias.dtype)
        return self.bias - self.abs_slope * F.relu(geo[:, 0] - self.onset) - self.slope * geo[:, 1]

    def expression_logit(self, dot: torch.Tensor) -> torch.Tensor:
        """The expression term alone, as a logit (its training objective)."""
        return dot + self.expr_bias

    def forward(self, dot: torch.Tensor, geo: torch.Tensor | None = None) -> torch.Tensor:
        """The link logit of ``terms`` (``geo`` ignored for ``"expression"``; required otherwise)."""
        if self.terms == "expression" or geo is None:
            if self.terms == "distance":
                raise ValueError("terms='distance' needs the pair geometry (d_abs, d_rel)")
            return dot + self.bias
        g = self.geometry(geo.to(dot.device))
        if self.terms == "distance":
            return g + dot * 0.0  # keeps the graph connected for DDP (unused-parameter checks)
        return dot + g


#: what the transcript side of the expression term is (see :class:`SeggerLinkModel`)
EXPRESSION_SIDES = ("context", "gene", "both")


class SeggerLinkModel(nn.Module):
    """The heterogeneous GNN (``gnn``) plus its link head (``head``); called like the GNN.

    The expression term is ``<t, z_bd>`` with the nucleus's GNN embedding ``z_bd`` (which aggregates
    the nucleus's own transcripts) and a transcript side ``t`` of ``expression``:

    * ``"context"``: the transcript's GNN embedding ``z_tx`` (the plain Segger score; it aggregates
      the transcript's spatial neighbours, so at a border between two cells it sees both);
    * ``"gene"``: a learned embedding of the transcript's gene alone, ``E[gene]`` — then
      ``<E[gene], z_bd>`` is a learned log-likelihood of that gene under the nucleus's profile;
    * ``"both"``: ``z_tx + E[gene]``.

    Args:
        gnn: the model of :func:`segger.models.build_hetero_model` (its ``config`` gives the
            vocabulary size and the embedding width).
        spatial: legacy switch (``False`` = ``terms="expression"``).
        terms: see :class:`LinkHead`; wins over ``spatial`` when given.
        expression: the transcript side, one of :data:`EXPRESSION_SIDES`.
    """

    def __init__(self, gnn: nn.Module, spatial: bool = True, terms: str | None = None, expression: str = "context"):
        super().__init__()
        if expression not in EXPRESSION_SIDES:
            raise ValueError(f"expression={expression!r}: use one of {', '.join(EXPRESSION_SIDES)}")
        self.gnn = gnn
        self.head = LinkHead(terms=terms) if terms is not None else LinkHead(spatial=spatial)
        self.expression = expression
        self.gene = None
        if expression != "context":
            cfg = gnn.config
            self.gene = nn.Embedding(cfg.num_tx_tokens, cfg.output_dim)
            nn.init.normal_(self.gene.weight, std=0.1)

    @torch.no_grad()
    def infer(self, x_dict: dict, edge_index_dict: dict, workspace=None) -> dict:
        """Node embeddings for inference (eval mode, no gradients): the fused dense-GAT path of
        :mod:`segger.models.fused` when this configuration allows it (standard layout, bounded tx
        in-degree, no attention capture), else the plain forward — same values up to float rounding.
        The gene side of the expression term is added as in :meth:`forward`.

        Shapes: ``x_dict["tx"]`` (n_tx,) int64 tokens, ``x_dict["bd"]`` (n_bd, 4); returns
        ``{"tx": (n_tx, d), "bd": (n_bd, d)}``. ``workspace``: a :class:`segger.models.fused.Workspace`
        to reuse across calls (tile after tile)."""
        from segger.models.fused import infer

        self.eval()
        z = infer(self.gnn, x_dict, edge_index_dict, workspace=workspace)
        return self.add_gene(dict(z), x_dict["tx"])

    @property
    def config(self):
        return getattr(self.gnn, "config", None)

    def link_config(self) -> dict:
        """What a checkpoint stores to rebuild the head and the expression side."""
        return {**self.head.config(), "expression": self.expression}

    def forward(self, x_dict, edge_index_dict):
        """Node embeddings ``{'tx': ..., 'bd': ...}`` from the heterogeneous GNN (plus
        ``'tx_gene'``, the gene embeddings, when the expression side uses them)."""
        z = dict(self.gnn(x_dict, edge_index_dict))
        return self.add_gene(z, x_dict["tx"])

    def add_gene(self, z: dict, tokens: torch.Tensor) -> dict:
        """``z`` with ``'tx_gene'`` added when the expression side uses the gene embedding."""
        if self.gene is not None and "tx_gene" not in z:
            z["tx_gene"] = self.gene(tokens.long())
        return z

    def tx_side(self, z: dict) -> torch.Tensor:
        """The transcript side ``t`` of the expression term for every transcript."""
        if self.expression == "context":
            return z["tx"]
        if self.expression == "gene":
            return z["tx_gene"]
        return z["tx"] + z["tx_gene"]

    def dot(self, z: dict, index: torch.Tensor) -> torch.Tensor:
        """``<t, z_bd>`` for the listed (tx, bd) pairs only (never a dense matrix)."""
        return (self.tx_side(z)[index[0]] * z["bd"][index[1]]).sum(dim=-1)

    def logits(self, z: dict, index: torch.Tensor, geo: torch.Tensor | None = None) -> torch.Tensor:
        """Link logits for the listed (tx, bd) pairs; ``geo`` ``(L, 2)`` ``[d_abs, d_rel]``."""
        return self.head(self.dot(z, index), geo)
