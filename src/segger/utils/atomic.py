"""Atomic file writes: a target file is either the previous version or the complete new one.

Every writer (:mod:`segger.export`, checkpoints, corrections) writes to a temporary path in the *same directory* as the
target (so the final :func:`os.replace` is an atomic rename on one file system) and renames it
over the target only when the writer returned normally. On any exception (including
``KeyboardInterrupt``) the temporary file is removed and the previous target, if any, is left
untouched. The temporary file has the target's own name inside a hidden folder
``.{name}.tmp-{pid}-{random}/`` (unique per process and call): writers that look at the extension
still work, and formats that record the file name (``torch.save`` names its zip folder after it)
give the same bytes as a direct write, so checkpoints are reproducible. Leftovers of a killed
write (``.*.tmp-*``) are swept by :func:`segger.utils.outdir.sweep_leftovers` under the output lock.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import secrets
import shutil
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

__all__ = ["atomic_path", "atomic_write", "write_json_atomic", "file_sha256", "to_jsonable"]

T = TypeVar("T")

TMP_MARKER = ".tmp-"


def _temp_dir(path: Path) -> Path:
    return path.with_name(f".{path.name}{TMP_MARKER}{os.getpid()}-{secrets.token_hex(4)}")


def _remove(p: Path) -> None:
    try:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
    except OSError:
        pass


def _fsync_file(p: Path) -> None:
    try:
        fd = os.open(p, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it over ``path``.

    The caller writes the complete file to the yielded path. When the ``with`` block exits
    normally the temporary file is flushed to disk and moved over ``path`` with
    :func:`os.replace`; when it raises, the temporary file (or directory) is removed and the
    exception propagates, leaving any previous ``path`` unchanged. The parent directory is
    created if needed. Raises ``FileNotFoundError`` if the block wrote nothing.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = _temp_dir(target)
    tmp_dir.mkdir()
    tmp = tmp_dir / target.name
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"atomic write of {target}: the writer created no file at {tmp}")
        if tmp.is_file():
            _fsync_file(tmp)
        os.replace(tmp, target)
    finally:
        _remove(tmp_dir)


def atomic_write(path: str | os.PathLike, writer_fn: Callable[[Path], T]) -> Path:
    """Call ``writer_fn(tmp_path)`` and atomically move the result to ``path``; return ``path``."""
    with atomic_path(path) as tmp:
        writer_fn(tmp)
    return Path(path)


def to_jsonable(obj: Any) -> Any:
    """``obj`` converted to plain JSON types.

    numpy scalars/arrays → Python numbers/lists, NaN/inf → ``None``, paths → str, dataclasses →
    dicts, sets → sorted lists, tuples → lists, pandas objects → lists/dicts, bytes → hex.
    """
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return f if math.isfinite(f) else None
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return to_jsonable(dataclasses.asdict(obj))
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, np.ndarray):
        return [to_jsonable(v) for v in obj.tolist()]
    if isinstance(obj, (set, frozenset)):
        return [to_jsonable(v) for v in sorted(obj, key=str)]
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, (bytes, bytearray)):
        return bytes(obj).hex()
    # pandas (imported lazily: keep this module light)
    try:
        import pandas as pd

        if isinstance(obj, pd.DataFrame):
            return to_jsonable(obj.to_dict(orient="records"))
        if isinstance(obj, (pd.Series, pd.Index)):
            return to_jsonable(obj.tolist())
        if obj is pd.NA or obj is pd.NaT:
            return None
        if isinstance(obj, pd.Timestamp):
            return obj.isoformat()
    except ImportError:  # pragma: no cover
        pass
    if hasattr(obj, "isoformat"):
        return obj.isoformat()
    return str(obj)


def write_json_atomic(path: str | os.PathLike, obj: Any, *, indent: int = 2) -> Path:
    """Write ``obj`` as JSON (via :func:`to_jsonable`, strict: no NaN) atomically; return ``path``."""
    text = json.dumps(to_jsonable(obj), indent=indent, allow_nan=False, ensure_ascii=False)

    def _write(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.write("\n")

    return atomic_write(path, _write)


def file_sha256(path: str | os.PathLike, *, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in ``chunk_size`` blocks (constant memory)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while True:
            block = fh.read(chunk_size)
            if not block:
                break
            h.update(block)
    return h.hexdigest()
