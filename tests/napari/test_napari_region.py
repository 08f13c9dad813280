"""A whole-slide output in napari, region by region: the reader opens an output folder above
``WHOLE_SLIDE_ROWS`` transcripts without reading them (the slide's extent + the *Whole-slide region*
widget); real clicks on its buttons load the region of the view or of a drawn rectangle into the result
layers, read from the row groups (tiles) that meet it. The output is the real lung crop written in
3 x 3 tiles, one row group per tile (the out-of-core layout)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import shapely

from segger import schema as S

from _napari_helpers import click_button, real_viewer, wait_job

pytestmark = pytest.mark.gui


@pytest.fixture(scope="module")
def tiled_output(tmp_path_factory, lung_dir):
    """A segger output folder of the lung crop: its Xenium rows + the vendor's cells relabelled, written
    one row group per 70 µm tile, the outlines file and the run marker."""
    from segger.export import cell_boundaries, read_transcripts_output, write_boundaries
    from segger.export.region import split_tiles, write_tiled_transcripts
    from segger.export.writers import input_layout, input_layout_metadata
    from segger.utils.outdir import BOUNDARIES_FILE, RUN_MARKER, TRANSCRIPTS_FILE

    folder = tmp_path_factory.mktemp("whole-slide") / "out"
    folder.mkdir()
    src = lung_dir / "transcripts.parquet"
    raw = pd.read_parquet(src)
    cid = raw["cell_id"].astype(str)
    assigned = ~cid.isin(["-1", "UNASSIGNED"]).to_numpy()
    result = pd.DataFrame({
        S.SEGGER_CELL_ID: np.where(assigned, "seg-" + cid, S.UNASSIGNED),
        S.SCORE: np.where(assigned, 0.9, 0.0).astype(np.float32),
        S.ASSIGNMENT: np.where(~assigned, "none", "cytoplasm"),
    })
    write_tiled_transcripts(split_tiles(input_layout(raw, result), 70.0, x="x_location", y="y_location"),
                            folder / TRANSCRIPTS_FILE, input_layout_metadata("xenium", src))
    whole = read_transcripts_output(folder / TRANSCRIPTS_FILE)
    bounds = cell_boundaries(whole)
    write_boundaries(bounds, folder / BOUNDARIES_FILE)
    (folder / RUN_MARKER).write_text(json.dumps({"command": ["test"]}))
    return folder, whole, bounds


@pytest.fixture
def errors(monkeypatch):
    import napari.utils.notifications as N

    seen: list[str] = []
    monkeypatch.setattr(N, "show_error", lambda msg: seen.append(str(msg)))
    return seen


def _in_box(df, box):
    x0, y0, x1, y1 = box
    return df[(df[S.X] >= x0) & (df[S.X] < x1) & (df[S.Y] >= y0) & (df[S.Y] < y1)]


def _n_meeting(bounds, box):
    return int(shapely.intersects(bounds[S.GEOMETRY].to_numpy(), shapely.box(*box)).sum())


def _layer(viewer, name):
    return next((layer for layer in viewer.layers if layer.name == name), None)


def _open_whole_slide(viewer, qtbot, folder, monkeypatch):
    from segger.napari import _reader
    from segger.napari._w_region import DOCK_NAME

    monkeypatch.setattr(_reader, "WHOLE_SLIDE_ROWS", 1_000)  # the 15 k crop counts as a whole slide
    viewer.open(str(folder), plugin="napari-segger")
    docks = real_viewer(viewer).window.dock_widgets
    qtbot.waitUntil(lambda: DOCK_NAME in docks, timeout=10_000)
    return docks[DOCK_NAME]


def test_a_small_output_folder_opens_whole(tiled_output):
    from segger.napari._reader import napari_get_reader

    folder, whole, bounds = tiled_output
    layers = napari_get_reader(str(folder))(str(folder))
    by_name = {kw["name"]: (data, kind) for data, kw, kind in layers}
    assert len(by_name["segger transcripts"][0]) == len(whole) == 15_000
    assert by_name["segger cells"][1] == "shapes" and len(by_name["segger cells"][0]) == len(bounds)


def _cells_of(whole):
    ids = whole[S.SEGGER_CELL_ID].astype(str)
    return set(ids[ids != S.UNASSIGNED])


@pytest.mark.parametrize("panel_first", [True, False], ids=["panel-then-folder", "folder-then-panel"])
def test_a_folder_opened_whole_is_the_sessions_result(make_napari_viewer_proxy, qtbot, tiled_output, errors,
                                                      panel_first):
    """An output folder opened whole is the session's result: real clicks on the Review/QC tab show its
    cells in the Review table, Compute QC counts them, and Export is enabled, whichever is opened first."""
    from _napari_helpers import go_tab, open_panel

    folder, whole, _ = tiled_output
    viewer = make_napari_viewer_proxy()
    if panel_first:
        panel = open_panel(viewer, qtbot)
        assert not panel.tabs.isTabEnabled(panel.STEPS.index("Review/QC"))
    viewer.open(str(folder), plugin="napari-segger")  # 15 k transcripts: whole
    if not panel_first:
        panel = open_panel(viewer, qtbot)
    qtbot.waitUntil(lambda: panel.state.result is not None, timeout=10_000)
    result = panel.state.result
    assert len(result) == len(whole) and sorted(result[S.TX_ID]) == sorted(whole[S.TX_ID])
    assert panel.state.result_params["source"] == str(folder)
    assert len(_layer(viewer, "segger transcripts").data) == len(result)
    qc = go_tab(qtbot, panel, "Review/QC")
    review = qc.review
    qtbot.waitUntil(lambda: review._built_for is result, timeout=60_000)
    cells = _cells_of(whole)
    assert review.model.rowCount() == len(cells) > 100
    assert set(review.model.frame["cell_id"].astype(str)) == cells
    click_button(qtbot, qc.qc_button)
    wait_job(qtbot, qc)
    assert not errors, errors
    assert qc.report["n_transcripts"] == len(whole) and qc.report["transcripts_per_cell"]["n_cells"] == len(cells)
    assert "opened output" in panel.hint.text()
    ex = go_tab(qtbot, panel, "Export")
    assert ex.export_button.isEnabled()
    go_tab(qtbot, panel, "Correct")  # no prediction: the step opens without an error
    qtbot.wait(100)
    assert not errors, errors


def test_a_drawn_rectangle_loads_its_region(make_napari_viewer_proxy, qtbot, tiled_output, errors, monkeypatch):
    from segger.napari._w_region import LAYER_EXTENT, LAYER_REGION

    folder, whole, bounds = tiled_output
    viewer = make_napari_viewer_proxy()
    w = _open_whole_slide(viewer, qtbot, folder, monkeypatch)
    # nothing read yet: the slide's outline and the rectangle layer, no transcripts
    assert _layer(viewer, "segger transcripts") is None and _layer(viewer, "segger cells") is None
    ext = _layer(viewer, LAYER_EXTENT)
    assert len(ext.data) == 1 and len([x for x in viewer.layers if x.name == LAYER_EXTENT]) == 1
    lo, hi = ext.data[0].min(axis=0), ext.data[0].max(axis=0)  # (y, x)
    assert np.allclose(lo, [whole[S.Y].min(), whole[S.X].min()], atol=1e-3)
    assert np.allclose(hi, [whole[S.Y].max(), whole[S.X].max()], atol=1e-3)
    assert "15,000 transcripts in 9 row groups" in w.slide_label.text()

    import threading

    from segger.export.region import RegionSource

    threads = []
    load = RegionSource.load
    monkeypatch.setattr(RegionSource, "load", lambda self, bbox: threads.append(threading.current_thread())
                        or load(self, bbox))
    box = (2180.0, 2130.0, 2250.0, 2215.0)  # x0, y0, x1, y1 µm: 4 of the 9 tiles
    region = _layer(viewer, LAYER_REGION)
    region.add_rectangles(np.array([[box[1], box[0]], [box[3], box[2]]]))
    click_button(qtbot, w.load_rect_button)
    wait_job(qtbot, w)
    assert not errors, errors
    assert len(threads) == 1 and threads[0] is not threading.main_thread()  # read in the worker
    pts = _layer(viewer, "segger transcripts")
    expected = _in_box(whole, box)
    assert len(pts.data) == len(expected) > 1000
    assert sorted(pts.features[S.TX_ID]) == sorted(expected[S.TX_ID])
    assert pts.metadata["segger"]["whole_slide"] and pts.metadata["segger"]["region_um"] == list(box)
    cells = _layer(viewer, "segger cells")
    assert len(cells.data) == _n_meeting(bounds, box) > 20
    assert w.last_stats["row_groups_read"] == 4 and w.last_stats["row_groups"] == 9
    assert "read 4 of 9 row groups" in w.loaded.text()


def test_the_view_loads_what_the_camera_shows(make_napari_viewer_proxy, qtbot, tiled_output, errors, monkeypatch):
    folder, whole, bounds = tiled_output
    viewer = make_napari_viewer_proxy()
    w = _open_whole_slide(viewer, qtbot, folder, monkeypatch)
    v = real_viewer(viewer)
    counts = []
    for center, zoom in (((2160.0, 2210.0), 8.0), ((2260.0, 2300.0), 5.0)):
        v.camera.center = center
        v.camera.zoom = zoom
        h, wd = v.canvas.size
        assert h > 0 and wd > 0
        box = (center[1] - wd / zoom / 2, center[0] - h / zoom / 2, center[1] + wd / zoom / 2, center[0] + h / zoom / 2)
        click_button(qtbot, w.load_view_button)
        wait_job(qtbot, w)
        assert not errors, errors
        assert np.allclose(w.last_stats["bbox"], box)
        pts = _layer(viewer, "segger transcripts")
        expected = _in_box(whole, box)
        assert len(pts.data) == len(expected) > 100
        yx = np.asarray(pts.data)
        assert (yx[:, 1] >= box[0]).all() and (yx[:, 1] < box[2]).all() and (yx[:, 0] >= box[1]).all()
        assert len(_layer(viewer, "segger cells").data) == _n_meeting(bounds, box)
        assert w.last_stats["row_groups_read"] < 9
        counts.append(len(pts.data))
    assert counts[0] != counts[1]


def test_a_view_over_the_limit_is_refused_in_one_line(make_napari_viewer_proxy, qtbot, tiled_output, errors,
                                                     monkeypatch):
    folder, whole, _ = tiled_output
    viewer = make_napari_viewer_proxy()
    w = _open_whole_slide(viewer, qtbot, folder, monkeypatch)
    real_viewer(viewer).reset_view()  # the whole slide
    w.max_transcripts.setValue(10_000)
    click_button(qtbot, w.load_view_button)
    wait_job(qtbot, w)
    assert len(errors) == 1 and "holds 15,000 transcripts, more than the 10,000" in errors[0]
    assert _layer(viewer, "segger transcripts") is None
    assert w.load_view_button.isEnabled() and w.load_rect_button.isEnabled()
    # no rectangle drawn yet: a one-line hint, nothing loaded
    click_button(qtbot, w.load_rect_button)
    assert "draw a rectangle" in errors[-1] and _layer(viewer, "segger transcripts") is None


def test_the_widget_reopens_from_the_plugins_menu(make_napari_viewer_proxy, qtbot, tiled_output, errors, monkeypatch):
    """Closed, then reopened from Plugins ▸ Whole-slide region: it points at the slide the viewer shows
    (its extent layer) and loads a drawn rectangle; opening the folder again re-points that one widget."""
    from segger.napari._w_region import DOCK_NAME, LAYER_REGION, RegionWidget

    folder, whole, bounds = tiled_output
    viewer = make_napari_viewer_proxy()
    w = _open_whole_slide(viewer, qtbot, folder, monkeypatch)
    window = real_viewer(viewer).window
    window.remove_dock_widget(w)
    assert DOCK_NAME not in window.dock_widgets
    dock, w2 = window.add_plugin_dock_widget("napari-segger", "Whole-slide region")
    assert isinstance(w2, RegionWidget) and w2 is not w
    assert w2.source is not None and w2.source.folder == folder and w2.load_rect_button.isEnabled()
    assert "15,000 transcripts in 9 row groups" in w2.slide_label.text()
    box = (2180.0, 2130.0, 2250.0, 2215.0)
    _layer(viewer, LAYER_REGION).add_rectangles(np.array([[box[1], box[0]], [box[3], box[2]]]))
    click_button(qtbot, w2.load_rect_button)
    wait_job(qtbot, w2)
    assert not errors, errors
    assert len(_layer(viewer, "segger transcripts").data) == len(_in_box(whole, box))
    assert len(_layer(viewer, "segger cells").data) == _n_meeting(bounds, box)
    # the folder opened again: the menu's widget is re-pointed, not a second one docked
    viewer.open(str(folder), plugin="napari-segger")
    qtbot.wait(50)
    regions = [x for x in window.dock_widgets.values() if isinstance(x, RegionWidget)]
    assert regions == [w2]


def test_many_outlines_become_the_same_labels_raster_faster(tiled_output):
    """Above MAX_SHAPES the region's outlines are rasterize_polygons' Labels raster, pixel for pixel,
    painted by one vectorised scanline pass."""
    from segger.napari._w_region import outlines_to_layer

    _, _, bounds = tiled_output
    labels, kw, kind = outlines_to_layer(bounds, metadata={"whole_slide": True}, max_shapes=50)
    assert kind == "labels" and kw["name"] == "segger cells" and kw["metadata"]["segger"]["whole_slide"]
    ref, scale, translate = _skimage_raster(bounds[S.GEOMETRY].to_numpy(), 0.5)
    assert labels.shape == ref.shape and kw["scale"] == scale and np.allclose(kw["translate"], translate)
    assert labels.dtype == ref.dtype and np.array_equal(labels, ref)
    assert len(np.unique(labels)) == len(bounds) + 1  # every cell painted
    feats = kw["features"]
    assert list(feats["cell_id"][1:]) == list(bounds["cell_id"]) and "area_um2" in feats.columns


def _skimage_raster(geoms, pixel_size):
    """The reference: one skimage.draw.polygon per polygon exterior (the raster before the scanline pass)."""
    from skimage.draw import polygon as draw_polygon

    from segger.napari.layers.shapes import _largest_polygon, polygons_to_yx

    rings = polygons_to_yx(geoms)
    valid = [i for i, g in enumerate(geoms) if _largest_polygon(g) is not None]
    allv = np.concatenate(rings)
    y0, x0 = np.floor(allv.min(axis=0) / pixel_size) * pixel_size - pixel_size
    y1, x1 = allv.max(axis=0) + pixel_size
    shape = (int(np.ceil((y1 - y0) / pixel_size)) + 1, int(np.ceil((x1 - x0) / pixel_size)) + 1)
    labels = np.zeros(shape, dtype=np.uint32)
    for label_index, ring in zip(valid, rings):
        rr, cc = draw_polygon((ring[:, 0] - y0) / pixel_size - 0.5, (ring[:, 1] - x0) / pixel_size - 0.5, shape)
        labels[rr, cc] = label_index + 1
    return labels, (pixel_size, pixel_size), (float(y0) + pixel_size / 2, float(x0) + pixel_size / 2)


def test_the_scanline_raster_matches_skimage_on_awkward_polygons():
    from segger.napari.layers.shapes import rasterize_polygons

    geoms = np.array([
        shapely.box(0, 0, 10, 10),
        shapely.box(5.2, 5.3, 14.7, 12.1),  # overlaps the first: the later one wins
        shapely.Polygon([(20, 0), (30, 0), (30, 10), (20, 10)], [[(23, 3), (27, 3), (27, 7), (23, 7)]]),  # hole
        shapely.MultiPolygon([shapely.box(0, 20, 2, 22), shapely.box(5, 20, 12, 27)]),  # the largest part
        shapely.Polygon([(40, 0), (50, 5), (40, 10), (44, 5)]),  # concave
        shapely.Point(0, 0).buffer(3.3, quad_segs=16).union(shapely.box(1, 1, 1.2, 9)),
    ], dtype=object)
    for ps in (0.5, 0.37):
        ref, scale, translate = _skimage_raster(geoms, ps)
        labels, s2, t2 = rasterize_polygons(geoms, pixel_size=ps)
        assert s2 == scale and np.allclose(t2, translate) and np.array_equal(labels, ref)
