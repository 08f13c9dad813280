"""A region of a whole-slide result without reading the whole file (issue 13 #6, core side): the
out-of-core writer puts each tile in its own row group(s), and ``read_transcripts_region`` reads only
the row groups whose x/y statistics meet the box."""

from __future__ import annotations

import numpy as np
import pytest

from segger import schema as S
from segger.export import read_transcripts_output, read_transcripts_region


@pytest.mark.slow
def test_region_reads_only_the_row_groups_it_needs(ooc_sync):
    res, _ = ooc_sync
    path = res.output
    whole = read_transcripts_output(path)
    x0, x1 = np.quantile(whole[S.X], [0.05, 0.25])
    y0, y1 = np.quantile(whole[S.Y], [0.05, 0.25])
    part, stats = read_transcripts_region(path, (x0, y0, x1, y1))
    assert stats["row_groups"] >= 9  # one or more per tile
    assert 0 < stats["row_groups_read"] < stats["row_groups"] / 2  # a corner: a few tiles, not the file
    inside = whole[(whole[S.X] >= x0) & (whole[S.X] < x1) & (whole[S.Y] >= y0) & (whole[S.Y] < y1)]
    assert len(part) == len(inside) > 0
    a = part.set_index(S.TX_ID).sort_index()
    b = inside.set_index(S.TX_ID).sort_index()
    assert list(a.columns) == list(b.columns)
    assert (a[S.SEGGER_CELL_ID] == b[S.SEGGER_CELL_ID]).all() and np.allclose(a[S.X], b[S.X])
    # an empty box reads nothing and returns the columns
    empty, st = read_transcripts_region(path, (-1e9, -1e9, -1e9 + 1, -1e9 + 1))
    assert len(empty) == 0 and st["row_groups_read"] == 0 and S.SEGGER_CELL_ID in empty.columns
