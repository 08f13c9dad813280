"""Reliability round 2 (issue 14): one test per attack that was not handled.

Validate before writing, one lock per output folder, no silent merges or useless models, bounded
checkpoints. Small data (the corpus crop, tiny models); kill / race tests are bounded in seconds.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from _reliability_corpus import NUC, TINY_ARGS, TX
from segger.cli.main import main
from segger.utils.outdir import LOCK_NAME, OutputBusyError, OutputLock, lock_is_stale, read_lock
from _cli_helpers import call_cli as _run

CPU = ["--device", "cpu", "--quiet"]


def _cli() -> list[str]:
    exe = Path(sys.executable).with_name("segger")
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "segger.cli.main"]




def _one_error(rc, err, *fragments):
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2, err
    assert len(lines) == 1 and lines[0].startswith("segger: error:"), err
    assert "Traceback" not in err
    for f in fragments:
        assert f.lower() in lines[0].lower(), (f, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def prev(tmp_path_factory, corpus_base):
    """A complete previous output (tiny model) of the corpus crop."""
    out = tmp_path_factory.mktemp("prev") / "out"
    assert main(["segment", str(corpus_base), "-o", str(out), *TINY_ARGS]) == 0
    return out


@pytest.fixture()
def prev_copy(prev, tmp_path):
    dst = tmp_path / "prev"
    shutil.copytree(prev, dst)
    return dst


@pytest.fixture(scope="module")
def corrections_csv(prev, tmp_path_factory):
    res = pd.read_parquet(prev / "segger_transcripts.parquet")
    cells = res.loc[res["segger_cell_id"] != "UNASSIGNED", "segger_cell_id"].unique()
    rows = res[res["segger_cell_id"] == cells[0]].head(15)
    f = tmp_path_factory.mktemp("corr") / "corrections.csv"
    pd.DataFrame({"transcript_id": rows["transcript_id"], "previous_cell": rows["segger_cell_id"],
                  "new_cell": cells[1]}).to_csv(f, index=False)
    return f


# ============================================================================================
# High 1: finetune validates before writing and writes only through staging
# ============================================================================================
def test_finetune_into_its_input_is_refused(corpus_base, prev, corrections_csv, capsys, tree_sha256):
    before = tree_sha256(corpus_base)
    rc, _, err = _run(["finetune", corpus_base, "--checkpoint", prev / "model" / "best.pt", "--corrections",
                       corrections_csv, "-o", corpus_base, *CPU], capsys)
    _one_error(rc, err, "input folder", "--output")
    assert tree_sha256(corpus_base) == before  # no model/finetuned.pt in the input


def test_finetune_bad_option_leaves_previous_output_untouched(corpus_base, prev_copy, corrections_csv, capsys,
                                                              tree_sha256, tmp_path):
    ckpt = tmp_path / "best.pt"
    shutil.copy(prev_copy / "model" / "best.pt", ckpt)
    before = tree_sha256(prev_copy)
    rc, _, err = _run(["finetune", corpus_base, "--checkpoint", ckpt, "--corrections", corrections_csv,
                       "-o", prev_copy, "--score-cut", "5", *CPU], capsys)
    _one_error(rc, err, "score_cut")
    assert tree_sha256(prev_copy) == before


def test_finetune_killed_before_publishing_adds_nothing(corpus_base, prev_copy, corrections_csv, tree_sha256,
                                                       tmp_path):
    """SIGKILL right after the fine-tuned model is saved: it lives in staging, the folder is unchanged."""
    ckpt = tmp_path / "best.pt"
    shutil.copy(prev_copy / "model" / "best.pt", ckpt)
    before = tree_sha256(prev_copy)
    code = textwrap.dedent(f"""
        import os, signal, sys
        import segger.training as T
        real = T.save_checkpoint
        def save(*a, **k):
            p = real(*a, **k)
            os.kill(os.getpid(), signal.SIGKILL)
        T.save_checkpoint = save
        from segger.cli.main import main
        sys.exit(main(["finetune", {str(corpus_base)!r}, "--checkpoint", {str(ckpt)!r}, "--corrections",
                       {str(corrections_csv)!r}, "-o", {str(prev_copy)!r}, "--steps", "2", "--device", "cpu",
                       "--quiet"]))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    now = {k: v for k, v in tree_sha256(prev_copy).items() if not k.startswith(".")}
    assert now == before, "the killed fine-tune changed the previous output"
    assert not (prev_copy / "model" / "finetuned.pt").exists()


def test_finetune_publishes_model_with_the_output(corpus_base, prev, corrections_csv, tmp_path, capsys):
    out = tmp_path / "ft"
    rc, _, err = _run(["finetune", corpus_base, "--checkpoint", prev / "model" / "best.pt", "--corrections",
                       corrections_csv, "-o", out, "--steps", "2", *CPU], capsys)
    assert rc == 0, err
    assert (out / "model" / "finetuned.pt").is_file() and (out / "segger_run.json").is_file()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


# ============================================================================================
# Medium 2: outputs never equal to, inside, or holding an input file or folder
# ============================================================================================
@pytest.mark.parametrize("case", ["output-holds-input-file", "input-file-folder", "train-into-input",
                                  "ooc-into-input", "labels-inside-output"])
def test_output_never_holds_or_is_inside_an_input(case, corpus_base, prev, capsys, tree_sha256, tmp_path):
    src = tmp_path / "in"
    shutil.copytree(corpus_base, src)
    (src / "labels.npy").write_bytes(b"")
    before = tree_sha256(src)
    ckpt = prev / "model" / "best.pt"
    argv = {
        "output-holds-input-file": ["segment", src / TX, "-o", src, *TINY_ARGS],
        "input-file-folder": ["segment", src / TX, "-o", src, "--checkpoint", ckpt, *CPU],
        "train-into-input": ["train", src, "-o", src / "model_out", *TINY_ARGS],
        "ooc-into-input": ["predict", src / TX, "--checkpoint", ckpt, "-o", src, "--out-of-core",
                           "--scheduler", "synchronous", *CPU],
        "labels-inside-output": ["segment", corpus_base, "-o", src, "--nuclei-labels", src / "labels.npy",
                                 "--pixel-size", "0.2", *TINY_ARGS],
    }[case]
    rc, _, err = _run(argv, capsys)
    _one_error(rc, err, "--output")
    assert tree_sha256(src) == before


def test_segment_over_its_own_previous_output_is_refused(prev_copy, capsys, tree_sha256):
    before = tree_sha256(prev_copy)
    rc, _, err = _run(["segment", prev_copy / "segger_transcripts.parquet", "-o", prev_copy, *TINY_ARGS], capsys)
    _one_error(rc, err, "holds the input")
    assert tree_sha256(prev_copy) == before  # the input (and the backup) are not replaced


def test_empty_output_path_is_refused(corpus_base, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc, _, err = _run(["segment", corpus_base, "-o", "", *TINY_ARGS], capsys)
    _one_error(rc, err, "--output is empty")
    assert list(tmp_path.iterdir()) == []


# ============================================================================================
# Medium 3: out-of-core predict goes through staging; its leftovers are swept
# ============================================================================================
def test_out_of_core_over_previous_output_is_not_a_mixture(corpus_base, prev, prev_copy, capsys, tmp_path):
    # leftovers of a SIGKILLed earlier run: bucket folders and a half-written temp file
    (prev_copy / ".segger-ooc-abc123").mkdir()
    (prev_copy / ".segger_transcripts.parquet.tmp-99-ab").write_bytes(b"half")
    work = tmp_path / "work"
    (work / ".segger-ooc-dead").mkdir(parents=True)  # no owner.json, old: stale
    old = time.time() - 3600
    os.utime(work / ".segger-ooc-dead", (old, old))
    rc, out, err = _run(["predict", corpus_base, "--checkpoint", prev / "model" / "best.pt", "-o", prev_copy,
                         "--out-of-core", "--scheduler", "synchronous", "--work-dir", work, *CPU], capsys)
    assert rc == 0, err
    names = sorted(p.name for p in prev_copy.rglob("*"))
    # every output of an in-memory run, all of this run (no old model files)
    assert names == sorted(["qc.json", "segger_boundaries.parquet", "segger_cells.h5ad", "segger_run.json",
                            "segger_transcripts.parquet"]), names
    assert list(work.iterdir()) == []
    run = json.loads((prev_copy / "segger_run.json").read_text())
    assert run["parameters"]["mode"] == "out-of-core"


# ============================================================================================
# Medium 4: one lock per output folder, heartbeat-based stale rule
# ============================================================================================
def test_second_run_on_a_locked_folder_gets_a_one_line_error(corpus_base, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    holder = OutputLock(out, "segger segment").acquire()
    try:
        rc, _, err = _run(["segment", corpus_base, "-o", out, *TINY_ARGS], capsys)
        line = _one_error(rc, err, "in use by another segger run", "PID", "host")
        assert str(os.getpid()) in line
    finally:
        holder.release()
    assert not (out / LOCK_NAME).exists()


def _fake_lock(out: Path, **data) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    p = out / LOCK_NAME
    p.write_text(json.dumps({"token": "x", "command": "segger segment", "started_utc": "then", **data}))
    return p


def test_lock_of_another_node_is_kept_while_its_heartbeat_is_fresh(tmp_path, monkeypatch):
    monkeypatch.setenv("SEGGER_LOCK_HEARTBEAT_S", "0.05")
    monkeypatch.setenv("SEGGER_LOCK_STALE_S", "1")
    # another host (or PID namespace): PID 1 "is dead" here, but that proves nothing
    p = _fake_lock(tmp_path / "o", host="node-b", pid=999_999, pid_namespace="pid:[1]", boot_id="b")
    with pytest.raises(OutputBusyError, match="node-b"):
        OutputLock(tmp_path / "o").acquire()
    assert p.exists()
    old = time.time() - 5  # no heartbeat for longer than the stale limit: taken over
    os.utime(p, (old, old))
    lock = OutputLock(tmp_path / "o").acquire()
    assert read_lock(p).data["token"] == lock.token
    lock.release()


def test_a_stale_lock_with_our_own_pid_is_taken_over(tmp_path):
    """Containers repeat PIDs: a lock naming this PID that this process does not hold is stale."""
    from segger.utils.outdir import _identity

    me = _identity()
    _fake_lock(tmp_path / "o", **{**me, "token": "from-a-previous-container"})
    assert lock_is_stale(read_lock(tmp_path / "o" / LOCK_NAME))
    OutputLock(tmp_path / "o").acquire().release()


def test_heartbeat_keeps_a_long_run_alive(tmp_path, monkeypatch):
    monkeypatch.setenv("SEGGER_LOCK_HEARTBEAT_S", "0.05")
    monkeypatch.setenv("SEGGER_LOCK_STALE_S", "0.3")
    (tmp_path / "o").mkdir()
    lock = OutputLock(tmp_path / "o").acquire()
    try:
        time.sleep(1.0)  # > 3 stale periods
        info = read_lock(lock.path)
        assert info.age < 0.3 and not lock_is_stale(info)
        with pytest.raises(OutputBusyError):
            OutputLock(tmp_path / "o").acquire()
    finally:
        lock.release()


RACE = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from segger.utils.outdir import OutputBusyError, output_session
    out, tag, start = Path(sys.argv[1]), sys.argv[2], float(sys.argv[3])
    while time.time() < start:
        time.sleep(0.001)
    try:
        with output_session(out) as s:
            for name in ("segger_transcripts.parquet", "segger_boundaries.parquet", "qc.json", "segger_run.json"):
                (s.stage / name).write_text(tag)
            time.sleep(0.05)
            s.publish()
    except OutputBusyError as e:
        print("busy", e)
        sys.exit(2)
""")


def test_racing_publishes_one_wins_the_other_is_told(tmp_path):
    """Two runs publishing into one folder at the same moment: never a mixture, the loser exits 2."""
    for trial in range(6):
        out = tmp_path / f"t{trial}"
        start = time.time() + 1.0
        procs = [subprocess.Popen([sys.executable, "-c", RACE, str(out), tag, str(start)], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for tag in ("A", "B")]
        rcs = [p.wait(timeout=30) for p in procs]
        errs = [p.stderr.read() for p in procs]
        for p in procs:
            p.stdout.close()
            p.stderr.close()
        assert sorted(rcs) in ([0, 0], [0, 2]), (rcs, errs)  # 0,0: one finished before the other started
        assert all("Traceback" not in e for e in errs), errs
        texts = {f.read_text() for f in out.iterdir() if not f.name.startswith(".")}
        assert len(texts) == 1, f"mixture of two runs: {texts}"
        assert not [p.name for p in out.iterdir() if p.name.startswith(".")]


# ============================================================================================
# Medium 5 (io half): CosMx without fov; a nucleus named UNASSIGNED
# ============================================================================================
def test_cosmx_without_fov_is_refused(tmp_path, capsys):
    n = 300
    rng = np.random.default_rng(0)
    f = tmp_path / "cosmx" / "s_tx_file.csv"
    f.parent.mkdir()
    pd.DataFrame({"x_global_px": rng.uniform(0, 5000, n), "y_global_px": rng.uniform(0, 5000, n),
                  "z": 0, "target": rng.choice(["A", "B", "C"], n), "cell_ID": rng.integers(0, 4, n),
                  "CellComp": "Nuclear"}).to_csv(f, index=False)
    rc, _, err = _run(["segment", f, "--platform", "cosmx", "-o", tmp_path / "out", *TINY_ARGS], capsys)
    _one_error(rc, err, str(f), "'cell_ID'", "no 'fov' column", "merged")
    assert not (tmp_path / "out").exists()


def test_a_nucleus_named_unassigned_is_kept_with_a_warning(corpus_base, tmp_path):
    from segger.io import read_sample

    src = tmp_path / "in"
    shutil.copytree(corpus_base, src)
    nuc = pd.read_parquet(src / NUC)
    first = nuc["cell_id"].iloc[0]
    nuc["cell_id"] = nuc["cell_id"].astype(object)
    nuc.loc[nuc["cell_id"] == first, "cell_id"] = "UNASSIGNED"
    nuc.to_parquet(src / NUC, index=False)
    s = read_sample(src)
    assert "UNASSIGNED_nucleus" in set(s.nuclei["bd_id"])
    assert any("named 'UNASSIGNED'" in w for w in s.warnings), s.warnings
    assert s.nuclei["bd_id"].nunique() == pd.read_parquet(corpus_base / NUC)["cell_id"].nunique()


# ============================================================================================
# Medium 6: qc and export honour the completeness marker
# ============================================================================================
@pytest.mark.parametrize("command", ["qc", "export"])
def test_qc_and_export_refuse_an_incomplete_output(command, prev_copy, capsys, tree_sha256, tmp_path):
    (prev_copy / "segger_run.json").unlink()  # what a kill during publishing leaves
    before = tree_sha256(prev_copy)
    argv = ["qc", prev_copy] if command == "qc" else ["export", prev_copy, "--to", "anndata", "-o",
                                                     tmp_path / "cells.h5ad"]
    rc, _, err = _run(argv, capsys)
    _one_error(rc, err, "incomplete segger output", "segger_run.json")
    assert tree_sha256(prev_copy) == before  # qc.json not overwritten
    assert not (tmp_path / "cells.h5ad").exists()


def test_export_into_the_result_folder_is_refused(prev_copy, capsys, tree_sha256):
    before = tree_sha256(prev_copy)
    rc, _, err = _run(["export", prev_copy, "--to", "xenium-ranger", "-o", prev_copy / "xr"], capsys)
    _one_error(rc, err, "inside the result folder")
    assert tree_sha256(prev_copy) == before


# ============================================================================================
# Low-medium 7: useless models are refused (or a warning when asked for explicitly)
# ============================================================================================
def test_untrained_model_is_refused_unless_asked_for(corpus_base, tmp_path, capsys):
    args = [a if a != "1" else "0" for a in TINY_ARGS]  # --epochs 0
    rc, _, err = _run(["segment", corpus_base, "-o", tmp_path / "a", *args], capsys)
    _one_error(rc, err, "--epochs 0", "untrained")
    assert not (tmp_path / "a").exists()
    rc, _, err = _run(["segment", corpus_base, "-o", tmp_path / "b", *args, "--allow-weak-model"], capsys)
    assert rc == 0, err
    assert "warning:" in err and "untrained" in err


def test_checkpoint_with_nan_weights_is_refused(prev, corpus_base, tmp_path, capsys):
    payload = torch.load(prev / "model" / "best.pt", weights_only=True)
    k = next(k for k, v in payload["state_dict"].items() if v.is_floating_point() and v.numel())
    payload["state_dict"][k] = torch.full_like(payload["state_dict"][k], float("nan"))
    bad = tmp_path / "nan.pt"
    torch.save(payload, bad)
    for extra in ([], ["--allow-weak-model"]):  # NaN weights are refused even when asked for
        rc, _, err = _run(["predict", corpus_base, "--checkpoint", bad, "-o", tmp_path / "o", *CPU, *extra], capsys)
        _one_error(rc, err, "NaN", k)
    assert not (tmp_path / "o").exists()


def test_diverged_and_at_chance_training_is_refused():
    from segger.training.health import ModelHealthError, check_model_health

    lin = torch.nn.Linear(2, 2)
    with pytest.raises(ModelHealthError, match="diverged"):
        check_model_health(lin, history=[{"loss": 0.7, "val_auroc": 0.6}, {"loss": 2e6, "val_auroc": 0.6}])
    with pytest.raises(ModelHealthError, match="at chance"):
        check_model_health(lin, history=[{"loss": 0.7, "val_auroc": 0.5}, {"loss": 0.69, "val_auroc": 0.5}])
    warns = check_model_health(lin, history=[{"loss": float("nan"), "val_auroc": 0.5}], allow=True)
    assert any("diverged" in w for w in warns) and any("chance" in w for w in warns)
    assert check_model_health(lin, history=[{"loss": 0.7, "val_auroc": 0.6}, {"loss": 0.4, "val_auroc": 0.8}]) == []


@pytest.mark.slow
def test_diverged_run_from_the_cli_exits_2(corpus_base, tmp_path, capsys):
    rc, _, err = _run(["segment", corpus_base, "-o", tmp_path / "o", *TINY_ARGS, "--learning-rate", "0.99"], capsys)
    if rc == 0:  # this tiny run happened to survive lr 0.99: the health check must then have found nothing
        pytest.fail(f"lr 0.99 gave a healthy model? {err}")
    _one_error(rc, err, "the trained model")
    assert not (tmp_path / "o").exists()


# ============================================================================================
# Low-medium 8: checkpoint memory bombs
# ============================================================================================
def _edited(prev, tmp_path, name, fn):
    payload = torch.load(prev / "model" / "best.pt", weights_only=True)
    fn(payload)
    p = tmp_path / name
    torch.save(payload, p)
    return p


def test_checkpoint_with_huge_declared_sizes_is_refused_before_allocation(prev, tmp_path):
    from segger.errors import CheckpointError
    from segger.training.checkpoint import read_checkpoint

    p = _edited(prev, tmp_path, "huge.pt", lambda d: d["model_config"].update(num_tx_tokens=2_000_000_000))
    t = time.perf_counter()
    with pytest.raises(CheckpointError, match="num_tx_tokens"):
        read_checkpoint(p)
    assert time.perf_counter() - t < 5


def test_deflate_bomb_checkpoint_is_refused_from_the_zip_directory(prev, tmp_path):
    from segger.errors import CheckpointError
    from segger.training.checkpoint import read_checkpoint

    src = prev / "model" / "best.pt"
    bomb = tmp_path / "bomb.pt"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(bomb, "w") as zout:
        for info in zin.infolist():
            zout.writestr(info, zin.read(info))
        prefix = zin.infolist()[0].filename.split("/")[0]
        zout.writestr(f"{prefix}/data/99", b"\0" * (64 << 20), compress_type=zipfile.ZIP_DEFLATED)
    assert bomb.stat().st_size < 2 << 20
    with pytest.raises(CheckpointError, match="compressed"):
        read_checkpoint(bomb)


@pytest.mark.parametrize("edit,fragment", [
    (lambda d: d.update(format_version="abc"), "format_version"),
    (lambda d: d.pop("vocab"), "'vocab'"),
    (lambda d: d["state_dict"].update(extra=torch.zeros(50_000_000, dtype=torch.uint8)), "allows at most"),
], ids=["format-version-abc", "no-vocab", "tensor-larger-than-config"])
def test_damaged_checkpoint_is_a_one_line_error(edit, fragment, prev, corpus_base, tmp_path, capsys):
    p = _edited(prev, tmp_path, "bad.pt", edit)
    rc, _, err = _run(["predict", corpus_base, "--checkpoint", p, "-o", tmp_path / "o", *CPU], capsys)
    _one_error(rc, err, fragment, str(p))


def test_checkpoint_bytes_are_reproducible(prev, tmp_path):
    from segger.training import load_checkpoint, save_checkpoint

    model, cfg, vocab, params, _ = load_checkpoint(prev / "model" / "best.pt")
    a = save_checkpoint(tmp_path / "a" / "m.pt", model, cfg, vocab, params)
    b = save_checkpoint(tmp_path / "b" / "m.pt", model, cfg, vocab, params)
    assert a.read_bytes() == b.read_bytes()
    assert zipfile.ZipFile(a).namelist()[0].startswith("m/")  # not the temporary file's name


# ============================================================================================
# Low-medium 9: corrections store
# ============================================================================================
def test_two_stores_autosaving_one_sidecar_lose_no_edit(tmp_path):
    from segger.corrections import CorrectionStore

    f = tmp_path / "c.csv"
    a, b = CorrectionStore(f), CorrectionStore(f)
    for i in range(5):
        a.assign([i], ["x"], "a")
        b.assign([100 + i], ["y"], "b")
    got = set(CorrectionStore.load(f).effective()["transcript_id"])
    assert got == set(range(5)) | set(range(100, 105)), got
    assert b.undo()  # an undo is not resurrected by the other store's next save
    a.assign([9], ["x"], "a")
    got = set(CorrectionStore.load(f).effective()["transcript_id"])
    assert 104 not in got and {9, 0, 100} <= got


def test_large_corrections_csv_without_group_loads_fast(tmp_path):
    from segger.corrections import CorrectionStore

    n = 100_000
    f = tmp_path / "big.csv"
    pd.DataFrame({"transcript_id": np.arange(n), "previous_cell": "a", "new_cell": "b"}).to_csv(f, index=False)
    t = time.perf_counter()
    s = CorrectionStore.load(f, autosave=False)
    assert len(s) == n
    assert time.perf_counter() - t < 3.0


def test_corrections_csv_export_is_formula_safe(tmp_path):
    from segger.corrections import CorrectionStore

    s = CorrectionStore(None, autosave=False)
    s.assign([1, 2], ["a", "a"], '=HYPERLINK("http://evil","x")')
    s.assign([3], ["@SUM(1)"], "-2+3")
    f = s.export(tmp_path / "c.csv")
    text = f.read_text()
    for cell in text.replace("\n", ",").split(","):
        assert not cell.lstrip('"').startswith(("=", "@", "+", "-")), cell
    back = CorrectionStore.load(f, autosave=False).effective()
    assert set(back["new_cell"]) == {'=HYPERLINK("http://evil","x")', "-2+3"}


@pytest.mark.parametrize("group", ["abc", "1.5"])
def test_corrections_with_odd_group_values_load(group, tmp_path):
    from segger.corrections import CorrectionStore

    f = tmp_path / "c.csv"
    pd.DataFrame({"transcript_id": [1, 2], "previous_cell": "a", "new_cell": "b", "group": group}).to_csv(f, index=False)
    s = CorrectionStore.load(f, autosave=False)
    assert len(s) == 2 and s.undo() and len(s) == 0


# ============================================================================================
# Low 10: internal errors become one-line exit-2 errors
# ============================================================================================
@pytest.mark.parametrize("argv,fragment", [
    (["--seed", "-5"], "--seed"),
    (["--seed", str(2**70)], "--seed"),
    (["--hidden-channels", "200000"], "--hidden-channels"),
], ids=["seed-negative", "seed-2**70", "hidden-200000"])
def test_out_of_range_options_are_one_line_errors(argv, fragment, corpus_base, tmp_path, capsys):
    rc, _, err = _run(["segment", corpus_base, "-o", tmp_path / "o", *TINY_ARGS, *argv], capsys)
    _one_error(rc, err, fragment)
    assert not (tmp_path / "o").exists()


def test_full_disk_is_a_one_line_error(corpus_base, tmp_path, capsys, monkeypatch):
    import errno

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "o" / "x.parquet"))

    monkeypatch.setattr("segger.export.write_boundaries", full)
    rc, _, err = _run(["segment", corpus_base, "-o", tmp_path / "o", *TINY_ARGS], capsys)
    _one_error(rc, err, "No space left on device", "x.parquet")
    assert not (tmp_path / "o").exists()


# ============================================================================================
# Low 11: messages that point at the real fix
# ============================================================================================
def test_duplicate_column_is_named(corpus_base, tmp_path, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq

    src = tmp_path / "in"
    shutil.copytree(corpus_base, src)
    t = pq.read_table(src / TX)
    t = pa.Table.from_arrays(t.columns + [t.column("x_location")], names=t.column_names + ["x_location"])
    pq.write_table(t, src / TX)
    rc, _, err = _run(["segment", src, "-o", tmp_path / "o", *TINY_ARGS], capsys)
    line = _one_error(rc, err, "'x_location' twice")
    assert "truncated" not in line


def test_all_garbage_wkb_blames_the_geometry(corpus_base, tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(corpus_base / TX, src / TX)
    pd.DataFrame({"cell_id": ["a", "b", "c"], "geometry": [b"\x01junk", b"zzzz", b"\x00\x00\x00"]}).to_parquet(
        src / NUC, index=False)
    rc, _, err = _run(["segment", src, "-o", tmp_path / "o", "--nuclei", "polygons", *TINY_ARGS], capsys)
    line = _one_error(rc, err, "not valid WKB/WKT", NUC)
    assert "used as the nuclei" not in line and "no area" not in line


def test_labels_off_the_data_point_at_the_offset(corpus_base, tmp_path, capsys):
    lab = np.zeros((200, 200), dtype=np.int32)
    lab[50:80, 50:80] = 1
    lab[120:150, 100:130] = 2
    f = tmp_path / "labels.npy"
    np.save(f, lab)
    rc, _, err = _run(["segment", corpus_base, "-o", tmp_path / "o", "--nuclei-labels", f, "--pixel-size", "0.5",
                       "--labels-offset", "-90000", "-90000", *TINY_ARGS], capsys)
    line = _one_error(rc, err, "--labels-offset")
    assert "give --nuclei-labels" not in line


# ============================================================================================
# Low 12: SIGTERM; hashing what is read
# ============================================================================================
def test_sigterm_cleans_up_with_a_message(corpus_base, prev, tmp_path, tree_sha256):
    out = tmp_path / "o"
    shutil.copytree(prev, out)
    before = tree_sha256(out)
    proc = subprocess.Popen([*_cli(), "train", str(corpus_base), "-o", str(tmp_path / "t"), "--epochs", "500",
                             *TINY_ARGS[2:]], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    proc2 = subprocess.Popen([*_cli(), "segment", str(corpus_base), "-o", str(out), "--epochs", "500",
                              *TINY_ARGS[2:]], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not list(out.glob(".segger-staging-*")) or not (tmp_path / "t" / LOCK_NAME).exists():
            assert proc.poll() is None and proc2.poll() is None, (proc.stderr.read(), proc2.stderr.read())
            assert time.monotonic() < deadline, "the runs never started writing"
            time.sleep(0.05)
        time.sleep(0.5)
    finally:
        for p in (proc, proc2):
            p.send_signal(signal.SIGTERM)
    errs = []
    for p in (proc, proc2):
        _, e = p.communicate(timeout=60)
        errs.append(e)
        assert p.returncode == 128 + signal.SIGTERM, e
        assert "terminated (SIGTERM)" in e and "Traceback" not in e, e
    assert tree_sha256(out) == before  # staging removed, the previous output untouched, lock released
    assert not (tmp_path / "t" / LOCK_NAME).exists()
