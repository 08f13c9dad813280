"""Transcripts tables <-> Points layers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd

from segger import schema as S
from segger.errors import SeggerInputError

if TYPE_CHECKING:  # pragma: no cover
    import napari.layers
from segger.napari.layers._base import (
    METADATA_KEY,
    POINT_SIZE_UM,
    UNITS,
    _layer_name,
    _world_yx,
    colors_by_key,
)


# --------------------------------------------------------------------------------------------
# transcripts -> Points
# --------------------------------------------------------------------------------------------
_TX_FEATURES = (S.GENE, S.QV, S.NUCLEAR, S.CELL_ID, S.COMPARTMENT, S.TX_ID, S.Z)


def transcripts_features(tx: pd.DataFrame, columns: Sequence[str] = _TX_FEATURES) -> pd.DataFrame:
    """Per-point feature table of a transcripts table (gene as a categorical, ids as strings)."""
    feats = {}
    for col in columns:
        if col not in tx.columns:
            continue
        values = tx[col]
        if col == S.GENE:
            values = values.astype("category")
        elif col == S.CELL_ID:
            values = values.astype(object)
        feats[col] = values.to_numpy(copy=False) if col != S.GENE else values.array
    return pd.DataFrame(feats, index=pd.RangeIndex(len(tx)))


def transcripts_to_points(
    tx: pd.DataFrame,
    *,
    name: str = "transcripts",
    size: float = POINT_SIZE_UM,
    metadata: dict | None = None,
    visible: bool = True,
) -> tuple:
    """Transcripts table -> Points LayerDataTuple coloured by gene (direct RGBA array).

    Features: gene, qv, nuclear, cell_id (vendor, when present), compartment, transcript_id, z.
    """
    missing = [c for c in (S.X, S.Y, S.GENE) if c not in tx.columns]
    if missing:
        raise SeggerInputError(
            f"transcripts table has no column(s) {missing}; expected the columns of segger.schema"
        )
    data = np.column_stack(
        [tx[S.Y].to_numpy(dtype=np.float32), tx[S.X].to_numpy(dtype=np.float32)]
    )
    features = transcripts_features(tx)
    colors = colors_by_key(features[S.GENE])
    meta = {METADATA_KEY: {"kind": "transcripts", "gene_feature": S.GENE}}
    if metadata:
        meta[METADATA_KEY].update(metadata)
    kwargs = dict(
        name=name,
        features=features,
        face_color=colors,
        border_width=0,
        size=size,
        units=UNITS,
        metadata=meta,
        visible=visible,
        opacity=0.9,
    )
    return (data, kwargs, "points")


def points_to_transcripts(layer: "napari.layers.Points", gene_feature: str | None = None) -> pd.DataFrame:
    """A Points layer (any source) -> transcripts table following :mod:`segger.schema`.

    x/y come from the layer's data in world coordinates (µm; scale and translate honoured);
    ``gene_feature`` names the feature holding the gene. Known schema features (qv, nuclear,
    cell_id, z, transcript_id, compartment) are carried over when present.
    """
    name = _layer_name(layer)
    if type(getattr(layer, "__wrapped__", layer)).__name__ != "Points":
        raise SeggerInputError(
            f"layer '{name}' is a {type(getattr(layer, '__wrapped__', layer)).__name__} layer, "
            "not Points; choose the transcripts Points layer"
        )
    features: pd.DataFrame = layer.features
    if gene_feature is None:
        gene_feature = (layer.metadata.get(METADATA_KEY, {}) or {}).get("gene_feature", S.GENE)
    if gene_feature not in features.columns:
        avail = ", ".join(map(str, features.columns)) or "none"
        raise SeggerInputError(
            f"layer '{name}' has no feature '{gene_feature}' (features: {avail}); "
            "choose the gene feature in the widget"
        )
    data = np.asarray(layer.data)
    if len(data) == 0:
        raise SeggerInputError(f"layer '{name}' has no points; choose the transcripts layer")
    yx = _world_yx(layer, data)
    n = len(yx)
    out = {
        S.TX_ID: (
            features[S.TX_ID].to_numpy()
            if S.TX_ID in features.columns
            else np.arange(n, dtype=np.int64)
        ),
        S.X: yx[:, 1],
        S.Y: yx[:, 0],
        S.Z: (
            features[S.Z].to_numpy(dtype=float)
            if S.Z in features.columns
            else (data[:, -3] if data.shape[1] >= 3 else np.zeros(n))
        ),
        S.GENE: features[gene_feature].astype(str).to_numpy(dtype=object),
        S.QV: (
            features[S.QV].to_numpy(dtype=float) if S.QV in features.columns else np.full(n, np.nan)
        ),
        S.NUCLEAR: (
            features[S.NUCLEAR].fillna(False).to_numpy(dtype=bool)
            if S.NUCLEAR in features.columns
            else np.zeros(n, dtype=bool)
        ),
        S.CELL_ID: (
            features[S.CELL_ID].astype(object).where(features[S.CELL_ID].notna(), None).to_numpy()
            if S.CELL_ID in features.columns
            else np.full(n, None, dtype=object)
        ),
    }
    if S.COMPARTMENT in features.columns:
        out[S.COMPARTMENT] = features[S.COMPARTMENT].to_numpy()
    tx = pd.DataFrame(out)
    tx[S.TX_ID] = tx[S.TX_ID].astype(np.int64)
    return tx
