"""The malformed-input corpus through the CLI (issue 6, item 1).

One parametrised test over :data:`_reliability_corpus.CASES`. For every case:

* a bad input ends with exit code 2 and exactly one stderr line ``segger: error: ...`` naming the
  file, the column/value and the fix (no traceback without ``--debug``) and leaves no output;
* a valid-but-odd input (pixels, a single nucleus, repaired polygons, ...) succeeds with a
  ``warning:`` line saying what was odd, and a complete output folder;
* the input folder is byte-identical afterwards (sha256 of every file).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from _reliability_corpus import BY_NAME, CASES, argv, copy_base
from segger.cli.main import main

DOCS = Path(__file__).resolve().parents[2] / "docs" / "troubleshooting.md"


def _run(args, capsys):
    try:
        rc = main([str(a) for a in args])
    except SystemExit as exc:  # argparse
        rc = exc.code
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def leftovers(folder: Path) -> list[str]:
    """Staging folders, backups and temporary files anywhere under ``folder``."""
    if not folder.exists():
        return []
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if p.name.startswith((".segger-staging", ".segger-previous")) or ".tmp-" in p.name)


def check_error(rc, out, err, fragments) -> str:
    assert rc == 2, f"exit code {rc}; stderr:\n{err}"
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, f"stderr has {len(lines)} lines:\n{err}"
    line = lines[0]
    assert line.startswith("segger: error: "), line
    assert "Traceback" not in err + out
    for frag in fragments:
        assert frag.lower() in line.lower(), f"{frag!r} not in: {line}"
    return line


def check_warning(rc, out, err, fragments) -> str:
    assert rc == 0, f"exit code {rc}; stderr:\n{err}"
    assert "Traceback" not in err + out
    warnings = [ln for ln in err.splitlines() if ln.startswith("warning: ")]
    hits = [w for w in warnings if all(f.lower() in w.lower() for f in fragments)]
    assert hits, f"no warning with {fragments}; stderr:\n{err}"
    return hits[0]


@pytest.mark.parametrize("name", [c.name for c in CASES])
def test_malformed_input(name, corpus_base, tmp_path, capsys, tree_sha256):
    case = BY_NAME[name]
    folder = copy_base(corpus_base, tmp_path / "input")
    inp = case.make(folder)
    before = tree_sha256(folder)
    out = tmp_path / "out"
    rc, stdout, stderr = _run(argv(case, inp, folder, out), capsys)
    if case.expect == "error":
        case.user_sees = check_error(rc, stdout, stderr, case.fragments)
        assert not out.exists() or not any(out.iterdir()), f"partial output: {sorted(out.rglob('*'))}"
    else:
        case.user_sees = check_warning(rc, stdout, stderr, case.fragments)
        assert (out / "segger_run.json").is_file()
        assert leftovers(out) == []
    assert tree_sha256(folder) == before, "an input file changed"


def test_failed_run_over_a_previous_output_keeps_it(corpus_base, tmp_path, capsys, tree_sha256):
    """A malformed input run into a folder holding a complete output leaves it byte-identical."""
    out = tmp_path / "out"
    rc, _, err = _run(argv(BY_NAME["some-nan-xy"], corpus_base, corpus_base, out), capsys)
    assert rc == 0, err
    before = tree_sha256(out)
    for name in ("truncated-transcripts", "k-tx-too-large", "no-nuclei"):
        case = BY_NAME[name]
        folder = copy_base(corpus_base, tmp_path / name)
        rc, stdout, stderr = _run(argv(case, case.make(folder), folder, out), capsys)
        check_error(rc, stdout, stderr, case.fragments)
        assert tree_sha256(out) == before, name
        assert leftovers(out) == []


def test_debug_shows_the_traceback_instead(corpus_base, tmp_path):
    from segger.errors import SeggerInputError

    case = BY_NAME["decimal-commas"]
    folder = copy_base(corpus_base, tmp_path / "input")
    with pytest.raises(SeggerInputError, match="must be numeric"):
        main([*argv(case, case.make(folder), folder, tmp_path / "out"), "--debug"])


def test_real_subprocess_one_line(corpus_base, tmp_path, tree_sha256):
    """The console script in a fresh interpreter: the real stderr (library warnings and all)."""
    case = BY_NAME["missing-gene-column"]
    folder = copy_base(corpus_base, tmp_path / "input")
    inp = case.make(folder)
    before = tree_sha256(folder)
    exe = Path(sys.executable).with_name("segger")
    cmd = [str(exe)] if exe.is_file() else [sys.executable, "-m", "segger.cli.main"]
    out = tmp_path / "out"
    proc = subprocess.run([*cmd, *argv(case, inp, folder, out)], capture_output=True, text=True, timeout=300)
    check_error(proc.returncode, proc.stdout, proc.stderr, case.fragments)
    assert tree_sha256(folder) == before
    assert not out.exists()


def test_every_case_is_documented():
    """docs/troubleshooting.md lists each malformed input of the corpus (the closing-note table)."""
    text = DOCS.read_text(encoding="utf-8")
    assert "Malformed inputs: what you see" in text
    missing = [c.name for c in CASES if f"`{c.name}`" not in text]
    assert not missing, f"add these corpus cases to {DOCS.name}: {missing}"


def test_no_data_files_are_committed():
    """The corpus is generated in temporary folders from the packaged crop; nothing large lives here."""
    here = Path(__file__).parent
    assert [p.name for p in here.rglob("*") if p.is_file() and p.stat().st_size > 100_000] == []
    assert not [p.name for p in here.rglob("*") if p.suffix in (".parquet", ".csv", ".pt", ".gz")]
