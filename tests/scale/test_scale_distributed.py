"""A real distributed out-of-core run (issue 13 #2): worker *processes*, not threads.

* a ``dask.distributed.LocalCluster`` of 2 worker processes (``scheduler="processes"``);
* a scheduler and a worker started here as separate programs (``dask scheduler`` / ``dask worker``
  on 127.0.0.1, the way a cluster is started by hand or by a batch system), reached by address
  (``scheduler="tcp://127.0.0.1:PORT"``).

Both must give the synchronous run's result table exactly: the same rows in the same order, the
same columns, the same values (scores bit for bit, cell ids, fragment ids). The whole command,
``segger segment --out-of-core --scheduler tcp://…`` (train on streamed tiles, predict on the cluster,
every output), must write the synchronous command's files with the same contents.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from segger import schema as S
from segger.scale import OutOfCoreConfig, predict_out_of_core

pytestmark = pytest.mark.slow
OOC_TILING = dict(tile_size=70.0, margin=30.0)  # the tiling of the ooc_sync reference (conftest.py)
distributed = pytest.importorskip("distributed")


def assert_same_result(got: pd.DataFrame, ref: pd.DataFrame) -> None:
    assert list(got.columns) == list(ref.columns)
    assert len(got) == len(ref)
    pd.testing.assert_frame_equal(got, ref, check_exact=True)
    assert got[S.SEGGER_CELL_ID].astype(str).tolist() == ref[S.SEGGER_CELL_ID].astype(str).tolist()


def test_process_local_cluster_equals_synchronous(ooc_sync, lung_checkpoint, pkg_lung_dir, tmp_path):
    """``scheduler="processes"``: a LocalCluster of 2 worker processes × 1 thread."""
    res = predict_out_of_core(pkg_lung_dir, lung_checkpoint, tmp_path / "p.parquet",
                              OutOfCoreConfig(**OOC_TILING, scheduler="processes", workers=2))
    assert res.scheduler == "local-processes:2" and res.n_tiles == 9
    assert_same_result(pd.read_parquet(tmp_path / "p.parquet"), ooc_sync[1])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.parquet"]  # work folder (and model copy) removed


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_workers(address: str, n: int, procs: list[subprocess.Popen], timeout: float = 120.0) -> None:
    t0 = time.monotonic()
    while True:
        for p in procs:
            if p.poll() is not None:
                raise RuntimeError(f"{p.args[:4]} exited with {p.returncode}")
        try:
            with distributed.Client(address, timeout=5) as c:
                c.wait_for_workers(n, timeout=max(1.0, timeout - (time.monotonic() - t0)))
                return
        except (OSError, TimeoutError):
            if time.monotonic() - t0 > timeout:
                raise
            time.sleep(0.5)


def _stop(procs: list[subprocess.Popen]) -> None:
    """Stop the programs started here, by their process group (the worker's nanny has a child)."""
    for p in reversed(procs):
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    for p in reversed(procs):
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=10)


@contextlib.contextmanager
def dask_programs(tmp_path: Path):
    """``dask scheduler`` + ``dask worker`` (2 processes × 1 thread) on loopback; yields the address and
    the processes, and stops them (and their children) whatever the body did."""
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    procs: list[subprocess.Popen] = []
    try:
        common = dict(env=env, cwd=tmp_path, start_new_session=True, stdout=subprocess.DEVNULL,
                      stderr=open(tmp_path / "dask.log", "ab"))
        procs.append(subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                                       "--port", str(port), "--no-dashboard"], **common))
        procs.append(subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address, "--nworkers", "2",
                                       "--nthreads", "1", "--no-dashboard", "--host", "127.0.0.1",
                                       "--local-directory", str(tmp_path / "worker-space")], **common))
        _wait_for_workers(address, 2, procs)
        yield address, procs
    finally:
        _stop(procs)


@pytest.fixture
def dask_cluster_processes(tmp_path):
    with dask_programs(tmp_path) as got:
        yield got


def test_scheduler_address_equals_synchronous(ooc_sync, lung_checkpoint, pkg_lung_dir, tmp_path,
                                              dask_cluster_processes):
    """``scheduler="tcp://127.0.0.1:PORT"``: a scheduler and 2 worker processes started as programs."""
    address, procs = dask_cluster_processes
    out = tmp_path / "out"
    res = predict_out_of_core(pkg_lung_dir, lung_checkpoint, out / "a.parquet",
                              OutOfCoreConfig(**OOC_TILING, scheduler=address))
    assert res.scheduler == f"cluster:{address}"
    with distributed.Client(address) as c:  # the tiles ran in the worker processes, not here
        pids = set(c.run(os.getpid).values())
    assert len(pids) == 2 and os.getpid() not in pids and all(p.poll() is None for p in procs)
    assert_same_result(pd.read_parquet(out / "a.parquet"), ooc_sync[1])
    assert sorted(p.name for p in out.iterdir()) == ["a.parquet"]


def test_cluster_programs_are_stopped(tmp_path):
    """The fixture's teardown leaves no process behind, also when the body fails."""
    with pytest.raises(RuntimeError, match="boom"):
        with dask_programs(tmp_path) as (address, procs):
            with distributed.Client(address) as c:
                child_pids = list(c.run(os.getpid).values())
            raise RuntimeError("boom")
    assert all(p.poll() is not None for p in procs)
    for pid in child_pids:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()


def _same_output_folder(got: Path, ref: Path) -> None:
    """Every output file of two ``segger segment`` folders holds the same data (the run JSON's times,
    paths and scheduler aside)."""
    import json

    import anndata as ad
    import torch

    from segger.utils.outdir import BOUNDARIES_FILE, CELLS_FILE, QC_FILE, RUN_MARKER, TRANSCRIPTS_FILE

    assert sorted(p.name for p in got.iterdir()) == sorted(p.name for p in ref.iterdir())
    assert_same_result(pd.read_parquet(got / TRANSCRIPTS_FILE), pd.read_parquet(ref / TRANSCRIPTS_FILE))
    pd.testing.assert_frame_equal(pd.read_parquet(got / BOUNDARIES_FILE), pd.read_parquet(ref / BOUNDARIES_FILE),
                                  check_exact=True)
    a, b = ad.read_h5ad(got / CELLS_FILE), ad.read_h5ad(ref / CELLS_FILE)
    assert a.obs_names.tolist() == b.obs_names.tolist() and (a.X != b.X).nnz == 0
    pd.testing.assert_frame_equal(a.obs, b.obs, check_exact=True)
    assert json.loads((got / QC_FILE).read_text()) == json.loads((ref / QC_FILE).read_text())
    wa = torch.load(got / "model" / "best.pt", map_location="cpu", weights_only=False)["state_dict"]
    wb = torch.load(ref / "model" / "best.pt", map_location="cpu", weights_only=False)["state_dict"]
    assert all(torch.equal(wa[k], wb[k]) for k in wb)
    ra, rb = (json.loads((d / RUN_MARKER).read_text()) for d in (got, ref))
    assert ra["extra"]["n_cells"] == rb["extra"]["n_cells"] and ra["extra"]["counts"] == rb["extra"]["counts"]
    assert ra["parameters"]["train_tiles"] == rb["parameters"]["train_tiles"]


def test_segment_command_on_a_cluster_equals_synchronous(segment_ooc_sync, segment_ooc_args, pkg_lung_dir, tmp_path,
                                                         dask_cluster_processes):
    """``segger segment --out-of-core --scheduler tcp://…``: the whole command, every output, on a scheduler
    and 2 worker processes started as programs, writes what the synchronous command writes."""
    import json

    from segger.cli.main import main

    address, procs = dask_cluster_processes
    out = tmp_path / "cluster"
    assert main(["segment", str(pkg_lung_dir), "--output", str(out), *segment_ooc_args, "--scheduler", address]) == 0
    run = json.loads((out / "segger_run.json").read_text())
    assert run["parameters"]["scheduler"] == f"cluster:{address}"
    assert all(p.poll() is None for p in procs)
    _same_output_folder(out, segment_ooc_sync)

