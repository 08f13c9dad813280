"""Out-of-core tiled prediction: a whole slide in memory bounded by the tile size, not the slide size.

Three passes, none of which holds the slide in memory:

1. **Plan** (:func:`plan_tiles`): the slide's extent from the parquet row-group statistics (or a
   streamed min/max of x and y) and a square grid of core tiles of ``tile_size`` µm.
2. **Bucket** (:func:`bucket_transcripts`): the transcripts parquet is streamed in record
   batches of ``batch_rows`` rows (any row-group layout); each batch is put into the tidy schema
   (:mod:`segger.schema`, same column handling as :func:`segger.io.read_sample`) and filtered
   (qv, control probes), and each row is written to the part files of every tile whose core +
   ``margin`` holds it, flagged ``_core`` in the one tile whose core owns it. Buffers are flushed
   to Arrow IPC part files in a work folder when they pass ``flush_bytes``, so each tile later
   reads only its own rows and margin strips.
3. **Predict** (:func:`predict_tile`, run through Dask by :mod:`segger.scale.runner`): per tile,
   nuclei (vendor polygons bucketed by centroid, or approximated from the tile's own nuclear
   transcripts), :func:`segger.data.build_graph` on core + margin, the trained model, and
   :meth:`segger.prediction.Prediction.assign`. Only the core rows are returned, so every
   transcript is written exactly once, scored in the tile where it has the full ``margin`` of
   context on every side (a transcript in another tile's margin has less context there, which is
   why the core tile's score is the one kept; there are no duplicates to resolve).

Fragment ids are ``fragment-tx<first transcript id>`` (the smallest transcript id of the group,
margin rows included), so a fragment cut by a tile border, found by both tiles, keeps one id. The
reach (``max_distance``), when the checkpoint does not fix it, is estimated once from every kept
transcript and nucleus polygon, as the in-memory graph does, not per tile. Nuclei approximated per tile are complete for every nucleus within
``dist_bd`` of a core transcript as long as ``margin ≥ dist_bd + nucleus radius`` (default 30 µm).
"""

from __future__ import annotations

import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from segger import schema as S
from segger.errors import SeggerInputError
from segger.utils.memory import release_memory

CORE = "_core"


# ----------------------------------------------------------------------------------------------
# input handling (same column handling as segger.io.read_sample, one batch at a time)
@dataclass
class InputSpec:
    """A streamable transcripts input: the parquet file, its platform and where nuclei come from."""

    path: str  # transcripts parquet
    platform: str  # xenium | merscope | cosmx | table
    folder: str  # folder of the other vendor outputs
    pixel_size: float | None = None
    x_col: str = "x"
    y_col: str = "y"
    scale: float = 1.0
    polygons: str | None = None  # nucleus polygons file, when used

    @classmethod
    def resolve(cls, path: str | os.PathLike, platform: str = "auto", nuclei: str = "auto",
                pixel_size: float | None = None, polygons: str | os.PathLike | None = None) -> "InputSpec":
        from segger.io import readers as R
        from segger.io import _tables as T

        plat, file, folder = R._resolve(Path(path), platform)
        if T.table_suffix(file) != ".parquet":
            raise SeggerInputError(
                f"{file}: out-of-core mode streams parquet row groups; convert the transcripts to parquet "
                "(pandas.read_csv(...).to_parquet(...)) or drop --out-of-core"
            )
        cols = list(pq.ParquetFile(file).schema_arrow.names)
        kw = _standardise_kwargs(plat)
        xc = T.find_column(cols, kw["x_aliases"])
        yc = T.find_column(cols, kw["y_aliases"])
        if xc is None or yc is None:
            raise SeggerInputError(f"{file}: no x/y columns found (looked for {kw['x_aliases']} and {kw['y_aliases']})")
        scale = 1.0
        if plat == "cosmx":
            scale = R.COSMX_PIXEL_SIZE if pixel_size is None else R._check_pixel_size(pixel_size)
        poly = None
        if nuclei in ("auto", "polygons"):
            poly_file = Path(polygons) if polygons is not None else R._boundary_file(folder, plat, "nucleus")
            if poly_file is None and plat == "merscope":
                poly_file = R._boundary_file(folder, plat, "cell")
            if poly_file is None and nuclei == "polygons":
                raise SeggerInputError(f"{folder}: no nucleus polygons found for {plat}; use nuclei='approximate'")
            poly = str(poly_file) if poly_file is not None else None
        elif nuclei != "approximate":
            raise SeggerInputError(f"nuclei={nuclei!r}: out-of-core mode supports auto, polygons or approximate")
        return cls(str(file), plat, str(folder), pixel_size, xc, yc, scale, poly)


def _standardise_kwargs(platform: str) -> dict[str, Any]:
    from segger.io.readers import platform_spec

    return platform_spec(platform)


#: prefix of the input's own columns carried through the bucket files beside the tidy ones (the
#: consumed columns: the output keeps the input's names and values, :func:`segger.export.input_layout`)
RAW_PREFIX = "__segger_input__"
_TIDY_NAMES = frozenset(S.TX_COLUMNS) | {S.COMPARTMENT}


def standardise_batch(raw: pd.DataFrame, spec: InputSpec, *, carry_input: bool = False) -> pd.DataFrame:
    """One raw batch → the tidy transcripts schema (as :func:`segger.io.read_transcripts`, the one
    platform rule). ``carry_input``: also keep the input's columns that the tidy table renames or
    changes, as ``RAW_PREFIX + name`` (see :func:`input_frame`)."""
    from segger.io.readers import tidy_platform_table

    tidy = tidy_platform_table(raw, spec.platform, spec.path, spec.pixel_size)
    if carry_input:
        for col in raw.columns:
            if col not in tidy.columns or col in _TIDY_NAMES:
                tidy[RAW_PREFIX + str(col)] = raw[col].to_numpy()
    return tidy


def input_frame(df: pd.DataFrame, input_columns: list[str]) -> pd.DataFrame:
    """The input's own columns (names, order, values) of rows carried with ``carry_input=True``."""
    return pd.DataFrame({c: (df[RAW_PREFIX + c] if RAW_PREFIX + c in df.columns else df[c]).to_numpy()
                         for c in input_columns}, copy=False)


# ----------------------------------------------------------------------------------------------
# tiling plan
@dataclass
class TilePlan:
    """Square core tiles of ``tile_size`` µm from ``(x0, y0)``; tile ``t = i * ny + j``."""

    x0: float
    y0: float
    tile_size: float
    margin: float
    nx: int
    ny: int
    n_rows: int  # rows in the input (before filtering)

    @property
    def n_tiles(self) -> int:
        return self.nx * self.ny

    def bounds(self, t: int) -> tuple[float, float, float, float]:
        i, j = divmod(int(t), self.ny)
        bx0, by0 = self.x0 + i * self.tile_size, self.y0 + j * self.tile_size
        return (bx0, by0, bx0 + self.tile_size, by0 + self.tile_size)

    def core_tile(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        ix = np.clip(np.floor((x - self.x0) / self.tile_size), 0, self.nx - 1).astype(np.int64)
        iy = np.clip(np.floor((y - self.y0) / self.tile_size), 0, self.ny - 1).astype(np.int64)
        return ix * self.ny + iy

    def assign(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(row, tile, is_core)`` for every tile whose core + margin holds each point."""
        ts, m = self.tile_size, self.margin
        core = self.core_tile(x, y)
        ilo = np.clip(np.floor((x - self.x0 - m) / ts), 0, self.nx - 1).astype(np.int64)
        ihi = np.clip(np.floor((x - self.x0 + m) / ts), 0, self.nx - 1).astype(np.int64)
        jlo = np.clip(np.floor((y - self.y0 - m) / ts), 0, self.ny - 1).astype(np.int64)
        jhi = np.clip(np.floor((y - self.y0 + m) / ts), 0, self.ny - 1).astype(np.int64)
        rows, tiles = [], []
        n = len(x)
        idx = np.arange(n, dtype=np.int64)
        span = int(math.ceil(m / ts)) + 1 if ts > 0 else 1
        for di in range(span + 1):
            for dj in range(span + 1):
                i, j = ilo + di, jlo + dj
                ok = (i <= ihi) & (j <= jhi)
                rows.append(idx[ok])
                tiles.append(i[ok] * self.ny + j[ok])
        r = np.concatenate(rows)
        t = np.concatenate(tiles)
        return r, t, core[r] == t

    def to_dict(self) -> dict:
        return asdict(self)


def _xy_extent(spec: InputSpec) -> tuple[float, float, float, float, int]:
    """(xmin, ymin, xmax, ymax, rows) from row-group statistics; a streamed pass when absent."""
    pf = pq.ParquetFile(spec.path)
    md = pf.metadata
    names = pf.schema_arrow.names
    lo = [math.inf, math.inf]
    hi = [-math.inf, -math.inf]
    ok = True
    for rg in range(md.num_row_groups):
        g = md.row_group(rg)
        for k, col in enumerate((spec.x_col, spec.y_col)):
            st = g.column(names.index(col)).statistics
            if st is None or not st.has_min_max or not isinstance(st.min, (int, float)):
                ok = False
                break
            lo[k] = min(lo[k], float(st.min))
            hi[k] = max(hi[k], float(st.max))
        if not ok:
            break
    if not ok or not all(map(math.isfinite, lo + hi)):
        lo, hi = [math.inf, math.inf], [-math.inf, -math.inf]
        pf = pq.ParquetFile(spec.path, pre_buffer=False)  # see bucket_transcripts
        for b in pf.iter_batches(batch_size=1 << 20, columns=[spec.x_col, spec.y_col]):
            for k in range(2):
                a = b.column(k).to_numpy(zero_copy_only=False).astype(np.float64)
                a = a[np.isfinite(a)]
                if len(a):
                    lo[k], hi[k] = min(lo[k], float(a.min())), max(hi[k], float(a.max()))
    if not all(map(math.isfinite, lo + hi)):
        raise SeggerInputError(f"{spec.path}: no finite x/y coordinates")
    s = spec.scale
    return lo[0] * s, lo[1] * s, hi[0] * s, hi[1] * s, md.num_rows


def plan_tiles(spec: InputSpec, tile_size: float | None = None, tile_tx: int = 250_000,
               margin: float = 30.0) -> TilePlan:
    """The tile grid: ``tile_size`` µm, or the side holding ~``tile_tx`` transcripts at the
    slide's mean density (rows / bounding-box area; dense tissue gets more per tile)."""
    x0, y0, x1, y1, n = _xy_extent(spec)
    if margin < 0:
        raise SeggerInputError(f"margin={margin} must be ≥ 0 µm")
    w, h = max(x1 - x0, 1e-6), max(y1 - y0, 1e-6)
    if tile_size is None:
        tile_size = max(math.sqrt(w * h * tile_tx / max(n, 1)), 2 * margin, 50.0)
    if not (tile_size > 0 and math.isfinite(tile_size)):
        raise SeggerInputError(f"tile_size={tile_size} must be a positive number of µm")
    nx = max(1, math.ceil((w + 1e-9) / tile_size))
    ny = max(1, math.ceil((h + 1e-9) / tile_size))
    return TilePlan(float(x0), float(y0), float(tile_size), float(margin), nx, ny, int(n))


# ----------------------------------------------------------------------------------------------
# bucketing
@dataclass
class BucketResult:
    work_dir: str
    parts: dict[int, list[str]]  # tile → part files
    core_rows: dict[int, int]  # tile → rows it owns
    rows_in: int = 0
    rows_kept: int = 0
    removed_qv: int = 0
    removed_controls: int = 0
    removed_nonfinite: int = 0
    schema: pa.Schema | None = None
    seconds: float = 0.0
    xy: list = field(default_factory=list)  # kept (x, y) per batch, input order (``keep_xy=True`` only)
    genes: set = field(default_factory=set)  # the genes of the kept rows (the vocabulary of a streamed training)
    input_columns: list | None = None  # the input's own columns, in order (carried as RAW_PREFIX + name)

    def tiles(self) -> list[int]:
        """Tiles that own at least one transcript, in grid order."""
        return sorted(t for t, n in self.core_rows.items() if n > 0)


def _arrow_safe(df: pd.DataFrame) -> pa.Table:
    t = pa.Table.from_pandas(df, preserve_index=False)
    # all-null object columns come out as type null: make them strings so batches agree
    fields = [pa.field(f.name, pa.string()) if pa.types.is_null(f.type) else f for f in t.schema]
    return t.cast(pa.schema(fields))


def bucket_transcripts(spec: InputSpec, plan: TilePlan, work_dir: str | os.PathLike, *, min_qv: float | None = 20.0,
                       filter_controls: bool = True, batch_rows: int = 1 << 20, flush_bytes: int = 256 << 20,
                       progress=None, keep_xy: bool = False) -> BucketResult:
    """Stream the input into per-tile Arrow part files (core rows + margin strips). ``keep_xy``: also
    keep the kept rows' coordinates in input order (16 bytes per transcript; for the one reach estimate)."""
    from segger.io.filtering import DEFAULT_CONTROL_PATTERNS, filter_transcripts

    t0 = time.perf_counter()
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    patterns = DEFAULT_CONTROL_PATTERNS if filter_controls else ()
    res = BucketResult(str(work), {}, {})
    buffers: dict[int, list[pa.Table]] = {}
    buffered = 0
    flush_no = 0

    def flush() -> None:
        nonlocal buffered, flush_no
        for t, tabs in buffers.items():
            if not tabs:
                continue
            tab = pa.concat_tables(tabs, promote_options="permissive")
            f = work / f"t{t:06d}-{flush_no:05d}.arrow"
            with ipc.new_file(f, tab.schema) as w:
                w.write_table(tab)
            res.parts.setdefault(t, []).append(str(f))
        buffers.clear()
        buffered = 0
        flush_no += 1
        release_memory()

    # pre_buffer=False: with Arrow's pre-buffering the reader keeps every column chunk it has read until
    # it is closed, so a streamed pass held a growing share of the file (1.1 GB of Arrow memory at 30 M
    # rows, linear in the slide); without it the reader holds the current row group (35 MB here)
    pf = pq.ParquetFile(spec.path, pre_buffer=False)
    done = 0
    for batch in pf.iter_batches(batch_size=batch_rows):
        raw = batch.to_pandas()
        n = len(raw)
        done += n
        tidy = standardise_batch(raw, spec, carry_input=True)
        if res.input_columns is None:
            res.input_columns = [str(c) for c in raw.columns]
        del raw
        res.rows_in += n
        try:
            kept, rep = filter_transcripts(tidy, min_qv, patterns, source=spec.path)
            res.removed_qv += rep.removed_qv
            res.removed_controls += rep.removed_controls
            res.removed_nonfinite += rep.removed_nonfinite
        except SeggerInputError:
            kept = tidy.iloc[:0]  # every row of this batch was filtered out
        res.rows_kept += len(kept)
        if len(kept):
            res.genes.update(map(str, pd.unique(kept[S.GENE].astype(str))))
            x = kept[S.X].to_numpy(np.float64)
            y = kept[S.Y].to_numpy(np.float64)
            if keep_xy:
                res.xy.append(np.stack([x, y], axis=1))
            rows, tiles, is_core = plan.assign(x, y)
            table = _arrow_safe(kept)
            if res.schema is None:
                res.schema = table.schema
            order = np.argsort(tiles, kind="stable")
            rows, tiles, is_core = rows[order], tiles[order], is_core[order]
            cuts = np.flatnonzero(np.r_[True, tiles[1:] != tiles[:-1], True])
            for a, b in zip(cuts[:-1], cuts[1:]):
                t = int(tiles[a])
                sub = table.take(pa.array(rows[a:b]))
                sub = sub.append_column(CORE, pa.array(is_core[a:b]))
                buffers.setdefault(t, []).append(sub)
                buffered += sub.nbytes
                res.core_rows[t] = res.core_rows.get(t, 0) + int(is_core[a:b].sum())
        if buffered >= flush_bytes:
            flush()
        if progress is not None:
            progress(done, plan.n_rows)
    flush()
    res.seconds = time.perf_counter() - t0
    return res


def bucket_nuclei(spec: InputSpec, plan: TilePlan, work_dir: str | os.PathLike) -> dict[int, str]:
    """Vendor nucleus polygons → one parquet per tile (WKB) with the nuclei whose centroid lies in
    the tile's core + margin. Reads the polygons file once (nuclei ≪ transcripts)."""
    import shapely

    from segger.io.readers import _read_boundaries

    nuc = _read_boundaries(spec.platform, Path(spec.polygons), spec.pixel_size, None, 0.0)
    work = Path(work_dir)
    out: dict[int, str] = {}
    if len(nuc) == 0:
        return out
    rows, tiles, _ = plan.assign(nuc[S.X].to_numpy(np.float64), nuc[S.Y].to_numpy(np.float64))
    tab = pd.DataFrame({S.BD_ID: nuc[S.BD_ID].astype(str).to_numpy(), "wkb": shapely.to_wkb(nuc[S.GEOMETRY].to_numpy()),
                        S.X: nuc[S.X].to_numpy(), S.Y: nuc[S.Y].to_numpy(),
                        S.BD_SOURCE: nuc[S.BD_SOURCE].astype(str).to_numpy() if S.BD_SOURCE in nuc else "polygon"})
    order = np.argsort(tiles, kind="stable")
    rows, tiles = rows[order], tiles[order]
    cuts = np.flatnonzero(np.r_[True, tiles[1:] != tiles[:-1], True])
    for a, b in zip(cuts[:-1], cuts[1:]):
        t = int(tiles[a])
        f = work / f"nuclei-t{t:06d}.parquet"
        tab.iloc[rows[a:b]].to_parquet(f, index=False)
        out[t] = str(f)
    return out


# ----------------------------------------------------------------------------------------------
# per-tile work
@dataclass
class TileTask:
    """What one tile's prediction needs; plain data, so Dask can ship it to any worker."""

    tile: int
    bounds: tuple[float, float, float, float]
    parts: list[str]
    nuclei_part: str | None = None
    nuclei_mode: str = "approximate"  # approximate | polygons


@dataclass
class TileSettings:
    graph: dict  # GraphParams.to_dict()
    predict: dict  # PredictConfig fields
    min_nuclear_transcripts: int = 3
    torch_threads: int | None = None
    device: str = "cpu"
    extra: dict = field(default_factory=dict)


_MODELS: dict[str, Any] = {}


def _model_from_payload(key: str, payload):
    """The model of a checkpoint payload (a dict, or the path of a checkpoint file that every worker
    can read), built once per process (thread-safe enough: a race only builds it twice). Only the
    models of the last few runs stay cached in a long-lived worker."""
    m = _MODELS.get(key)
    if m is None:
        from segger.data.vocab import GeneVocab
        from segger.training.checkpoint import model_from_payload, read_checkpoint

        if isinstance(payload, (str, os.PathLike)):
            payload = read_checkpoint(payload)
        model, _ = model_from_payload(payload)
        m = (model, GeneVocab.from_list(payload["vocab"]))
        while len(_MODELS) >= 4:
            _MODELS.pop(next(iter(_MODELS)))
        _MODELS[key] = m
    return m


def read_tile(task: TileTask, *, keep_input: bool = False) -> tuple[pd.DataFrame, np.ndarray]:
    """The tile's transcripts (core + margin, tidy schema) and the core mask; ``keep_input``: with the
    input's own columns carried beside them (``RAW_PREFIX + name``)."""
    tabs = []
    for f in task.parts:
        with ipc.open_file(f) as r:
            tabs.append(r.read_all())
    tab = pa.concat_tables(tabs, promote_options="permissive")
    core = tab.column(CORE).to_numpy(zero_copy_only=False).astype(bool)
    drop = [CORE] + ([] if keep_input else [c for c in tab.column_names if c.startswith(RAW_PREFIX)])
    return tab.drop_columns(drop).to_pandas(), core


def tile_nuclei(task: TileTask, df: pd.DataFrame, min_nuclear: int) -> pd.DataFrame:
    import shapely

    from segger.io import approximate_nuclei, empty_nuclei

    if task.nuclei_mode == "polygons":
        if task.nuclei_part is None:
            return empty_nuclei()
        t = pd.read_parquet(task.nuclei_part)
        return pd.DataFrame({S.BD_ID: t[S.BD_ID].astype(str).to_numpy(dtype=object),
                             S.GEOMETRY: shapely.from_wkb(t["wkb"].to_numpy()),
                             S.X: t[S.X].to_numpy(np.float64), S.Y: t[S.Y].to_numpy(np.float64),
                             S.BD_SOURCE: t[S.BD_SOURCE].to_numpy(dtype=object)})
    nuc = approximate_nuclei(df, min_nuclear)
    nuc.attrs = {}
    return nuc.reset_index(drop=True)


def predict_tile(task: TileTask, model_key: str, payload, settings: TileSettings) -> pa.Table:
    """Predict one tile (``payload``: a checkpoint payload or a checkpoint path); returns its core rows
    as the result table (Arrow)."""
    import torch

    from segger.data import GraphParams, build_graph
    from segger.prediction import PredictConfig, predict

    if settings.torch_threads:
        torch.set_num_threads(int(settings.torch_threads))
    if settings.device != "cpu":  # prediction moves the model to the GPU and back: one copy per thread
        import threading

        model_key = f"{model_key}-{threading.get_ident()}"
    model, vocab = _model_from_payload(model_key, payload)
    cols = settings.extra.get("input_columns")
    df, core = read_tile(task, keep_input=bool(cols))
    nuc = tile_nuclei(task, df, settings.min_nuclear_transcripts)
    pcfg = PredictConfig(**{k: v for k, v in settings.predict.items() if k in PredictConfig.__dataclass_fields__})
    pcfg.tile_tx = max(len(df), 1)  # the tile is the unit: no sub-tiling
    pcfg.device = settings.device
    if len(nuc) == 0:
        out = df.copy()
        out[S.SEGGER_CELL_ID] = S.UNASSIGNED
        out[S.SCORE] = np.zeros(len(df), dtype=np.float32)
        out[S.ASSIGNMENT] = "none"
    else:
        bundle = build_graph(df, nuc, GraphParams.from_dict(settings.graph), vocab=vocab)
        out = predict(model, bundle, pcfg).assign()
        out[S.ASSIGNMENT] = out[S.ASSIGNMENT].astype(str)
        frag = out[S.SEGGER_CELL_ID].astype(str).str.startswith("fragment-").to_numpy()
        if frag.any():
            # a fragment is named by its smallest transcript id over the whole group (margin rows
            # included): a fragment that crosses a tile border is found by both tiles and gets the
            # same id in both, so it stays one cell
            ids = out[S.SEGGER_CELL_ID].to_numpy(dtype=object).copy()
            first = out.loc[frag].groupby(S.SEGGER_CELL_ID, observed=True)[S.TX_ID].min()
            ids[frag] = [f"fragment-tx{first[v]}" for v in ids[frag]]
            out[S.SEGGER_CELL_ID] = ids
    out = out.loc[core].reset_index(drop=True)
    if cols:  # the output keeps the input's own columns + Segger's (as an in-memory run writes it)
        from segger.export.writers import input_layout

        out = input_layout(input_frame(out, list(cols)), out)
    else:
        out = out.drop(columns=[c for c in out.columns if str(c).startswith(RAW_PREFIX)])
    return _arrow_safe(out)


def cleanup(work_dir: str | os.PathLike) -> None:
    shutil.rmtree(work_dir, ignore_errors=True)
