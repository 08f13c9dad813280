"""The one way tests call the ``segger`` command in-process."""

from __future__ import annotations

from segger.cli.main import main


def call_cli(argv, capsys):
    """``(exit code, stdout, stderr)`` of ``segger argv`` (argparse exits are caught)."""
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as exc:
        rc = exc.code
    out = capsys.readouterr()
    return rc, out.out, out.err
