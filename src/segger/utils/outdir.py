"""One way to write an output folder, used by every command (segment, predict, out-of-core, train,
finetune, qc, export).

* :func:`check_output_path` — before the first byte is written: the output is not empty, not a
  file where a folder is due, and never equal to, inside, or holding any input file or folder.
* :class:`OutputLock` — one lock file per output folder (``.segger.lock``) naming its holder
  (host, PID, start time, a random token). The holder refreshes the file's mtime every
  ``SEGGER_LOCK_HEARTBEAT_S`` seconds (default 10). Another run treats the lock as stale only when

  - its heartbeat is older than ``SEGGER_LOCK_STALE_S`` seconds (default 120; safe across PID
    namespaces and the nodes of a shared file system), or
  - it was written on this host in this PID namespace since this boot and its process is gone
    (or its PID now belongs to a process started later — PIDs repeat in containers).

  A PID alone is never enough to take over a lock or to delete anything.
* :func:`output_session` — the lock plus a staging folder ``.segger-staging-<token>`` inside the
  output folder; leftovers of dead runs (staging folders, out-of-core bucket folders, ``.*.tmp-*``
  files of interrupted atomic writes) are swept only while holding the lock.
* :func:`publish` — moves staged files into place: the previous output's files (all of them:
  ``segger_run.json``, the completeness marker, first) go aside, the new ones come in with the
  new marker last, so a folder with ``segger_run.json`` is never a mixture of two runs.
* :func:`require_complete` — readers of an output folder (qc, export) refuse one without
  ``segger_run.json``.
* The layout itself, written and read here only: :data:`TRANSCRIPTS_FILE`, :data:`BOUNDARIES_FILE`,
  :data:`CELLS_FILE`, :data:`QC_FILE`, :data:`RUN_MARKER` (:data:`OUTPUT_FILES`); written by
  :func:`segger.workflows.iter_segment`, read by :func:`segger.export.load_output` (which also reads
  :data:`LEGACY_BOUNDARIES_FILE`, the boundaries name of older napari exports).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from segger.errors import SeggerError, SeggerInputError

LOCK_NAME = ".segger.lock"
STAGING_PREFIX = ".segger-staging-"
BACKUP_PREFIX = ".segger-previous-"
OOC_PREFIX = ".segger-ooc-"
TMP_MARKER = ".tmp-"
RUN_MARKER = "segger_run.json"
TRANSCRIPTS_FILE = "segger_transcripts.parquet"  # the input's transcripts + segger_cell_id, score, assignment
BOUNDARIES_FILE = "segger_boundaries.parquet"  # one outline per cell
CELLS_FILE = "segger_cells.h5ad"  # cells x genes
QC_FILE = "qc.json"
#: the boundaries file of napari Export before the layout was one (read, never written)
LEGACY_BOUNDARIES_FILE = "segger_cell_boundaries.parquet"
#: the files of a complete output (the marker last); the model files a run may add
OUTPUT_FILES = (TRANSCRIPTS_FILE, BOUNDARIES_FILE, CELLS_FILE, QC_FILE, RUN_MARKER)
MODEL_FILES = ("model/best.pt", "model/last.pt", "model/finetuned.pt")
#: the training metrics logs of a run (``metrics.csv``, ``hparams.yaml``, ``tensorboard/``), published as one folder
LOGS_DIR = "model/logs"

_HELD: set[str] = set()  # tokens of the locks this process holds (a PID repeats across containers)


class OutputBusyError(SeggerInputError):
    """Another (live) run holds the output folder's lock."""


def user_cache_dir(*parts: str) -> Path:
    """``$XDG_CACHE_HOME/napari-segger/<parts>`` (``~/.cache`` when unset): where corrections of
    read-only data and the napari session's auto-saved checkpoints live. Not created here."""
    root = Path(os.environ.get("XDG_CACHE_HOME") or (Path.home() / ".cache"))
    return root.joinpath("napari-segger", *parts)


def heartbeat_seconds() -> float:
    return max(0.05, float(os.environ.get("SEGGER_LOCK_HEARTBEAT_S", "10")))


def stale_seconds() -> float:
    return max(3 * heartbeat_seconds(), float(os.environ.get("SEGGER_LOCK_STALE_S", "120")))


# ----------------------------------------------------------------------------------------------
# paths
# ----------------------------------------------------------------------------------------------
def _is_within(child: Path, parent: Path) -> bool:
    try:
        child.relative_to(parent)
        return True
    except ValueError:
        return False


def check_output_path(output, inputs: Iterable[tuple[str, object]] = (), *, option: str = "--output",
                      kind: str = "folder", allowed: Iterable[object] = ()) -> Path:
    """``output`` as a Path after checking it against every input; raise a one-line error otherwise.

    ``inputs``: ``(label, path)`` pairs (``None`` paths are skipped), e.g. ``("input", "in/")``.
    ``kind``: ``"folder"`` (the output is a folder: it must not be an existing file) or ``"file"``
    (it must not be an existing folder). ``allowed``: input paths that may lie inside the output
    (``train --resume`` continues from the output's own checkpoint).
    """
    if output is None or not str(output).strip():
        raise SeggerInputError(f"{option} is empty: give a {kind} path (use '{option} .' only if you mean "
                               "the current folder)")
    out = Path(output)
    if kind == "folder" and out.exists() and not out.is_dir():
        raise SeggerInputError(f"{option} {out} exists and is not a folder: choose a folder path for {option}")
    if kind == "file" and out.is_dir() and not out.suffix == ".zarr":
        raise SeggerInputError(f"{option} {out} is an existing folder: give a file path for {option}")
    ro = out.resolve()
    ok = {Path(os.fspath(a)).resolve() for a in allowed if a is not None}
    for label, path in inputs:
        if path is None or (isinstance(path, str) and not path):
            continue
        if not isinstance(path, (str, os.PathLike)):
            continue  # an in-memory array or table: nothing on disk to protect
        rp = Path(path).resolve()
        if rp == ro:
            what = f"{label} folder" if rp.is_dir() and "folder" not in label else label
            raise SeggerInputError(f"{option} {out} is the {what} {path}: choose another {option} so inputs stay "
                                   "untouched")
        if rp.is_dir() and _is_within(ro, rp):
            raise SeggerInputError(f"{option} {out} is inside the {label} folder {path}: choose an {option} outside "
                                   "it so inputs stay untouched")
        if _is_within(rp, ro) and rp not in ok:
            raise SeggerInputError(f"{option} {out} holds the {label} {path}, which this run would replace or mix "
                                   f"with its outputs: choose another {option} (or copy the {label} elsewhere first)")
    return out


def is_output_folder(path) -> bool:
    """True for a folder holding a segger run's transcripts table (:data:`TRANSCRIPTS_FILE`)."""
    p = Path(path)
    return p.is_dir() and (p / TRANSCRIPTS_FILE).is_file()


def require_complete(folder, command: str) -> Path:
    """``folder`` if it holds a complete segger output (``segger_run.json``); else a one-line error."""
    out = Path(folder)
    if not out.is_dir():
        raise SeggerInputError(f"{out} is not a folder: give a folder written by 'segger segment' or 'segger predict'")
    if not (out / TRANSCRIPTS_FILE).is_file():
        raise SeggerInputError(f"{out / TRANSCRIPTS_FILE} not found: give a folder written by "
                               "'segger segment' or 'segger predict'")
    if not (out / RUN_MARKER).is_file():
        backup = sorted(out.glob(f"{BACKUP_PREFIX}*"))
        busy = (out / LOCK_NAME).exists()
        why = ("a segger run is writing it now" if busy else "a run was killed while writing it")
        hint = f"; the previous output is kept in {backup[0]}" if backup else ""
        raise SeggerInputError(f"{out} is an incomplete segger output (no {RUN_MARKER}: {why}{hint}); "
                               f"rerun 'segger segment' into it before 'segger {command}'")
    return out


# ----------------------------------------------------------------------------------------------
# the lock
# ----------------------------------------------------------------------------------------------
def _read(p: Path) -> str | None:
    try:
        return p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def _pid_namespace() -> str | None:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def _boot_id() -> str | None:
    text = _read(Path("/proc/sys/kernel/random/boot_id"))
    return text.strip() if text else None


def _proc_start(pid: int) -> str | None:
    """Start time of ``pid`` in clock ticks since boot (Linux), to tell a reused PID apart."""
    text = _read(Path(f"/proc/{pid}/stat"))
    if not text:
        return None
    try:
        return text.rsplit(")", 1)[1].split()[19]
    except IndexError:
        return None


def _pid_alive(pid: int) -> bool:
    if os.name == "nt":  # pragma: no cover - os.kill(pid, 0) would terminate the process there
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. PermissionError: it exists
        return True
    return True


def _identity() -> dict:
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "pid_namespace": _pid_namespace(), "boot_id": _boot_id(),
            "proc_start": _proc_start(pid)}


@dataclass
class LockInfo:
    text: str | None
    data: dict
    age: float  # seconds since the last heartbeat (mtime)
    inode: int

    def describe(self) -> str:
        d = self.data
        if not d:
            return f"an unreadable lock, last touched {self.age:.0f} s ago"
        return (f"{d.get('command') or 'segger'} on host {d.get('host')}, PID {d.get('pid')}, started "
                f"{d.get('started_utc')}, last heartbeat {self.age:.0f} s ago")


def read_lock(path: Path) -> LockInfo | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    text = _read(path)
    try:
        data = json.loads(text) if text else {}
        data = data if isinstance(data, dict) else {}
    except ValueError:
        data = {}
    return LockInfo(text, data, time.time() - st.st_mtime, st.st_ino)


def lock_is_stale(info: LockInfo) -> bool:
    """The stale rule (module docstring): an old heartbeat, or a provably dead holder on this machine."""
    if info.age > stale_seconds():
        return True
    d = info.data
    me = _identity()
    same_ns = (d.get("host") == me["host"] and d.get("pid_namespace") is not None
               and d.get("pid_namespace") == me["pid_namespace"] and d.get("boot_id") is not None
               and d.get("boot_id") == me["boot_id"])
    if not same_ns or not isinstance(d.get("pid"), int):
        return False  # another machine / namespace: only the heartbeat can tell
    pid = d["pid"]
    if pid == me["pid"]:
        return d.get("token") not in _HELD  # our PID, not our lock: a previous container's run
    if not _pid_alive(pid):
        return True
    start = _proc_start(pid)
    return start is not None and d.get("proc_start") is not None and start != d.get("proc_start")


class OutputLock:
    """The lock of one output folder (see the module docstring); a context manager."""

    def __init__(self, folder, command: str = "", *, name: str = LOCK_NAME):
        self.folder = Path(folder)
        self.path = self.folder / name
        self.command = command
        self.token = secrets.token_hex(8)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost = False
        self.held = False

    # -- acquire / release ----------------------------------------------------------------
    def acquire(self, wait: float = 0.0) -> "OutputLock":
        """Take the lock; with ``wait`` > 0, retry for that many seconds while another run holds it."""
        deadline = time.monotonic() + wait
        while True:
            try:
                return self._acquire()
            except OutputBusyError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.01)

    def _acquire(self) -> "OutputLock":
        data = {**_identity(), "token": self.token, "command": self.command,
                "started_utc": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        text = json.dumps(data)
        for _ in range(5):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                info = read_lock(self.path)
                if info is None:
                    continue  # released meanwhile
                if lock_is_stale(info):
                    self._break(info)
                    continue
                raise OutputBusyError(
                    f"output {self.folder} is in use by another segger run ({info.describe()}): wait for it to "
                    f"finish or choose another --output; a lock without heartbeat for {stale_seconds():.0f} s "
                    f"is taken over ({self.path})"
                ) from None
            try:
                os.write(fd, text.encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            _HELD.add(self.token)
            self.held = True
            self._thread = threading.Thread(target=self._beat, name="segger-lock-heartbeat", daemon=True)
            self._thread.start()
            return self
        raise OutputBusyError(f"output {self.folder}: could not take its lock {self.path} (other runs keep "
                              "taking it); try again")

    def _break(self, info: LockInfo) -> None:
        """Remove a stale lock, serialised by a short-lived break lock so that two runs that both saw
        the same stale lock cannot remove a fresh one written in between."""
        brk = self.path.with_name(self.path.name + ".break")
        try:
            fd = os.open(brk, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            b = read_lock(brk)
            if b is not None and b.age > stale_seconds():
                brk.unlink(missing_ok=True)
            time.sleep(0.01)
            return
        os.close(fd)
        try:
            now = read_lock(self.path)
            if now is not None and now.inode == info.inode and now.text == info.text:
                self.path.unlink(missing_ok=True)
        finally:
            brk.unlink(missing_ok=True)

    def _owned(self) -> bool:
        info = read_lock(self.path)
        return info is not None and info.data.get("token") == self.token

    def _beat(self) -> None:
        while not self._stop.wait(heartbeat_seconds()):
            if not self._owned():
                self.lost = True
                return
            try:
                os.utime(self.path)
            except OSError:
                pass

    def verify(self) -> None:
        """Raise if another run took the lock over (this one stalled past the stale limit)."""
        if self.lost or not self._owned():
            self.lost = True
            raise SeggerError(f"output {self.folder}: another run took over its lock while this one was stalled; "
                              "nothing was published — rerun when the other run has finished")

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.held and self._owned():
            self.path.unlink(missing_ok=True)
        _HELD.discard(self.token)
        self.held = False

    def __enter__(self) -> "OutputLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


# ----------------------------------------------------------------------------------------------
# leftovers, staging, publish
# ----------------------------------------------------------------------------------------------
def _rm(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        try:
            p.unlink(missing_ok=True)
        except OSError:
            pass


def sweep_leftovers(folder, keep: Iterable[Path] = ()) -> list[Path]:
    """Remove what dead runs left in ``folder`` (call only while holding its lock): staging folders,
    out-of-core bucket folders and ``.*.tmp-*`` files of interrupted atomic writes (top level and
    ``model/``). Backups of an interrupted publish are kept (see :func:`sweep_backups`)."""
    folder = Path(folder)
    keep = {Path(k) for k in keep}
    removed = []
    for sub in (folder, folder / "model"):
        if not sub.is_dir():
            continue
        for p in sorted(sub.iterdir()):
            name = p.name
            if p in keep:
                continue
            if name.startswith((STAGING_PREFIX, OOC_PREFIX)) or (name.startswith(".") and TMP_MARKER in name):
                _rm(p)
                removed.append(p)
    return removed


def sweep_backups(folder) -> list[Path]:
    """Remove ``.segger-previous-*`` backups (once a new complete output is in place)."""
    removed = []
    for p in sorted(Path(folder).glob(f"{BACKUP_PREFIX}*")):
        _rm(p)
        removed.append(p)
    return removed


def sweep_work_dir(work_dir) -> list[Path]:
    """Remove out-of-core bucket folders in a user-given work folder whose run no longer holds the lock
    of its output folder (the folder's ``owner.json`` names it)."""
    removed = []
    for p in sorted(Path(work_dir).glob(f"{OOC_PREFIX}*")):
        if not p.is_dir():
            continue
        owner = _read(p / "owner.json")
        try:
            d = json.loads(owner) if owner else {}
        except ValueError:
            d = {}
        if not d.get("output") or not d.get("token"):
            stale = time.time() - p.stat().st_mtime > stale_seconds()
        else:
            info = read_lock(Path(d["output"]) / LOCK_NAME)
            stale = info is None or info.data.get("token") != d["token"] or lock_is_stale(info)
        if stale:
            _rm(p)
            removed.append(p)
    return removed


@dataclass
class OutputSession:
    folder: Path
    stage: Path
    lock: OutputLock
    created: bool

    def work_dir(self, base=None) -> Path:
        """A bucket folder for out-of-core runs: inside the staging folder, or ``base/.segger-ooc-<token>``
        (with an ``owner.json`` so a later run can tell whether it is stale)."""
        if base is None:
            d = self.stage / f"{OOC_PREFIX}{self.lock.token}"
            d.mkdir()
            return d
        base = Path(base)
        base.mkdir(parents=True, exist_ok=True)
        sweep_work_dir(base)
        d = base / f"{OOC_PREFIX}{self.lock.token}"
        d.mkdir()
        (d / "owner.json").write_text(json.dumps({"output": str(self.folder.resolve()), "token": self.lock.token}))
        return d

    def publish(self) -> dict[str, Path]:
        self.lock.verify()
        files = publish(self.stage, self.folder)
        sweep_backups(self.folder)
        return files


@contextmanager
def output_session(folder, command: str = "") -> Iterator[OutputSession]:
    """Lock ``folder`` (created if needed), sweep dead runs' leftovers, and yield a staging folder in it.

    The staging folder and the lock are removed on exit; a first run that fails leaves no empty folder.
    """
    folder = Path(folder)
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    lock = OutputLock(folder, command)
    try:
        lock.acquire()
    except BaseException:
        if created:
            _rmdir_if_empty(folder)
        raise
    stage = folder / f"{STAGING_PREFIX}{lock.token}"
    try:
        sweep_leftovers(folder)
        stage.mkdir()
        yield OutputSession(folder, stage, lock, created)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        lock.release()
        if created:
            _rmdir_if_empty(folder)


@contextmanager
def staged_path(target) -> Iterator[Path]:
    """A hidden sibling folder to write a whole output folder into; swapped into ``target`` on success
    (the previous ``target`` is moved aside first and removed after), removed on failure."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}{TMP_MARKER}{os.getpid()}-{secrets.token_hex(4)}")
    tmp.mkdir()
    old = target.with_name(f".{target.name}.old-{secrets.token_hex(4)}")
    try:
        yield tmp
        if target.exists():
            os.replace(target, old)
        os.replace(tmp, target)
    finally:
        _rm(tmp)
        _rm(old)


def _rmdir_if_empty(folder: Path) -> None:
    try:
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    except OSError:
        pass


def _staged_files(stage: Path) -> list[str]:
    rels = [f"model/{f.name}" for f in sorted((stage / "model").iterdir()) if f.is_file()] \
        if (stage / "model").is_dir() else []
    rels += [LOGS_DIR] if (stage / LOGS_DIR).is_dir() else []
    rels += [f for f in OUTPUT_FILES if f != RUN_MARKER and (stage / f).exists()]
    if not (stage / RUN_MARKER).is_file():
        raise FileNotFoundError(f"publish: {stage} holds no {RUN_MARKER}: the run did not complete")
    return rels + [RUN_MARKER]


def publish(stage, output) -> dict[str, Path]:
    """Move the staged outputs into ``output`` (same file system, each move atomic).

    Every file of the previous output (``OUTPUT_FILES``, ``MODEL_FILES`` and the ``LOGS_DIR`` folder; ``segger_run.json``
    first) is moved aside into a ``.segger-previous-*`` backup, then the new files are moved in with
    the new marker last; if a move fails, the new files are taken out again and the previous ones
    restored. A kill part-way leaves a folder without ``segger_run.json`` (plus the backup), never a
    mixture that looks complete. Files segger does not write are never touched.
    """
    stage, output = Path(stage), Path(output)
    rels = _staged_files(stage)
    old = [RUN_MARKER] + [r for r in (*MODEL_FILES, LOGS_DIR, *OUTPUT_FILES) if r != RUN_MARKER]
    backup = output / f"{BACKUP_PREFIX}{secrets.token_hex(6)}"
    saved: list[str] = []
    placed: list[str] = []
    try:
        for rel in old:
            if (output / rel).exists():
                (backup / rel).parent.mkdir(parents=True, exist_ok=True)
                os.replace(output / rel, backup / rel)
                saved.append(rel)
        for rel in rels:
            (output / rel).parent.mkdir(parents=True, exist_ok=True)
            os.replace(stage / rel, output / rel)
            placed.append(rel)
    except BaseException:
        for rel in placed:
            _rm(output / rel)
        for rel in reversed(saved):
            os.replace(backup / rel, output / rel)
        if (output / "model").is_dir() and not any((output / "model").iterdir()):
            (output / "model").rmdir()
        raise
    finally:
        shutil.rmtree(backup, ignore_errors=True)
    if (output / "model").is_dir() and not any((output / "model").iterdir()):
        (output / "model").rmdir()
    return {rel: output / rel for rel in rels}
