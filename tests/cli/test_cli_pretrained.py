"""``segger predict INPUT --pretrained`` and ``segger segment --pretrained`` (issue 12 #2): the bundled
model gives cells without training, on its own panel at least as well as the nearest-nucleus floor
of tests/prediction/test_quality_floor.py, and on another panel (unknown genes use the unknown-gene
token); ``--pretrained`` with ``--checkpoint`` is a one-line usage error."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from segger import schema as S
from segger.cli.main import main
from segger.utils.outdir import OUTPUT_FILES, RUN_MARKER, TRANSCRIPTS_FILE
from _cli_helpers import call_cli as _call

# the floors of tests/prediction/test_quality_floor.py (against the nearest-nucleus rule on the graph)
FLOOR_MUTUAL = 0.03  # mutual agreement ≥ nearest nucleus − this
FLOOR_MECR_REL = 0.01  # MECR at equal coverage vs nearest nucleus ≤ this (relative)
FLOOR_FRACTION = 0.06  # |assigned fraction − vendor's| ≤ this




def _files(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def lung_pretrained(pkg_lung_dir, tmp_path_factory):
    """``segger predict LUNG --pretrained --output OUT`` once (module)."""
    out = tmp_path_factory.mktemp("pre") / "out"
    try:
        rc = main(["predict", str(pkg_lung_dir), "--pretrained", "--output", str(out), "--device", "cpu", "--quiet"])
    except SystemExit as exc:
        rc = exc.code
    return rc, out


def test_predict_pretrained_writes_the_standard_output_without_training(lung_pretrained):
    from segger.models.pretrained import bundled_checkpoint

    rc, out = lung_pretrained
    assert rc == 0
    assert _files(out) == sorted(OUTPUT_FILES)  # no model/ folder, no training logs
    run = json.loads((out / RUN_MARKER).read_text())
    assert run["extra"]["training_history"] == []
    assert run["parameters"]["train"]["epochs"] == 0
    assert run["parameters"]["checkpoint"] == str(bundled_checkpoint())
    assert run["extra"]["n_cells"] > 100


def test_predict_pretrained_meets_the_nearest_nucleus_floor(lung_pretrained, pkg_lung_graph):
    from segger.prediction import nearest_nucleus_assignment
    from segger.validation import fraction_assigned, mecr_equal_coverage, mutual_agreement, quality_gene_pairs

    rc, out = lung_pretrained
    assert rc == 0
    got = pd.read_parquet(out / TRANSCRIPTS_FILE, columns=[S.TX_ID, S.SEGGER_CELL_ID])
    df = pkg_lung_graph.transcripts.copy()
    df["segger"] = (pd.Series(got[S.SEGGER_CELL_ID].astype(str).to_numpy(object), index=got[S.TX_ID].to_numpy())
                    .reindex(df[S.TX_ID].to_numpy()).to_numpy(object))
    assert pd.notna(df["segger"]).all()  # every transcript of the graph is in the output
    df["nn"] = nearest_nucleus_assignment(pkg_lung_graph, max_dist=12.0)[S.SEGGER_CELL_ID].to_numpy(dtype=object)
    pairs = quality_gene_pairs(df)
    seg, nn = mutual_agreement(df, "segger"), mutual_agreement(df, "nn")
    assert seg >= nn - FLOOR_MUTUAL, (seg, nn)
    rel = mecr_equal_coverage(df, pairs, "segger", "nn")["relative"]
    assert rel <= FLOOR_MECR_REL, rel
    frac, vendor = fraction_assigned(df, "segger"), fraction_assigned(df, S.CELL_ID)
    assert abs(frac - vendor) <= FLOOR_FRACTION, (frac, vendor)


def test_predict_pretrained_on_another_panel(pkg_breast_dir, tmp_path, capsys):
    """The breast panel: most genes are unknown to the lung model; it runs, warns, and forms cells."""
    rc, out, err = _call(["predict", pkg_breast_dir, "--pretrained", "--output", tmp_path / "o", "--device", "cpu",
                          "--quiet"], capsys)
    assert rc == 0, err
    assert "unknown-gene token" in err
    run = json.loads((tmp_path / "o" / RUN_MARKER).read_text())
    assert run["extra"]["training_history"] == []
    assert run["extra"]["n_cells"] > 50


def test_pretrained_and_checkpoint_together_is_one_line(pkg_lung_dir, tmp_path, capsys):
    for cmd in ("predict", "segment"):
        rc, out, err = _call([cmd, pkg_lung_dir, "--pretrained", "--checkpoint", tmp_path / "m.pt",
                              "--output", tmp_path / "o"], capsys)
        assert rc == 2
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "--pretrained" in lines[0] and "--checkpoint" in lines[0], err
    assert not (tmp_path / "o").exists()


def test_predict_needs_a_model(pkg_lung_dir, tmp_path, capsys):
    rc, _, err = _call(["predict", pkg_lung_dir, "--output", tmp_path / "o"], capsys)
    assert rc == 2 and len(err.strip().splitlines()) == 1
    assert "--pretrained" in err and "--checkpoint" in err


def test_missing_bundled_model_is_one_line(pkg_lung_dir, tmp_path, capsys, monkeypatch):
    import segger.models.pretrained as P

    monkeypatch.setattr(P, "HERE", tmp_path)
    rc, _, err = _call(["predict", pkg_lung_dir, "--pretrained", "--output", tmp_path / "o"], capsys)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "bundled pretrained model" in err
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_segment_pretrained_fine_tunes_from_the_bundled_model(pkg_lung_dir, tmp_path, capsys):
    """``segment --pretrained --epochs 1``: one epoch of training, starting from the bundled weights."""
    from segger.models.pretrained import bundled_checkpoint

    rc, _, err = _call(["segment", pkg_lung_dir, "--pretrained", "--epochs", "1", "--output", tmp_path / "o",
                        "--device", "cpu", "--quiet"], capsys)
    assert rc == 0, err
    run = json.loads((tmp_path / "o" / RUN_MARKER).read_text())
    assert len(run["extra"]["training_history"]) == 1
    assert run["parameters"]["checkpoint"] == str(bundled_checkpoint())
    assert (tmp_path / "o" / "model" / "best.pt").is_file()
    # without --epochs it reuses the bundled model as is (checkpoint semantics)
    rc, _, err = _call(["segment", pkg_lung_dir, "--pretrained", "--output", tmp_path / "p", "--device", "cpu",
                        "--quiet"], capsys)
    assert rc == 0, err
    assert json.loads((tmp_path / "p" / RUN_MARKER).read_text())["extra"]["training_history"] == []
