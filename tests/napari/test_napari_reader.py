"""npe2 reader / sample data / manifest of the napari plugin, on the real crops (no viewer)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import shapely

from segger import schema as S
from segger.napari._reader import napari_get_reader

ROOT = Path(__file__).resolve().parents[2]
COSMX_PX = 0.12028


# ------------------------------------------------------------------------------------ manifest
def test_manifest_is_valid_and_symlinked():
    from npe2 import PluginManifest

    link = ROOT / "src" / "segger" / "napari.yaml"
    assert link.is_symlink() and os.readlink(link) == "../../napari.yaml"
    pm = PluginManifest.from_file(ROOT / "napari.yaml")
    assert pm.name == "napari-segger"
    pm.validate_imports()  # every python_name resolves (npe2 validate --imports)
    widgets = [w.display_name for w in pm.contributions.widgets]
    assert widgets == ["Segger", "Data & graph", "Train / fine-tune", "Predict", "QC", "Export", "Correct & fine-tune",
                       "Whole-slide region"]
    assert {s.key for s in pm.contributions.sample_data} == {"xenium_lung", "xenium_breast"}
    assert pm.contributions.readers[0].accepts_directories
    assert {tuple(w.filename_extensions) for w in pm.contributions.writers} == {(".parquet",), (".h5ad",)}


def test_installed_distribution_finds_the_manifest():
    """The entry point (editable or wheel install) resolves to the same manifest."""
    from npe2 import PluginManifest

    pm = PluginManifest.from_distribution("napari-segger")
    assert pm.display_name == "Segger"
    assert len(pm.contributions.widgets) == 8  # the Segger panel + the six single steps + Whole-slide region


# ------------------------------------------------------------------------------------ helpers
def _check_layers(layers, n_min_tx=1000, nuclei_kind=("shapes", "labels")):
    kinds = [k for _, _, k in layers]
    assert kinds[-1] == "points"
    data, kw, _ = layers[-1]
    assert data.ndim == 2 and data.shape[1] == 2 and len(data) >= n_min_tx
    feats = kw["features"]
    assert S.GENE in feats.columns and len(feats) == len(data)
    assert kw["face_color"].shape == (len(data), 4) and kw["face_color"].dtype == np.float32
    nuc = [l for l in layers if l[2] in nuclei_kind]
    return data, kw, nuc


def _lung_raw(lung_dir):
    return pd.read_parquet(lung_dir / "transcripts.parquet").reset_index(drop=True)


# ------------------------------------------------------------------------------------ readers
def test_reader_xenium_folder(lung_dir):
    reader = napari_get_reader(str(lung_dir))
    assert reader is not None
    layers = reader(str(lung_dir))
    data, kw, nuc = _check_layers(layers)
    feats = kw["features"]
    for col in (S.QV, S.NUCLEAR, S.CELL_ID):
        assert col in feats.columns
    assert feats[S.QV].min() >= 20  # default quality filter
    assert len(nuc) == 1 and nuc[0][2] == "shapes" and len(nuc[0][0]) > 150
    assert kw["metadata"]["segger"]["platform"] == "xenium"
    # µm coordinates in (y, x): inside the crop's documented window
    assert 2110 <= data[:, 0].min() and data[:, 0].max() <= 2312
    assert 2160 <= data[:, 1].min() and data[:, 1].max() <= 2362


def test_reader_xenium_transcripts_file_and_list(lung_dir):
    f = str(lung_dir / "transcripts.parquet")
    reader = napari_get_reader([f])
    assert reader is not None
    _check_layers(reader([f]))


def test_reader_breast_crop(breast_dir):
    layers = napari_get_reader(str(breast_dir))(str(breast_dir))
    _, kw, nuc = _check_layers(layers)
    assert nuc and len(nuc[0][0]) > 100


def test_reader_merscope_folder(tmp_path, lung_dir):
    raw = _lung_raw(lung_dir)
    cells = {c: 10**15 + i for i, c in enumerate(pd.unique(raw["cell_id"]))}
    df = pd.DataFrame(
        {
            "global_x": raw["x_location"].astype(float), "global_y": raw["y_location"].astype(float),
            "global_z": np.round(raw["z_location"].astype(float) / 4),
            "gene": raw["feature_name"].astype(str),
            "transcript_id": "ENST" + pd.Series(pd.factorize(raw["feature_name"])[0]).astype(str),
            "cell_id": np.where(raw["cell_id"] == "UNASSIGNED", -1, raw["cell_id"].map(cells)),
        }
    )
    df.to_csv(tmp_path / "detected_transcripts.csv", index=False)
    vert = pd.read_parquet(lung_dir / "nucleus_boundaries.parquet")
    rows = [(cells[cid], 3, shapely.to_wkb(shapely.Polygon(g[["vertex_x", "vertex_y"]].to_numpy(float))))
            for cid, g in vert.groupby("cell_id", sort=False)]
    pd.DataFrame(rows, columns=["EntityID", "ZIndex", "Geometry"]).to_parquet(tmp_path / "cell_boundaries.parquet")
    reader = napari_get_reader(str(tmp_path))
    assert reader is not None
    data, kw, nuc = _check_layers(reader(str(tmp_path)))
    assert kw["metadata"]["segger"]["platform"] == "merscope"
    assert nuc and len(nuc[0][0]) > 150


def test_reader_cosmx_folder(tmp_path, lung_dir):
    raw = _lung_raw(lung_dir)
    x, y = raw["x_location"].astype(float), raw["y_location"].astype(float)
    cell = raw["cell_id"].astype(str)
    df = pd.DataFrame(
        {
            "fov": 1,
            "cell_ID": np.where(cell == "UNASSIGNED", 0, pd.factorize(cell)[0] + 1),
            "x_global_px": x / COSMX_PX, "y_global_px": y / COSMX_PX,
            "z": np.round(raw["z_location"].astype(float) / 0.8).astype(int),
            "target": raw["feature_name"].astype(str),
            "CellComp": np.where(cell == "UNASSIGNED", "0",
                                 np.where(raw["overlaps_nucleus"] == 1, "Nuclear", "Cytoplasm")),
        }
    )
    df.to_csv(tmp_path / "Run1_tx_file.csv", index=False)
    reader = napari_get_reader(str(tmp_path))
    assert reader is not None
    data, kw, nuc = _check_layers(reader(str(tmp_path)))
    assert kw["metadata"]["segger"]["platform"] == "cosmx"
    # pixels became µm again
    assert 2160 - 1 <= data[:, 1].min() and data[:, 1].max() <= 2362 + 1
    assert S.COMPARTMENT in kw["features"].columns or S.NUCLEAR in kw["features"].columns


def test_reader_generic_table(tmp_path, lung_dir):
    raw = _lung_raw(lung_dir)
    df = pd.DataFrame({"x": raw["x_location"], "y": raw["y_location"], "gene": raw["feature_name"].astype(str)})
    p = tmp_path / "my_molecules.csv"
    df.to_csv(p, index=False)
    reader = napari_get_reader(str(p))
    assert reader is not None
    layers = reader(str(p))
    _check_layers(layers)
    assert layers[-1][1]["name"] == "my_molecules transcripts"


@pytest.mark.parametrize(
    "make",
    [
        lambda d: d / "nothing_here.csv",  # missing
        lambda d: (d / "readme.txt").write_text("hello") and d / "readme.txt",  # not a table
        lambda d: d,  # empty folder
    ],
)
def test_reader_declines_what_it_cannot_read(tmp_path, make):
    assert napari_get_reader(str(make(tmp_path))) is None


def test_reader_declines_polygon_tables_and_multiple_paths(lung_dir):
    assert napari_get_reader(str(lung_dir / "nucleus_boundaries.parquet")) is None
    assert napari_get_reader([str(lung_dir), str(lung_dir)]) is None


# ------------------------------------------------------------------------------------ samples
@pytest.mark.parametrize("key", ["xenium_lung", "xenium_breast"])
def test_sample_data_layers_carry_attribution(key):
    from segger.napari import _sample_data

    layers = getattr(_sample_data, key)()
    data, kw, nuc = _check_layers(layers)
    meta = kw["metadata"]["segger"]
    assert "10x Genomics" in meta["attribution"] and "CC BY 4.0" in meta["attribution"]
    assert meta["attribution_md"].startswith("# xenium_")
    assert nuc
    if key == "xenium_breast":
        img = [l for l in layers if l[2] == "image"]
        assert img and img[0][1]["scale"] == (0.2125, 0.2125)
        # DAPI placed in µm so it overlays the transcripts
        h, w = img[0][0].shape
        ty, tx = img[0][1]["translate"]
        px = 0.2125  # within one pixel of the image's extent
        assert ty - px <= data[:, 0].min() and data[:, 0].max() <= ty + h * px
        assert tx - px <= data[:, 1].min() and data[:, 1].max() <= tx + w * px
