"""A region of a whole-slide output, read without reading the whole slide.

:class:`RegionSource` opens a segger output folder (or its transcripts parquet) once: the parquet
metadata, the x/y statistics of every row group (the out-of-core writer puts each tile in its own row
group, :func:`write_tiled_transcripts`) and, when the folder has one, the outlines file's footer: the
writer (:func:`segger.export.write_boundaries`) puts the outlines in row groups by a spatial grid with
each outline's bounding box in ``minx, miny, maxx, maxy`` columns, whose row-group statistics say which
row groups meet a box (:class:`OutlineRegions`). Then :meth:`RegionSource.load` returns the transcripts
(as the result table, :mod:`segger.schema` names) and the cell outlines of a box ``(x0, y0, x1, y1)`` µm,
reading only the row groups whose statistics meet the box and then keeping exactly the rows with
``x0 <= x < x1`` and ``y0 <= y < y1``; an outline is kept when it meets the box. A region holding more
than ``max_transcripts`` transcripts is refused with a one-line error (:class:`RegionTooLargeError`)
before its rows are read. An outlines file without the bounds columns (the vertex layout, or written
before them) is read once in a background thread instead, every outline's bounds computed
(:class:`OutlineIndex`).

:func:`segger.export.read_transcripts_region` and :func:`segger.export.read_boundaries_region` are this
class used once. Text columns are read as parquet dictionaries (a region costs their codes, not one Python
string a row). No Qt / napari import: the napari *Whole-slide region* widget calls it in a worker.
"""

from __future__ import annotations

import json
import os
import threading
import time
from concurrent.futures import Future
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from segger import schema
from segger.errors import SeggerInputError

__all__ = ["MAX_REGION_TRANSCRIPTS", "OutlineIndex", "OutlineRegions", "RegionSource", "RegionTooLargeError",
           "open_outlines", "read_boundaries_region", "read_transcripts_region", "split_tiles",
           "write_tiled_transcripts"]

#: the most transcripts one :meth:`RegionSource.load` returns (napari draws ~2 M points smoothly)
MAX_REGION_TRANSCRIPTS = 2_000_000
#: outline geometries are decoded in chunks of this many rows when their bounds are computed
_WKB_CHUNK = 100_000

Box = tuple[float, float, float, float]


class RegionTooLargeError(SeggerInputError):
    """The region holds more transcripts than the source's ``max_transcripts``."""


def _box(bbox: Iterable[float]) -> Box:
    try:
        x0, y0, x1, y1 = (float(v) for v in bbox)
    except (TypeError, ValueError):
        raise SeggerInputError(f"a region is (x0, y0, x1, y1) in µm, not {bbox!r}") from None
    if not all(np.isfinite([x0, y0, x1, y1])):
        raise SeggerInputError(f"region {bbox!r} is not finite")
    return (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))


class RegionSource:
    """A whole-slide output opened once for region reads (see the module docstring).

    ``path``: a segger output folder (``segger_transcripts.parquet`` and, when present,
    ``segger_boundaries.parquet``) or a transcripts parquet written by
    :func:`segger.export.write_transcripts` / the out-of-core writer. ``boundaries``: another outlines
    file (``False``: none; a transcripts file given alone has none). Opening reads the parquet footers
    (the outlines file's too, :class:`OutlineRegions`); an outlines file without per-outline bounds is
    indexed in a background thread from open (``prefetch_outlines``; else the first :meth:`load` starts
    it, and reads the transcripts meanwhile).
    """

    def __init__(self, path: str | os.PathLike, *, boundaries: str | os.PathLike | bool | None = None,
                 max_transcripts: int = MAX_REGION_TRANSCRIPTS, prefetch_outlines: bool = True) -> None:
        import pyarrow.parquet as pq

        from segger.utils.outdir import BOUNDARIES_FILE, LEGACY_BOUNDARIES_FILE, TRANSCRIPTS_FILE

        p = Path(path)
        if p.is_dir():
            folder, tx = p, p / TRANSCRIPTS_FILE
        else:
            folder, tx = p.parent, p
        if not tx.is_file():
            raise SeggerInputError(f"{tx} not found: give a folder written by 'segger segment' or its "
                                   f"{TRANSCRIPTS_FILE}")
        self.folder = folder
        self.transcripts_path = tx
        self.boundaries_path: Path | None = None
        if boundaries is None and p.is_dir():  # a folder: its outlines file, when it has one
            self.boundaries_path = next((folder / n for n in (BOUNDARIES_FILE, LEGACY_BOUNDARIES_FILE)
                                         if (folder / n).is_file()), None)
        elif boundaries not in (None, False, True):
            self.boundaries_path = Path(boundaries)
        self.max_transcripts = int(max_transcripts)
        self.last_stats: dict[str, Any] = {}

        t = time.perf_counter()
        import pyarrow as pa

        names0 = pq.read_schema(tx)
        # text columns (gene, cell ids, assignment) read as dictionaries: a region's rows then cost their
        # integer codes, not one Python string each (they come back as pandas categoricals)
        self.text_columns = [f.name for f in names0 if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]
        self._pf = pq.ParquetFile(tx, read_dictionary=self.text_columns)
        from segger.export.writers import _layout_of

        self.layout = _layout_of(tx)
        names = self._pf.schema_arrow.names
        if self.layout.get("layout") == "input":
            from segger.io import _tables as T
            from segger.io.readers import platform_spec

            spec = platform_spec(self.layout["platform"], self.layout.get("pixel_size"))
            self.x_column = T.find_column(names, spec["x_aliases"])
            self.y_column = T.find_column(names, spec["y_aliases"])
            self.scale = float(spec.get("scale", 1.0))
        else:
            self.x_column, self.y_column, self.scale = schema.X, schema.Y, 1.0
        if self.x_column is None or self.y_column is None:
            raise SeggerInputError(f"{tx}: no x/y columns to select a region by (columns: {names})")
        md = self._pf.metadata
        self.n_rows = int(md.num_rows)
        self.n_row_groups = int(md.num_row_groups)
        ix, iy = names.index(self.x_column), names.index(self.y_column)
        #: per row group: rows and (x0, y0, x1, y1) µm of its statistics (NaN: none, always read)
        self.group_rows = np.array([md.row_group(g).num_rows for g in range(self.n_row_groups)], dtype=np.int64)
        bounds = np.full((self.n_row_groups, 4), np.nan)
        for g in range(self.n_row_groups):
            rg = md.row_group(g)
            sx, sy = rg.column(ix).statistics, rg.column(iy).statistics
            if sx is not None and sy is not None and sx.has_min_max and sy.has_min_max:
                bounds[g] = (sx.min * self.scale, sy.min * self.scale, sx.max * self.scale, sy.max * self.scale)
        self.group_bounds = bounds
        self._outlines: Future | None = None
        self.open_seconds = time.perf_counter() - t
        if prefetch_outlines:
            self._index_outlines()

    # ---------------------------------------------------------------------------------------
    def __repr__(self) -> str:
        return (f"RegionSource({str(self.transcripts_path)!r}, {self.n_rows:,} transcripts in "
                f"{self.n_row_groups} row groups)")

    @property
    def extent(self) -> Box:
        """``(x0, y0, x1, y1)`` µm of the whole slide, from the row-group statistics (read whole
        without them)."""
        b = self.group_bounds
        if self.n_row_groups == 0:
            return (0.0, 0.0, 0.0, 0.0)
        if np.isnan(b).any():
            t = self._pf.read(columns=[self.x_column, self.y_column])
            x = t.column(0).to_numpy() * self.scale
            y = t.column(1).to_numpy() * self.scale
            return (float(np.min(x)), float(np.min(y)), float(np.max(x)), float(np.max(y))) if len(x) else \
                (0.0, 0.0, 0.0, 0.0)
        return (float(b[:, 0].min()), float(b[:, 1].min()), float(b[:, 2].max()), float(b[:, 3].max()))

    def row_groups(self, bbox: Iterable[float]) -> np.ndarray:
        """Indices of the row groups whose x/y statistics meet the box (and of those without statistics)."""
        x0, y0, x1, y1 = _box(bbox)
        b = self.group_bounds
        meet = (b[:, 2] >= x0) & (b[:, 0] < x1) & (b[:, 3] >= y0) & (b[:, 1] < y1)
        return np.flatnonzero(meet | np.isnan(b).any(axis=1))

    def _inside(self, table, x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
        x = table.column(self.x_column).to_numpy(zero_copy_only=False).astype(float, copy=False) * self.scale
        y = table.column(self.y_column).to_numpy(zero_copy_only=False).astype(float, copy=False) * self.scale
        return (x >= x0) & (x < x1) & (y >= y0) & (y < y1)

    def count(self, bbox: Iterable[float]) -> int:
        """The exact number of transcripts in the box (reads only x and y of the row groups it meets)."""
        x0, y0, x1, y1 = _box(bbox)
        groups = self.row_groups((x0, y0, x1, y1))
        if len(groups) == 0:
            return 0
        t = self._pf.read_row_groups(groups.tolist(), columns=[self.x_column, self.y_column])
        return int(self._inside(t, x0, y0, x1, y1).sum())

    def _check_size(self, bbox: Box, groups: np.ndarray) -> None:
        upper = int(self.group_rows[groups].sum()) if len(groups) else 0
        if upper <= self.max_transcripts:
            return
        n = self.count(bbox)  # the row groups are an upper bound: count exactly before refusing
        if n > self.max_transcripts:
            x0, y0, x1, y1 = bbox
            raise RegionTooLargeError(
                f"the region {x1 - x0:.0f} × {y1 - y0:.0f} µm holds {n:,} transcripts, more than the "
                f"{self.max_transcripts:,} a region may load: zoom in or draw a smaller rectangle")

    def read_transcripts(self, bbox: Iterable[float], *, check_size: bool = True) -> tuple[pd.DataFrame, dict[str, int]]:
        """The result table of the transcripts in the box and ``{"row_groups_read", "row_groups"}``."""
        x0, y0, x1, y1 = box = _box(bbox)
        groups = self.row_groups(box)
        if check_size:
            self._check_size(box, groups)
        pf = self._pf
        table = pf.read_row_groups(groups.tolist()) if len(groups) else pf.schema_arrow.empty_table()
        if len(groups):
            table = table.filter(self._inside(table, x0, y0, x1, y1))
        raw = table.to_pandas()
        if self.layout.get("layout") == "input":
            from segger.io import tidy_platform_table

            raw = tidy_platform_table(raw, self.layout["platform"], self.transcripts_path,
                                      self.layout.get("pixel_size"))
        return raw, {"row_groups_read": int(len(groups)), "row_groups": self.n_row_groups}

    # --- outlines ------------------------------------------------------------------------------
    def _index_outlines(self) -> Future | None:
        """The outlines file opened once: its footer when it is region-readable (:class:`OutlineRegions`),
        else indexed in a background thread (reading and decoding a slide's outlines takes seconds; the
        transcripts are read meanwhile)."""
        if self._outlines is None and self.boundaries_path is not None:
            fut: Future = Future()
            path = self.boundaries_path
            t = time.perf_counter()
            regions = OutlineRegions.open(path)
            if regions is not None:
                regions.seconds = time.perf_counter() - t
                fut.set_result(regions)
                self._outlines = fut
                return fut

            def work() -> None:
                t = time.perf_counter()
                try:
                    index = OutlineIndex(path)
                    index.seconds = time.perf_counter() - t
                    fut.set_result(index)
                except BaseException as exc:  # noqa: BLE001 - handed to the reader of the future
                    fut.set_exception(exc)

            threading.Thread(target=work, name="segger-outline-index", daemon=True).start()
            self._outlines = fut
        return self._outlines

    @property
    def outlines(self) -> OutlineRegions | OutlineIndex | None:
        """The outlines file opened for region reads (:class:`OutlineRegions`, or the
        :class:`OutlineIndex` of a file without bounds columns: waits for it), ``None`` without one."""
        fut = self._index_outlines()
        return None if fut is None else fut.result()

    def read_outlines(self, bbox: Iterable[float]) -> pd.DataFrame | None:
        """The outlines meeting the box (:meth:`OutlineRegions.read` / :meth:`OutlineIndex.read`), or
        ``None`` without an outlines file."""
        index = self.outlines
        return None if index is None else index.read(bbox)

    # ---------------------------------------------------------------------------------------
    def load(self, bbox: Iterable[float]) -> tuple[pd.DataFrame, pd.DataFrame | None]:
        """``(transcripts, outlines)`` of the box: the result table of its transcripts and the outlines
        meeting it (``None`` without an outlines file). Raises :class:`RegionTooLargeError` over
        ``max_transcripts``. :attr:`last_stats` tells the row groups read and the seconds taken."""
        box = _box(bbox)
        self._index_outlines()  # in the background while the transcripts are read
        t = time.perf_counter()
        tx, stats = self.read_transcripts(box)
        t_tx = time.perf_counter() - t
        t = time.perf_counter()
        outlines = self.read_outlines(box)
        self.last_stats = {**stats, "bbox": list(box), "n_transcripts": int(len(tx)),
                           "n_outlines": None if outlines is None else int(len(outlines)),
                           "transcripts_s": t_tx, "outlines_s": time.perf_counter() - t,
                           "outline_index_s": None if outlines is None else self.outlines.seconds,
                           "outline_row_groups_read": None if outlines is None else self.outlines.last_row_groups_read,
                           "outline_row_groups": None if outlines is None else self.outlines.n_row_groups}
        return tx, outlines


class OutlineRegions:
    """A WKB outlines file with per-outline bounds columns (:func:`segger.export.write_boundaries`: the
    outlines in row groups by a spatial grid, ``minx, miny, maxx, maxy`` µm each) read by region: opening
    reads the footer (each row group's bounds from the columns' statistics); :meth:`read` reads only the
    row groups meeting the box, keeps the rows whose bounds meet it and decodes only their geometries.
    :meth:`open` returns ``None`` for a file without the bounds columns (read it with :class:`OutlineIndex`)."""

    def __init__(self, path: str | os.PathLike) -> None:
        import pyarrow.parquet as pq

        from segger.export.writers import OUTLINE_BOUNDS_COLUMNS, OUTLINE_LAYOUT_KEY

        self.path = Path(path)
        self.seconds: float | None = None  # to open the file (set by RegionSource)
        self._pf = pq.ParquetFile(self.path)
        arrow = self._pf.schema_arrow
        self.columns = list(arrow.names)
        if OUTLINE_LAYOUT_KEY not in (arrow.metadata or {}) or schema.GEOMETRY not in self.columns or \
                not set(OUTLINE_BOUNDS_COLUMNS) <= set(self.columns):
            raise SeggerInputError(f"{self.path}: no per-outline bounds columns {list(OUTLINE_BOUNDS_COLUMNS)} "
                                   "to read by region (read it with OutlineIndex)")
        self.bounds_columns = list(OUTLINE_BOUNDS_COLUMNS)
        md = self._pf.metadata
        self.n_rows, self.n_row_groups = int(md.num_rows), int(md.num_row_groups)
        # per row group: (min minx, min miny, max maxx, max maxy) µm of its statistics (NaN: none, always read)
        leaf = {md.schema.column(i).path: i for i in range(md.num_columns)}
        cols = [leaf[c] for c in self.bounds_columns]
        bounds = np.full((self.n_row_groups, 4), np.nan)
        for g in range(self.n_row_groups):
            rg = md.row_group(g)
            for k, i in enumerate(cols):
                st = rg.column(i).statistics
                if st is not None and st.has_min_max:
                    bounds[g, k] = st.min if k < 2 else st.max
        self.group_bounds = bounds
        self.last_row_groups_read: int | None = None

    @classmethod
    def open(cls, path: str | os.PathLike) -> OutlineRegions | None:
        """The file opened for region reads, or ``None`` when it has no per-outline bounds columns."""
        try:
            return cls(path)
        except SeggerInputError:
            return None

    def __len__(self) -> int:
        return self.n_rows

    def row_groups(self, bbox: Iterable[float]) -> np.ndarray:
        """Indices of the row groups whose outlines' bounds may meet the box (and of those without statistics)."""
        x0, y0, x1, y1 = _box(bbox)
        b = self.group_bounds
        meet = (b[:, 2] >= x0) & (b[:, 0] <= x1) & (b[:, 3] >= y0) & (b[:, 1] <= y1)
        return np.flatnonzero(meet | np.isnan(b).any(axis=1))

    def read(self, bbox: Iterable[float]) -> pd.DataFrame:
        """The outlines (``cell_id`` as str, ``geometry`` as shapely polygons and the file's other
        columns, in file order) that meet the box ``(x0, y0, x1, y1)`` µm."""
        import shapely

        x0, y0, x1, y1 = _box(bbox)
        groups = self.row_groups((x0, y0, x1, y1))
        self.last_row_groups_read = int(len(groups))
        pf = self._pf
        table = pf.read_row_groups(groups.tolist()) if len(groups) else pf.schema_arrow.empty_table()
        b = [table.column(c).to_numpy(zero_copy_only=False).astype(float, copy=False) for c in self.bounds_columns]
        with np.errstate(invalid="ignore"):
            table = table.filter((b[2] >= x0) & (b[0] <= x1) & (b[3] >= y0) & (b[1] <= y1))
        wkb = table.column(schema.GEOMETRY).to_numpy(zero_copy_only=False)
        frame = table.drop_columns([schema.GEOMETRY]).to_pandas()
        frame[schema.GEOMETRY] = shapely.from_wkb(wkb) if len(wkb) else np.array([], dtype=object)
        frame = frame[self.columns]
        return _meeting(frame, (x0, y0, x1, y1))


def _meeting(frame: pd.DataFrame, box: tuple[float, float, float, float]) -> pd.DataFrame:
    """The outlines of ``frame`` (candidates by their bounds) that really meet ``box``; ids as str."""
    import shapely

    if "cell_id" in frame.columns:
        frame["cell_id"] = frame["cell_id"].astype(str)
    if len(frame) == 0:
        return frame
    keep = shapely.intersects(np.asarray(frame[schema.GEOMETRY].to_numpy(), dtype=object), shapely.box(*box))
    return frame.loc[keep].reset_index(drop=True)


def open_outlines(path: str | os.PathLike) -> OutlineRegions | OutlineIndex:
    """An outlines file opened for region reads: :class:`OutlineRegions` (its footer only) when it has
    per-outline bounds columns, else the :class:`OutlineIndex` of the whole file."""
    regions = OutlineRegions.open(path)
    return regions if regions is not None else OutlineIndex(path)


class OutlineIndex:
    """An outlines file (:func:`segger.export.write_boundaries`, either layout) indexed once for region
    reads: the table is read once with its geometry kept undecoded (WKB) and each outline's bounds
    computed; :meth:`read` decodes only the outlines whose bounds meet the box."""

    def __init__(self, path: str | os.PathLike) -> None:
        import pyarrow.parquet as pq
        import shapely

        self.path = Path(path)
        self.seconds: float | None = None  # to read and index the file (set by RegionSource)
        self.n_row_groups = int(pq.ParquetFile(self.path).metadata.num_row_groups)
        self.last_row_groups_read: int | None = None  # every read uses the whole-file index
        table = pq.read_table(self.path)
        self.columns = list(table.column_names)
        if schema.GEOMETRY not in table.column_names:  # the vertex layout: decoded whole, once
            from segger.export.writers import read_boundaries

            self.frame = read_boundaries(self.path)
            self.columns = list(self.frame.columns)
            self.wkb = None
            self.bounds = shapely.bounds(self.frame[schema.GEOMETRY].to_numpy()).reshape(-1, 4)
            return
        self.wkb = table.column(schema.GEOMETRY).combine_chunks()
        n = table.num_rows
        self.bounds = np.empty((n, 4))
        for s in range(0, n, _WKB_CHUNK):  # decoded in chunks for their bounds, then dropped
            part = self.wkb.slice(s, _WKB_CHUNK).to_numpy(zero_copy_only=False)
            self.bounds[s:s + len(part)] = shapely.bounds(shapely.from_wkb(part))
        self.frame = table.drop_columns([schema.GEOMETRY]).to_pandas()

    def __len__(self) -> int:
        return len(self.frame)

    def read(self, bbox: Iterable[float]) -> pd.DataFrame:
        """The outlines (``cell_id`` as str, ``geometry`` as shapely polygons and the file's other
        columns, in file order) that meet the box ``(x0, y0, x1, y1)`` µm."""
        import shapely

        x0, y0, x1, y1 = _box(bbox)
        self.last_row_groups_read = self.n_row_groups  # read whole once, for the index
        b = self.bounds
        cand = np.flatnonzero((b[:, 2] >= x0) & (b[:, 0] <= x1) & (b[:, 3] >= y0) & (b[:, 1] <= y1))
        frame = self.frame.iloc[cand].reset_index(drop=True)
        if self.wkb is not None:
            import pyarrow as pa

            frame[schema.GEOMETRY] = shapely.from_wkb(self.wkb.take(pa.array(cand, pa.int64()))
                                                      .to_numpy(zero_copy_only=False))
            frame = frame[self.columns]
        return _meeting(frame, (x0, y0, x1, y1))


def read_transcripts_region(path: str | os.PathLike, bbox: Iterable[float]) -> tuple[pd.DataFrame, dict[str, int]]:
    """The result table (as :func:`segger.export.read_transcripts_output`) of the transcripts with
    ``x0 <= x < x1`` and ``y0 <= y < y1`` (µm), reading only the parquet row groups whose x/y statistics
    meet the box — a whole-slide output (written tile by tile, one row group per tile or less) is never
    read whole. Returns ``(table, {"row_groups_read": k, "row_groups": n})``. One use of
    :class:`RegionSource` (open one to read many regions); no size limit."""
    return RegionSource(path, boundaries=False).read_transcripts(bbox, check_size=False)


def read_boundaries_region(path: str | os.PathLike, bbox: Iterable[float]) -> pd.DataFrame:
    """The outlines of a :func:`segger.export.write_boundaries` file (either layout) that meet the box
    ``(x0, y0, x1, y1)`` µm: only the row groups that meet it when the file has per-outline bounds
    (:class:`OutlineRegions`), else the whole file indexed once (:class:`OutlineIndex`)."""
    return open_outlines(path).read(bbox)


def write_tiled_transcripts(tiles: Iterable[Any], path: str | os.PathLike, layout: dict[str, Any] | None = None,
                            *, compression: str = "zstd") -> Path:
    """Write transcripts tile by tile, each tile in its own row group(s), atomically — the file layout
    of the out-of-core writer (:func:`segger.scale.runner.iter_predict_out_of_core`), which
    :class:`RegionSource` reads by region. ``tiles``: pandas frames or pyarrow tables of one schema
    (the result columns in the input's layout, :func:`segger.export.writers.input_layout`);
    ``layout``: the :func:`~segger.export.writers.input_layout_metadata` (default: the tidy layout)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from segger.export.writers import LAYOUT_KEY
    from segger.utils.atomic import atomic_path

    meta = {LAYOUT_KEY: json.dumps(layout or {"layout": "tidy"}).encode()}
    with atomic_path(path) as tmp:
        writer = None
        try:
            for tile in tiles:
                tab = tile if isinstance(tile, pa.Table) else pa.Table.from_pandas(tile, preserve_index=False)
                if writer is None:
                    sch = tab.schema.with_metadata({**(tab.schema.metadata or {}), **meta})
                    writer = pq.ParquetWriter(tmp, sch, compression=compression)
                writer.write_table(tab.cast(sch) if tab.schema != sch else tab)
            if writer is None:
                raise SeggerInputError(f"write_tiled_transcripts: no tile to write to {path}")
        finally:
            if writer is not None:
                writer.close()
    return Path(path)


def split_tiles(table: pd.DataFrame, tile_size: float, *, x: str = schema.X, y: str = schema.Y,
                scale: float = 1.0) -> Iterator[pd.DataFrame]:
    """The rows of ``table`` tile by tile of a ``tile_size`` µm grid anchored at its lower-left
    transcript (row by row of tiles; file order within a tile; empty tiles skipped) — with
    :func:`write_tiled_transcripts`, an in-memory output rewritten in the out-of-core layout.
    ``x``/``y``: the coordinate columns, ``scale`` their unit in µm (CosMx pixels)."""
    if not tile_size > 0:
        raise SeggerInputError(f"split_tiles: tile_size must be > 0 µm, not {tile_size}")
    xs = table[x].to_numpy(dtype=float) * scale
    ys = table[y].to_numpy(dtype=float) * scale
    if len(xs) == 0:
        return
    ix = np.floor((xs - xs.min()) / tile_size).astype(np.int64)
    iy = np.floor((ys - ys.min()) / tile_size).astype(np.int64)
    key = iy * (int(ix.max()) + 1) + ix
    order = np.argsort(key, kind="stable")
    cuts = np.flatnonzero(np.diff(key[order])) + 1
    for rows in np.split(order, cuts):
        yield table.iloc[rows].reset_index(drop=True)
