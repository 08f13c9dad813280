"""Crash-safe outputs and checkpoints (issue 6, item 2), and determinism across processes (item 4).

What :func:`segger.pipeline.publish` promises, and what is tested here: a run killed at any moment
leaves the output folder holding

* the previous complete output, byte-identical (a hidden ``.segger-staging-*`` folder of the
  killed run may remain; the next run removes it), or
* the new complete output (killed after the last move), or
* an output **without** ``segger_run.json`` plus the ``.segger-previous-*`` backup, which holds
  every previous file the folder no longer has — never a mixture that has a ``segger_run.json``.

The publish step is killed after each of its file moves (a forked child that SIGKILLs itself);
whole ``segger segment`` runs are SIGKILLed at seeded random moments; a killed ``segger train``
keeps its last complete ``last.pt`` and ``--resume`` continues from it.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from _reliability_corpus import TINY_ARGS
from segger.pipeline import BACKUP_PREFIX, OUTPUT_FILES, STAGING_PREFIX
from segger.utils.outdir import LOCK_NAME

MODEL_FILES = ("model/best.pt", "model/last.pt")
ALL_FILES = MODEL_FILES + OUTPUT_FILES


def _cli() -> list[str]:
    exe = Path(sys.executable).with_name("segger")
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "segger.cli.main"]


def visible(folder: Path, tree_sha256) -> dict[str, str]:
    """sha256 of the files outside the hidden staging / backup folders (and the lock a killed run leaves)."""
    return {k: v for k, v in tree_sha256(folder).items()
            if not k.startswith((STAGING_PREFIX, BACKUP_PREFIX)) and k != LOCK_NAME}


def check_state(out: Path, previous: dict[str, str], tree_sha256) -> str:
    """Assert the folder is in one of the promised states; return which."""
    now = visible(out, tree_sha256)
    backups = sorted(out.glob(f"{BACKUP_PREFIX}*"))
    if "segger_run.json" in now:
        if now["segger_run.json"] == previous["segger_run.json"]:
            assert now == previous, "a run JSON with a mixture of old and new files"
            return "previous"
        # the new complete output: every file, none of them the previous one
        assert set(now) == set(previous), f"new run JSON but files {sorted(set(previous) ^ set(now))}"
        mixed = [k for k in now if now[k] == previous[k]]
        assert not mixed, f"new run JSON next to previous files {mixed}"
        return "new"
    # incomplete: the previous output must be recoverable from the folder + the backup
    assert backups, f"no run JSON and no backup: {sorted(now)}"
    saved = {}
    for b in backups:
        saved.update({k: v for k, v in tree_sha256(b).items()})
    assert saved.get("segger_run.json") == previous["segger_run.json"]
    for name, digest in previous.items():
        assert now.get(name) == digest or saved.get(name) == digest, f"{name} of the previous output is lost"
    return "incomplete+backup"


# --------------------------------------------------------------------------------------------
# publish, killed after each of its moves
# --------------------------------------------------------------------------------------------
def _write_set(folder: Path, tag: str) -> None:
    for rel in ALL_FILES:
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(f"{tag} {rel}\n")


def _publish_killed_after(stage: Path, out: Path, k: int) -> int:
    """Fork; the child runs publish() and SIGKILLs itself right after its ``k``-th os.replace."""
    pid = os.fork()
    if pid == 0:  # child: no pytest machinery, file operations only
        try:
            from segger import pipeline

            real = os.replace
            count = {"n": 0}

            def replace(src, dst):
                real(src, dst)
                count["n"] += 1
                if count["n"] == k:
                    os.kill(os.getpid(), signal.SIGKILL)

            os.replace = replace
            pipeline.publish(stage, out)
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    return status


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_publish_killed_after_every_move(tmp_path, tree_sha256):
    n_moves = 2 * len(ALL_FILES)  # previous files aside, new files in
    states = {}
    for k in range(1, n_moves + 2):  # k = n_moves + 1: never killed
        case = tmp_path / f"k{k}"
        out = case / "out"
        out.mkdir(parents=True)
        _write_set(out, "old")
        (out / "notes.txt").write_text("the user's own file\n")
        previous = visible(out, tree_sha256)
        stage = out / f"{STAGING_PREFIX}999999-test"
        _write_set(stage, "new")
        status = _publish_killed_after(stage, out, k)
        killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        assert killed == (k <= n_moves)
        prev_files = {k2: v for k2, v in previous.items() if k2 != "notes.txt"}
        now = visible(out, tree_sha256)
        assert now.pop("notes.txt") == previous["notes.txt"]  # other files are never touched
        states[k] = check_state(_without(out, "notes.txt"), prev_files, tree_sha256)
        assert "segger_run.json" not in now or states[k] in ("previous", "new")
    # moves 1..len: previous files go aside (run JSON first) → incomplete from the first move on
    assert states[1] == "incomplete+backup"
    assert states[n_moves] == "new" and states[n_moves + 1] == "new"
    assert set(states.values()) == {"incomplete+backup", "new"}


def _without(out: Path, name: str) -> Path:
    (out / name).unlink()
    return out


# --------------------------------------------------------------------------------------------
# whole runs, SIGKILLed at random moments
# --------------------------------------------------------------------------------------------
def _segment_cmd(inp: Path, out: Path, seed: int) -> list[str]:
    return [*_cli(), "segment", str(inp), "-o", str(out), "--seed", str(seed), *TINY_ARGS]


@pytest.fixture(scope="module")
def previous_output(tmp_path_factory, corpus_base):
    """A complete output (seed 1) made by a real subprocess, and how long that run took."""
    out = tmp_path_factory.mktemp("previous") / "out"
    t0 = time.monotonic()
    proc = subprocess.run(_segment_cmd(corpus_base, out, seed=1), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return out, time.monotonic() - t0


@pytest.mark.slow
def test_segment_sigkilled_at_random_moments(previous_output, corpus_base, tmp_path, tree_sha256):
    prev_out, seconds = previous_output
    previous = tree_sha256(prev_out)
    assert "segger_run.json" in previous and not any(k.startswith(".") for k in previous)
    rng = random.Random(6)
    seen = []
    for i, frac in enumerate(sorted(rng.uniform(0.2, 1.05) for _ in range(3))):
        out = tmp_path / f"kill{i}"
        shutil.copytree(prev_out, out)
        proc = subprocess.Popen(_segment_cmd(corpus_base, out, seed=2), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            proc.wait(timeout=frac * seconds)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        seen.append((round(frac, 2), proc.returncode, check_state(out, previous, tree_sha256)))
    print("kills (fraction of a run, exit code, state):", seen)
    assert all(state in ("previous", "new", "incomplete+backup") for _, _, state in seen), seen
    assert any(rc == -signal.SIGKILL for _, rc, _ in seen), f"no run was killed: {seen}"
    # a new run over a killed one completes and sweeps the killed run's staging folder and backups
    out = tmp_path / "kill0"
    proc = subprocess.run(_segment_cmd(corpus_base, out, seed=2), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert not list(out.glob(".*")), sorted(p.name for p in out.glob(".*"))
    assert check_state(out, previous, tree_sha256) == "new"


def test_leftovers_are_swept_only_under_the_lock(tmp_path):
    """A dead run's staging / bucket / temp files go when the next run holds the folder's lock; while
    another (live) run holds it nothing is deleted, whatever PIDs the folder names say."""
    from segger.utils.outdir import OutputBusyError, OutputLock, output_session

    out = tmp_path / "out"
    stale = out / f"{STAGING_PREFIX}{os.getpid()}-abcd1234"  # our own PID: not proof of anything
    (stale / "model").mkdir(parents=True)
    tmpf = out / ".segger_transcripts.parquet.tmp-1-ab"
    tmpf.write_text("half")
    ooc = out / ".segger-ooc-deadbeef"
    ooc.mkdir()
    holder = OutputLock(out, "other run").acquire()
    try:
        with pytest.raises(OutputBusyError, match="in use by another segger run"):
            with output_session(out):
                pass
        assert stale.exists() and tmpf.exists() and ooc.exists()  # a live holder: nothing swept
    finally:
        holder.release()
    with output_session(out) as session:
        assert not stale.exists() and not tmpf.exists() and not ooc.exists()
        assert session.stage.is_dir()
    assert not any(p.name.startswith(STAGING_PREFIX) for p in out.iterdir())


# --------------------------------------------------------------------------------------------
# training: killed, the last complete checkpoint survives and --resume continues
# --------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_killed_training_keeps_last_checkpoint_and_resumes(corpus_base, tmp_path, capsys):
    from segger.cli.main import main
    from segger.training.checkpoint import load_checkpoint, read_checkpoint

    out = tmp_path / "train"
    last = out / "model" / "last.pt"
    assert TINY_ARGS[:2] == ["--epochs", "1"]
    args = TINY_ARGS[2:]
    proc = subprocess.Popen([*_cli(), "train", str(corpus_base), "-o", str(out), "--epochs", "500", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not last.is_file():
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "no checkpoint after 300 s"
            time.sleep(0.05)
        time.sleep(random.Random(7).uniform(0.0, 2.0))  # somewhere in a later epoch (or mid-write)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    payload = read_checkpoint(last)  # complete and safe (weights_only)
    epoch = int(payload["epoch"])
    assert 1 <= epoch < 500
    load_checkpoint(last)
    capsys.readouterr()
    rc = main(["train", str(corpus_base), "-o", str(out), "--checkpoint", str(last), "--resume",
               "--epochs", str(epoch + 2), *args])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    assert "trained 2 epochs" in cap.out
    resumed = read_checkpoint(last)
    assert int(resumed["epoch"]) == epoch + 2  # counts on from the checkpoint, so a second resume works
    assert "optimizer_state" in resumed


# --------------------------------------------------------------------------------------------
# determinism across processes
# --------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_same_seed_same_assignments_in_two_processes(corpus_base, tmp_path):
    outs = [tmp_path / "a", tmp_path / "b"]
    procs = [subprocess.Popen(_segment_cmd(corpus_base, o, seed=5), stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True) for o in outs]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
    cols = ["transcript_id", "segger_cell_id", "score", "assignment"]
    a, b = (pd.read_parquet(o / "segger_transcripts.parquet", columns=cols) for o in outs)
    pd.testing.assert_frame_equal(a, b)
    assert (a["segger_cell_id"] != "UNASSIGNED").any()
    for o in outs:
        params = json.loads((o / "segger_run.json").read_text())["parameters"]
        assert params["seed"] == 5 and params["train"]["seed"] == 5
    # and a different seed is really another model (the test above is not vacuous)
    c = tmp_path / "c"
    proc = subprocess.run(_segment_cmd(corpus_base, c, seed=6), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    other = pd.read_parquet(c / "segger_transcripts.parquet", columns=cols)
    assert not other["score"].equals(a["score"])
