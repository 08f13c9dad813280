"""Atomic writes (segger.utils.atomic; moved from tests/export/test_export_atomic.py with the code)."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from segger.utils.atomic import atomic_path, atomic_write, file_sha256, to_jsonable, write_json_atomic


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp-" in p.name)


def test_atomic_path_success(tmp_path):
    target = tmp_path / "sub" / "out.txt"
    with atomic_path(target) as tmp:
        # the target's own name in a hidden, unique folder beside it (same file system)
        assert tmp.name == "out.txt" and tmp.parent.parent == target.parent
        assert tmp.parent.name.startswith(".out.txt.tmp-") and str(os.getpid()) in tmp.parent.name
        assert not target.exists()
        tmp.write_text("new")
    assert target.read_text() == "new"
    assert _leftovers(target.parent) == []


def test_atomic_write_failure_keeps_previous(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("previous")

    def bad_writer(p: Path) -> None:
        p.write_text("half writ")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        atomic_write(target, bad_writer)
    assert target.read_text() == "previous"
    assert _leftovers(tmp_path) == []

    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as tmp:
            tmp.mkdir()  # a directory-shaped output (zarr-like) is cleaned up as well
            (tmp / "part").write_text("x")
            raise KeyboardInterrupt
    assert target.read_text() == "previous"
    assert _leftovers(tmp_path) == []


def test_atomic_write_nothing_written(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(FileNotFoundError):
        atomic_write(target, lambda p: None)
    assert not target.exists() and _leftovers(tmp_path) == []


def test_atomic_write_replaces(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    assert atomic_write(target, lambda p: p.write_bytes(b"new")) == target
    assert target.read_bytes() == b"new"
    assert _leftovers(tmp_path) == []


@dataclass
class _Params:
    k: int
    path: Path


def test_write_json_atomic_types(tmp_path):
    obj = {
        "np_int": np.int64(3),
        "np_float": np.float32(0.5),
        "nan": float("nan"),
        "inf": np.inf,
        "arr": np.arange(3),
        "flag": np.bool_(True),
        "tuple": (1, 2),
        "set": {"b", "a"},
        "path": Path("/x/y"),
        "params": _Params(2, Path("p")),
    }
    out = write_json_atomic(tmp_path / "o.json", obj)
    loaded = json.loads(out.read_text())
    assert loaded == {
        "np_int": 3,
        "np_float": 0.5,
        "nan": None,
        "inf": None,
        "arr": [0, 1, 2],
        "flag": True,
        "tuple": [1, 2],
        "set": ["a", "b"],
        "path": "/x/y",
        "params": {"k": 2, "path": "p"},
    }
    assert to_jsonable({1: np.float64("nan")}) == {"1": None}
    assert _leftovers(tmp_path) == []


def test_write_json_atomic_unserialisable_keeps_previous(tmp_path, monkeypatch):
    target = tmp_path / "o.json"
    write_json_atomic(target, {"a": 1})
    import segger.utils.atomic as atomic_mod

    def boom(*a, **k):
        raise OSError("no space left")

    monkeypatch.setattr(atomic_mod.os, "replace", boom)
    with pytest.raises(OSError, match="no space"):
        write_json_atomic(target, {"a": 2})
    assert json.loads(target.read_text()) == {"a": 1}
    assert _leftovers(tmp_path) == []


def test_file_sha256_streaming(tmp_path):
    data = os.urandom(100_000)
    f = tmp_path / "blob"
    f.write_bytes(data)
    assert file_sha256(f) == hashlib.sha256(data).hexdigest()
    assert file_sha256(f, chunk_size=4096) == hashlib.sha256(data).hexdigest()
