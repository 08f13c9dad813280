"""The library and the CLI work without the GUI stack (issue 11 #6): napari, Qt, magicgui, npe2 and
qtpy are the ``napari`` extra, so ``import segger`` and ``segger --help`` must not need them."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from segger.cli.main import build_parser

BLOCK = ("napari", "qtpy", "PyQt6", "PyQt5", "PySide6", "PySide2", "magicgui", "npe2", "superqt", "vispy")


def _run_blocked(code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter in which importing any GUI package raises ImportError."""
    prelude = textwrap.dedent(f"""
        import sys
        for name in {BLOCK!r}:
            sys.modules[name] = None  # `import name` now raises ImportError
    """)
    return subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=300)


def test_core_and_cli_import_without_gui_packages():
    r = _run_blocked("""
        import segger, segger.workflows, segger.cli.main, segger.pipeline
        import segger.io, segger.data, segger.models, segger.training, segger.prediction
        import segger.validation, segger.export, segger.corrections, segger.scale
        assert not [m for m in sys.modules if m.split('.')[0] in {'napari', 'qtpy', 'magicgui', 'npe2'}
                    and sys.modules[m] is not None]
        print('ok')
    """)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]


def test_cli_help_without_gui_packages():
    r = _run_blocked("""
        from segger.cli.main import main
        try:
            main(['segment', '--help'])
        except SystemExit as e:
            assert e.code == 0, e.code
    """)
    assert r.returncode == 0 and "--output" in r.stdout, r.stderr[-2000:]
    assert "segment" in build_parser().format_help()


def test_gui_packages_are_an_extra_not_core_dependencies():
    import tomllib
    from pathlib import Path

    meta = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
    core = {d.split(">")[0].split("=")[0].split("[")[0].strip().lower() for d in meta["dependencies"]}
    gui = {"napari", "qtpy", "magicgui", "npe2", "bermuda", "pyqt6", "pyside6"}
    assert not core & gui, f"GUI packages in the core dependencies: {core & gui}"
    extra = {d.split(">")[0].split("=")[0].strip().lower() for d in meta["optional-dependencies"]["napari"]}
    assert {"napari", "magicgui", "npe2", "qtpy"} <= extra
