"""Pure conversions between Segger's core tables and napari layer data (no viewer, no Qt).

Coordinates: every layer made here has its data in micrometres (world unit = µm, ``scale`` 1,
``units`` micrometer), in napari's (y, x) order. The functions that turn layers back into core
tables honour the layer's ``scale`` and ``translate`` (e.g. a Labels layer from Cellpose run on a
DAPI image with a 0.2125 µm pixel size), so world coordinates are taken to be micrometres.

Colours are computed here as one float32 RGBA array (never through napari's feature colour
mapping, which is 10–35x slower at a million points), with stable hash colours per gene / per
cell id so that a cell keeps its colour across re-runs and re-thresholds.

Every function returns a napari ``LayerDataTuple`` ``(data, kwargs, layer_type)`` or a core table.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd

from segger.errors import SeggerInputError


# Stable result-layer names: re-running updates these layers instead of adding new ones.
LAYER_TRANSCRIPTS = "segger transcripts"
LAYER_CELLS = "segger cells"
LAYER_ATTENTION = "segger attention"
LAYER_TX_EDGES = "segger tx-tx edges"
LAYER_NUCLEI = "segger nuclei"
LAYER_HIGHLIGHT = "segger highlight"  # the ring around a cell picked in QC
RESULT_LAYER_NAMES = (LAYER_TRANSCRIPTS, LAYER_CELLS, LAYER_ATTENTION)

UNITS = ("micrometer", "micrometer")
POINT_SIZE_UM = 1.0
#: above this many cells, outlines are drawn as a Labels raster instead of Shapes polygons
MAX_SHAPES = 3000
#: pixel size (µm) of rasterised cell / nucleus outlines
RASTER_PIXEL_UM = 0.5
UNASSIGNED_RGBA = np.array([0.55, 0.55, 0.55, 0.45], dtype=np.float32)
METADATA_KEY = "segger"


# --------------------------------------------------------------------------------------------
# colours
# --------------------------------------------------------------------------------------------
def _hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    i = np.floor(h * 6.0).astype(np.int64) % 6
    f = h * 6.0 - np.floor(h * 6.0)
    p = v * (1.0 - s)
    q = v * (1.0 - f * s)
    t = v * (1.0 - (1.0 - f) * s)
    r = np.choose(i, [v, q, p, p, t, v])
    g = np.choose(i, [t, v, v, q, p, p])
    b = np.choose(i, [p, p, t, v, v, q])
    return np.stack([r, g, b], axis=-1)


def hash_colors(keys: Sequence[Any] | np.ndarray | pd.Index, alpha: float = 1.0) -> np.ndarray:
    """Stable, well-spread RGBA colours (float32, shape (K, 4)) for hashable keys.

    The same key always gets the same colour (in any process), so a cell or gene keeps its colour
    across runs. Vectorised (pandas' stable 64-bit hash), fine for 10^5 keys.
    """
    keys = np.asarray(keys, dtype=object).astype(str)
    if keys.size == 0:
        return np.zeros((0, 4), dtype=np.float32)
    h = pd.util.hash_array(keys.astype(object)).astype(np.uint64)
    hue = (h % np.uint64(3607)).astype(np.float64) / 3607.0
    sat = 0.55 + 0.45 * ((h >> np.uint64(16)) % np.uint64(101)).astype(np.float64) / 100.0
    val = 0.70 + 0.30 * ((h >> np.uint64(32)) % np.uint64(101)).astype(np.float64) / 100.0
    rgb = _hsv_to_rgb(hue, sat, val)
    out = np.empty((keys.size, 4), dtype=np.float32)
    out[:, :3] = rgb
    out[:, 3] = alpha
    return out


def colors_by_key(values: Any, alpha: float = 1.0, missing: Sequence[Any] = ()) -> np.ndarray:
    """One RGBA row (float32, (N, 4)) per value, coloured by :func:`hash_colors` of the value.

    Values in ``missing`` (and NaN/None) get :data:`UNASSIGNED_RGBA`. Cost: one ``pd.factorize``
    over the N values plus a hash of the unique values; no Python loop over N.
    """
    codes, uniques = pd.factorize(pd.Series(values, copy=False), use_na_sentinel=True)
    palette = np.vstack([hash_colors(uniques, alpha), UNASSIGNED_RGBA[None, :]])
    if len(missing):
        miss = np.flatnonzero(pd.Index(uniques).isin(list(missing)))
        palette[miss] = UNASSIGNED_RGBA
    # code -1 (NaN / None) -> last row (grey)
    return palette[codes]


# --------------------------------------------------------------------------------------------
# layer <-> world (µm) geometry
# --------------------------------------------------------------------------------------------
def _layer_name(layer: Any) -> str:
    return str(getattr(layer, "name", "?"))


def layer_scale_translate(layer: Any) -> tuple[np.ndarray, np.ndarray]:
    """(scale, translate) of the last two (y, x) axes of ``layer``; rejects rotation/shear."""
    scale = np.asarray(layer.scale, dtype=float)[-2:]
    translate = np.asarray(layer.translate, dtype=float)[-2:]
    rotate = np.asarray(getattr(layer, "rotate", np.eye(2)), dtype=float)
    shear = np.asarray(getattr(layer, "shear", np.zeros(1)), dtype=float)
    affine = getattr(layer, "affine", None)
    aff = np.asarray(getattr(affine, "affine_matrix", np.eye(3)), dtype=float)
    if (
        not np.allclose(rotate, np.eye(rotate.shape[0]))
        or not np.allclose(shear, 0)
        or not np.allclose(aff, np.eye(aff.shape[0]))
    ):
        raise SeggerInputError(
            f"layer '{_layer_name(layer)}' is rotated, sheared or has an affine transform; "
            "Segger only supports scale and translate: reset the transform (or resample the data) "
            "and try again"
        )
    return scale, translate


def _world_yx(layer: Any, data: np.ndarray) -> np.ndarray:
    scale, translate = layer_scale_translate(layer)
    data = np.asarray(data, dtype=float)
    if data.ndim != 2 or data.shape[1] < 2:
        raise SeggerInputError(f"layer '{_layer_name(layer)}' has no 2-D coordinates")
    return data[:, -2:] * scale + translate
