"""Readers: Xenium / MERSCOPE / CosMx / generic table → :class:`SpatialSample`.

``read_sample(path)`` returns the tidy transcripts table and nuclei table of :mod:`segger.schema`,
the :class:`FilterReport` of what quality filtering removed, and human-readable warnings.
Input files are only ever read.
"""

from segger.io._tables import normalise_cell_ids, read_table
from segger.io.filtering import (
    DEFAULT_CONTROL_PATTERNS,
    FilterReport,
    control_mask,
    filter_transcripts,
)
from segger.io.nuclei import (
    DEFAULT_CROP_MARGIN,
    approximate_nuclei,
    bbox_of,
    crop_nuclei,
    empty_nuclei,
    load_label_image,
    nuclei_from_labels,
    nuclei_from_vertices,
    nuclei_from_wkb,
    nuclei_warnings,
    read_polygons,
)
from segger.io.readers import (
    BOUNDARY_KINDS,
    COSMX_PIXEL_SIZE,
    NUCLEI_MODES,
    PLATFORMS,
    XENIUM_PIXEL_SIZE,
    InputRows,
    SpatialSample,
    check_units,
    detect_platform,
    input_rows,
    read_transcripts,
    tidy_platform_table,
)
from segger.io.readers import read_sample as _read_vendor_sample
from segger.io.spatialdata import is_spatialdata_store  # no spatialdata import: file names only


def read_sample(path, platform: str = "auto", **kwargs) -> SpatialSample:
    """Read a vendor folder, a transcripts table or a SpatialData store into a :class:`SpatialSample`.

    A SpatialData zarr store (``platform="spatialdata"``, or ``"auto"`` on a folder that is one)
    or an in-memory ``spatialdata.SpatialData`` object is read by
    :func:`segger.io.spatialdata.read_spatialdata` (optional extra ``spatialdata``); everything
    else by :func:`segger.io.readers.read_sample`, whose parameters all apply.
    """
    if (isinstance(platform, str) and platform.lower() == "spatialdata") or (
        isinstance(platform, str) and platform.lower() == "auto"
        and (is_spatialdata_store(path) or type(path).__name__ == "SpatialData")
    ):
        from segger.io.spatialdata import read_spatialdata

        return read_spatialdata(path, **kwargs)
    return _read_vendor_sample(path, platform, **kwargs)


def read_spatialdata(store, **kwargs) -> SpatialSample:
    """Lazy alias of :func:`segger.io.spatialdata.read_spatialdata` (needs ``spatialdata``)."""
    from segger.io.spatialdata import read_spatialdata as _read

    return _read(store, **kwargs)


__all__ = [
    "BOUNDARY_KINDS",
    "COSMX_PIXEL_SIZE",
    "DEFAULT_CONTROL_PATTERNS",
    "DEFAULT_CROP_MARGIN",
    "NUCLEI_MODES",
    "PLATFORMS",
    "XENIUM_PIXEL_SIZE",
    "FilterReport",
    "InputRows",
    "SpatialSample",
    "approximate_nuclei",
    "bbox_of",
    "check_units",
    "control_mask",
    "crop_nuclei",
    "detect_platform",
    "is_spatialdata_store",
    "empty_nuclei",
    "filter_transcripts",
    "input_rows",
    "load_label_image",
    "normalise_cell_ids",
    "nuclei_from_labels",
    "nuclei_from_vertices",
    "nuclei_from_wkb",
    "nuclei_warnings",
    "read_polygons",
    "read_sample",
    "read_spatialdata",
    "read_table",
    "read_transcripts",
    "tidy_platform_table",
]
