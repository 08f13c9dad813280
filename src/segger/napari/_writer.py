"""npe2 writers for a Segger result Points layer ("segger transcripts").

napari hands a writer ``(path, data, meta)`` where ``meta`` is the layer's state (features,
scale, translate, name, ...). The result table is rebuilt from it and written by the core's
atomic writers; a layer without Segger's result features raises a one-line error.
"""

from __future__ import annotations

from typing import Any


def write_assignments(path: str, data: Any, meta: dict) -> list[str]:
    """Write the transcripts with their Segger cell, score and assignment kind (parquet)."""
    from segger.export.writers import write_transcripts
    from segger.napari.layers import result_from_points

    result = result_from_points(data, meta)
    if not str(path).lower().endswith((".parquet", ".pq")):
        path = f"{path}.parquet"
    return [str(write_transcripts(result, path))]


def write_anndata(path: str, data: Any, meta: dict) -> list[str]:
    """Write cells × genes counts of the Segger cells (AnnData ``.h5ad``)."""
    from segger.export.writers import build_anndata
    from segger.export.writers import write_anndata as _write
    from segger.napari.layers import result_from_points

    result = result_from_points(data, meta)
    if not str(path).lower().endswith(".h5ad"):
        path = f"{path}.h5ad"
    return [str(_write(build_anndata(result), path))]
