"""Layers → workflow inputs, without Qt: which tables a graph is built from.

A layer made from a :class:`segger.io.SpatialSample` (the reader, the bundled samples) keeps a
reference to that sample in ``layer.metadata["segger"]["sample_ref"]``, with a fingerprint of the
layer's data as it was made. While the data is unchanged, the GUI builds its graph from the sample's
own tables — the very tables ``segger segment`` reads — so GUI and CLI build the same graph (also
above :data:`~segger.napari.layers.MAX_SHAPES` nuclei, where the nuclei layer is a raster whose
traced outlines would differ from the polygons). A layer the user drew or edited is converted back
to a table (:func:`~segger.napari.layers.points_to_transcripts`, ``shapes_to_nuclei``, label tracing).

Nuclei are resolved by :func:`segger.workflows.nuclei_for` (approximation, the crop's reach), as
for every other caller.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from segger import schema as S

METADATA_KEY = "segger"
SAMPLE_REF = "sample_ref"
FINGERPRINT = "fingerprint"


def _real(layer: Any) -> Any:
    return getattr(layer, "__wrapped__", layer)


def data_fingerprint(data: Any, dtype: Any = None) -> tuple:
    """``(length, shape or vertex count, dtype, crc32)`` of a layer's data: a list of vertex arrays
    (Shapes) or one array (Points as float64, Labels in ``dtype``: the dtype they were made with)."""
    if isinstance(data, (list, tuple)):
        parts = [np.ascontiguousarray(np.asarray(v, dtype=np.float64)) for v in data]
        crc = 0
        for p in parts:
            crc = zlib.crc32(p.view(np.uint8).reshape(-1), crc)
        return ("shapes", len(parts), sum(len(p) for p in parts), crc)
    arr = np.asarray(data)
    if dtype is None:
        dtype = np.float64 if arr.dtype.kind == "f" else arr.dtype
    arr = np.ascontiguousarray(arr, dtype=dtype)
    return ("array", tuple(arr.shape), str(np.dtype(dtype)), zlib.crc32(arr.view(np.uint8).reshape(-1)))


def link_sample(layer_tuple: tuple, sample: Any, table: str) -> tuple:
    """Store ``sample`` (and the fingerprint of the tuple's data) in a LayerDataTuple's metadata;
    ``table``: which of the sample's tables the layer shows (``"transcripts"`` or ``"nuclei"``)."""
    data, kwargs, kind = layer_tuple
    meta = kwargs.setdefault("metadata", {}).setdefault(METADATA_KEY, {})
    dtype = np.asarray(data).dtype if kind == "labels" else None
    meta[SAMPLE_REF] = sample
    meta["sample_table"] = table
    meta[FINGERPRINT] = data_fingerprint(data, dtype)
    return layer_tuple


def linked_sample(layer: Any, table: str) -> Any:
    """The :class:`~segger.io.SpatialSample` ``layer`` was made from, while its data is unchanged
    (``None`` for a layer drawn, edited or made otherwise)."""
    if layer is None:
        return None
    meta = ((_real(layer).metadata or {}).get(METADATA_KEY) or {})
    sample, fp = meta.get(SAMPLE_REF), meta.get(FINGERPRINT)
    if sample is None or fp is None or meta.get("sample_table") != table:
        return None
    dtype = np.dtype(fp[2]) if fp[0] == "array" and np.dtype(fp[2]).kind != "f" else None
    try:
        if data_fingerprint(_real(layer).data, dtype) != tuple(fp):
            return None
    except (TypeError, ValueError):
        return None
    return sample


@dataclass
class GraphInputs:
    """What the Data step hands to the worker: plain tables and arrays, no layer."""

    transcripts: pd.DataFrame
    points: str
    gene: str | None
    nuclei_mode: str
    nuclei: pd.DataFrame | None = None
    labels: tuple | None = None  # (pixels, scale, translate, name): traced in the worker
    crop: tuple[float, float, float, float] | None = None
    sample: Any = None  # the SpatialSample the transcripts came from (unedited layer)
    from_sample: dict = field(default_factory=dict)  # {"transcripts": bool, "nuclei": bool}

    def source(self, params) -> dict:
        return {"points": self.points, "gene": self.gene, "nuclei": self.nuclei_mode, "params": params.to_dict(),
                "crop": self.crop, "from_sample": dict(self.from_sample)}


def transcripts_of(layer: Any, gene: str | None) -> tuple[pd.DataFrame, Any]:
    """``(transcripts table, sample or None)`` of a transcripts Points layer: the sample's own table
    when the layer is unchanged and shows its gene feature, else the table read from the layer."""
    from segger.napari.layers import points_to_transcripts

    sample = linked_sample(layer, "transcripts")
    meta = ((_real(layer).metadata or {}).get(METADATA_KEY) or {})
    if sample is not None and (gene is None or gene == meta.get("gene_feature", S.GENE)):
        return sample.transcripts, sample
    return points_to_transcripts(layer, gene), None


def crop_transcripts(tx: pd.DataFrame, crop: tuple[float, float, float, float]) -> pd.DataFrame:
    """The transcripts inside ``crop`` (x0, y0, x1, y1 µm), renumbered from 0."""
    x0, y0, x1, y1 = crop
    keep = (tx[S.X].between(x0, x1) & tx[S.Y].between(y0, y1)).to_numpy()
    return tx[keep].reset_index(drop=True)


def resolve_nuclei(inputs: GraphInputs, dist_bd: float) -> pd.DataFrame:
    """The nuclei table of ``inputs`` through :func:`segger.workflows.nuclei_for` (in the worker)."""
    from segger.workflows import nuclei_for

    what = f"layer '{inputs.points}'"
    if inputs.labels is not None:
        from segger.napari.layers import label_image_to_nuclei

        nuclei = label_image_to_nuclei(*inputs.labels)  # napari's pixel-centre convention → µm
        return nuclei_for(inputs.transcripts, nuclei=nuclei, crop=inputs.crop, reach=dist_bd, what=what)
    if inputs.nuclei_mode == "derived":
        return nuclei_for(inputs.transcripts, approximate=True, crop=inputs.crop, reach=dist_bd, what=what)
    return nuclei_for(inputs.transcripts, nuclei=inputs.nuclei, crop=inputs.crop, reach=dist_bd, what=what)


#: keys in ``metadata["segger"]`` of the ``segger transcripts`` layer of an output folder opened whole: its
#: result table and the predict parameters of its run (:func:`adopt_output_results`)
OUTPUT_RESULT = "output_result"
OUTPUT_PARAMS = "output_params"


def adopt_output_results(viewer: Any, state: Any) -> None:
    """Make the result table of a segger output folder opened whole (:func:`read_output` links it to its
    ``segger transcripts`` layer) the session's result, ``state.set_result(result, {"source", *its run's
    predict parameters})``: for such a layer in the viewer now and for each one added later (after the
    reader has added all of its layers). A graph or prediction of another dataset in the session is
    dropped first (it is not this table's). Once per state; napari's layer events, main thread."""
    real = getattr(viewer, "__wrapped__", viewer)
    inserted = getattr(getattr(getattr(real, "layers", None), "events", None), "inserted", None)
    if inserted is None or getattr(state, "_adopts_outputs", False):
        return
    state._adopts_outputs = True

    def take(layer: Any) -> None:
        meta = ((getattr(layer, "metadata", None) or {}).get("segger") or {})
        result = meta.get(OUTPUT_RESULT)
        if result is None or result is state.result or len(layer.data) != len(result) or layer not in real.layers:
            return
        if state.bundle is not None or state.prediction is not None:
            state.reset_data()
        state.set_result(result, {"source": meta.get("source"), **(meta.get(OUTPUT_PARAMS) or {})})

    for layer in list(real.layers):
        take(layer)

    def on_inserted(event: Any) -> None:
        from qtpy.QtCore import QTimer

        layer = event.value
        QTimer.singleShot(0, lambda: take(layer))

    inserted.connect(on_inserted)
