"""Writers of the output folder (transcripts parquet, cell boundaries, AnnData, run JSON) and its reader
(:func:`load_output`), region reads of a whole-slide output (:mod:`segger.export.region`); atomic writes come from :mod:`segger.utils.atomic`."""

from segger.utils.atomic import atomic_path, atomic_write, file_sha256, to_jsonable, write_json_atomic
from segger.export.writers import (
    BOUNDARY_COLUMNS,
    build_anndata,
    cell_boundaries,
    load_output,
    package_versions,
    read_boundaries,
    write_anndata,
    write_boundaries,
    write_run_json,
    write_transcripts,
    read_transcripts_output,
    SEGGER_COLUMNS,
)
from segger.export.region import RegionSource, read_boundaries_region, read_transcripts_region

__all__ = [
    "BOUNDARY_COLUMNS",
    "atomic_path",
    "atomic_write",
    "build_anndata",
    "cell_boundaries",
    "file_sha256",
    "load_output",
    "package_versions",
    "read_boundaries",
    "to_jsonable",
    "write_anndata",
    "write_boundaries",
    "write_json_atomic",
    "write_run_json",
    "write_transcripts",
    "read_transcripts_output",
    "read_transcripts_region",
    "read_boundaries_region",
    "RegionSource",
    "SEGGER_COLUMNS",
]
