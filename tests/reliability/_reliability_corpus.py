"""The malformed-input corpus of issue 6, generated from the packaged Xenium lung crop.

Nothing here is committed as data: every case is a small function that damages a fresh copy of
a (further cropped) lung folder in a temporary directory. Each :class:`Case` says how the CLI is
called and what the user must see:

* ``expect="error"``: exit code 2, exactly one stderr line starting with ``segger: error:`` that
  contains every fragment of ``fragments`` (file, column/value, fix), no traceback, no output;
* ``expect="warning"``: exit code 0, a complete output (``segger_run.json``) and a
  ``warning:`` line on stderr containing every fragment of ``fragments``.

``user_sees`` (filled in by the test) is what the closing note and docs/troubleshooting.md list.
(Module name is unique: tests/ has no packages.)
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

import segger

SAMPLE = Path(segger.__file__).resolve().parent / "sample_data" / "xenium_lung"
TX = "transcripts.parquet"
NUC = "nucleus_boundaries.parquet"

#: the crop used by the corpus (µm): half of the packaged lung crop, ~6k transcripts, ~100 nuclei
CROP_X = (2160.0, 2262.0)

#: tiny model, one epoch: success cases stay a few seconds each on 2 shared CPU cores
TINY_ARGS = ["--epochs", "1", "--hidden-channels", "16", "--out-channels", "16", "--heads", "2",
             "--num-mid-layers", "1", "--device", "cpu", "--quiet"]
COMMON_ARGS = {"segment": TINY_ARGS, "train": TINY_ARGS, "predict": ["--device", "cpu", "--quiet"]}


def argv(case: "Case", inp: Path, folder: Path, out: Path) -> list[str]:
    """The CLI arguments of ``case`` (after ``segger``)."""
    return [case.command, str(inp), "-o", str(out), *[a.format(input=folder) for a in case.args],
            *COMMON_ARGS[case.command]]


def make_base(folder: Path) -> Path:
    """Write the cropped lung sample (Xenium layout: transcripts + nucleus polygons) to ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    tx = pd.read_parquet(SAMPLE / TX)
    keep = tx["x_location"].between(*CROP_X)
    tx = tx[keep].reset_index(drop=True)
    tx.to_parquet(folder / TX, index=False)
    nuc = pd.read_parquet(SAMPLE / NUC)
    cx = nuc.groupby("cell_id")["vertex_x"].transform("mean")
    nuc = nuc[cx.between(*CROP_X)].reset_index(drop=True)
    nuc.to_parquet(folder / NUC, index=False)
    return folder


def _tx(folder: Path) -> pd.DataFrame:
    return pd.read_parquet(folder / TX)


def _nuc(folder: Path) -> pd.DataFrame:
    return pd.read_parquet(folder / NUC)


# --------------------------------------------------------------------------------------------
# damage functions: each gets a fresh copy of the base folder and returns the input path
# --------------------------------------------------------------------------------------------
def drop_gene_column(f: Path) -> Path:
    _tx(f).drop(columns=["feature_name"]).to_parquet(f / TX, index=False)
    return f


def rename_x_column(f: Path) -> Path:
    _tx(f).rename(columns={"x_location": "x_centroid"}).to_parquet(f / TX, index=False)
    return f


def decimal_commas_in_x(f: Path) -> Path:
    df = _tx(f)
    df["x_location"] = df["x_location"].map(lambda v: f"{v:.3f}".replace(".", ","))  # European export
    df.to_parquet(f / TX, index=False)
    return f


def text_in_qv(f: Path) -> Path:
    df = _tx(f)
    df["qv"] = np.where(df["qv"] >= 20, "high", "low")
    df.to_parquet(f / TX, index=False)
    return f


def boolean_y(f: Path) -> Path:
    df = _tx(f)
    df["y_location"] = df["y_location"] > df["y_location"].median()
    df.to_parquet(f / TX, index=False)
    return f


def some_nan_coordinates(f: Path) -> Path:
    df = _tx(f)
    df.loc[df.index[::20], "x_location"] = np.nan
    df.to_parquet(f / TX, index=False)
    return f


def some_inf_coordinates(f: Path) -> Path:
    df = _tx(f)
    df.loc[df.index[5::25], "y_location"] = np.inf
    df.loc[df.index[7::25], "x_location"] = -np.inf
    df.to_parquet(f / TX, index=False)
    return f


def all_nan_coordinates(f: Path) -> Path:
    df = _tx(f)
    df["x_location"] = np.nan
    df.to_parquet(f / TX, index=False)
    return f


def empty_transcripts_file(f: Path) -> Path:
    (f / TX).write_bytes(b"")
    return f


def zero_row_transcripts(f: Path) -> Path:
    _tx(f).iloc[:0].to_parquet(f / TX, index=False)
    return f


def empty_polygons_file(f: Path) -> Path:
    (f / NUC).write_bytes(b"")
    return f


def zero_row_polygons(f: Path) -> Path:
    _nuc(f).iloc[:0].to_parquet(f / NUC, index=False)
    return f


def truncated_transcripts(f: Path) -> Path:
    data = (f / TX).read_bytes()
    (f / TX).write_bytes(data[: len(data) * 2 // 3])
    return f


def truncated_polygons(f: Path) -> Path:
    data = (f / NUC).read_bytes()
    (f / NUC).write_bytes(data[: len(data) // 2])
    return f


def csv_with_semicolons(f: Path) -> Path:
    (f / TX).unlink()
    (f / NUC).unlink()
    _base = pd.read_parquet(SAMPLE / TX).head(3000)
    _base.to_csv(f / "transcripts_export.csv", sep=";", index=False)
    return f / "transcripts_export.csv"


def duplicate_transcript_ids(f: Path) -> Path:
    df = _tx(f)
    df.loc[df.index[10:20], "transcript_id"] = df["transcript_id"].iloc[0]
    df.to_parquet(f / TX, index=False)
    return f


def polygons_with_two_vertices(f: Path) -> Path:
    nuc = _nuc(f)
    ids = nuc["cell_id"].unique()[:3]
    bad = nuc["cell_id"].isin(ids)
    first_two = nuc[bad].groupby("cell_id").head(2)
    nuc = pd.concat([nuc[~bad], first_two]).reset_index(drop=True)
    nuc.to_parquet(f / NUC, index=False)
    return f


def all_polygons_degenerate(f: Path) -> Path:
    nuc = _nuc(f)
    nuc.groupby("cell_id").head(2).reset_index(drop=True).to_parquet(f / NUC, index=False)
    return f


def self_intersecting_polygons(f: Path) -> Path:
    """Bow-ties: swap the 2nd and 3rd vertex of the first 5 nuclei (a classic export bug)."""
    nuc = _nuc(f)
    for cid in nuc["cell_id"].unique()[:5]:
        rows = np.flatnonzero((nuc["cell_id"] == cid).to_numpy())
        n = len(rows)
        a, b = rows[1], rows[n // 2]
        for col in ("vertex_x", "vertex_y"):
            va, vb = nuc.at[a, col], nuc.at[b, col]
            nuc.at[a, col], nuc.at[b, col] = vb, va
    nuc.to_parquet(f / NUC, index=False)
    return f


def vertices_as_text(f: Path) -> Path:
    nuc = _nuc(f)
    nuc["vertex_x"] = nuc["vertex_x"].astype(str)
    nuc.loc[nuc.index[4], "vertex_x"] = "n/a"
    nuc.to_parquet(f / NUC, index=False)
    return f


def polygons_without_id(f: Path) -> Path:
    _nuc(f).rename(columns={"cell_id": "nucleus"}).to_parquet(f / NUC, index=False)
    return f


def boundary_ids_not_in_transcripts(f: Path) -> Path:
    nuc = _nuc(f)
    nuc["cell_id"] = "nuc-" + nuc["cell_id"].astype(str)
    nuc.to_parquet(f / NUC, index=False)
    return f


XENIUM_PX = 0.2125  # µm per pixel of the Xenium morphology image


def coordinates_in_pixels(f: Path) -> Path:
    """Transcripts and polygons in morphology-image pixels (µm / 0.2125), consistently."""
    df = _tx(f)
    for c in ("x_location", "y_location"):
        df[c] = df[c] / XENIUM_PX
    df.to_parquet(f / TX, index=False)
    nuc = _nuc(f)
    for c in ("vertex_x", "vertex_y"):
        nuc[c] = nuc[c] / XENIUM_PX
    nuc.to_parquet(f / NUC, index=False)
    return f


def all_low_qv(f: Path) -> Path:
    df = _tx(f)
    df["qv"] = np.float32(12.5)
    df.to_parquet(f / TX, index=False)
    return f


def single_nucleus(f: Path) -> Path:
    nuc = _nuc(f)
    tx = _tx(f)
    # the nucleus with the most nuclear transcripts, so it has something to learn from
    best = tx.loc[tx["overlaps_nucleus"] == 1, "cell_id"].value_counts().index
    cid = next(c for c in best if c in set(nuc["cell_id"]))
    nuc[nuc["cell_id"] == cid].to_parquet(f / NUC, index=False)
    return f


def no_nuclei_at_all(f: Path) -> Path:
    (f / NUC).unlink()
    df = _tx(f)
    df["overlaps_nucleus"] = np.uint8(0)
    df.to_parquet(f / TX, index=False)
    return f


def unchanged(f: Path) -> Path:
    return f


def panel_checkpoint(f: Path) -> Path:
    """A valid checkpoint of a model trained on another gene panel, next to the (good) input."""
    from segger.data import GeneVocab, GraphParams
    from segger.models import SeggerLinkModel, build_hetero_model
    from segger.training import TrainConfig
    from segger.training.checkpoint import save_checkpoint

    vocab = GeneVocab.from_genes([f"MOUSE_GENE_{i}" for i in range(40)])
    cfg = TrainConfig(hidden_channels=16, out_channels=16, heads=2, num_mid_layers=1).model_config(len(vocab))
    model = SeggerLinkModel(build_hetero_model(**cfg.to_dict()), spatial=True)
    save_checkpoint(f / "mouse_brain_model.pt", model, cfg, vocab, GraphParams())
    return f


# --------------------------------------------------------------------------------------------
@dataclass
class Case:
    name: str
    title: str  # the malformed input, in words (docs table)
    make: Callable[[Path], Path]
    expect: str  # "error" | "warning"
    fragments: list[str]  # each must appear (case-insensitive) in the error / a warning line
    args: list[str] = field(default_factory=list)  # extra CLI arguments ({input} = the case folder)
    command: str = "segment"
    user_sees: str = ""


CASES: list[Case] = [
    # --- columns and dtypes
    Case("missing-gene-column", "transcripts table without its gene column (`feature_name`)", drop_gene_column,
         "error", [TX, "gene column 'feature_name'", "accepted names", "rename the column"]),
    Case("renamed-x-column", "x column renamed (`x_location` → `x_centroid`)", rename_x_column,
         "error", [TX, "x column 'x_location'", "x_centroid", "rename the column"]),
    Case("decimal-commas", "x written as text with decimal commas (`\"2160,004\"`)", decimal_commas_in_x,
         "error", [TX, "'x_location' must be numeric", ",", "fix the column"]),
    Case("text-qv", "qv column holding text (`high`/`low`)", text_in_qv,
         "error", [TX, "'qv' must be numeric", "'high'"]),
    Case("boolean-y", "y column of booleans", boolean_y,
         "error", [TX, "'y_location' must be numeric but is boolean", "choose the right column"]),
    Case("semicolon-csv", "CSV exported with `;` separators (one column)", csv_with_semicolons,
         "error", ["transcripts_export.csv", "missing required x column", "rename the column"]),
    # --- coordinates
    Case("some-nan-xy", "5 % of the x coordinates NaN", some_nan_coordinates,
         "warning", [TX, "NaN/inf coordinates were dropped"]),
    Case("some-inf-xy", "±inf in some x/y coordinates", some_inf_coordinates,
         "warning", [TX, "NaN/inf coordinates were dropped"]),
    Case("all-nan-xy", "every x coordinate NaN", all_nan_coordinates,
         "error", [TX, "have NaN or infinite coordinates", "check the x/y columns"]),
    Case("pixel-coordinates", "coordinates in morphology-image pixels (0.2125 µm/px) instead of µm",
         coordinates_in_pixels, "warning", ["pixels", "µm"]),
    # --- empty / truncated files
    Case("empty-transcripts-file", "0-byte transcripts file", empty_transcripts_file,
         "error", [TX, "empty (0 bytes)", "export or copy it again"]),
    Case("zero-row-transcripts", "transcripts file with the columns but no rows", zero_row_transcripts,
         "error", [TX, "no rows", "export it again"]),
    Case("truncated-transcripts", "transcripts parquet cut off (interrupted copy)", truncated_transcripts,
         "error", [TX, "cannot read", "truncated", "copy it again"]),
    Case("empty-polygons-file", "0-byte nucleus polygons file", empty_polygons_file,
         "error", [NUC, "empty (0 bytes)", "copy it again"]),
    Case("zero-row-polygons", "nucleus polygons file with no rows", zero_row_polygons,
         "error", [NUC, "no rows"]),
    Case("truncated-polygons", "nucleus polygons parquet cut off", truncated_polygons,
         "error", [NUC, "cannot read", "copy it again"]),
    # --- ids
    Case("duplicate-transcript-ids", "10 rows sharing one `transcript_id`", duplicate_transcript_ids,
         "error", [TX, "'transcript_id'", "duplicate transcript ids", "remove the duplicated rows"]),
    Case("boundary-ids-not-in-transcripts", "polygon ids that match no transcript `cell_id`",
         boundary_ids_not_in_transcripts, "warning", [NUC, "match no transcript cell_id", "by position"]),
    # --- polygons
    Case("two-vertex-polygons", "3 polygons with only 2 vertices", polygons_with_two_vertices,
         "warning", [NUC, "fewer than 3 distinct vertices dropped"]),
    Case("all-polygons-degenerate", "every polygon with < 3 vertices", all_polygons_degenerate,
         "error", [NUC, "fewer than 3 distinct vertices", "no nuclei", "--nuclei-labels"]),
    Case("self-intersecting-polygons", "5 bow-tie (self-intersecting) polygons", self_intersecting_polygons,
         "warning", [NUC, "self-intersecting", "repaired"]),
    Case("vertex-x-as-text", "polygon vertex x stored as text with an `n/a`", vertices_as_text,
         "error", [NUC, "'vertex_x' must be numeric", "'n/a'"]),
    Case("polygons-without-id", "polygon table whose id column is called `nucleus`", polygons_without_id,
         "error", [NUC, "polygon id column 'cell_id'", "rename the column"]),
    # --- content
    Case("all-filtered-by-qv", "every transcript below the qv threshold (qv 12.5 < 20)", all_low_qv,
         "error", [TX, "qv < 20", "--min-qv"]),
    Case("single-nucleus", "only one nucleus polygon", single_nucleus,
         "warning", ["only 1 nucleus"]),
    Case("no-nuclei", "no polygons file and no nuclear-flagged transcripts", no_nuclei_at_all,
         "error", ["no nuclei were found", "--nuclei-labels"]),
    Case("checkpoint-other-panel", "checkpoint trained on another gene panel", panel_checkpoint,
         "error", ["mouse_brain_model.pt", "0% of this panel's genes", "train a new model"],
         args=["--checkpoint", "{input}/mouse_brain_model.pt"], command="predict"),
    # --- parameters
    Case("k-tx-too-large", "`--k-tx 500`", unchanged, "error", ["--k-tx 500", "1 to 100"], args=["--k-tx", "500"]),
    Case("k-bd-negative", "`--k-bd -3`", unchanged, "error", ["--k-bd -3", "1 to 100"], args=["--k-bd", "-3"]),
    Case("dist-bd-zero", "`--dist-bd 0`", unchanged, "error", ["--dist-bd 0", "> 0"],
         args=["--dist-bd", "0"]),
    Case("dist-tx-huge", "`--dist-tx 1e6` (a metre)", unchanged, "error", ["--dist-tx 1000000", "≤ 1000"],
         args=["--dist-tx", "1e6"]),
    Case("dist-tx-inf", "`--dist-tx inf`", unchanged, "error", ["--dist-tx inf"], args=["--dist-tx", "inf"]),
    Case("min-qv-nan", "`--min-qv nan`", unchanged, "error", ["min_qv"], args=["--min-qv", "nan"]),
]

BY_NAME = {c.name: c for c in CASES}


def copy_base(base: Path, dst: Path) -> Path:
    shutil.copytree(base, dst)
    return dst
