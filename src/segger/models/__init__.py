"""Segger graph neural network: the seed ``Segger`` module, the tx/bd hetero model, attention.

* :class:`Segger` (``segger.models.segger_model``): the seed API, ``model(x, edge_index)``.
* :func:`build_hetero_model`, :data:`METADATA`, :class:`ModelConfig` (``segger.models.hetero``).
* :func:`capture_attention`, :func:`collect_attention`, :func:`reduce_heads`
  (``segger.models.attention``).
"""

from segger.models.attention import (
    capture_attention,
    clear_attention,
    collect_attention,
    reduce_heads,
)
from segger.models.hetero import METADATA, ModelConfig, build_hetero_model
from segger.models.link import LinkHead, SeggerLinkModel
from segger.models.segger_model import Segger, SeggerInputTypeError

__all__ = [
    "Segger",
    "LinkHead",
    "SeggerLinkModel",
    "SeggerInputTypeError",
    "build_hetero_model",
    "METADATA",
    "ModelConfig",
    "capture_attention",
    "collect_attention",
    "clear_attention",
    "reduce_heads",
]
