"""segger.export.streamed: the cell outputs of a whole-slide result computed window by window must be
the outputs of the whole table (outlines, cells × genes, QC), and the table is never read whole."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("anndata")
pytest.importorskip("pyarrow")
shapely = pytest.importorskip("shapely")


def _tiled_file(df: pd.DataFrame, path, n: int = 4) -> None:
    """``df`` written as an out-of-core run writes it: one row group per tile of an n × n grid, tile order."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    x, y = df["x"].to_numpy(), df["y"].to_numpy()
    ix = np.minimum((n * (x - x.min()) / (np.ptp(x) + 1e-9)).astype(int), n - 1)
    iy = np.minimum((n * (y - y.min()) / (np.ptp(y) + 1e-9)).astype(int), n - 1)
    tile = iy * n + ix
    writer = None
    for t in np.unique(tile):
        tab = pa.Table.from_pandas(df[tile == t].reset_index(drop=True), preserve_index=False)
        writer = writer or pq.ParquetWriter(path, tab.schema)
        writer.write_table(tab)
    writer.close()


@pytest.fixture(scope="module")
def slide(segtraq_result, tmp_path_factory):
    """The breast crop's vendor cells as a result, with fragments and unassigned transcripts, tiled."""
    df = segtraq_result.copy()
    rng = np.random.default_rng(3)
    cells = df.loc[df["segger_cell_id"] != "UNASSIGNED", "segger_cell_id"].unique()
    frag = set(rng.choice(cells, size=len(cells) // 10, replace=False))
    is_frag = df["segger_cell_id"].isin(frag).to_numpy()
    df.loc[is_frag, "segger_cell_id"] = "fragment-tx" + df.loc[is_frag, "segger_cell_id"].str[4:]
    df.loc[is_frag, "assignment"] = "fragment"
    path = tmp_path_factory.mktemp("streamed") / "segger_transcripts.parquet"
    _tiled_file(df, path)
    return path


def _whole(path, stage):
    from segger.export import read_transcripts_output
    from segger.workflows import write_cell_outputs

    stage.mkdir()
    return write_cell_outputs(read_transcripts_output(path), stage)


def test_windowed_cell_outputs_equal_the_whole_table(slide, tmp_path):
    import anndata as ad

    from segger.export import read_boundaries
    from segger.export.streamed import _windows, scan_transcripts_output, streamed_cell_outputs
    from segger.workflows import write_cell_outputs

    whole_ad, whole_qc = _whole(slide, tmp_path / "whole")
    # many small windows: most cells have a window edge near them
    t = scan_transcripts_output(slide, tmp_path)
    assert len(_windows(t, 1500)) >= 8
    t.xy_file.unlink()
    b, a, qc = streamed_cell_outputs(slide, rows_per_window=1500, scratch=tmp_path)
    assert not list(tmp_path.glob("segger-xy-*")), "the x, y spill is removed"

    wb = read_boundaries(tmp_path / "whole" / "segger_boundaries.parquet")
    assert b["cell_id"].tolist() == wb["cell_id"].tolist()
    g1, g2 = np.asarray(b["geometry"], dtype=object), np.asarray(wb["geometry"], dtype=object)
    sym = shapely.area(shapely.symmetric_difference(g1, g2)) / shapely.area(g2)
    assert np.max(sym) < 1e-6, f"{np.sum(sym > 1e-6)} outlines differ (worst {np.max(sym):.3g} of its area)"
    for col in ("n_transcripts", "area_um2", "centroid_x", "centroid_y"):
        np.testing.assert_allclose(b[col].to_numpy(float), wb[col].to_numpy(float), rtol=1e-6, err_msg=col)

    assert a.obs_names.tolist() == whole_ad.obs_names.tolist()
    assert a.var_names.tolist() == whole_ad.var_names.tolist()
    assert (a.X != whole_ad.X).nnz == 0
    pd.testing.assert_frame_equal(a.obs, whole_ad.obs, check_exact=False, rtol=1e-9)
    pd.testing.assert_frame_equal(a.var, whole_ad.var)
    np.testing.assert_allclose(a.obsm["spatial"], whole_ad.obsm["spatial"])
    assert qc == whole_qc

    # through the one writer: a path in, the same files out
    (tmp_path / "streamed").mkdir()
    write_cell_outputs(slide, tmp_path / "streamed")
    again = ad.read_h5ad(tmp_path / "streamed" / "segger_cells.h5ad")
    assert (again.X != whole_ad.X).nnz == 0


def test_windowed_outputs_never_read_the_table_whole(slide, tmp_path, monkeypatch):
    """Rows reach the windows one row group at a time: reading the file whole is not allowed."""
    import pyarrow.parquet as pq

    from segger.export import streamed

    monkeypatch.setattr(pd, "read_parquet", lambda *a, **k: pytest.fail("read the table whole"))
    monkeypatch.setattr(pq, "read_table", lambda *a, **k: pytest.fail("read the table whole"))
    seen = []
    real = streamed.StreamedTable.xy

    def xy(self, lo, hi):
        seen.append(hi - lo)
        return real(self, lo, hi)

    monkeypatch.setattr(streamed.StreamedTable, "xy", xy)
    b, a, qc = streamed.streamed_cell_outputs(slide, rows_per_window=1500, scratch=tmp_path)
    assert a.n_obs == len(b) or a.n_obs >= len(b)
    n_rows = pq.ParquetFile(slide).metadata.num_rows
    assert max(seen) < n_rows / 2, "a window read more than a few row groups"


def test_nothing_assigned_gives_the_empty_outputs(tmp_path, segtraq_result):
    from segger.export.streamed import streamed_cell_outputs

    df = segtraq_result.head(500).copy()
    df["segger_cell_id"] = "UNASSIGNED"
    df["assignment"] = "none"
    path = tmp_path / "t.parquet"
    _tiled_file(df, path, n=2)
    b, a, qc = streamed_cell_outputs(path, scratch=tmp_path)
    assert len(b) == 0 and a.n_obs == 0 and a.n_vars == df["gene"].nunique()
    assert qc["fraction_assigned"] == 0.0
