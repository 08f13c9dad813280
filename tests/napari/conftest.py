"""Fixtures for the napari plugin tests (headless: Qt offscreen, set before Qt is imported)."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("NAPARI_ASYNC", "0")

import shutil  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from _napari_helpers import LUNG, SEGTRAQ  # noqa: E402


@pytest.fixture(scope="session")
def lung_dir() -> Path:
    if LUNG is None:
        pytest.skip("xenium lung crop not available")
    return LUNG


@pytest.fixture(scope="session")
def breast_dir() -> Path:
    if SEGTRAQ is None:
        pytest.skip("xenium breast crop not available")
    return SEGTRAQ


@pytest.fixture(scope="session")
def lung_sample(lung_dir):
    from segger.io import read_sample

    return read_sample(lung_dir)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Keep torch on one thread: tests share 2 cores with other jobs; timings stay stable."""
    try:
        import torch
    except ImportError:  # pragma: no cover
        yield
        return
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(autouse=True)
def _no_gl_queries_offscreen(monkeypatch):
    """Offscreen Qt has no OpenGL context: vispy's GL_EXTENSIONS query returns None and adding an
    Image layer crashes. Answer "no extensions" and usual texture limits instead (as
    napari-spatialdata's tests do).
    Screenshot tests run under Xvfb in a child process and are not patched."""
    if os.environ.get("QT_QPA_PLATFORM") != "offscreen":
        return
    import importlib

    # Real Qt mouse events on the canvas make vispy render (picking) and queue GL commands that
    # offscreen Qt cannot run: drop them (nothing is drawn offscreen anyway; Xvfb tests draw).
    import vispy.gloo.context as gloo_context

    monkeypatch.setattr(gloo_context.GLContext, "flush_commands", lambda self, event=None: None)

    for mod_name in ("napari._vispy.layers.image", "napari._vispy.layers.base",
                     "napari._vispy.layers.labels", "napari._vispy.canvas"):
        try:
            mod = importlib.import_module(mod_name)
        except ImportError:  # pragma: no cover - napari internals moved
            continue
        if hasattr(mod, "get_gl_extensions"):
            monkeypatch.setattr(mod, "get_gl_extensions", lambda: "")
        if hasattr(mod, "get_max_texture_sizes"):
            monkeypatch.setattr(mod, "get_max_texture_sizes", lambda: (16384, 2048))


def _free_display() -> int:
    for n in range(99, 140):
        if not Path(f"/tmp/.X11-unix/X{n}").exists() and not Path(f"/tmp/.X{n}-lock").exists():
            return n
    raise RuntimeError("no free X display number")


@pytest.fixture(scope="session")
def xvfb_display():
    """A DISPLAY for screenshot tests: the existing one, else an Xvfb we start; skip if neither."""
    if os.environ.get("DISPLAY"):
        yield os.environ["DISPLAY"]
        return
    exe = shutil.which("Xvfb")
    if exe is None:
        pytest.skip("no DISPLAY and Xvfb is not installed (apt-get install xvfb)")
    n = _free_display()
    proc = subprocess.Popen(
        [exe, f":{n}", "-screen", "0", "1600x1000x24", "-nolisten", "tcp", "-noreset"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    sock = Path(f"/tmp/.X11-unix/X{n}")
    for _ in range(100):
        if sock.exists() or proc.poll() is not None:
            break
        time.sleep(0.05)
    if proc.poll() is not None or not sock.exists():
        proc.kill()
        pytest.skip("Xvfb did not start")
    try:
        yield f":{n}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()

