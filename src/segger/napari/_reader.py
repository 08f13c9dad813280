"""npe2 reader: a Xenium / MERSCOPE / CosMx output folder or a transcripts table → layers.

``napari_get_reader(path)`` answers quickly and returns ``None`` for anything it cannot read (so
napari can offer other readers); the returned function calls :func:`segger.io.read_sample` and
converts the tables with :mod:`segger.napari.layers`. No torch import.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

TABLE_SUFFIXES = (".parquet", ".pq", ".csv", ".csv.gz", ".tsv", ".tsv.gz", ".txt", ".txt.gz")


def _single_path(path: Any) -> str | None:
    if isinstance(path, (list, tuple)):
        if len(path) != 1:
            return None
        path = path[0]
    try:
        return os.fspath(path)
    except TypeError:
        return None


def _can_read(path: str) -> bool:
    from segger.errors import SeggerError

    p = Path(path)
    if not p.exists():
        return False
    from segger.io.spatialdata import is_spatialdata_store

    if p.is_dir() and is_spatialdata_store(p):
        return True  # read through segger.io.read_sample like every other input
    if p.is_file() and not p.name.lower().endswith(TABLE_SUFFIXES):
        return False
    try:
        from segger.io import detect_platform

        platform = detect_platform(p)
        if platform == "table":
            # a generic table must look like transcripts (x, y, gene), not e.g. polygons
            from segger.io._tables import find_column, read_columns
            from segger.io.readers import GENE_ALIASES, X_ALIASES, Y_ALIASES

            cols = read_columns(p)
            if not all(find_column(cols, a) for a in (X_ALIASES, Y_ALIASES, GENE_ALIASES)):
                return False
    except (SeggerError, OSError, ValueError, ImportError):
        return False
    return bool(platform) and platform not in ("unknown", "none")


def napari_get_reader(path: Any) -> Callable | None:
    """Return :func:`read_spatial` when ``path`` is a folder or table Segger understands."""
    single = _single_path(path)
    if single is None or not _can_read(single):
        return None
    return read_spatial


def sample_to_layers(sample: Any, *, prefix: str, metadata: dict | None = None,
                     transcripts_visible: bool = True) -> list[tuple]:
    """A :class:`segger.io.SpatialSample` → [nuclei layer, transcripts Points] LayerDataTuples."""
    from segger.napari.layers import nuclei_to_layer, transcripts_to_points

    meta = {
        "platform": getattr(sample, "platform", None),
        "source": str(getattr(sample, "source", "")),
        "warnings": list(getattr(sample, "warnings", []) or []),
    }
    report = getattr(sample, "filter_report", None)
    if report is not None:
        meta["filter_report"] = report.to_dict() if hasattr(report, "to_dict") else report
    meta.update(metadata or {})
    layers = []
    nuclei = getattr(sample, "nuclei", None)
    if nuclei is not None and len(nuclei):
        layers.append(nuclei_to_layer(nuclei, name=f"{prefix} nuclei", metadata=dict(meta)))
    layers.append(
        transcripts_to_points(
            sample.transcripts, name=f"{prefix} transcripts", metadata=dict(meta),
            visible=transcripts_visible,
        )
    )
    return layers


def read_spatial(path: Any) -> list[tuple]:
    """Read ``path`` (folder or table) into a nuclei layer and a transcripts Points layer."""
    from segger.io import read_sample

    single = _single_path(path)
    p = Path(single)
    sample = read_sample(p)
    prefix = p.name
    for suffix in TABLE_SUFFIXES:
        if prefix.lower().endswith(suffix):
            prefix = prefix[: -len(suffix)]
            break
    for w in getattr(sample, "warnings", []) or []:
        from napari.utils.notifications import show_warning

        show_warning(str(w))
    return sample_to_layers(sample, prefix=prefix)
