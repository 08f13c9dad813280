"""Out-of-core prediction driven by Dask: plan → bucket → tiles on a Dask cluster → streamed parquet.

``scheduler`` picks where the tile work runs:

* ``None`` / ``"local"`` (default): a ``dask.distributed`` ``LocalCluster`` in this process
  (threads), one worker thread per CPU this process may use, one torch thread per tile: the
  tiles run side by side and the process holds the model once.
* ``"processes"``: a ``LocalCluster`` of worker processes (one per CPU, one thread each).
* ``"tcp://host:port"`` (any address a ``distributed.Client`` accepts) or a ``Client`` object:
  an existing cluster. The work folder (``work_dir``, default next to the output) must then
  be on a file system the workers can read.
* The model reaches the workers as a file: the checkpoint is copied into the work folder and each
  worker process reads it once (tasks are plain, picklable data: a :class:`TileTask`, the path,
  the settings).
* ``"synchronous"``: no Dask; the tiles run one after another in the calling thread
  (debugging, and the reference the tests compare the cluster runs to).

At most ``2 × workers`` tiles are in flight; finished tiles are written in tile order with a
``pyarrow.parquet.ParquetWriter`` to a temporary name that is renamed over the output only when
every tile succeeded. The bucket files are deleted at the end (also after an error).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pyarrow.parquet as pq

from segger import schema as S
from segger.errors import SeggerInputError
from segger.progress import Progress
from segger.utils.cpus import cpus_available
from segger.scale.tiled import (
    InputSpec,
    TileSettings,
    TileTask,
    bucket_nuclei,
    bucket_transcripts,
    cleanup,
    plan_tiles,
    predict_tile,
)
from segger.utils.memory import release_memory


@dataclass
class OutOfCoreConfig:
    """Settings of :func:`iter_predict_out_of_core` (see the module docstring for ``scheduler``)."""

    tile_size: float | None = None  # µm side of a core tile; None: from tile_tx and the density
    tile_tx: int = 250_000  # transcripts per core tile when tile_size is None (~1 GB per tile in flight)
    margin: float = 30.0  # µm of context around each core tile
    scheduler: Any = None  # None/"local" | "processes" | "synchronous" | address | distributed.Client
    workers: int | None = None  # local clusters: worker threads/processes (default: CPUs available)
    torch_threads: int | None = None  # per tile (default 1 with several workers, else the CPUs)
    work_dir: str | None = None  # bucket files (default: a temporary folder next to the output)
    batch_rows: int = 1 << 20  # rows per streamed input batch
    flush_bytes: int = 256 << 20  # bucket buffer size before part files are written
    device: str = "cpu"  # cpu | cuda | cuda:N for the tile predictions
    nuclei: str = "auto"  # auto | polygons | approximate
    min_qv: float | None = 20.0
    filter_controls: bool = True
    min_nuclear_transcripts: int = 3
    keep_work_dir: bool = False

    def to_dict(self) -> dict:
        d = {f: getattr(self, f) for f in self.__dataclass_fields__}
        if not isinstance(self.scheduler, (str, type(None))):
            d["scheduler"] = type(self.scheduler).__name__
        return d


@dataclass
class OutOfCoreResult:
    output: Path
    n_rows: int
    n_tiles: int
    timings: dict[str, float]
    counts: dict[str, int]
    plan: dict
    config: dict
    scheduler: str
    tile_seconds: list[float] = field(default_factory=list)
    input_path: str | None = None  # the transcripts parquet that was streamed (what provenance hashes)


class _Executor:
    """Submit/result over a dask.distributed Client, or plain calls (synchronous)."""

    def __init__(self, scheduler, workers: int | None):
        self.client = None
        self.cluster = None
        self.own = False
        self.kind = "synchronous"
        if isinstance(scheduler, str) and scheduler == "synchronous":
            self.workers = 1
            return
        try:
            from distributed import Client, LocalCluster
        except ImportError as exc:  # pragma: no cover - distributed is a dependency
            raise SeggerInputError("out-of-core Dask mode needs dask.distributed: pip install 'dask[distributed]'") from exc
        if scheduler is None or scheduler in ("local", "threads", "processes"):
            n = workers or cpus_available()
            procs = scheduler == "processes"
            self.cluster = LocalCluster(n_workers=n if procs else 1, threads_per_worker=1 if procs else n,
                                        processes=procs, dashboard_address=None, silence_logs=40)
            self.client = Client(self.cluster)
            self.own = True
            self.kind = f"local-{'processes' if procs else 'threads'}:{n}"
            self.workers = n
        elif isinstance(scheduler, str):
            self.client = Client(scheduler)
            self.own = True  # our connection, not the cluster
            self.kind = f"cluster:{scheduler}"
            self.workers = max(1, sum(self.client.nthreads().values()))
        else:  # a Client
            self.client = scheduler
            self.kind = "client"
            self.workers = max(1, sum(self.client.nthreads().values()))

    def scatter(self, obj):
        if self.client is None:
            return obj
        return self.client.scatter([obj], broadcast=True)[0]  # one future (a dict would be split)

    def submit(self, fn, *args):
        if self.client is None:
            return fn(*args)  # run now; "future" is the value
        return self.client.submit(fn, *args, pure=False)

    def result(self, fut):
        if self.client is None:
            return fut
        return fut.result()

    def close(self):
        if self.client is not None and self.own:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def _share_checkpoint(checkpoint, work: Path) -> str:
    """``checkpoint`` copied into the work folder (the one place every worker can read)."""
    import shutil

    dst = work / "model.pt"
    shutil.copyfile(checkpoint, dst)
    return str(dst.resolve())


def _timed_predict_tile(task: TileTask, key: str, payload: dict, settings: TileSettings):
    t = time.perf_counter()
    tab = predict_tile(task, key, payload, settings)
    release_memory()  # the tile's graph and frames are gone: hand their pages back before the next tile
    return tab, time.perf_counter() - t


def _with_global_reach(gp, spec: InputSpec, xy: np.ndarray):
    """``gp`` with ``max_distance`` set to the reach estimated from all kept transcripts and nucleus polygons."""
    from dataclasses import replace

    from segger.data.reach import estimate_reach
    from segger.io.readers import _read_boundaries

    nuc = _read_boundaries(spec.platform, Path(spec.polygons), spec.pixel_size, None, 0.0)
    geoms = nuc[S.GEOMETRY].to_numpy() if len(nuc) else np.zeros(0, dtype=object)
    if len(geoms) == 0 or len(xy) == 0:
        return gp
    return replace(gp, max_distance=float(estimate_reach(xy, geoms)))


def iter_predict_out_of_core(input_path: str | os.PathLike, checkpoint: str | os.PathLike, output: str | os.PathLike,
                             config: OutOfCoreConfig | None = None, *, graph=None, predict=None, platform: str = "auto",
                             pixel_size: float | None = None) -> Iterator[Progress]:
    """Generator form of :func:`predict_out_of_core`; yields :class:`Progress`, returns :class:`OutOfCoreResult`.

    ``output`` is the result parquet (``segger_transcripts.parquet`` layout: the transcripts +
    ``segger_cell_id``, ``score``, ``assignment``). ``graph`` (:class:`segger.data.GraphParams`)
    defaults to the checkpoint's; ``predict`` (:class:`segger.prediction.PredictConfig`) to the defaults.
    """
    from segger.data import GraphParams
    from segger.export.writers import LAYOUT_KEY, input_layout_metadata
    from segger.utils.atomic import atomic_path
    from segger.prediction import PredictConfig
    from segger.training.checkpoint import read_checkpoint

    cfg = config or OutOfCoreConfig()
    output = Path(output)
    t_all = time.perf_counter()
    timings: dict[str, float] = {}
    payload = read_checkpoint(checkpoint)
    gp = graph if graph is not None else GraphParams.from_dict(payload.get("graph_params", {}))
    gp = gp.validate()
    pc = (predict or PredictConfig()).validate()
    spec = InputSpec.resolve(input_path, platform, cfg.nuclei, pixel_size)
    nuclei_mode = "polygons" if spec.polygons else "approximate"

    t = time.perf_counter()
    plan = plan_tiles(spec, cfg.tile_size, cfg.tile_tx, cfg.margin)
    if cfg.margin < gp.dist_bd:
        raise SeggerInputError(f"margin={cfg.margin} µm is smaller than dist_bd={gp.dist_bd} µm: core transcripts "
                               "would miss candidate nuclei; use a margin of at least dist_bd + a nucleus radius")
    timings["plan"] = time.perf_counter() - t
    yield Progress("plan", 1, 1, f"{plan.n_rows:,} rows, {plan.nx}×{plan.ny} tiles of {plan.tile_size:.0f} µm "
                   f"(+{plan.margin:g} µm margin)", {"n_tiles": float(plan.n_tiles)})

    base = Path(cfg.work_dir) if cfg.work_dir else output.parent
    base.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".segger-ooc-", dir=base))
    ex = None
    try:
        # bucket
        t = time.perf_counter()
        events: list[Progress] = []
        buckets = bucket_transcripts(spec, plan, work, min_qv=cfg.min_qv, filter_controls=cfg.filter_controls,
                                     batch_rows=cfg.batch_rows, flush_bytes=cfg.flush_bytes,
                                     progress=lambda d, n: events.append(Progress("bucket", d, n, "bucketing rows")),
                                     keep_xy=gp.max_distance is None and nuclei_mode == "polygons")
        for ev in events:
            yield ev
        nuclei_parts = bucket_nuclei(spec, plan, work) if nuclei_mode == "polygons" else {}
        if buckets.xy:
            # one reach for the whole input, estimated as the in-memory graph does (each tile estimating
            # its own would make the result depend on the tiling)
            gp = _with_global_reach(gp, spec, np.concatenate(buckets.xy))
            buckets.xy = []
        release_memory()  # what the bucket pass freed (1.6 GB kept by Arrow's allocator at 30 M) before the tiles start
        timings["bucket"] = time.perf_counter() - t
        tiles = buckets.tiles()
        if not tiles:
            raise SeggerInputError(f"{spec.path}: no transcript is left after filtering (qv ≥ {cfg.min_qv}, controls)")
        yield Progress("bucket", plan.n_rows, plan.n_rows, f"{buckets.rows_kept:,} rows kept in {len(tiles)} tiles")

        # predict
        t = time.perf_counter()
        ex = _Executor(cfg.scheduler, cfg.workers)
        timings["cluster_start"] = time.perf_counter() - t
        threads = cfg.torch_threads or (1 if ex.workers > 1 else cpus_available())
        settings = TileSettings(graph=gp.to_dict(), predict=pc.to_dict(), min_nuclear_transcripts=cfg.min_nuclear_transcripts,
                                torch_threads=threads, device=cfg.device,
                                extra={"input_columns": buckets.input_columns})
        key = uuid.uuid4().hex
        # the model travels as a file: a copy of the checkpoint in the work folder (on the shared file
        # system a cluster needs anyway), read once per worker process; no live model, no closure
        pay = payload if ex.client is None else _share_checkpoint(checkpoint, work)
        tasks = [TileTask(t_, plan.bounds(t_), buckets.parts[t_], nuclei_parts.get(t_), nuclei_mode) for t_ in tiles]
        window = max(1, 2 * ex.workers)
        pending: deque = deque()
        n_out = 0
        tile_seconds: list[float] = []
        counts = {k: 0 for k in S.ASSIGNMENT_KINDS}
        t = time.perf_counter()
        with atomic_path(output) as tmp:
            writer = None
            try:
                it = iter(tasks)
                for task in it:
                    pending.append(ex.submit(_timed_predict_tile, task, key, pay, settings))
                    if len(pending) >= window:
                        break
                while pending:
                    tab, secs = ex.result(pending.popleft())  # tile order: deterministic output
                    nxt = next(it, None)
                    if nxt is not None:
                        pending.append(ex.submit(_timed_predict_tile, nxt, key, pay, settings))
                    if writer is None:  # the input's own layout, read back by segger.export.read_transcripts_output
                        meta = {LAYOUT_KEY: json.dumps(input_layout_metadata(spec.platform, spec.path,
                                                                             spec.pixel_size)).encode()}
                        schema = tab.schema.with_metadata({**(tab.schema.metadata or {}), **meta})
                        writer = pq.ParquetWriter(tmp, schema, compression="zstd")
                    writer.write_table(tab.cast(schema) if tab.schema != schema else tab)
                    n_out += tab.num_rows
                    tile_seconds.append(secs)
                    vc = tab.column(S.ASSIGNMENT).value_counts().to_pylist()
                    for d in vc:
                        counts[d["values"]] = counts.get(d["values"], 0) + int(d["counts"])
                    yield Progress("predict", len(tile_seconds), len(tasks),
                                   f"tile {len(tile_seconds)}/{len(tasks)} ({n_out:,} transcripts written)")
            finally:
                if writer is not None:
                    writer.close()
        timings["predict"] = time.perf_counter() - t
    finally:
        if ex is not None:
            ex.close()
        if not cfg.keep_work_dir:
            cleanup(work)
    if n_out != buckets.rows_kept:
        raise RuntimeError(f"out-of-core predict wrote {n_out} rows but {buckets.rows_kept} were kept")
    timings["total"] = time.perf_counter() - t_all
    counts.update({"rows_in": buckets.rows_in, "rows_kept": buckets.rows_kept, "removed_qv": buckets.removed_qv,
                   "removed_controls": buckets.removed_controls, "removed_nonfinite": buckets.removed_nonfinite})
    return OutOfCoreResult(output, n_out, len(tasks), timings, counts, plan.to_dict(), cfg.to_dict(), ex.kind,
                           tile_seconds, str(spec.path))


def predict_out_of_core(input_path, checkpoint, output, config: OutOfCoreConfig | None = None, callback=None,
                        **kwargs) -> OutOfCoreResult:
    """Predict a whole slide tile by tile (memory bounded by the tile size); see the module docstring."""
    from segger.progress import run

    return run(iter_predict_out_of_core(input_path, checkpoint, output, config, **kwargs), callback)
