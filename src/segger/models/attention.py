"""Read out per-edge attention weights of a Segger model (plain or ``to_hetero``).

Usage::

    with capture_attention(model):
        model(x_dict, edge_index_dict)
    att = collect_attention(model)
    ei, alpha = att[("conv_first", ("tx", "neighbors", "tx"))]   # [2, E], [E, heads]
    w = reduce_heads(alpha, "mean")                                # [E]

Keys are ``(layer_name, edge_type)`` in layer order (``'conv_first'``, ``'convs.0'``, ...,
``'conv_last'``); ``edge_type`` is the edge-type tuple in a hetero model and ``None`` in a plain
``Segger``. ``alpha[e, h]`` is the GATv2 attention of edge ``e`` (source ``ei[0, e]`` → destination
``ei[1, e]``) in head ``h``; it is softmax-normalised over the incoming edges of each destination
node (in eval mode; with attention dropout in training mode it is not).

Capture is off by default and then costs nothing. Inside ``capture_attention`` each conv keeps
the (detached) weights of its latest forward pass; they stay on the model after the block (so
``collect_attention`` can be called afterwards) until the next ``capture_attention`` or
``clear_attention``.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Dict, Iterator, List, Optional, Tuple, Union

from torch import Tensor, nn

from segger.errors import SeggerInputError
from segger.models.segger_model import AttentionGATv2Conv

__all__ = ["capture_attention", "collect_attention", "clear_attention", "reduce_heads",
           "attention_layers"]

EdgeType = Tuple[str, str, str]
AttentionKey = Tuple[str, Optional[EdgeType]]


def attention_layers(model: nn.Module) -> List[Tuple[str, Optional[EdgeType],
                                                      AttentionGATv2Conv]]:
    """``(layer_name, edge_type, conv)`` for every attention conv of ``model``, in layer order."""
    found = []
    for order, (name, module) in enumerate(model.named_modules()):
        if not isinstance(module, AttentionGATv2Conv):
            continue
        prefix, _, last = name.rpartition(".")
        edge_type = module.edge_type
        if edge_type is None:
            parts = tuple(last.split("__"))
            if len(parts) == 3:  # a copy made by to_hetero, keyed 'src__rel__dst'
                edge_type = parts
        layer_name = prefix if edge_type is not None and prefix else name
        found.append((module.layer_index, order, layer_name, edge_type, module))
    found.sort(key=lambda t: (t[0], t[1]))
    return [(layer_name, edge_type, module) for _, _, layer_name, edge_type, module in found]


def _convs(model: nn.Module) -> List[AttentionGATv2Conv]:
    convs = [m for m in model.modules() if isinstance(m, AttentionGATv2Conv)]
    if not convs:
        raise SeggerInputError(
            f"{type(model).__name__} has no attention layers to read (expected a Segger model "
            "or a model built by build_hetero_model)."
        )
    return convs


def clear_attention(model: nn.Module) -> None:
    """Drop stored attention weights (frees their memory)."""
    for conv in _convs(model):
        conv.last_attention = None


@contextmanager
def capture_attention(model: nn.Module) -> Iterator[Dict[AttentionKey, Tuple[Tensor, Tensor]]]:
    """Record attention weights of forward passes run inside the block.

    Yields a dict that is filled with :func:`collect_attention` ``(model)`` when the block ends.
    Previously stored weights are dropped on entry; the capture flags are restored on exit.
    """
    convs = _convs(model)
    previous = [conv.capture for conv in convs]
    for conv in convs:
        conv.last_attention = None
        conv.capture = True
    captured: Dict[AttentionKey, Tuple[Tensor, Tensor]] = {}
    try:
        yield captured
    finally:
        for conv, flag in zip(convs, previous):
            conv.capture = flag
    captured.update(collect_attention(model))


def collect_attention(model: nn.Module) -> Dict[AttentionKey, Tuple[Tensor, Tensor]]:
    """``{(layer_name, edge_type): (edge_index [2, E] long, alpha [E, heads] float)}``.

    Ordered by layer (then edge type). Layers that stored nothing (no forward pass inside
    :func:`capture_attention`) are left out, so the dict is empty when capture was never on.
    """
    out: Dict[AttentionKey, Tuple[Tensor, Tensor]] = {}
    for layer_name, edge_type, conv in attention_layers(model):
        if conv.last_attention is not None:
            out[(layer_name, edge_type)] = conv.last_attention
    return out


def reduce_heads(alpha: Tensor, head: Union[int, str] = "mean") -> Tensor:
    """One weight per edge from ``alpha`` [E, heads]: a head index, ``"mean"`` or ``"max"``."""
    if not isinstance(alpha, Tensor):
        raise SeggerInputError(f"reduce_heads: alpha must be a tensor, got {type(alpha).__name__}.")
    if alpha.dim() == 1:
        alpha = alpha.unsqueeze(1)
    if alpha.dim() != 2:
        raise SeggerInputError(
            f"reduce_heads: alpha must have shape [E, heads], got {tuple(alpha.shape)}."
        )
    heads = alpha.size(1)
    if isinstance(head, str):
        if head == "mean":
            return alpha.mean(dim=1)
        if head == "max":
            return alpha.amax(dim=1)
        raise SeggerInputError(
            f"reduce_heads: head must be a head index 0..{heads - 1}, 'mean' or 'max'; "
            f"got {head!r}."
        )
    if isinstance(head, bool) or not isinstance(head, int):
        raise SeggerInputError(
            f"reduce_heads: head must be an int, 'mean' or 'max'; got {type(head).__name__}."
        )
    if not 0 <= head < heads:
        raise SeggerInputError(
            f"reduce_heads: head {head} does not exist; the model has {heads} heads "
            f"(0..{heads - 1})."
        )
    return alpha[:, head]
