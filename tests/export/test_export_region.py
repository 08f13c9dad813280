"""Region reads of a whole-slide output (segger.export.region): a multi-tile output of the real lung
crop written one row group per tile (the out-of-core layout, ``write_tiled_transcripts``) is read by box;
the rows are exactly the whole file's rows in the box, and only the row groups that meet it are read."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import shapely

from segger import schema as S
from segger.export import read_boundaries, read_transcripts_output, read_transcripts_region
from segger.export.region import (
    RegionSource,
    RegionTooLargeError,
    read_boundaries_region,
    split_tiles,
    write_tiled_transcripts,
)
from segger.utils.outdir import BOUNDARIES_FILE, RUN_MARKER, TRANSCRIPTS_FILE

TILE_UM = 70.0  # the lung crop (~200 µm square) in 3 x 3 tiles, as tests/scale's out-of-core run


def make_tiled_output(folder, crop_dir, tile_um: float = TILE_UM):
    """A segger output folder of the crop: its own Xenium rows + a segmentation (the vendor's cells,
    relabelled), transcripts written tile by tile, the outlines file and the run marker."""
    from segger.export import cell_boundaries, write_boundaries
    from segger.export.writers import input_layout, input_layout_metadata

    src = crop_dir / "transcripts.parquet"
    raw = pd.read_parquet(src)
    cid = raw["cell_id"].astype(str)
    assigned = ~cid.isin(["-1", "UNASSIGNED"]).to_numpy()
    rng = np.random.default_rng(0)
    result = pd.DataFrame({
        S.SEGGER_CELL_ID: np.where(assigned, "seg-" + cid, S.UNASSIGNED),
        S.SCORE: np.where(assigned, rng.uniform(0.5, 1.0, len(raw)), 0.0).astype(np.float32),
        S.ASSIGNMENT: np.where(~assigned, "none",
                               np.where(raw["overlaps_nucleus"].astype(bool), "nucleus", "cytoplasm")),
    })
    folder.mkdir(parents=True, exist_ok=True)
    out = input_layout(raw, result)
    write_tiled_transcripts(split_tiles(out, tile_um, x="x_location", y="y_location"), folder / TRANSCRIPTS_FILE,
                            input_layout_metadata("xenium", src))
    whole = read_transcripts_output(folder / TRANSCRIPTS_FILE)
    write_boundaries(cell_boundaries(whole), folder / BOUNDARIES_FILE)
    (folder / RUN_MARKER).write_text(json.dumps({"command": ["test"]}))
    return folder


@pytest.fixture(scope="module")
def tiled_output(tmp_path_factory, pkg_lung_dir):
    return make_tiled_output(tmp_path_factory.mktemp("region") / "out", pkg_lung_dir)


@pytest.fixture(scope="module")
def whole(tiled_output):
    return read_transcripts_output(tiled_output / TRANSCRIPTS_FILE)


def _in_box(df, box):
    x0, y0, x1, y1 = box
    return df[(df[S.X] >= x0) & (df[S.X] < x1) & (df[S.Y] >= y0) & (df[S.Y] < y1)]


def _box_of(df, qx, qy):
    x0, x1 = np.quantile(df[S.X], qx)
    y0, y1 = np.quantile(df[S.Y], qy)
    return (float(x0), float(y0), float(x1), float(y1))


def test_one_row_group_per_tile(tiled_output):
    md = pq.ParquetFile(tiled_output / TRANSCRIPTS_FILE).metadata
    assert md.num_row_groups == 9
    src = RegionSource(tiled_output)
    b = src.group_bounds
    assert not np.isnan(b).any() and ((b[:, 2] - b[:, 0]) <= TILE_UM).all() and ((b[:, 3] - b[:, 1]) <= TILE_UM).all()
    assert src.n_rows == md.num_rows and src.boundaries_path == tiled_output / BOUNDARIES_FILE


def test_region_rows_are_the_whole_file_filtered_by_the_box(tiled_output, whole, monkeypatch):
    box = _box_of(whole, [0.05, 0.3], [0.1, 0.35])  # a corner: a few tiles, not the file
    read = []
    orig = pq.ParquetFile.read_row_groups

    def spy(self, row_groups, *a, **kw):
        read.extend(row_groups)
        return orig(self, row_groups, *a, **kw)

    monkeypatch.setattr(pq.ParquetFile, "read_row_groups", spy)
    src = RegionSource(tiled_output)
    tx, outlines = src.load(box)
    st = src.last_stats
    assert 0 < st["row_groups_read"] < st["row_groups"] / 2
    assert sorted(read) == sorted(src.row_groups(box).tolist()) and len(set(read)) == st["row_groups_read"]
    inside = _in_box(whole, box)
    assert len(tx) == len(inside) == st["n_transcripts"] > 100
    a = tx.set_index(S.TX_ID).sort_index()
    b = inside.set_index(S.TX_ID).sort_index()
    assert list(a.columns) == list(b.columns)
    pd.testing.assert_frame_equal(a, b, check_dtype=False, check_categorical=False)
    # the outlines: those of the outlines file that meet the box
    allb = read_boundaries(tiled_output / BOUNDARIES_FILE)
    meet = allb[shapely.intersects(allb[S.GEOMETRY].to_numpy(), shapely.box(*box))]
    assert 0 < len(outlines) == len(meet) < len(allb)
    assert list(outlines["cell_id"]) == list(meet["cell_id"])
    assert list(outlines.columns) == list(allb.columns)
    assert shapely.equals(outlines[S.GEOMETRY].to_numpy(), meet[S.GEOMETRY].to_numpy()).all()
    assert_frame = read_boundaries_region(tiled_output / BOUNDARIES_FILE, box)
    assert list(assert_frame["cell_id"]) == list(meet["cell_id"])


def test_the_one_call_readers_match(tiled_output, whole):
    box = _box_of(whole, [0.4, 0.7], [0.2, 0.9])
    part, stats = read_transcripts_region(tiled_output / TRANSCRIPTS_FILE, box)
    assert len(part) == len(_in_box(whole, box)) and stats["row_groups_read"] < stats["row_groups"]
    empty, st = read_transcripts_region(tiled_output / TRANSCRIPTS_FILE, (-1e9, -1e9, -1e9 + 1, -1e9 + 1))
    assert len(empty) == 0 and st["row_groups_read"] == 0 and S.SEGGER_CELL_ID in empty.columns
    src = RegionSource(tiled_output)
    tx, outlines = src.load((-1e9, -1e9, -1e9 + 1, -1e9 + 1))
    assert len(tx) == 0 and len(outlines) == 0 and src.count(box) == len(part)


def test_the_tidy_layout_reads_by_region_too(tmp_path, whole):
    path = write_tiled_transcripts(split_tiles(whole, 60.0), tmp_path / "tidy.parquet")
    src = RegionSource(path)
    assert src.n_row_groups == 16 and src.boundaries_path is None
    box = _box_of(whole, [0.6, 0.95], [0.6, 0.95])
    tx, outlines = src.load(box)
    assert outlines is None and src.last_stats["row_groups_read"] < 16
    assert sorted(tx[S.TX_ID]) == sorted(_in_box(whole, box)[S.TX_ID])
    x0, y0, x1, y1 = src.extent
    assert np.isclose(x0, whole[S.X].min()) and np.isclose(y1, whole[S.Y].max())


def test_a_region_over_the_limit_is_refused_with_its_count(tiled_output, whole):
    src = RegionSource(tiled_output, max_transcripts=500)
    with pytest.raises(RegionTooLargeError, match=r"holds 15,000 transcripts, more than the 500 .*zoom in"):
        src.load(src.extent[:2] + (src.extent[2] + 1, src.extent[3] + 1))
    # the row groups it meets hold more than the limit, the box itself fewer: it loads
    x0, y0 = float(whole[S.X].min()), float(whole[S.Y].min())
    small = (x0, y0, x0 + 15.0, y0 + 15.0)
    assert src.group_rows[src.row_groups(small)].sum() > 500 >= src.count(small) > 0
    tx, _ = src.load(small)
    assert len(tx) == src.count(small)
