"""Segger: graph-neural-network cell segmentation for imaging-based spatial transcriptomics."""

__version__ = "0.1.0"
