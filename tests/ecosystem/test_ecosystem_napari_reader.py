"""The napari reader opens a SpatialData store through segger.io.read_sample (no viewer needed)."""

from segger.napari._reader import napari_get_reader


def test_napari_reader_opens_spatialdata_store(breast_store):
    reader = napari_get_reader(str(breast_store))
    assert reader is not None
    layers = reader(str(breast_store))
    kinds = [layer_type for _, _, layer_type in layers]
    assert "points" in kinds and "shapes" in kinds
    points = next(data for data, _, t in layers if t == "points")
    assert len(points) == 18_774  # the breast crop (23,691 rows) after the qv and control-probe filters


def test_napari_reader_declines_other_folders(tmp_path):
    (tmp_path / "notes.txt").write_text("nothing to see")
    assert napari_get_reader(str(tmp_path)) is None
