"""npe2 reader: a Xenium / MERSCOPE / CosMx output folder or a transcripts table → layers; a segger
output folder → the result layers.

``napari_get_reader(path)`` answers quickly and returns ``None`` for anything it cannot read (so
napari can offer other readers); the returned function calls :func:`segger.io.read_sample` and
converts the tables with :mod:`segger.napari.layers`. A segger output folder opens whole (its
transcripts and outlines as ``segger transcripts`` / ``segger cells``) up to :data:`WHOLE_SLIDE_ROWS`
transcripts; a larger one opens region by region (:mod:`segger.napari._w_region`). A folder opened whole
links its result table to its ``segger transcripts`` layer, and the session adopts it as its result
(:func:`segger.napari._inputs.adopt_output_results`: Review/QC and Export see the folder's cells). No torch import.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

from segger.napari._inputs import OUTPUT_PARAMS, OUTPUT_RESULT
from segger.utils.outdir import is_output_folder

TABLE_SUFFIXES = (".parquet", ".pq", ".csv", ".csv.gz", ".tsv", ".tsv.gz", ".txt", ".txt.gz")
#: a segger output folder with more transcripts than this is not read whole: the *Whole-slide region*
#: widget loads the region the user looks at (:mod:`segger.napari._w_region`)
WHOLE_SLIDE_ROWS = 2_000_000


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
    if is_output_folder(p):
        return True  # a segger output (read_output refuses an incomplete one with its reason)
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
    """A :class:`segger.io.SpatialSample` → [nuclei layer, transcripts Points] LayerDataTuples.

    Both layers keep a reference to ``sample`` (:func:`segger.napari._inputs.link_sample`): the
    Data step builds its graph from the sample's tables while the layers are unchanged."""
    from segger.napari._inputs import link_sample
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
        layers.append(link_sample(nuclei_to_layer(nuclei, name=f"{prefix} nuclei", metadata=dict(meta)),
                                  sample, "nuclei"))
    layers.append(link_sample(
        transcripts_to_points(
            sample.transcripts, name=f"{prefix} transcripts", metadata=dict(meta),
            visible=transcripts_visible,
        ), sample, "transcripts"))
    return layers


def read_spatial(path: Any) -> list[tuple]:
    """Read ``path`` (folder or table) into a nuclei layer and a transcripts Points layer."""
    from segger.io import read_sample

    single = _single_path(path)
    p = Path(single)
    if is_output_folder(p):
        return read_output(p)
    sample = read_sample(p)
    prefix = p.name
    for suffix in TABLE_SUFFIXES:
        if prefix.lower().endswith(suffix):
            prefix = prefix[: -len(suffix)]
            break
    for w in getattr(sample, "warnings", []) or []:
        from napari.utils.notifications import show_warning

        show_warning(str(w))
    layers = sample_to_layers(sample, prefix=prefix)
    if p.is_dir():
        image = morphology_image_layer(p, prefix, source=str(getattr(sample, "source", p)))
        if image is not None:
            layers.insert(0, image)  # under the nuclei and the transcripts
    return layers


def read_output(folder: Path) -> list[tuple]:
    """A segger output folder → ``segger transcripts`` (+ ``segger cells`` from its outlines file);
    above :data:`WHOLE_SLIDE_ROWS` transcripts, the slide's extent and the *Whole-slide region* widget
    instead (nothing read but the parquet footer)."""
    import pyarrow.parquet as pq

    from segger.utils.outdir import TRANSCRIPTS_FILE, require_complete

    require_complete(folder, "napari")
    if pq.ParquetFile(folder / TRANSCRIPTS_FILE).metadata.num_rows > WHOLE_SLIDE_ROWS:
        from segger.napari._w_region import open_whole_slide

        return open_whole_slide(folder)
    from segger.export import load_output
    from segger.napari.layers import cells_to_layer, result_to_points

    result, bounds, run = load_output(folder, "napari")
    meta = {"source": str(folder)}
    params = ((run or {}).get("parameters") or {}).get("predict") if isinstance(run, dict) else None
    layers = [result_to_points(result, metadata={**meta, OUTPUT_RESULT: result,
                                                 OUTPUT_PARAMS: dict(params) if isinstance(params, dict) else {}})]
    if bounds is not None and len(bounds):
        layers.append(cells_to_layer(bounds, metadata=meta))
    return layers


#: DAPI / morphology images of a Xenium folder, most useful first
MORPHOLOGY_FILES = ("morphology_focus.ome.tif", "morphology_mip.ome.tif",
                    "morphology_focus/morphology_focus_0000.ome.tif", "morphology.ome.tif")
XENIUM_PIXEL_UM = 0.2125
#: a larger full-resolution image is shown as a multiscale pyramid (or its largest level that fits)
MAX_FULL_PIXELS = 64_000_000


def _xenium_pixel_size(folder: Path) -> float:
    import json

    f = folder / "experiment.xenium"
    try:
        return float(json.loads(f.read_text(encoding="utf-8")).get("pixel_size", XENIUM_PIXEL_UM))
    except (OSError, ValueError, TypeError, AttributeError):
        return XENIUM_PIXEL_UM


def morphology_image_layer(folder: Path, prefix: str, source: str | None = None) -> tuple | None:
    """The folder's DAPI (morphology) image as an Image LayerDataTuple in µm, or None.

    Xenium images share the transcripts' frame: pixel (i, j) covers [j·ps, (j+1)·ps) µm in x, so
    its centre (napari's pixel coordinate) is at ps/2. A multi-channel image shows channel 0
    (DAPI); a z-stack is max-projected; a whole slide becomes a pyramid.
    """
    path = next((folder / f for f in MORPHOLOGY_FILES if (folder / f).is_file()), None)
    if path is None:
        return None
    import numpy as np
    import tifffile

    ps = _xenium_pixel_size(folder)
    try:
        with tifffile.TiffFile(path) as tf:
            series = tf.series[0]
            axes = series.axes
            levels = getattr(series, "levels", None) or [series]
            data = []
            scale_factor = 1.0
            for i, level in enumerate(levels):
                n = int(np.prod(level.shape[-2:]))
                if n > MAX_FULL_PIXELS and i < len(levels) - 1:
                    continue  # too big to hold; a coarser level follows
                arr = level.asarray()
                scale_factor = series.shape[-1] / level.shape[-1]
                data = arr
                break
    except Exception as exc:  # noqa: BLE001 - the image is optional: warn, keep the transcripts
        from napari.utils.notifications import show_warning

        show_warning(f"could not read the morphology image {path.name}: {exc}".splitlines()[0])
        return None
    arr = np.asarray(data)
    while arr.ndim > 2:  # channels first (C, Y, X) or (Z, Y, X): DAPI is channel 0, z is projected
        ax = axes[-arr.ndim] if len(axes) >= arr.ndim else "C"
        arr = arr.max(axis=0) if ax == "Z" else arr[0]
    px = ps * scale_factor
    kwargs = dict(
        name=f"{prefix} DAPI", scale=(px, px), translate=(px / 2, px / 2), colormap="gray",
        blending="additive", units=("micrometer", "micrometer"),
        metadata={"segger": {"kind": "image", "source": source or str(folder), "file": path.name}},
    )
    return (arr, kwargs, "image")
