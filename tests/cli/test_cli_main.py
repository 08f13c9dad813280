"""The ``segger`` command in-process (``segger.cli.main.main``): help, segment, qc, predict, train."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
from pathlib import Path
import shutil

import numpy as np
import pandas as pd
import pytest

from segger import __version__
from segger import schema as S
from segger.cli.main import main
from _cli_helpers import call_cli as _call

TINY = ["--hidden-channels", "16", "--out-channels", "16", "--heads", "2", "--num-mid-layers", "1"]




# ----------------------------------------------------------------------------------------------
# help


def test_top_level_help_lists_commands(capsys):
    rc, out, _ = _call(["--help"], capsys)
    assert rc == 0
    for word in ("segment", "train", "predict", "qc", "--version", "--debug", "--quiet"):
        assert word in out


def test_version(capsys):
    rc, out, _ = _call(["--version"], capsys)
    assert rc == 0 and out.strip() == f"segger {__version__}"


INPUT_OPTS = ["--platform", "--min-qv", "--keep-controls", "--nuclei", "--nuclei-labels", "--pixel-size",
              "--labels-offset"]
GRAPH_OPTS = ["--k-tx", "--dist-tx", "--k-bd", "--dist-bd"]
TRAIN_OPTS = ["--epochs", "--learning-rate", "--hidden-channels", "--out-channels", "--heads", "--num-mid-layers",
              "--seed", "--devices", "--strategy", "--num-nodes"]
PREDICT_OPTS = ["--score-cut", "--no-fragments", "--min-fragment-size"]


@pytest.mark.parametrize("command,options", [
    ("segment", INPUT_OPTS + GRAPH_OPTS + TRAIN_OPTS + PREDICT_OPTS
     + ["--output", "--device", "--checkpoint", "--reference-column", "--quiet", "--debug"]),
    ("train", INPUT_OPTS + GRAPH_OPTS + TRAIN_OPTS + ["--output", "--device", "--checkpoint", "--resume", "--quiet"]),
    ("predict", INPUT_OPTS + GRAPH_OPTS + PREDICT_OPTS + ["--checkpoint", "--output", "--device",
                                                          "--reference-column", "--quiet"]),
    ("qc", ["--reference-column", "--json", "--quiet", "--debug"]),
])
def test_subcommand_help_lists_options(capsys, command, options):
    rc, out, err = _call([command, "--help"], capsys)
    assert rc == 0 and err == ""
    assert f"segger {command}" in out
    missing = [o for o in options if o not in out]
    assert not missing, f"segger {command} --help does not list {missing}"


def test_no_command_is_a_usage_error(capsys):
    rc, _, err = _call([], capsys)
    assert rc == 2 and "segger" in err


# ----------------------------------------------------------------------------------------------
# end to end on the real lung crop


def _sha(p):
    return hashlib.sha256(p.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def lung_copy(tmp_path_factory, pkg_lung_dir):
    d = tmp_path_factory.mktemp("input") / "xenium_lung"
    shutil.copytree(pkg_lung_dir, d)
    return d


@pytest.fixture(scope="module")
def segmented(tmp_path_factory, lung_copy, tree_sha256, core_env_ctx):
    """``segger segment`` of the lung crop with the tiny model (2 epochs)."""
    out = tmp_path_factory.mktemp("seg") / "out"
    before = tree_sha256(lung_copy)
    stdout, stderr = io.StringIO(), io.StringIO()
    with core_env_ctx(), contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        rc = main(["segment", str(lung_copy), "-o", str(out), "--epochs", "2", "--quiet", "--device", "cpu", *TINY])
    return {"rc": rc, "out": out, "stdout": stdout.getvalue(), "stderr": stderr.getvalue(),
            "inputs_before": before, "inputs_after": tree_sha256(lung_copy)}


@pytest.mark.slow
def test_segment_exits_zero_quietly(segmented):
    assert segmented["rc"] == 0, segmented["stderr"]
    assert segmented["stderr"] == ""
    assert f"wrote {segmented['out']}" in segmented["stdout"]
    assert "fraction assigned" in segmented["stdout"]  # the QC table
    assert "timings (s)" in segmented["stdout"]


@pytest.mark.slow
def test_segment_writes_every_output(segmented):
    out = segmented["out"]
    names = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert names == sorted(["segger_transcripts.parquet", "segger_cells.h5ad", "segger_boundaries.parquet",
                            "segger_run.json", "qc.json", "model/best.pt", "model/last.pt",
                            "model/logs/hparams.yaml", "model/logs/metrics.csv"])
    # nothing hidden left behind: no staging folder, no temporary file
    assert not [p for p in out.rglob(".*")]


@pytest.mark.slow
def test_segment_transcripts_table(segmented, lung_copy):
    """The transcripts output keeps the input's own columns (names, order, values: it joins with the
    user's other Xenium tools) and adds Segger's; read back, it is the schema's result table (issue 11 #3)."""
    from segger.export import SEGGER_COLUMNS, read_transcripts_output

    df = pd.read_parquet(segmented["out"] / "segger_transcripts.parquet")
    raw = pd.read_parquet(lung_copy / "transcripts.parquet")
    assert list(df.columns) == list(raw.columns) + list(SEGGER_COLUMNS)
    for tidy_name in (S.X, S.Y, S.GENE, S.NUCLEAR):  # no renamed copies of the vendor's columns
        assert tidy_name not in df.columns
    assert set(df[S.ASSIGNMENT].astype(str).unique()) <= set(S.ASSIGNMENT_KINDS)
    assert df[S.SCORE].between(0, 1).all()
    assert (df[S.SEGGER_CELL_ID] != S.UNASSIGNED).mean() > 0.5
    # the vendor's rows, unchanged, for the transcripts that passed the filters
    by_id = raw.set_index("transcript_id")
    kept = by_id.loc[df["transcript_id"]].reset_index()
    pd.testing.assert_frame_equal(df[list(raw.columns)], kept[list(raw.columns)])
    back = read_transcripts_output(segmented["out"] / "segger_transcripts.parquet")
    for col in (S.SEGGER_CELL_ID, S.SCORE, S.ASSIGNMENT, S.TX_ID, S.X, S.Y, S.GENE):
        assert col in back.columns
    assert np.allclose(back[S.X], df["x_location"]) and (back[S.GENE] == df["feature_name"].astype(str)).all()
    assert set(back[S.TX_ID]) <= set(raw["transcript_id"].astype("int64"))


@pytest.mark.slow
def test_segment_cells_and_boundaries(segmented):
    import anndata

    out = segmented["out"]
    adata = anndata.read_h5ad(out / "segger_cells.h5ad")
    assert adata.n_obs > 50 and adata.n_vars > 50
    df = pd.read_parquet(out / "segger_transcripts.parquet")
    cells = set(df.loc[df[S.SEGGER_CELL_ID] != S.UNASSIGNED, S.SEGGER_CELL_ID].astype(str))
    assert set(adata.obs_names.astype(str)) <= cells
    bounds = pd.read_parquet(out / "segger_boundaries.parquet")
    assert len(bounds) > 0


@pytest.mark.slow
def test_segment_run_json(segmented, lung_copy):
    run = json.loads((segmented["out"] / "segger_run.json").read_text())
    assert {"read", "graph", "train", "predict", "export"} <= set(run["timings"])
    assert all(v >= 0 for v in run["timings"].values())
    params = run["parameters"]
    assert params["train"]["epochs"] == 2 and params["train"]["hidden_channels"] == 16
    assert params["graph"]["k_tx"] == 5
    # input checksums: the files that were read (transcripts, nucleus polygons), each with its sha256
    # and hashing time; not every file of the input folder (real bundles are tens of GB)
    recorded = {Path(i["path"]).name: i["sha256"] for i in run["inputs"]}
    assert recorded == {p: _sha(lung_copy / p) for p in ("transcripts.parquet", "nucleus_boundaries.parquet")}
    assert all(i["hash_seconds"] >= 0 for i in run["inputs"])
    assert len(run["extra"]["training_history"]) == 2


@pytest.mark.slow
def test_segment_leaves_inputs_untouched(segmented):
    assert segmented["inputs_after"] == segmented["inputs_before"]


@pytest.mark.slow
def test_segment_qc_json_and_checkpoint(segmented):
    from segger.training import load_checkpoint

    qc = json.loads((segmented["out"] / "qc.json").read_text())
    assert isinstance(qc, dict) and qc
    model, config, vocab, params, payload = load_checkpoint(segmented["out"] / "model" / "best.pt")
    assert config.hidden_channels == 16 and config.heads == 2
    assert len(vocab) > 100


@pytest.mark.slow
def test_qc_command(segmented, capsys, tmp_path):
    out = segmented["out"]
    rc, stdout, stderr = _call(["qc", out], capsys)
    assert rc == 0 and stderr == ""
    assert "fraction assigned" in stdout
    assert json.loads((out / "qc.json").read_text())
    other = tmp_path / "elsewhere.json"
    rc, _, _ = _call(["qc", out, "--json", other], capsys)
    assert rc == 0 and json.loads(other.read_text())


def test_qc_on_a_folder_without_outputs(capsys, tmp_path):
    rc, stdout, stderr = _call(["qc", tmp_path], capsys)
    assert rc == 2
    assert len(stderr.strip().splitlines()) == 1 and "segger_transcripts.parquet" in stderr


@pytest.mark.slow
def test_predict_with_checkpoint(segmented, lung_copy, capsys, tmp_path, tree_sha256):
    ckpt = segmented["out"] / "model" / "best.pt"
    out2 = tmp_path / "pred"
    before = tree_sha256(segmented["out"])
    rc, stdout, stderr = _call(["predict", lung_copy, "--checkpoint", ckpt, "-o", out2, "--quiet", "--device", "cpu"],
                               capsys)
    assert rc == 0, stderr
    assert stderr == ""
    for name in ("segger_transcripts.parquet", "segger_cells.h5ad", "segger_boundaries.parquet", "segger_run.json",
                 "qc.json"):
        assert (out2 / name).is_file(), name
    assert not (out2 / "model").exists()  # no training, no new checkpoint
    run = json.loads((out2 / "segger_run.json").read_text())
    assert run["parameters"]["checkpoint"] == str(ckpt)
    assert run["extra"]["training_history"] == []
    assert tree_sha256(segmented["out"]) == before  # the checkpoint's folder is only read
    # same graph and model weights as segment → the same assignment as segment's own prediction
    a = pd.read_parquet(segmented["out"] / "segger_transcripts.parquet")
    b = pd.read_parquet(out2 / "segger_transcripts.parquet")
    assert len(a) == len(b)
    agree = (a[S.SEGGER_CELL_ID].to_numpy() == b[S.SEGGER_CELL_ID].to_numpy()).mean()
    assert agree > 0.9  # best.pt is the best epoch, which may differ from the final weights


@pytest.mark.slow
def test_train_command(lung_copy, capsys, tmp_path):
    out = tmp_path / "train"
    rc, stdout, stderr = _call(["train", lung_copy, "-o", out, "--epochs", "1", "--quiet", "--device", "cpu", *TINY],
                               capsys)
    assert rc == 0, stderr
    assert sorted(p.name for p in (out / "model").iterdir()) == ["best.pt", "last.pt", "logs"]
    assert (out / "model" / "logs" / "metrics.csv").is_file()  # the training metrics log
    assert "trained 1 epochs" in stdout


def _predict_counts(segmented, lung_copy, capsys, out, cut):
    ckpt = segmented["out"] / "model" / "best.pt"
    rc, _, stderr = _call(["predict", lung_copy, "--checkpoint", ckpt, "-o", out, "--quiet", "--device", "cpu",
                           "--score-cut", cut, "--no-fragments"], capsys)
    assert rc == 0, stderr
    df = pd.read_parquet(out / "segger_transcripts.parquet")
    assert not (df[S.ASSIGNMENT].astype(str) == "fragment").any()
    return int(np.isin(df[S.ASSIGNMENT].astype(str), ["nucleus", "cytoplasm"]).sum())


@pytest.mark.slow
def test_score_cut_zero_assigns_most(segmented, lung_copy, capsys, tmp_path):
    assert _predict_counts(segmented, lung_copy, capsys, tmp_path / "cut0", "0.0") > 0.9 * 12_000


@pytest.mark.slow
def test_score_cut_one_assigns_exactly_the_scores_of_one(segmented, lung_copy, capsys, tmp_path):
    """assigned ⇔ score ≥ cut, also at 1.0 (a score can reach 1.0 in float32)."""
    n = _predict_counts(segmented, lung_copy, capsys, tmp_path / "cut1", "1.0")
    df = pd.read_parquet(tmp_path / "cut1" / "segger_transcripts.parquet")
    assert n == int((df[S.SCORE] >= 1.0).sum())
    assert n < 0.5 * len(df)
