"""Contracts that nothing else checks (issue 15, finding 15): the nearest-nucleus baseline, the
vocabulary refusal boundary, CLI exit codes 130 / 1 / 2, and ``segger finetune`` end to end."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import shapely

from segger import schema as S
from segger.data import TX_BD, TX_CAND


# ---------------------------------------------------------------------------------------------
# nearest_nucleus_assignment: every baseline number in the docs comes from it
def test_nearest_nucleus_assignment_is_the_nearest_outline(synthetic_graph):
    from segger.prediction.baseline import nearest_nucleus_assignment

    b = synthetic_graph
    out = nearest_nucleus_assignment(b)
    cand = b.data[TX_CAND].edge_index.numpy()
    tx, nuc = b.transcripts, b.nuclei
    d = shapely.distance(shapely.points(tx[S.X].to_numpy()[cand[0]], tx[S.Y].to_numpy()[cand[0]]),
                         nuc[S.GEOMETRY].to_numpy()[cand[1]])
    ids = nuc[S.BD_ID].astype(str).to_numpy()
    want = np.full(len(tx), S.UNASSIGNED, dtype=object)
    dist = np.full(len(tx), np.inf)
    for t, k, dd in zip(cand[0], cand[1], d):  # independent re-computation: argmin, ties to the first
        if dd < dist[t]:
            dist[t], want[t] = dd, ids[k]
    assert (want != S.UNASSIGNED).mean() > 0.9
    np.testing.assert_array_equal(out[S.SEGGER_CELL_ID].to_numpy(dtype=object), want)
    # nucleus ⇔ the nearest is the own nucleus; the table is the transcripts + result columns
    own = np.full(len(tx), -1)
    bel = b.data[TX_BD].edge_index.numpy()
    own[bel[0]] = bel[1]
    own_id = np.where(own >= 0, ids[np.maximum(own, 0)], None)
    kind = out[S.ASSIGNMENT].astype(str).to_numpy()
    np.testing.assert_array_equal(kind == "nucleus", (want != S.UNASSIGNED) & (want == own_id))
    pd.testing.assert_frame_equal(out[tx.columns], tx)
    # max_dist: farther transcripts stay unassigned
    cut = nearest_nucleus_assignment(b, max_dist=2.0)
    far = dist > 2.0
    assert far.any() and (~far).any()
    assert (cut.loc[far, S.SEGGER_CELL_ID] == S.UNASSIGNED).all()
    np.testing.assert_array_equal(cut.loc[~far, S.SEGGER_CELL_ID].to_numpy(dtype=object), want[~far])


# ---------------------------------------------------------------------------------------------
# the vocabulary rule: < 50 % known is refused, 50 % is accepted with the unknown-gene warning
@pytest.mark.parametrize("known,total,refused", [(5, 10, False), (49, 100, True), (50, 100, False),
                                                 (1, 3, True), (10, 10, False)])
def test_vocabulary_refusal_boundary(known, total, refused):
    from segger.data.vocab import GeneVocab
    from segger.errors import SeggerInputError
    from segger.workflows import MIN_VOCAB_COVERAGE, check_vocabulary

    assert MIN_VOCAB_COVERAGE == 0.5
    genes = [f"G{i}" for i in range(total)]
    vocab = GeneVocab.from_list(genes[:known])
    if refused:
        with pytest.raises(SeggerInputError, match="trained on another panel"):
            check_vocabulary(vocab, genes)
        return
    warnings = check_vocabulary(vocab, genes + genes[:1])  # repeats do not count twice
    if known == total:
        assert warnings == []
    else:
        assert warnings == [f"{total - known} genes are not in the checkpoint's vocabulary and use the "
                            "unknown-gene token"]


# ---------------------------------------------------------------------------------------------
# exit codes: 2 input error, 130 Ctrl-C, 1 internal error
@pytest.mark.parametrize("raise_, code, message", [
    (KeyboardInterrupt, 130, "interrupted"),
    (RuntimeError("boom"), 1, "internal error"),
])
def test_cli_exit_codes(raise_, code, message, tmp_path, monkeypatch, capsys, pkg_lung_dir):
    import segger.cli.main as M

    def boom(a, bar):
        raise raise_

    monkeypatch.setitem(M.COMMANDS, "segment", boom)
    rc = M.main(["segment", str(pkg_lung_dir), "--output", str(tmp_path / "o"), "--quiet"])
    assert rc == code
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


@pytest.mark.parametrize("command", ["train", "finetune"])
def test_train_and_finetune_bad_input_exit_2(command, tmp_path, capsys):
    from segger.cli.main import main

    missing = tmp_path / "nope"
    args = [command, str(missing), "--output", str(tmp_path / "o"), "--quiet"]
    if command == "finetune":
        ck = tmp_path / "m.pt"
        ck.write_bytes(b"not a checkpoint")
        corr = tmp_path / "c.csv"
        corr.write_text("transcript_id,cell_id\n")
        args += ["--checkpoint", str(ck), "--corrections", str(corr)]
    rc = main(args)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.startswith("segger: error:") and err.count("\n") == 1
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------------------------------------
# segger finetune, end to end
@pytest.mark.slow
def test_cli_finetune_end_to_end(tmp_path, pkg_breast_dir, tiny_train_config, core_test_env, capsys):
    from segger.cli.main import main
    from segger.corrections import CorrectionStore
    from segger.training import read_checkpoint

    run = tmp_path / "run"
    rc = main(["segment", str(pkg_breast_dir), "--output", str(run), "--epochs", "2", "--hidden-channels", "16",
               "--out-channels", "16", "--heads", "2", "--num-mid-layers", "1", "--device", "cpu", "--quiet"])
    assert rc == 0, capsys.readouterr().err
    res = pd.read_parquet(run / "segger_transcripts.parquet")
    moved = res[res[S.SEGGER_CELL_ID] != S.UNASSIGNED].head(10)
    other = res.loc[~res[S.SEGGER_CELL_ID].isin(moved[S.SEGGER_CELL_ID]) & (res[S.SEGGER_CELL_ID] != S.UNASSIGNED),
                    S.SEGGER_CELL_ID].iloc[0]
    store = CorrectionStore()
    store.assign(moved[S.TX_ID].to_numpy(), moved[S.SEGGER_CELL_ID].to_numpy(), [other] * len(moved))
    corr = store.export(tmp_path / "corrections.parquet")
    out = tmp_path / "ft"
    ck = run / "model" / "best.pt"
    rc = main(["finetune", str(pkg_breast_dir), "--checkpoint", str(ck), "--corrections", str(corr),
               "--output", str(out), "--steps", "3", "--device", "cpu", "--quiet"])
    err = capsys.readouterr()
    assert rc == 0, err.err
    assert "fine-tuned on 10 corrections" in err.out
    ft = out / "model" / "finetuned.pt"
    assert ft.is_file() and (out / "segger_run.json").is_file()
    after = pd.read_parquet(out / "segger_transcripts.parquet").set_index(S.TX_ID)
    assert len(after) == len(res)
    # the corrections are in the result, and the fine-tuned weights differ from the checkpoint's
    assert (after.loc[moved[S.TX_ID], S.SEGGER_CELL_ID] == other).all()
    a, b = read_checkpoint(ck)["state_dict"], read_checkpoint(ft)["state_dict"]
    assert any(not np.array_equal(np.asarray(a[k]), np.asarray(b[k])) for k in a)

    # segment --checkpoint into the folder that holds the older training run: the old model files and logs
    # go with the old run (publish moves them aside), so nothing beside the new run JSON claims to be its model
    import json
    import shutil

    reuse = tmp_path / "reuse.pt"
    shutil.copy(ck, reuse)
    assert (run / "model" / "best.pt").is_file() and (run / "model" / "logs" / "metrics.csv").is_file()
    rc = main(["segment", str(pkg_breast_dir), "--output", str(run), "--checkpoint", str(reuse), "--device", "cpu",
               "--quiet"])
    assert rc == 0, capsys.readouterr().err
    assert not (run / "model").exists(), sorted(p.name for p in (run / "model").rglob("*"))
    rec = json.loads((run / "segger_run.json").read_text())
    assert rec["parameters"]["checkpoint"] == str(reuse) and rec["extra"]["training_history"] in (None, [], {})
    assert not [p for p in run.iterdir() if p.name.startswith(".")]
