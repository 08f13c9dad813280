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
    OutlineIndex,
    OutlineRegions,
    RegionSource,
    RegionTooLargeError,
    read_boundaries_region,
    split_tiles,
    write_tiled_transcripts,
)
from segger.utils.outdir import BOUNDARIES_FILE, RUN_MARKER, TRANSCRIPTS_FILE

TILE_UM = 70.0  # the lung crop (~200 µm square) in 3 x 3 tiles, as tests/scale's out-of-core run
OUTLINES_PER_GROUP = 40  # the crop's few hundred outlines in a grid of row groups, as a slide's 2048 a group


def make_tiled_output(folder, crop_dir, tile_um: float = TILE_UM, outlines_per_group: int = OUTLINES_PER_GROUP):
    """A segger output folder of the crop: its own Xenium rows + a segmentation (the vendor's cells,
    relabelled), transcripts written tile by tile, the outlines file (row groups of a spatial grid) and
    the run marker."""
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
    write_boundaries(cell_boundaries(whole), folder / BOUNDARIES_FILE, outlines_per_row_group=outlines_per_group)
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
    read: dict[str, list[int]] = {}
    orig = pq.ParquetFile.read_row_groups

    def spy(self, row_groups, *a, **kw):
        read.setdefault("outlines" if self is src.outlines._pf else "transcripts", []).extend(row_groups)
        return orig(self, row_groups, *a, **kw)

    monkeypatch.setattr(pq.ParquetFile, "read_row_groups", spy)
    src = RegionSource(tiled_output)
    tx, outlines = src.load(box)
    st = src.last_stats
    assert 0 < st["row_groups_read"] < st["row_groups"] / 2
    assert sorted(read["transcripts"]) == sorted(src.row_groups(box).tolist())
    assert len(set(read["transcripts"])) == st["row_groups_read"]
    # the outlines: only the outline row groups whose bounds statistics meet the box
    assert isinstance(src.outlines, OutlineRegions)
    assert sorted(read["outlines"]) == src.outlines.row_groups(box).tolist()
    assert 0 < st["outline_row_groups_read"] == len(read["outlines"]) < st["outline_row_groups"] / 2
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


def test_the_outlines_file_is_written_in_row_groups_of_a_spatial_grid(tiled_output):
    """Above ``outlines_per_row_group`` outlines the file is sorted by grid square, one row group a square,
    with each outline's bounding box: the row groups' bounds statistics are small parts of the slide."""
    from segger.export.writers import BOUNDARY_COLUMNS, OUTLINE_BOUNDS_COLUMNS, OUTLINE_LAYOUT_KEY

    path = tiled_output / BOUNDARIES_FILE
    pf = pq.ParquetFile(path)
    raw = pd.read_parquet(path)
    assert list(raw.columns) == BOUNDARY_COLUMNS + list(OUTLINE_BOUNDS_COLUMNS)
    geoms = shapely.from_wkb(raw[S.GEOMETRY].to_numpy())
    np.testing.assert_allclose(raw[list(OUTLINE_BOUNDS_COLUMNS)].to_numpy(), shapely.bounds(geoms))
    meta = json.loads(pf.schema_arrow.metadata[OUTLINE_LAYOUT_KEY])
    n = pf.metadata.num_row_groups
    assert meta["row_groups"] == n and len(raw) / OUTLINES_PER_GROUP <= n <= 3 * len(raw) / OUTLINES_PER_GROUP
    regions = OutlineRegions(path)
    b = regions.group_bounds
    assert not np.isnan(b).any()
    slide = (raw["maxx"].max() - raw["minx"].min()) * (raw["maxy"].max() - raw["miny"].min())
    assert np.median((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])) < slide / 4
    geo = json.loads(pf.schema_arrow.metadata[b"geo"])["columns"]["geometry"]
    assert np.allclose(geo["bbox"], [raw["minx"].min(), raw["miny"].min(), raw["maxx"].max(), raw["maxy"].max()])
    # the same outlines as the table written (another order: the grid's)
    allb = read_boundaries(path).set_index("cell_id").sort_index()
    from segger.export import cell_boundaries

    ref = cell_boundaries(read_transcripts_output(tiled_output / TRANSCRIPTS_FILE)).set_index("cell_id").sort_index()
    assert list(allb.index) == list(ref.index)
    assert shapely.equals_exact(allb[S.GEOMETRY].to_numpy(), ref[S.GEOMETRY].to_numpy(), tolerance=1e-9).all()
    pd.testing.assert_frame_equal(allb[BOUNDARY_COLUMNS[2:]], ref[BOUNDARY_COLUMNS[2:]])


def test_a_small_outlines_table_is_one_row_group_in_its_own_order(tmp_path, tiled_output):
    from segger.export import write_boundaries

    b = read_boundaries(tiled_output / BOUNDARIES_FILE).sample(frac=1.0, random_state=0).reset_index(drop=True)
    out = write_boundaries(b, tmp_path / "small.parquet")  # a few hundred outlines <= OUTLINES_PER_ROW_GROUP
    assert pq.ParquetFile(out).metadata.num_row_groups == 1
    assert list(read_boundaries(out)["cell_id"]) == list(b["cell_id"])


def test_outlines_without_bounds_columns_are_indexed_whole(tmp_path, tiled_output, whole):
    """An outlines file written before the bounds columns (or the vertex layout): RegionSource indexes
    it once (OutlineIndex) and returns the same outlines."""
    import shutil

    from segger.export import write_boundaries

    old = tmp_path / "old"
    shutil.copytree(tiled_output, old)
    table = pq.read_table(old / BOUNDARIES_FILE)
    table = table.drop_columns(["minx", "miny", "maxx", "maxy"])
    pq.write_table(table.replace_schema_metadata({k: v for k, v in table.schema.metadata.items()
                                                  if k != b"segger_outlines"}), old / BOUNDARIES_FILE)
    box = _box_of(whole, [0.2, 0.6], [0.3, 0.7])
    new = RegionSource(tiled_output).read_outlines(box)
    src = RegionSource(old)
    assert isinstance(src.outlines, OutlineIndex) and OutlineRegions.open(old / BOUNDARIES_FILE) is None
    got = src.read_outlines(box)
    assert list(got["cell_id"]) == list(new["cell_id"]) and len(got) > 10
    assert shapely.equals(got[S.GEOMETRY].to_numpy(), new[S.GEOMETRY].to_numpy()).all()
    verts = write_boundaries(read_boundaries(tiled_output / BOUNDARIES_FILE), tmp_path / "v.parquet", layout="vertices")
    assert sorted(read_boundaries_region(verts, box)["cell_id"]) == sorted(new["cell_id"])
