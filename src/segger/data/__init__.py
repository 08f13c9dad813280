"""Graph building: gene vocabulary, heterogeneous graph, tiles and training labels."""

from segger.data.graph import (
    TX_BD,
    TX_CAND,
    TX_TX,
    GraphBundle,
    GraphParams,
    Tile,
    build_graph,
    knn_edges,
    make_tiles,
    nucleus_features,
    subgraph,
    tile_size_for,
)
from segger.data.sampling import draw_negatives, sample_labels, spatial_holdout
from segger.data.vocab import UNKNOWN_GENE, GeneVocab

__all__ = [
    "TX_BD", "TX_CAND", "TX_TX", "GraphBundle", "GraphParams", "Tile", "build_graph", "knn_edges",
    "make_tiles", "nucleus_features", "subgraph", "tile_size_for", "draw_negatives", "sample_labels",
    "spatial_holdout", "UNKNOWN_GENE", "GeneVocab",
]
