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
    SpatialSample,
    check_units,
    detect_platform,
    read_sample,
    read_transcripts,
)

__all__ = [
    "BOUNDARY_KINDS",
    "COSMX_PIXEL_SIZE",
    "DEFAULT_CONTROL_PATTERNS",
    "DEFAULT_CROP_MARGIN",
    "NUCLEI_MODES",
    "PLATFORMS",
    "XENIUM_PIXEL_SIZE",
    "FilterReport",
    "SpatialSample",
    "approximate_nuclei",
    "bbox_of",
    "check_units",
    "control_mask",
    "crop_nuclei",
    "detect_platform",
    "empty_nuclei",
    "filter_transcripts",
    "load_label_image",
    "normalise_cell_ids",
    "nuclei_from_labels",
    "nuclei_from_vertices",
    "nuclei_from_wkb",
    "nuclei_warnings",
    "read_polygons",
    "read_sample",
    "read_table",
    "read_transcripts",
]
