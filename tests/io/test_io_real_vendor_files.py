"""Readers against real vendor files (issue 15, finding 12), not files the tests write themselves.

``tests/data/vendor/merscope`` is the head of Vizgen's own ``detected_transcripts.csv`` test file (vpt,
Apache-2.0), ``tests/data/vendor/cosmx`` a row subset of NanoString's Lung12 ``*_tx_file.csv`` as shipped
by GiottoData (MIT); see each folder's SOURCE.md. The expected facts are read off the files with the
``csv`` module, independently of pandas and of segger. The spatialdata-io comparison is skipped where
``spatialdata_io`` is not importable (it is not a dependency of segger).
"""

from __future__ import annotations

import csv
import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest

from segger.io import read_sample
from segger.io.readers import COSMX_PIXEL_SIZE, detect_platform

VENDOR = Path(__file__).resolve().parents[1] / "data" / "vendor"
MERSCOPE = VENDOR / "merscope"
COSMX = VENDOR / "cosmx"


def _rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), list(reader)


def _digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def merscope_dir(tmp_path) -> Path:
    """A private copy, so the reader's hands-off promise is checked without touching the repo."""
    return Path(shutil.copytree(MERSCOPE, tmp_path / "merscope"))


@pytest.fixture
def cosmx_dir(tmp_path) -> Path:
    return Path(shutil.copytree(COSMX, tmp_path / "cosmx"))


# --------------------------------------------------------------------------- MERSCOPE


def test_merscope_files_are_the_vendor_layout():
    header, rows = _rows(MERSCOPE / "detected_transcripts.csv")
    # Vizgen's column order, with the unnamed per-FOV index first (no cell_id in this older export)
    assert header == ["", "barcode_id", "global_x", "global_y", "global_z", "x", "y", "fov", "gene",
                      "transcript_id"]
    assert len(rows) == 109
    assert (MERSCOPE / "images" / "micron_to_mosaic_pixel_transform.csv").is_file()


def test_merscope_read_sample(merscope_dir):
    before = _digests(merscope_dir)
    _, rows = _rows(merscope_dir / "detected_transcripts.csv")
    assert detect_platform(merscope_dir) == "merscope"

    s = read_sample(merscope_dir)
    t = s.transcripts
    assert s.platform == "merscope"
    # no qv, no Blank-* barcodes in these rows: every row is kept
    assert s.filter_report.rows_in == len(rows) == 109
    assert len(t) == 109
    assert not s.filter_report.qv_available
    counts = t["gene"].value_counts().to_dict()
    assert counts == {"Comt": 73, "Ldha": 26, "Pck1": 10}
    # µm as written (global_x/global_y), row order kept
    np.testing.assert_allclose(t["x"].to_numpy(), [float(r["global_x"]) for r in rows], rtol=0, atol=1e-9)
    np.testing.assert_allclose(t["y"].to_numpy(), [float(r["global_y"]) for r in rows], rtol=0, atol=1e-9)
    assert t["x"].min() == pytest.approx(0.07934364297443608)
    assert t["x"].max() == pytest.approx(55.26994364297434)
    assert t["y"].min() == pytest.approx(1.0672353083468806)
    assert t["y"].max() == pytest.approx(54.991335308346606)
    # z is the plane index (global_z), seven planes 0..6
    assert sorted(set(t["z"].tolist())) == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    # transcript_id names the gene's transcript (ENSMUST...), so molecules are numbered by row
    assert t["transcript_id"].tolist() == list(range(109))
    assert t["input_transcript_id"].tolist() == [r["transcript_id"] for r in rows]
    assert set(t["input_transcript_id"]) == {"ENSMUST00000000335", "ENSMUST00000048209", "ENSMUST00000029017"}
    # no cell_id column, no nuclear flag
    assert t["cell_id"].isna().all()
    assert not t["nuclear"].any()
    assert _digests(merscope_dir) == before


# --------------------------------------------------------------------------- CosMx


def test_cosmx_files_are_the_vendor_layout():
    header, rows = _rows(COSMX / "Lung12_tx_file.csv")
    assert header == ["fov", "cell_ID", "x_global_px", "y_global_px", "x_local_px", "y_local_px", "z",
                      "target", "CellComp"]
    assert len(rows) == 154
    assert {r["CellComp"] for r in rows} == {"0", "Nuclear", "Cytoplasm", "Membrane"}


def test_cosmx_read_sample(cosmx_dir):
    before = _digests(cosmx_dir)
    _, rows = _rows(cosmx_dir / "Lung12_tx_file.csv")
    assert detect_platform(cosmx_dir) == "cosmx"

    s = read_sample(cosmx_dir)
    t = s.transcripts
    assert s.platform == "cosmx"
    kept = [r for r in rows if not r["target"].startswith("NegPrb")]
    assert [r["target"] for r in rows if r["target"].startswith("NegPrb")] == ["NegPrb23"]
    assert s.filter_report.rows_in == 154
    assert len(t) == len(kept) == 153
    assert t["gene"].tolist() == [r["target"] for r in kept]
    # global pixels -> µm with the CosMx camera pixel size
    np.testing.assert_allclose(t["x"].to_numpy(), [float(r["x_global_px"]) * COSMX_PIXEL_SIZE for r in kept],
                               rtol=1e-12)
    np.testing.assert_allclose(t["y"].to_numpy(), [float(r["y_global_px"]) * COSMX_PIXEL_SIZE for r in kept],
                               rtol=1e-12)
    assert t["x"].min() == pytest.approx(5304.15344444444 * COSMX_PIXEL_SIZE)
    assert t["y"].min() == pytest.approx(-157233.204793333 * COSMX_PIXEL_SIZE)  # negative, as written
    # z is the plane index
    assert sorted(set(t["z"].tolist())) == [float(v) for v in range(9)]
    # cell_ID numbers cells per FOV: ids are "<fov>_<cell_ID>", 0 is unassigned
    assert t["cell_id"].value_counts().to_dict() == {"3_306": 38, "2_2245": 30, "3_1686": 17, "3_312": 9}
    assert t["cell_id"].isna().sum() == 59
    # nuclear <=> CellComp == "Nuclear"; CellComp "0" (not "None" in this export) is no compartment
    assert t["nuclear"].tolist() == [r["CellComp"] == "Nuclear" for r in kept]
    assert int(t["nuclear"].sum()) == 55
    assert t["compartment"].isna().sum() == 52
    assert _digests(cosmx_dir) == before


# --------------------------------------------------------------------------- spatialdata-io


def test_merscope_agrees_with_spatialdata_io(merscope_dir):
    sdio = pytest.importorskip(
        "spatialdata_io", reason="spatialdata-io is not installed (optional; not a segger dependency)")
    sd = sdio.merscope(merscope_dir, mosaic_images=False, cells_boundaries=False, cells_table=False)
    (points,) = sd.points.values()
    theirs = points.compute()
    ours = read_sample(merscope_dir).transcripts
    assert len(theirs) == len(ours) == 109
    np.testing.assert_allclose(ours["x"].to_numpy(), theirs["x"].to_numpy(), rtol=0, atol=1e-9)
    np.testing.assert_allclose(ours["y"].to_numpy(), theirs["y"].to_numpy(), rtol=0, atol=1e-9)
    np.testing.assert_allclose(ours["z"].to_numpy(), theirs["z"].to_numpy(), rtol=0, atol=1e-9)
    assert ours["gene"].astype(str).tolist() == theirs["gene"].astype(str).tolist()


# CosMx against spatialdata_io.cosmx: not possible with this subset (that reader also needs the run's
# counts matrix, cell metadata, CellComposite/ and CellLabels/ folders); the CosMx facts above are
# read off the file independently instead.


def test_merscope_without_polygons_says_once_why_there_are_no_nuclei(merscope_dir):
    """A MERSCOPE folder without boundary files has neither polygons nor a nuclear flag: one line says
    so and what to do (not three partial notes)."""
    sample = read_sample(merscope_dir)
    notes = [w for w in sample.warnings if "nucle" in w]
    assert len(notes) == 1 and "no nuclei" in notes[0] and "--nuclei-labels" in notes[0]
    assert len(sample.nuclei) == 0
