"""Training on tiles streamed from disk and ``segger segment --out-of-core`` (issue 13 #1).

On the packaged lung crop cut into 3 × 3 tiles of 70 µm (+30 µm margin): the training stream never
holds more transcripts than the largest tile with its margin (a counter, not a timer), the model
learns (held-out tile: lower validation loss than the untrained weights, and the health check that
refuses untrained models passes), and the command writes the files and columns of the in-memory
``segger segment``.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from segger import schema as S
from segger.errors import SeggerInputError

TILING = dict(tile_size=70.0, margin=30.0)


@pytest.fixture(scope="module")
def lung_buckets(pkg_lung_dir, tmp_path_factory):
    """The lung crop bucketed on the out-of-core tile grid, with the global reach and the vocabulary."""
    from segger.data import GraphParams
    from segger.data.vocab import GeneVocab
    from segger.scale.runner import _with_global_reach
    from segger.scale.tiled import InputSpec, TileTask, bucket_nuclei, bucket_transcripts, plan_tiles

    work = tmp_path_factory.mktemp("buckets")
    spec = InputSpec.resolve(pkg_lung_dir)
    plan = plan_tiles(spec, **TILING)
    b = bucket_transcripts(spec, plan, work, keep_xy=True)
    nuc = bucket_nuclei(spec, plan, work)
    gp = _with_global_reach(GraphParams().validate(), spec, np.concatenate(b.xy))
    tasks = {t: TileTask(t, plan.bounds(t), b.parts[t], nuc.get(t), "polygons") for t in b.tiles()}
    return dict(plan=plan, buckets=b, graph=gp, vocab=GeneVocab.from_genes(b.genes), tasks=tasks)


def test_vocabulary_of_the_stream_is_the_in_memory_one(lung_buckets, pkg_lung_graph):
    assert lung_buckets["vocab"].genes == pkg_lung_graph.vocab.genes
    assert lung_buckets["graph"].max_distance == pytest.approx(pkg_lung_graph.max_distance)


def test_choose_tiles_seeded_fraction_and_count():
    from segger.scale.segment import choose_tiles

    tiles = list(range(9))
    rows = {t: 10 for t in tiles} | {8: 0}  # tile 8 owns nothing: never chosen
    tr, va = choose_tiles(tiles, rows, 0.5, 1, seed=0)
    assert len(va) == 1 and len(tr) == 4 and not set(tr) & set(va) and 8 not in tr + va
    assert (tr, va) == choose_tiles(tiles, rows, 0.5, 1, seed=0)  # seeded
    assert choose_tiles(tiles, rows, 0.5, 1, seed=1) != (tr, va)
    assert len(choose_tiles(tiles, rows, 3, 2, seed=0)[0]) == 3
    assert len(choose_tiles(tiles, rows, 100, 0, seed=0)[0]) == 8
    assert choose_tiles([0], {0: 5}, 1.0, 1, seed=0) == ([0], [])  # one tile: nothing to hold out
    with pytest.raises(SeggerInputError, match="train_tiles"):
        choose_tiles(tiles, rows, 0, 1, seed=0)


def test_streamed_training_holds_one_tile_and_learns(lung_buckets, tiny_train_config, tmp_path):
    from segger.scale.segment import _tile_loader, choose_tiles
    from segger.scale.tiled import read_tile
    from segger.training.health import ModelHealthError, check_model_health
    from segger.training.streamed import StreamedTrainingRun

    b, tasks = lung_buckets["buckets"], lung_buckets["tasks"]
    assert len(tasks) == 9
    train_ids, val_ids = choose_tiles(b.tiles(), b.core_rows, 0.5, 1, seed=0)
    assert len(train_ids) == 4 and len(val_ids) == 1
    sizes = {t: len(read_tile(tasks[t])[0]) for t in train_ids + val_ids}  # core + margin rows of each tile
    load = _tile_loader(tasks, lung_buckets["graph"], lung_buckets["vocab"], 3)
    run = StreamedTrainingRun(train_ids, val_ids, load, lung_buckets["vocab"], lung_buckets["graph"],
                              tiny_train_config(epochs=3, tile_tx=1500), checkpoint_dir=tmp_path / "model")
    before = run.evaluate()
    check_model_health(run.model)  # finite weights ...
    with pytest.raises(ModelHealthError, match="untrained"):  # ... but refused untrained
        check_model_health(run.model, trained_epochs=0, pretrained=False)
    run.counter.peak = 0
    run.fit()
    after = run.evaluate()
    # memory: one tile (core + margin) at a time, never the slide
    assert run.counter.held == 0
    assert 0 < run.counter.peak <= max(sizes.values()), (run.counter.peak, sizes)
    assert run.counter.peak < b.rows_kept / 2
    assert run.counter.tiles_loaded >= 3 * len(train_ids)  # every epoch streamed every training tile
    # the model learns: on the held-out tile, better than its untrained weights
    assert np.isfinite(before["val_loss"]) and after["val_loss"] < before["val_loss"], (before, after)
    assert after["val_auroc"] > 0.9
    assert len(run.history) == 3 and all(np.isfinite(h["val_auroc"]) for h in run.history)
    check_model_health(run.model, history=run.history, trained_epochs=3, pretrained=False)
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == ["best.pt", "last.pt", "logs"]
    from segger.training import load_checkpoint

    model, _, vocab, params, payload = load_checkpoint(tmp_path / "model" / "best.pt")
    assert vocab.genes == lung_buckets["vocab"].genes and params.max_distance == lung_buckets["graph"].max_distance


def test_streamed_training_is_seeded(lung_buckets, tiny_train_config):
    import torch

    from segger.scale.segment import _tile_loader
    from segger.training.streamed import StreamedTrainingRun

    tasks = lung_buckets["tasks"]
    load = _tile_loader(tasks, lung_buckets["graph"], lung_buckets["vocab"], 3)
    runs = [StreamedTrainingRun([1, 3, 5], [], load, lung_buckets["vocab"], lung_buckets["graph"],
                                tiny_train_config(epochs=1, tile_tx=1500)).fit() for _ in range(2)]
    for k, v in runs[0].model.state_dict().items():
        assert torch.equal(v, runs[1].model.state_dict()[k]), k


@pytest.mark.slow
def test_cli_segment_out_of_core_writes_the_in_memory_outputs(pkg_lung_dir, tmp_path, segment_ooc_sync):
    import anndata as ad

    from segger.cli.main import main
    from segger.utils.outdir import OUTPUT_FILES

    tiny = ["--hidden-channels", "16", "--out-channels", "16", "--heads", "2", "--num-mid-layers", "1",
            "--epochs", "2", "--train-tile-tx", "1500", "--device", "cpu", "--quiet"]
    mem, ooc = tmp_path / "mem", segment_ooc_sync  # ooc: the same options + --out-of-core (tests/scale/conftest.py)
    assert main(["segment", str(pkg_lung_dir), "--output", str(mem), *tiny]) == 0

    def tree(d):
        return sorted(str(p.relative_to(d)) for p in d.rglob("*"))

    assert tree(ooc) == tree(mem)  # same files, model/ and its logs included, nothing staged left
    assert set(OUTPUT_FILES) <= set(tree(ooc))
    from segger.export import read_transcripts_output

    # the result tables as every reader reads them (the in-memory file keeps the input's vendor columns,
    # the out-of-core one is still in the tidy schema: test_out_of_core_transcripts_keep_the_input_columns)
    tx_cols = [list(read_transcripts_output(d / "segger_transcripts.parquet").columns) for d in (ooc, mem)]
    assert tx_cols[0] == tx_cols[1]
    assert list(pd.read_parquet(ooc / "segger_boundaries.parquet").columns) == \
        list(pd.read_parquet(mem / "segger_boundaries.parquet").columns)
    a_mem, a_ooc = ad.read_h5ad(mem / "segger_cells.h5ad"), ad.read_h5ad(ooc / "segger_cells.h5ad")
    assert list(a_ooc.obs.columns) == list(a_mem.obs.columns) and set(a_ooc.obsm) == set(a_mem.obsm)
    assert list(a_ooc.var_names) == list(a_mem.var_names)
    assert set(json.loads((ooc / "qc.json").read_text())) == set(json.loads((mem / "qc.json").read_text()))
    assert (pd.read_csv(ooc / "model" / "logs" / "metrics.csv").columns.tolist()
            == pd.read_csv(mem / "model" / "logs" / "metrics.csv").columns.tolist())
    run = json.loads((ooc / "segger_run.json").read_text())
    assert run["parameters"]["mode"] == "out-of-core" and run["parameters"]["streamed_training"]
    assert len(run["parameters"]["train_tiles"]) == 4 and len(run["parameters"]["val_tiles"]) == 1
    assert run["extra"]["training"]["peak_transcripts"] < 12_919 / 2  # never the whole crop
    tx = pd.read_parquet(ooc / "segger_transcripts.parquet")
    assert len(tx) == 12_919 and tx[S.TX_ID].is_unique
    frag = tx[tx[S.ASSIGNMENT] == "fragment"]
    assert frag[S.SEGGER_CELL_ID].astype(str).str.fullmatch(r"fragment-tx\d+").all()  # global fragment ids
    assert a_ooc.obs_names.is_unique
    assert (tx[S.ASSIGNMENT].isin(["nucleus", "cytoplasm"])).mean() > 0.3


@pytest.mark.slow
def test_out_of_core_transcripts_keep_the_input_columns(lung_checkpoint, pkg_lung_dir, tmp_path):
    from segger.cli.main import main

    common = ["--checkpoint", str(lung_checkpoint), "--quiet", "--device", "cpu"]
    mem, ooc = tmp_path / "mem", tmp_path / "ooc"
    assert main(["predict", str(pkg_lung_dir), "--output", str(mem), *common]) == 0
    assert main(["predict", str(pkg_lung_dir), "--output", str(ooc), *common, "--out-of-core", "--tile-size", "70",
                 "--scheduler", "synchronous"]) == 0
    name = "segger_transcripts.parquet"
    a, b = pd.read_parquet(ooc / name), pd.read_parquet(mem / name)
    assert list(a.columns) == list(b.columns)
    raw = pd.read_parquet(pkg_lung_dir / "transcripts.parquet")
    assert list(a.columns)[: len(raw.columns)] == list(raw.columns)  # the vendor's own columns, in order
    # same rows, same values (out-of-core writes tile by tile: compare by transcript id)
    a, b = (t.set_index("transcript_id").sort_index() for t in (a, b))
    # fragments: the same groups, named by their smallest transcript id out of core ("fragment-tx<id>")
    fa, fb = (t["segger_cell_id"].str.startswith("fragment-") for t in (a, b))
    assert (fa == fb).all()
    pairs = pd.DataFrame({"a": a.loc[fa, "segger_cell_id"], "b": b.loc[fb, "segger_cell_id"]}).drop_duplicates()
    assert pairs["a"].is_unique and pairs["b"].is_unique
    same = ["segger_cell_id", "score"]
    pd.testing.assert_frame_equal(a.drop(columns=same), b.drop(columns=same), check_categorical=False,
                                  check_dtype=False)
    assert (a.loc[~fa, "segger_cell_id"] == b.loc[~fb, "segger_cell_id"]).all()
    assert np.allclose(a["score"], b["score"], atol=1e-6)


def test_cli_segment_out_of_core_refuses_a_checkpoint(pkg_lung_dir, tmp_path, capsys):
    from segger.cli.main import main

    ck = tmp_path / "m.pt"
    ck.write_bytes(b"x")
    rc = main(["segment", str(pkg_lung_dir), "--output", str(tmp_path / "o"), "--out-of-core", "--checkpoint", str(ck),
               "--quiet"])
    assert rc == 2 and "predict --out-of-core" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
