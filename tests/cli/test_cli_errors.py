"""Bad input to ``segger``: exit code ≠ 0, one line on stderr, no traceback, inputs untouched, no output."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from segger.cli.main import main


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, pkg_lung_dir):
    """A copy of the lung crop and bad variants of its transcripts table, in one folder."""
    root = tmp_path_factory.mktemp("bad-inputs")
    lung = root / "xenium_lung"
    shutil.copytree(pkg_lung_dir, lung)
    raw = pd.read_parquet(lung / "transcripts.parquet")
    raw.iloc[:0].to_parquet(root / "empty.parquet")
    raw.drop(columns=["x_location"]).head(2000).to_parquet(root / "no_x.parquet")
    nan = raw.head(2000).copy()
    nan["x_location"] = np.nan
    nan["y_location"] = np.nan
    nan.to_parquet(root / "nan_xy.parquet")
    (root / "notes.pt").write_bytes(b"this is not a checkpoint\n")
    return root


def _run_bad(argv, capsys):
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse
        rc = exc.code
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def _check_one_error(rc, out, err, expect_rc=2):
    assert rc != 0
    assert rc == expect_rc
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, f"stderr has {len(lines)} lines:\n{err}"
    assert lines[0].startswith("segger")
    assert "error" in lines[0]
    assert "Traceback" not in err and "Traceback" not in out
    return lines[0]


ARGPARSE_REASON = (
    "BUG segger/cli/main.py: argparse usage errors (unknown --platform choice, missing/invalid option "
    "values) are reported by ArgumentParser.error, which prints the whole multi-line usage block before "
    "'segger segment: error: ...' — the module promises one line on stderr for bad input. Override "
    "error() (e.g. a parser subclass printing only 'segger: error: <message>' then exit 2)"
)

CASES = {
    # name: (argv after 'segger segment', expected fragment of the message)
    "missing-file": (["{root}/does_not_exist.parquet"], "no such file"),
    "missing-folder": (["{root}/no_such_folder"], "no such file"),
    "empty-parquet": (["{root}/empty.parquet"], "no rows"),
    "no-x-column": (["{root}/no_x.parquet"], "x column"),
    "nan-coordinates-only": (["{root}/nan_xy.parquet"], "NaN"),
    "k-tx-zero": (["{root}/xenium_lung", "--k-tx", "0"], "k_tx"),
    "k-bd-zero": (["{root}/xenium_lung", "--k-bd", "0"], "k_bd"),
    "negative-dist": (["{root}/xenium_lung", "--dist-tx", "-1"], "dist_tx"),
    "nan-dist": (["{root}/xenium_lung", "--dist-bd", "nan"], "dist_bd"),
    "score-cut-above-one": (["{root}/xenium_lung", "--score-cut", "1.5"], "score_cut"),
    "negative-epochs": (["{root}/xenium_lung", "--epochs", "-1"], "epochs"),
    "zero-hidden-channels": (["{root}/xenium_lung", "--hidden-channels", "0"], "--hidden-channels"),
    "negative-min-qv": (["{root}/xenium_lung", "--min-qv", "-5"], "min_qv"),
    "missing-checkpoint": (["{root}/xenium_lung", "--checkpoint", "{root}/nope.pt"], "does not exist"),
    "output-is-a-file": (["{root}/xenium_lung", "-o", "{root}/xenium_lung/transcripts.parquet"], "not a folder"),
    "output-is-the-input": (["{root}/xenium_lung", "-o", "{root}/xenium_lung"], "input folder"),
}


def _argv(case_args, root, out):
    args = [a.format(root=root) for a in case_args]
    if "-o" not in args:
        args += ["-o", str(out)]
    if "--epochs" not in args:
        args += ["--epochs", "1"]  # should a bad input slip through, keep the run short
    return ["segment", *args, "--quiet"]


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_one_line_no_side_effects(name, inputs, capsys, tmp_path, tree_sha256):
    case_args, fragment = CASES[name]
    out = tmp_path / "out"
    before = tree_sha256(inputs)
    rc, stdout, stderr = _run_bad(_argv(case_args, inputs, out), capsys)
    line = _check_one_error(rc, stdout, stderr)
    assert fragment.lower() in line.lower()
    assert tree_sha256(inputs) == before, "an input file changed"
    assert not out.exists() or not any(out.iterdir()), f"left behind: {list(out.rglob('*'))}"


def test_unknown_platform_exit_code(inputs, capsys, tmp_path):
    """Exit code 2 and no traceback (the one-line form is checked by test_usage_errors_are_one_line)."""
    rc, stdout, stderr = _run_bad(["segment", inputs / "xenium_lung", "-o", tmp_path / "o", "--platform", "visium",
                                   "--quiet"], capsys)
    assert rc == 2 and "Traceback" not in stderr
    assert "invalid choice: 'visium'" in stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("argv", [
    ["--platform", "visium"],
    ["--k-tx", "five"],
], ids=["unknown-platform", "non-numeric-k-tx"])
def test_usage_errors_are_one_line(inputs, capsys, tmp_path, argv):
    rc, stdout, stderr = _run_bad(["segment", inputs / "xenium_lung", "-o", tmp_path / "o", *argv, "--quiet"], capsys)
    _check_one_error(rc, stdout, stderr)


def test_text_file_as_checkpoint(inputs, capsys, tmp_path, tree_sha256):
    before = tree_sha256(inputs)
    rc, stdout, stderr = _run_bad(["predict", inputs / "xenium_lung", "--checkpoint", inputs / "notes.pt", "-o",
                                   tmp_path / "o", "--quiet"], capsys)
    assert tree_sha256(inputs) == before
    assert not (tmp_path / "o").exists()
    _check_one_error(rc, stdout, stderr)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_cuda_without_gpu(inputs, capsys, tmp_path, tree_sha256):
    out = tmp_path / "out"
    before = tree_sha256(inputs)
    rc, stdout, stderr = _run_bad(["segment", inputs / "xenium_lung", "-o", out, "--device", "cuda", "--epochs", "1",
                                   "--quiet", "--hidden-channels", "16", "--num-mid-layers", "1"], capsys)
    line = _check_one_error(rc, stdout, stderr)
    assert "CUDA" in line
    assert tree_sha256(inputs) == before
    assert not out.exists() or not any(out.iterdir()), f"left behind: {list(out.rglob('*'))}"


def test_failed_run_keeps_a_previous_output(inputs, capsys, tmp_path, tree_sha256):
    """A bad run into a folder that already holds files leaves them exactly as they were."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "segger_transcripts.parquet").write_bytes(b"previous result")
    (out / "notes.txt").write_text("keep me")
    before = tree_sha256(out)
    rc, stdout, stderr = _run_bad(["segment", inputs / "nan_xy.parquet", "-o", out, "--quiet"], capsys)
    _check_one_error(rc, stdout, stderr)
    assert tree_sha256(out) == before
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt", "segger_transcripts.parquet"]


def test_debug_shows_the_traceback(inputs, capsys, tmp_path):
    from segger.errors import SeggerInputError

    with pytest.raises(SeggerInputError):
        main(["segment", str(inputs / "empty.parquet"), "-o", str(tmp_path / "o"), "--quiet", "--debug"])


def test_installed_entry_point(inputs, tmp_path, tree_sha256):
    """The console script itself: real stderr (library warnings included) is one line, exit code 2."""
    exe = Path(sys.executable).with_name("segger")
    if not exe.is_file():
        pytest.skip("the segger console script is not installed next to this Python")
    before = tree_sha256(inputs)
    out = tmp_path / "out"
    proc = subprocess.run([str(exe), "segment", str(inputs / "nan_xy.parquet"), "-o", str(out), "--quiet"],
                          capture_output=True, text=True, timeout=300)
    _check_one_error(proc.returncode, proc.stdout, proc.stderr)
    assert "NaN" in proc.stderr
    assert tree_sha256(inputs) == before
    assert not out.exists()
