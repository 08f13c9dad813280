"""segger.workflows: the one workflow the CLI, the widgets and Python users call."""

from __future__ import annotations

import pandas as pd
import pytest

from segger import schema as S
from segger.data import GeneVocab
from segger.errors import SeggerInputError
from segger import workflows as W


def test_vocabulary_rule_refuses_below_half(synthetic_graph):
    genes = list(synthetic_graph.vocab.genes)
    half = len(genes) // 2
    with pytest.raises(SeggerInputError, match="another panel"):
        W.check_vocabulary(GeneVocab.from_genes(genes[: half - 1]), genes, "m.pt")
    assert W.check_vocabulary(GeneVocab.from_genes(genes), genes) == []
    warns = W.check_vocabulary(GeneVocab.from_genes(genes[:-1]), genes, "m.pt")
    assert len(warns) == 1 and "1 genes" in warns[0]


def test_bundle_for_vocabulary_reuses_or_rebuilds_and_refuses_alike(synthetic_graph):
    b, warns = W.bundle_for_vocabulary(synthetic_graph, synthetic_graph.vocab)
    assert b is synthetic_graph and warns == []
    genes = list(synthetic_graph.vocab.genes)
    other = GeneVocab.from_genes(genes[:-1] + ["EXTRA1"])
    b, warns = W.bundle_for_vocabulary(synthetic_graph, other, "m.pt")
    assert b is not synthetic_graph and list(b.vocab.genes) == list(other.genes) and warns
    assert b.summary() == synthetic_graph.summary()
    with pytest.raises(SeggerInputError, match="knows only"):
        W.bundle_for_vocabulary(synthetic_graph, GeneVocab.from_genes(["A", "B"]), "m.pt")


def test_nuclei_for_crop_keeps_the_reachable_nuclei(synthetic_tables):
    tx, nuc = synthetic_tables()
    x0, x1 = float(nuc[S.X].min()), float(nuc[S.X].median())
    y0, y1 = float(nuc[S.Y].min()), float(nuc[S.Y].max())
    kept = W.nuclei_for(tx, nuclei=nuc, crop=(x0, y0, x1, y1), reach=0.0)
    assert 0 < len(kept) < len(nuc)
    assert kept[S.X].between(x0, x1).all()
    assert len(W.nuclei_for(tx, nuclei=nuc)) == len(nuc)
    with pytest.raises(SeggerInputError):
        W.nuclei_for(tx)


def test_cli_train_and_finetune_go_through_the_workflow(monkeypatch, tmp_path):
    from segger.cli.main import main

    calls = {}

    def fake_train(input_path, output, callback=None, **kw):
        calls["train"] = kw
        return W.TrainResult(tmp_path, None, [{"val_auroc": 0.9}], None, [])

    def fake_finetune(input_path, output, checkpoint, corrections, callback=None, **kw):
        calls["finetune"] = kw
        raise SeggerInputError("stopped here")

    monkeypatch.setattr(W, "train_model", fake_train)
    monkeypatch.setattr(W, "finetune", fake_finetune)
    assert main(["train", str(tmp_path / "in"), "-o", str(tmp_path / "o"), "--epochs", "3", "--quiet"]) == 0
    assert calls["train"]["train"].epochs == 3 and calls["train"]["graph"].dist_bd == 20.0
    assert main(["finetune", str(tmp_path / "in"), "--checkpoint", "m.pt", "--corrections", "c.csv",
                 "-o", str(tmp_path / "o2"), "--steps", "4", "--quiet"]) == 2
    assert calls["finetune"]["config"].steps == 4


def test_finetune_without_corrections_file_is_one_error(tmp_path):
    with pytest.raises(SeggerInputError, match="does not exist"):
        W.finetune(tmp_path / "in", tmp_path / "o", tmp_path / "m.pt", tmp_path / "nope.csv")
    assert not (tmp_path / "o").exists()


def test_read_input_requires_nuclei(tmp_path, pkg_lung_dir):
    raw = pd.read_parquet(pkg_lung_dir / "transcripts.parquet").head(3000)
    raw["overlaps_nucleus"] = 0
    f = tmp_path / "t.parquet"
    raw.drop(columns=["cell_id"]).to_parquet(f)
    with pytest.raises(SeggerInputError, match="training needs nuclei"):
        W.read_input(f, nuclei="approximate", require_nuclei="; training needs nuclei")


def test_pipeline_names_are_the_workflow(tmp_path):
    from segger import pipeline

    assert pipeline.segment is W.segment and pipeline.iter_segment is W.iter_segment
    assert pipeline.SegmentResult is W.SegmentResult
