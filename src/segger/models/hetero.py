"""The heterogeneous transcript (tx) / boundary (bd) Segger model.

``build_hetero_model(...)`` = ``to_hetero(Segger(...), METADATA, aggr=aggr)``, initialised by a dry
forward pass on a tiny synthetic graph, so that all (lazy) parameters exist and ``state_dict()``
can be saved and loaded without data. Usage::

    model = build_hetero_model(num_tx_tokens=len(vocab))
    z = model(data.x_dict, data.edge_index_dict)   # {'tx': (n_tx, D), 'bd': (n_bd, D)}
    # D = out_channels * heads

Message passing follows ``METADATA``: tx nodes receive from tx (``('tx','neighbors','tx')``),
bd nodes receive from tx (``('tx','belongs','bd')``); there is no bd → tx edge. A bd node (or tx
node) without incoming edges gets a finite embedding (bias-only conv outputs).

``ModelConfig`` holds the constructor arguments so that checkpoints can store them
(``to_dict``) and rebuild the model (``ModelConfig.from_dict(d).build()``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

import torch
from torch import nn
from torch_geometric.nn import to_hetero

from segger import schema as S
from segger.errors import SeggerInputError
from segger.models.segger_model import AttentionGATv2Conv, InputEncoder, Segger

try:  # the key GraphModule.__deepcopy__ reads to restore user attributes
    from torch.fx.graph_module import _USER_PRESERVED_ATTRIBUTES_KEY as _USER_PRESERVED
except ImportError:  # pragma: no cover - older torch
    _USER_PRESERVED = "_user_preserved_attributes"

__all__ = ["METADATA", "ModelConfig", "build_hetero_model", "AGGREGATIONS"]

METADATA = ([S.TX_NODE, S.BD_NODE], list(S.MESSAGE_EDGES))

#: ``aggr`` values accepted by ``to_hetero``.
AGGREGATIONS = ("sum", "mean", "max", "min", "mul")

# What each node type's input is: 1-D token ids (tx) or a 2-D float feature matrix (bd).
_INPUT_KIND = {"tx": "tokens", "bd": "features"}


@dataclass(frozen=True)
class ModelConfig:
    """Arguments of :func:`build_hetero_model`; JSON-friendly via ``to_dict``/``from_dict``.

    ``bd_in_channels`` is the number of boundary feature columns (``data['bd'].x.shape[1]``),
    needed to create the bd input layer before any data is seen.
    """

    num_tx_tokens: int
    init_emb: int = 16
    hidden_channels: int = 32
    num_mid_layers: int = 3
    out_channels: int = 32
    heads: int = 3
    residual: bool = False
    dropout: float = 0.0
    aggr: str = "sum"
    bd_in_channels: int = 4

    def __post_init__(self) -> None:
        for name in ("num_tx_tokens", "init_emb", "hidden_channels", "out_channels", "heads",
                     "bd_in_channels", "num_mid_layers"):
            value = getattr(self, name)
            low = 0 if name == "num_mid_layers" else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise SeggerInputError(
                    f"ModelConfig: {name} must be an integer >= {low}, got {value!r}."
                )
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) \
                or not 0.0 <= self.dropout < 1.0:
            raise SeggerInputError(f"ModelConfig: dropout must be in [0, 1), got {self.dropout!r}.")
        if self.aggr not in AGGREGATIONS:
            raise SeggerInputError(
                f"ModelConfig: aggr must be one of {', '.join(AGGREGATIONS)}; got {self.aggr!r}."
            )
        if not isinstance(self.residual, bool):
            raise SeggerInputError(f"ModelConfig: residual must be True or False, got "
                                   f"{self.residual!r}.")

    @property
    def output_dim(self) -> int:
        """Width of the node embeddings the model returns: ``out_channels * heads``."""
        return self.out_channels * self.heads

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ModelConfig":
        if not isinstance(d, Mapping):
            raise SeggerInputError(f"ModelConfig.from_dict: expected a mapping, got "
                                   f"{type(d).__name__}.")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise SeggerInputError(
                f"ModelConfig.from_dict: unknown key(s) {unknown}; known keys are "
                f"{sorted(known)}. Was the checkpoint written by a newer version?"
            )
        if "num_tx_tokens" not in d:
            raise SeggerInputError("ModelConfig.from_dict: 'num_tx_tokens' is missing.")
        return cls(**dict(d))

    def build(self) -> nn.Module:
        """The initialised heterogeneous model for this configuration."""
        return build_hetero_model(**self.to_dict())


def _dummy_inputs(num_tx_tokens: int, bd_in_channels: int):
    """A 4-tx / 2-bd graph (deterministic: uses no random numbers)."""
    x_dict = {
        "tx": torch.arange(4, dtype=torch.long) % num_tx_tokens,
        "bd": torch.zeros(2, bd_in_channels),
    }
    edge_index_dict = {
        S.TX_BD: torch.tensor([[0, 1], [0, 1]], dtype=torch.long),
        S.TX_TX: torch.tensor([[0, 1, 2, 3], [1, 2, 3, 0]], dtype=torch.long),
    }
    return x_dict, edge_index_dict


def _key_to_edge_type(key: str):
    parts = tuple(key.split("__"))
    return parts if len(parts) == 3 else None


def build_hetero_model(
    num_tx_tokens: int,
    init_emb: int = 16,
    hidden_channels: int = 32,
    num_mid_layers: int = 3,
    out_channels: int = 32,
    heads: int = 3,
    residual: bool = False,
    dropout: float = 0.0,
    aggr: str = "sum",
    *,
    bd_in_channels: int = 4,
) -> nn.Module:
    """``to_hetero(Segger(...), METADATA, aggr=aggr)``, with every parameter initialised.

    Call it as ``model(x_dict, edge_index_dict)``: ``x_dict['tx']`` int64 token ids (n_tx,),
    ``x_dict['bd']`` float (n_bd, bd_in_channels); edge types as in ``METADATA``. Returns
    ``{'tx': (n_tx, out_channels*heads), 'bd': (n_bd, out_channels*heads)}``.

    The returned module carries its :class:`ModelConfig` as ``model.config``.
    """
    config = ModelConfig(num_tx_tokens=num_tx_tokens, init_emb=init_emb,
                         hidden_channels=hidden_channels, num_mid_layers=num_mid_layers,
                         out_channels=out_channels, heads=heads, residual=residual,
                         dropout=float(dropout), aggr=aggr, bd_in_channels=bd_in_channels)
    base = Segger(num_tx_tokens, init_emb, hidden_channels, num_mid_layers, out_channels, heads,
                  residual=residual, dropout=dropout)
    model = to_hetero(base, METADATA, aggr=aggr)

    # Name the per-type copies (for error messages and attention read-out) and drop the input
    # branch each node type never uses, so that no lazy parameter stays uninitialised.
    for name, module in model.named_modules():
        key = name.rsplit(".", 1)[-1]
        if isinstance(module, InputEncoder) and key in _INPUT_KIND:
            module.node_type = key
            module.keep_only(_INPUT_KIND[key])
        elif isinstance(module, AttentionGATv2Conv):
            module.edge_type = _key_to_edge_type(key)

    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(*_dummy_inputs(num_tx_tokens, bd_in_channels))
    model.train(was_training)
    for module in model.modules():
        if isinstance(module, AttentionGATv2Conv):
            module.last_attention = None
    _attach_config(model, config)
    return model


def _attach_config(model: nn.Module, config: ModelConfig) -> None:
    """``model.config = config``, kept by ``copy.deepcopy`` (GraphModule drops unknown attributes
    on deepcopy unless they are listed in ``meta['_user_preserved_attributes']``)."""
    model.config = config
    meta = getattr(model, "meta", None)
    if isinstance(meta, dict):
        meta.setdefault(_USER_PRESERVED, {})["config"] = config
