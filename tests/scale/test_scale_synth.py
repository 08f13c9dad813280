"""Scale inputs made from copies of a real crop."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from segger.scale.synth import CELL_STRIDE, ID_SHIFT, tile_copies


def test_tile_copies(pkg_breast_dir, tmp_path):
    src = pkg_breast_dir / "transcripts.parquet"
    n_src = pq.ParquetFile(src).metadata.num_rows
    out = tmp_path / "big" / "transcripts.parquet"
    info = tile_copies(src, 2 * n_src + 1000, out, row_group_size=10_000)
    assert info["copies"] == 3 and info["grid"] == [2, 2]
    f = pq.ParquetFile(out)
    assert f.metadata.num_rows == 2 * n_src + 1000
    assert f.metadata.num_row_groups >= 5
    t = f.read().to_pandas()
    s = pq.read_table(src).to_pandas()
    assert t["transcript_id"].is_unique
    copy = t["transcript_id"].to_numpy() >> ID_SHIFT
    assert np.bincount(copy).tolist() == [n_src, n_src, 1000]
    c1 = t[copy == 1]
    assert np.array_equal(c1["transcript_id"].to_numpy() - (1 << ID_SHIFT), s["transcript_id"].to_numpy())
    assert np.array_equal(c1["feature_name"].to_numpy(), s["feature_name"].to_numpy())
    ids = c1["cell_id"].to_numpy()
    orig = s["cell_id"].to_numpy()
    assert np.array_equal(np.where(orig >= 0, ids - CELL_STRIDE, ids), orig)
    # copies do not overlap in space
    boxes = [(g["x_location"].min(), g["x_location"].max(), g["y_location"].min(), g["y_location"].max())
             for _, g in t.groupby(copy)]
    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            a, b = boxes[i], boxes[j]
            assert a[1] < b[0] or b[1] < a[0] or a[3] < b[2] or b[3] < a[2]
    # kept when it exists with the right size
    mtime = out.stat().st_mtime_ns
    tile_copies(src, 2 * n_src + 1000, out)
    assert out.stat().st_mtime_ns == mtime


def test_tile_copies_needs_integer_cell_ids(pkg_lung_dir, tmp_path):
    from segger.errors import SeggerInputError

    with pytest.raises(SeggerInputError, match="integer"):
        tile_copies(pkg_lung_dir / "transcripts.parquet", 1000, tmp_path / "x.parquet")
