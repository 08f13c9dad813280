"""A Segger SpatialData export opens in napari-spatialdata (the scverse plugin).

The store comes from the user's own path: ``segger predict LUNG --pretrained`` (the bundled model,
no training) then ``segger export RUN --to spatialdata``. It is opened through napari-spatialdata's
napari reader (``viewer.open(store, plugin="napari-spatialdata")``), and its elements are loaded
from the plugin's "SpatialData" dock the way a user does it: pick the ``global`` coordinate system,
double-click the element.

The outlines carry integer instance ids (``instance_id``; the Segger cell id is a column and the
table's ``cell_id``): napari-spatialdata <= 0.7.2 cannot load shapes indexed by strings
(``int(index)`` in ``_get_polygons_properties``), so the export uses the integer ids every reader
handles.
"""

from __future__ import annotations

import numpy as np
import pytest
from qtpy.QtCore import Qt

pytest.importorskip("spatialdata")
pytest.importorskip("napari_spatialdata")

pytestmark = pytest.mark.gui

CS = "global"
POINTS, SHAPES, TABLE = "transcripts", "segger_boundaries", "segger_table"


@pytest.fixture(scope="module")
def segger_store(tmp_path_factory, lung_dir, core_env_ctx):
    """A real Segger result on the lung crop (bundled model), exported to a SpatialData store by the CLI."""
    from segger.cli.main import main

    tmp = tmp_path_factory.mktemp("nsd")
    with core_env_ctx():
        assert main(["predict", str(lung_dir), "--pretrained", "--output", str(tmp / "run")]) == 0
        assert main(["export", str(tmp / "run"), "--to", "spatialdata", "--output", str(tmp / "seg.zarr")]) == 0
    return tmp / "seg.zarr"


@pytest.fixture(scope="module")
def exported(segger_store):
    """What the export holds, read with spatialdata itself: (n transcripts, cell ids of the outlines, table)."""
    import spatialdata as sd

    s = sd.read_zarr(segger_store)
    return len(s.points[POINTS]), s.shapes[SHAPES]["cell_id"].astype(str).tolist(), s.tables[TABLE]


def _open_in_plugin(viewer, store):
    """The plugin's napari reader: it adds no layer itself, it docks the "SpatialData" widget."""
    from napari_spatialdata._sdata_widgets import SdataWidget

    assert viewer.open(str(store), plugin="napari-spatialdata") == []
    widget = viewer.window.dock_widgets["SpatialData"]
    assert isinstance(widget, SdataWidget)
    return widget


def _items(qlist) -> list[str]:
    return [qlist.item(i).text() for i in range(qlist.count())]


def _double_click_element(widget, name):
    """The dock's element list answers a double-click (itemDoubleClicked) by loading the element in its
    loader thread; the viewer is hidden, so the signal is emitted rather than clicked at a position."""
    lst = widget.elements_widget
    lst.itemDoubleClicked.emit(lst.findItems(name, Qt.MatchFlag.MatchExactly)[0])


def test_export_opens_in_napari_spatialdata(make_napari_viewer_proxy, qtbot, segger_store, exported):
    from napari.layers import Points
    from spatialdata import get_element_annotators

    n_tx, cell_ids, table = exported
    viewer = make_napari_viewer_proxy()
    widget = _open_in_plugin(viewer, segger_store)

    # the plugin lists our coordinate system and, in it, the transcripts and the outlines
    cs = widget.coordinate_system_widget
    assert _items(cs) == [CS]
    cs.setCurrentItem(cs.findItems(CS, Qt.MatchFlag.MatchExactly)[0])
    assert {POINTS, SHAPES} <= set(_items(widget.elements_widget))

    # double-click the transcripts: a Points layer with every exported transcript
    _double_click_element(widget, POINTS)
    qtbot.waitUntil(lambda: POINTS in viewer.layers, timeout=30_000)
    qtbot.waitUntil(lambda: not widget.worker_thread.isRunning(), timeout=30_000)
    layer = viewer.layers[POINTS]
    assert isinstance(layer, Points)
    assert len(layer.data) == n_tx > 10_000  # below the plugin's 100 000-point subsampling
    assert layer.metadata["name"] == POINTS and layer.metadata["_n_indices"] == n_tx
    assert layer.metadata["_columns_df"] is not None
    assert {"segger_cell_id", "score", "assignment"} <= set(layer.metadata["_columns_df"].columns)

    # the cell table annotates the outlines, which is how the plugin finds a layer's table
    sdata = layer.metadata["sdata"]
    assert get_element_annotators(sdata, SHAPES) == {TABLE}
    attrs = sdata.tables[TABLE].uns["spatialdata_attrs"]
    assert attrs["region"] == SHAPES and (sdata.tables[TABLE].obs[attrs["region_key"]] == SHAPES).all()
    inst = sdata.tables[TABLE].obs[attrs["instance_key"]].to_numpy()
    assert attrs["instance_key"] == "instance_id" and sorted(inst) == list(range(len(cell_ids)))
    assert table.n_obs == len(cell_ids) > 100

    # double-click the outlines: a Shapes layer, one outline per cell, carrying the cell table
    from napari.layers import Shapes

    _double_click_element(widget, SHAPES)
    qtbot.waitUntil(lambda: SHAPES in viewer.layers, timeout=60_000)
    qtbot.waitUntil(lambda: not widget.worker_thread.isRunning(), timeout=30_000)
    shapes = viewer.layers[SHAPES]
    assert isinstance(shapes, Shapes) and len(shapes.data) == len(cell_ids)
    md = shapes.metadata
    assert md["table_names"] == [TABLE]
    assert md["region_key"] == "region" and md["instance_key"] == "instance_id"
    adata = md["adata"]  # the table rows of these outlines, in the layer's order
    assert adata.n_obs == len(cell_ids)
    assert [int(i) for i in md["indices"]] == adata.obs["instance_id"].astype(int).tolist()
    # each outline's table row is its own cell (the Segger id of the outline = the row's cell_id)
    assert [cell_ids[int(i)] for i in md["indices"]] == adata.obs["cell_id"].astype(str).tolist()
    np.testing.assert_array_equal(
        adata.obs["n_transcripts"].to_numpy(), table.obs.loc[adata.obs_names, "n_transcripts"].to_numpy())
