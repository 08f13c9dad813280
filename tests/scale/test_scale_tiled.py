"""Out-of-core tiled prediction: planning, bucketing, streaming output, Dask execution."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from segger import schema as S
from segger.errors import SeggerInputError
from segger.scale import OutOfCoreConfig, predict_out_of_core
from segger.scale.tiled import InputSpec, TilePlan, bucket_transcripts, plan_tiles, read_tile


def test_plan_assign_every_point_one_core():
    rng = np.random.default_rng(0)
    plan = TilePlan(x0=0.0, y0=0.0, tile_size=50.0, margin=12.0, nx=4, ny=3, n_rows=0)
    x = rng.uniform(-1, 201, 5000)
    y = rng.uniform(-1, 151, 5000)
    x[:4], y[:4] = [0, 50, 100, 200], [0, 50, 150, 100]  # exactly on tile borders
    rows, tiles, core = plan.assign(x, y)
    assert np.bincount(rows[core], minlength=len(x)).tolist() == [1] * len(x)
    assert np.array_equal(tiles[core][np.argsort(rows[core])], plan.core_tile(x, y))
    # each (row, tile) pair lies inside the tile's core + margin, and no such tile is missing
    for t in range(plan.n_tiles):
        bx0, by0, bx1, by1 = plan.bounds(t)
        m = plan.margin
        inside = (x >= bx0 - m) & (x <= bx1 + m) & (y >= by0 - m) & (y <= by1 + m)
        i, j = divmod(t, plan.ny)
        # the border tiles also own what lies beyond the grid
        inside |= ((i == 0) & (x < bx0)) | ((i == plan.nx - 1) & (x > bx1)) | ((j == 0) & (y < by0)) | ((j == plan.ny - 1) & (y > by1))
        got = np.zeros(len(x), bool)
        got[rows[tiles == t]] = True
        strict = (x > bx0 - m + 1e-9) & (x < bx1 + m - 1e-9) & (y > by0 - m + 1e-9) & (y < by1 + m - 1e-9)
        assert not (strict & ~got).any()  # nothing inside the box is left out
        assert not (got & ~inside).any()  # nothing outside it is put in
    assert len(np.unique(rows * plan.n_tiles + tiles)) == len(rows)


def test_plan_from_row_group_statistics(pkg_lung_dir):
    spec = InputSpec.resolve(pkg_lung_dir)
    assert spec.platform == "xenium" and spec.polygons is not None
    plan = plan_tiles(spec, tile_size=60.0, margin=20.0)
    assert (plan.nx, plan.ny) == (4, 4)  # the crop is ~202 × 202 µm
    assert plan.n_rows == 15_000


def test_bucket_parts_hold_core_and_margin(pkg_lung_dir, tmp_path, pkg_lung_sample):
    spec = InputSpec.resolve(pkg_lung_dir)
    plan = plan_tiles(spec, tile_size=60.0, margin=20.0)
    res = bucket_transcripts(spec, plan, tmp_path, batch_rows=4000, flush_bytes=200_000)
    assert res.rows_kept == len(pkg_lung_sample.transcripts)  # same qv / control filtering as read_sample
    assert sum(res.core_rows.values()) == res.rows_kept
    seen = []
    from segger.scale.tiled import TileTask

    for t in res.tiles():
        assert len(res.parts[t]) >= 1
        df, core = read_tile(TileTask(t, plan.bounds(t), res.parts[t]))
        assert core.sum() == res.core_rows[t]
        bx0, by0, bx1, by1 = plan.bounds(t)
        assert (df[S.X] >= bx0 - 20.0 - 1e-6).all() and (df[S.X] <= bx1 + 20.0 + 1e-6).all()
        seen.append(df.loc[core, S.TX_ID].to_numpy())
    ids = np.concatenate(seen)
    assert len(ids) == len(np.unique(ids))
    assert set(ids) == set(pkg_lung_sample.transcripts[S.TX_ID])
    cols = list(pkg_lung_sample.transcripts.columns)
    assert list(df.columns) == cols


def test_out_of_core_writes_each_transcript_once(ooc_sync, pkg_lung_sample):
    res, df = ooc_sync
    assert res.n_tiles == 9 and res.scheduler == "synchronous"
    assert len(df) == len(pkg_lung_sample.transcripts) == res.n_rows
    assert df[S.TX_ID].is_unique
    assert set(df[S.TX_ID]) == set(pkg_lung_sample.transcripts[S.TX_ID])
    for c in (S.SEGGER_CELL_ID, S.SCORE, S.ASSIGNMENT):
        assert c in df.columns
    assert set(df[S.ASSIGNMENT]) <= set(S.ASSIGNMENT_KINDS)
    assert (df.loc[df[S.ASSIGNMENT] == "none", S.SEGGER_CELL_ID] == S.UNASSIGNED).all()
    frag = df.loc[df[S.ASSIGNMENT] == "fragment", S.SEGGER_CELL_ID]
    assert frag.str.match(r"^fragment-tx\d+$").all()  # named by their first transcript (the same in every tile)
    nuc_ids = set(pkg_lung_sample.nuclei[S.BD_ID].astype(str))
    cells = df.loc[df[S.ASSIGNMENT].isin(["nucleus", "cytoplasm"]), S.SEGGER_CELL_ID]
    assert set(cells) <= nuc_ids
    assert sum(res.counts[k] for k in S.ASSIGNMENT_KINDS) == len(df)
    # no staging files left next to the output
    assert [p.name for p in Path(res.output).parent.iterdir()] == [Path(res.output).name]


def _in_memory(lung_checkpoint, sample):
    from segger.data import build_graph
    from segger.prediction import predict
    from segger.training import load_checkpoint

    model, _, vocab, params, _ = load_checkpoint(lung_checkpoint)
    bundle = build_graph(sample.transcripts, sample.nuclei, params, vocab=vocab)
    return predict(model, bundle).assign().set_index(S.TX_ID), bundle


def test_out_of_core_equals_in_memory_exactly(ooc_sync, lung_checkpoint, pkg_lung_sample):
    """9 tiles of 70 µm on the real lung crop give, for every transcript (both ways), the in-memory
    predict's kind, score and cell; fragments are the same transcript groups."""
    res, df = ooc_sync
    assert res.n_tiles == 9  # a multi-tile run: borders cross cells, so equality is not trivial
    ref, bundle = _in_memory(lung_checkpoint, pkg_lung_sample)
    got = df.set_index(S.TX_ID)
    assert set(got.index) == set(ref.index)
    got = got.loc[ref.index]
    np.testing.assert_array_equal(got[S.ASSIGNMENT].astype(str).to_numpy(), ref[S.ASSIGNMENT].astype(str).to_numpy())
    np.testing.assert_array_equal(got[S.SCORE].to_numpy(np.float32), ref[S.SCORE].to_numpy(np.float32))
    cell = ref[S.ASSIGNMENT].isin(["nucleus", "cytoplasm"]).to_numpy()
    assert 0.3 < cell.mean() < 1.0
    np.testing.assert_array_equal(got.loc[cell, S.SEGGER_CELL_ID].astype(str).to_numpy(),
                                  ref.loc[cell, S.SEGGER_CELL_ID].astype(str).to_numpy())
    frag = (ref[S.ASSIGNMENT] == "fragment").to_numpy()
    assert frag.sum() >= 10, "the crop has transcripts beyond the reach: fragments must form"
    pairs = pd.DataFrame({"ref": ref.loc[frag, S.SEGGER_CELL_ID].astype(str).to_numpy(),
                          "ooc": got.loc[frag, S.SEGGER_CELL_ID].astype(str).to_numpy()}).drop_duplicates()
    assert pairs["ref"].is_unique and pairs["ooc"].is_unique, pairs  # the same groups, one-to-one


def test_out_of_core_fragment_cut_by_a_tile_border(lung_checkpoint, pkg_lung_dir, pkg_lung_sample, tmp_path):
    """A fragment whose transcripts lie in the cores of two tiles is still one cell out of core."""
    ref, _ = _in_memory(lung_checkpoint, pkg_lung_sample)
    frag = ref[ref[S.ASSIGNMENT] == "fragment"]
    assert len(frag), "the crop must hold a fragment"
    # a tile grid whose border runs through the middle of the largest fragment
    big = frag[S.SEGGER_CELL_ID].value_counts().index[0]
    xs = frag.loc[frag[S.SEGGER_CELL_ID] == big, S.X].to_numpy()
    x_cut = float(np.median(xs))
    x0 = plan_tiles(InputSpec.resolve(pkg_lung_dir), tile_size=50.0, margin=30.0).x0
    tile = x_cut - x0
    plan = plan_tiles(InputSpec.resolve(pkg_lung_dir), tile_size=tile, margin=30.0)
    assert plan.nx >= 2 and abs(plan.x0 + plan.tile_size - x_cut) < 1e-6  # the first border runs through it
    assert (xs < x_cut).any() and (xs > x_cut).any()
    out = tmp_path / "cut.parquet"
    predict_out_of_core(pkg_lung_dir, lung_checkpoint, out,
                        OutOfCoreConfig(tile_size=tile, margin=30.0, scheduler="synchronous"))
    got = pd.read_parquet(out).set_index(S.TX_ID).loc[frag.index]
    members = got.loc[frag[S.SEGGER_CELL_ID] == big]
    assert (members[S.ASSIGNMENT] == "fragment").all()
    assert members[S.SEGGER_CELL_ID].nunique() == 1, members[S.SEGGER_CELL_ID].value_counts()


def test_out_of_core_threads_cluster_equals_synchronous(ooc_sync, lung_checkpoint, pkg_lung_dir, tmp_path):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        res = predict_out_of_core(pkg_lung_dir, lung_checkpoint, tmp_path / "dask.parquet",
                                  OutOfCoreConfig(tile_size=70.0, margin=30.0, scheduler=client))
    assert res.scheduler == "client"
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "dask.parquet"), ooc_sync[1])


def test_out_of_core_approximated_nuclei(lung_checkpoint, pkg_lung_dir, tmp_path):
    res = predict_out_of_core(pkg_lung_dir, lung_checkpoint, tmp_path / "a.parquet",
                              OutOfCoreConfig(tile_size=110.0, margin=30.0, scheduler="synchronous", nuclei="approximate"))
    df = pd.read_parquet(tmp_path / "a.parquet")
    assert len(df) == res.n_rows and df[S.TX_ID].is_unique
    assert (df[S.ASSIGNMENT] != "none").mean() > 0.5


def test_out_of_core_failure_leaves_nothing(lung_checkpoint, pkg_lung_dir, tmp_path, monkeypatch):
    import segger.scale.runner as R

    out = tmp_path / "out" / "r.parquet"
    out.parent.mkdir()
    out.write_bytes(b"previous")
    calls = []

    def boom(task, *a):
        calls.append(task.tile)
        if len(calls) == 3:
            raise RuntimeError("tile failed")
        return R.predict_tile(task, *a), 0.0

    monkeypatch.setattr(R, "_timed_predict_tile", boom)
    with pytest.raises(RuntimeError, match="tile failed"):
        predict_out_of_core(pkg_lung_dir, lung_checkpoint, out, OutOfCoreConfig(tile_size=70.0, scheduler="synchronous"))
    assert out.read_bytes() == b"previous"  # the old output is untouched
    assert sorted(p.name for p in out.parent.iterdir()) == ["r.parquet"]  # no temp file, no bucket folder


def test_out_of_core_input_errors(lung_checkpoint, pkg_lung_dir, tmp_path):
    with pytest.raises(SeggerInputError, match="margin"):
        predict_out_of_core(pkg_lung_dir, lung_checkpoint, tmp_path / "r.parquet",
                            OutOfCoreConfig(margin=5.0, scheduler="synchronous"))
    csv = tmp_path / "t.csv"
    pd.read_parquet(pkg_lung_dir / "transcripts.parquet").head(100).to_csv(csv, index=False)
    with pytest.raises(SeggerInputError, match="parquet"):
        predict_out_of_core(csv, lung_checkpoint, tmp_path / "r.parquet", OutOfCoreConfig(scheduler="synchronous"))


def test_cli_predict_out_of_core(lung_checkpoint, pkg_lung_dir, tmp_path):
    from segger.cli.main import main

    rc = main(["predict", str(pkg_lung_dir), "--checkpoint", str(lung_checkpoint), "--output", str(tmp_path / "o"),
               "--out-of-core", "--tile-size", "100", "--scheduler", "synchronous", "--quiet"])
    assert rc == 0
    df = pd.read_parquet(tmp_path / "o" / "segger_transcripts.parquet")
    assert len(df) == 12_919  # the crop's 15,000 rows less the qv < 20 and control rows
    assert df[S.TX_ID].is_unique
    assert (tmp_path / "o" / "segger_run.json").is_file()


@pytest.mark.gpu
@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs CUDA")
def test_out_of_core_cuda(ooc_sync, lung_checkpoint, pkg_lung_dir, tmp_path):
    predict_out_of_core(pkg_lung_dir, lung_checkpoint, tmp_path / "g.parquet",
                              OutOfCoreConfig(tile_size=70.0, margin=30.0, scheduler="synchronous", device="cuda"))
    df = pd.read_parquet(tmp_path / "g.parquet")
    ref = ooc_sync[1]
    assert len(df) == len(ref)
    cell = ref[S.ASSIGNMENT].isin(["nucleus", "cytoplasm"])
    assert (df.loc[cell, S.SEGGER_CELL_ID] == ref.loc[cell, S.SEGGER_CELL_ID]).mean() > 0.97  # bf16 vs fp32


def test_cli_out_of_core_writes_every_output_of_an_in_memory_run(lung_checkpoint, pkg_lung_dir, tmp_path):
    """Issue 13 #1: out of core (several tiles) writes the same files with the same columns as the
    in-memory run, through the same staging/publish path; fragment ids are unique across tiles."""
    import json

    import anndata as ad

    from segger.cli.main import main
    from segger.utils.outdir import OUTPUT_FILES

    common = ["--checkpoint", str(lung_checkpoint), "--scheduler", "synchronous", "--quiet", "--device", "cpu"]
    mem, ooc = tmp_path / "mem", tmp_path / "ooc"
    assert main(["predict", str(pkg_lung_dir), "--output", str(mem), "--checkpoint", str(lung_checkpoint),
                 "--quiet", "--device", "cpu"]) == 0
    assert main(["predict", str(pkg_lung_dir), "--output", str(ooc), "--out-of-core", "--tile-size", "70",
                 *common]) == 0
    run = json.loads((ooc / "segger_run.json").read_text())
    assert run["parameters"]["mode"] == "out-of-core"
    assert run["parameters"]["plan"]["nx"] * run["parameters"]["plan"]["ny"] >= 4  # several tiles
    assert sorted(p.name for p in ooc.iterdir()) == sorted(OUTPUT_FILES)  # nothing staged or half-written left
    assert {p.name for p in mem.iterdir() if p.is_file()} == set(OUTPUT_FILES)
    from segger.export import read_transcripts_output

    # the result tables as every reader reads them (the in-memory file keeps the input's vendor columns,
    # the out-of-core one is still in the tidy schema: test_out_of_core_transcripts_keep_the_input_columns)
    tx_cols = [list(read_transcripts_output(d / "segger_transcripts.parquet").columns) for d in (ooc, mem)]
    assert tx_cols[0] == tx_cols[1]
    assert list(pd.read_parquet(ooc / "segger_boundaries.parquet").columns) == \
        list(pd.read_parquet(mem / "segger_boundaries.parquet").columns)
    a_mem, a_ooc = ad.read_h5ad(mem / "segger_cells.h5ad"), ad.read_h5ad(ooc / "segger_cells.h5ad")
    assert list(a_ooc.obs.columns) == list(a_mem.obs.columns)
    assert list(a_ooc.var_names) == list(a_mem.var_names) and set(a_ooc.obsm) == set(a_mem.obsm)
    q_mem, q_ooc = (json.loads((d / "qc.json").read_text()) for d in (mem, ooc))
    assert set(q_ooc) == set(q_mem)
    # the cells table, outlines and QC describe the transcripts table of this run
    tx = pd.read_parquet(ooc / "segger_transcripts.parquet")
    cells = set(tx.loc[tx[S.SEGGER_CELL_ID] != S.UNASSIGNED, S.SEGGER_CELL_ID].astype(str))
    assert set(a_ooc.obs_names) == cells
    outlined = set(pd.read_parquet(ooc / "segger_boundaries.parquet")["cell_id"].astype(str))
    assert outlined and outlined <= cells
    # out of core equals in memory (same assignments), so the cell outputs agree too
    # (fragments: in memory fragment-N, out of core the global fragment-tx<first transcript id>)
    def split(names):
        names = list(map(str, names))
        return sorted(n for n in names if not n.startswith("fragment-")), sum(n.startswith("fragment-") for n in names)

    assert split(a_ooc.obs_names) == split(a_mem.obs_names)
    assert a_ooc.X.sum() == int((tx[S.SEGGER_CELL_ID] != S.UNASSIGNED).sum())
    # fragments: global ids, one id per fragment over all tiles (no per-tile numbering collisions)
    frag = tx[tx[S.ASSIGNMENT] == "fragment"]
    assert frag[S.SEGGER_CELL_ID].astype(str).str.fullmatch(r"fragment-tx\d+").all()
    first = frag.groupby(S.SEGGER_CELL_ID, observed=True)[S.TX_ID].min()
    assert all(cid == f"fragment-tx{v}" for cid, v in first.items())  # named by its own smallest transcript
    assert a_ooc.obs_names.is_unique
