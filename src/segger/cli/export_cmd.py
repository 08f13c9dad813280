"""``segger export RESULT_DIR --to spatialdata|anndata|xenium-ranger --output PATH``.

Reads a folder written by ``segger segment`` / ``segger predict`` (``segger_transcripts.parquet``,
and ``segger_boundaries.parquet`` / ``segger_run.json`` when present) and writes:

* ``spatialdata``: a new SpatialData zarr store. When the run's input was a SpatialData store
  (or ``--input STORE`` is given), the store is copied with every element and the Segger
  columns, ``segger_boundaries`` shapes and ``segger_table`` added; otherwise a store holding
  the transcripts, the boundaries and the table. The input store is never modified.
* ``anndata``: a cells × genes ``.h5ad`` (counts in ``X``, ``obsm['spatial']`` in µm, area in
  µm², mean score, vendor-cell overlap) that scanpy uses as it is.
* ``xenium-ranger``: a folder with the transcript-assignment CSV and viz-polygons GeoJSON of
  ``xeniumranger import-segmentation``, and the command to run (printed).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

TARGETS = ("spatialdata", "anndata", "xenium-ranger")

DESCRIPTION = """\
Write a segger output folder (segger_transcripts.parquet, segger_boundaries.parquet,
segger_run.json) in another format:

  spatialdata    a new SpatialData .zarr store: a copy of the run's input store (or --input STORE)
                 with segger_cell_id / score / assignment on the transcripts points, a
                 'segger_boundaries' shapes element and a 'segger_table' table; without an input
                 store, a store with the transcripts, boundaries and table. The input store is
                 never modified.
  anndata        a cells x genes .h5ad: counts in X, obsm['spatial'] in µm, obs area_um2,
                 n_transcripts, mean_score, ref_cell_id / ref_overlap (vendor cell).
  xenium-ranger  a folder with segger_transcript_assignment.csv and segger_viz_polygons.geojson
                 for 'xeniumranger import-segmentation', and the command to run (printed).

examples:
  segger export out/ --to anndata --output cells.h5ad
  segger export out/ --to spatialdata --output segmented.zarr
  segger export out/ --to xenium-ranger --output xr_inputs/
"""


def add_export_parser(sub) -> argparse.ArgumentParser:
    """Add the ``export`` subcommand to the ``segger`` parser's subparsers."""
    p = sub.add_parser(
        "export",
        help="write a segger output folder as SpatialData, AnnData (.h5ad) or Xenium Ranger inputs",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("result", help="a folder written by segger segment/predict")
    p.add_argument("--to", required=True, choices=TARGETS, help="output format")
    p.add_argument("--output", "-o", required=True,
                   help="store (.zarr) for spatialdata, file (.h5ad) for anndata, folder for xenium-ranger")
    p.add_argument("--input", default=None,
                   help="spatialdata: the SpatialData store to copy (default: the run's input when it is a store); "
                        "xenium-ranger: the original Xenium output folder for the printed command "
                        "(default: the run's input)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output (never the input)")
    p.add_argument("--reference-column", default="cell_id",
                   help="vendor cell id column for ref_cell_id/ref_overlap (default cell_id)")
    g = p.add_argument_group("xenium-ranger")
    g.add_argument("--run-id", default="segger", help="--id of the printed xeniumranger command (default segger)")
    g.add_argument("--cell-prefix", default="segger", help="cell names are PREFIX-N (default segger)")
    g.add_argument("--min-transcripts", type=int, default=1,
                   help="cells with fewer transcripts are written as noise (default 1)")
    g.add_argument("--polygon-format", default="legacy", choices=["legacy", "feature-collection"],
                   help="GeoJSON layout: legacy GeometryCollection (Xenium Ranger 2-3, default) or "
                        "FeatureCollection (Xenium Ranger >= 4)")
    return p


def load_result_dir(folder: str | Path):
    """``(result_df, boundaries_df | None, run_record | None)`` of a segger output folder
    (:func:`segger.export.load_output`)."""
    from segger.export import load_output

    return load_output(folder, "export")


def _run_input(run: dict | None) -> tuple[str | None, str | None]:
    """(platform, input path) recorded in segger_run.json."""
    if not run:
        return None, None
    platform = (run.get("parameters") or {}).get("platform")
    inputs = run.get("inputs") or []
    path = inputs[0].get("path") if inputs and isinstance(inputs[0], dict) else None
    return platform, path


def _moved(exp, tmp: Path, out: Path):
    """The export record with its paths moved from the staging folder to the output folder."""
    import dataclasses

    changes = {}
    for f in dataclasses.fields(exp):
        v = getattr(exp, f.name)
        if isinstance(v, Path) and tmp in v.parents:
            changes[f.name] = out / v.relative_to(tmp)
        elif isinstance(v, str):
            changes[f.name] = v.replace(str(tmp.resolve()), str(out.resolve())).replace(str(tmp), str(out))
    return dataclasses.replace(exp, **changes)


def cmd_export(a, bar=None) -> int:
    from segger.errors import SeggerInputError
    from segger.utils.outdir import check_output_path

    kind = "folder" if a.to == "xenium-ranger" else "file"
    result, bounds, run = load_result_dir(a.result)  # only reads; a complete output (segger_run.json)
    platform, run_input = _run_input(run)
    out = check_output_path(a.output, [("result folder", a.result), ("--input", a.input),
                                       ("run's input", run_input)], kind=kind)
    ref = a.reference_column if a.reference_column in result.columns else None

    if a.to == "anndata":
        from segger.export import build_anndata, write_anndata
        from segger.export.spatialdata import boundaries_for_all_cells

        if out.exists() and not a.overwrite:
            raise SeggerInputError(f"output {out} already exists; choose a new path or pass --overwrite")
        adata = build_anndata(result, boundaries_for_all_cells(result, bounds), reference_column=ref)
        write_anndata(adata, out)
        print(f"wrote {out}: {adata.n_obs:,} cells × {adata.n_vars:,} genes "
              "(counts in X, obsm['spatial'] in µm, obs area_um2, mean_score)")
        return 0

    if a.to == "spatialdata":
        from segger.export.spatialdata import write_spatialdata
        from segger.io.spatialdata import is_spatialdata_store

        store = a.input
        if store is None and run_input and (platform == "spatialdata" or is_spatialdata_store(run_input)):
            if not is_spatialdata_store(run_input):
                raise SeggerInputError(
                    f"the run's input store {run_input} is gone; pass --input STORE, or move it back"
                )
            store = run_input
        write_spatialdata(result, out, input=store, boundaries=bounds, reference_column=ref, overwrite=a.overwrite)
        what = f"a copy of {store} with" if store else "a new store with the transcripts,"
        print(f"wrote {out}: {what} segger_cell_id/score/assignment on the points, "
              "'segger_boundaries' shapes and 'segger_table'")
        return 0

    # xenium-ranger
    from segger.export.xenium_ranger import write_xenium_ranger

    bundle = a.input
    if bundle is None and platform == "xenium" and run_input:
        p = Path(run_input)
        bundle = str(p if p.is_dir() else p.parent)
    if platform not in (None, "xenium"):
        print(f"warning: this run read a {platform} input; Xenium Ranger needs the transcript ids of an "
              "original Xenium bundle", file=sys.stderr)
    if out.is_dir() and any(out.iterdir()) and not a.overwrite:
        raise SeggerInputError(f"output {out} already exists and is not empty; choose a new folder or pass --overwrite")
    from segger.utils.outdir import staged_path

    with staged_path(out) as tmp:  # the three files appear together, or not at all
        exp = write_xenium_ranger(
            result, tmp, boundaries=bounds, xenium_bundle=bundle, run_id=a.run_id, cell_prefix=a.cell_prefix,
            min_transcripts=a.min_transcripts, polygon_format=a.polygon_format,
        )
    exp = _moved(exp, tmp, out)
    print(f"wrote {exp.transcript_assignment} ({exp.n_transcripts:,} transcripts), {exp.viz_polygons} "
          f"({exp.n_cells:,} cells) and {exp.id_map}")
    print("import into a new Xenium bundle (Xenium Explorer) with the ORIGINAL, uncropped Xenium output folder:")
    print(exp.command)
    return 0
