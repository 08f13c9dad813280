"""Atomic writers: transcripts parquet, cell boundaries, AnnData, run JSON."""

from segger.export.atomic import atomic_path, atomic_write, file_sha256, to_jsonable, write_json_atomic
from segger.export.writers import (
    BOUNDARY_COLUMNS,
    build_anndata,
    cell_boundaries,
    package_versions,
    read_boundaries,
    write_anndata,
    write_boundaries,
    write_run_json,
    write_transcripts,
)

__all__ = [
    "BOUNDARY_COLUMNS",
    "atomic_path",
    "atomic_write",
    "build_anndata",
    "cell_boundaries",
    "file_sha256",
    "package_versions",
    "read_boundaries",
    "to_jsonable",
    "write_anndata",
    "write_boundaries",
    "write_json_atomic",
    "write_run_json",
    "write_transcripts",
]
