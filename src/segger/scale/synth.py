"""Scale data made from a real crop: copies of a Xenium transcripts file laid side by side.

Used by the benchmark suite (1 M and 10 M transcripts from the real 186 k breast crop). Each copy
is shifted by the crop's extent plus a gap, gets its own molecule ids (``transcript_id + copy <<
50``) and its own cell ids (``cell_id + copy * 10**6``; ``-1`` stays unassigned), so nuclei
approximated from the cells' nuclear transcripts never merge across copies. The output is a
Xenium-layout ``transcripts.parquet`` written copy by copy with a :class:`pyarrow.parquet.ParquetWriter`
(bounded memory, row groups of ``row_group_size`` rows, spatially compact because each copy is a
contiguous block), to a temporary name renamed into place at the end.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from segger.errors import SeggerInputError

ID_SHIFT = 50  # copy index goes above the largest Xenium molecule id (< 2**50)
CELL_STRIDE = 10**6  # copy index times this is added to the integer Xenium cell ids


def tile_copies(source: str | os.PathLike, n_rows: int, out: str | os.PathLike, *, gap: float = 20.0,
                row_group_size: int = 250_000, overwrite: bool = False) -> dict:
    """Write ``n_rows`` transcripts made of side-by-side copies of ``source`` to ``out``.

    ``source`` is a Xenium ``transcripts.parquet`` (``x_location``, ``y_location``, integer
    ``transcript_id`` and ``cell_id``). The copies fill a near-square grid; the last one is cut
    to reach exactly ``n_rows`` (rows are taken in file order). Returns a small description
    (copies, grid, extent). An existing ``out`` is kept unless ``overwrite``.
    """
    out = Path(out)
    src = pq.read_table(source)
    for col in ("x_location", "y_location", "transcript_id", "cell_id"):
        if col not in src.column_names:
            raise SeggerInputError(f"{source}: tile_copies needs a Xenium transcripts table with {col!r}")
    if not pa.types.is_integer(src["cell_id"].type):
        raise SeggerInputError(f"{source}: tile_copies needs integer Xenium cell ids (XOA 1.x); got {src['cell_id'].type}")
    n_src = src.num_rows
    copies = max(1, math.ceil(n_rows / n_src))
    ncol = math.ceil(math.sqrt(copies))
    nrow = math.ceil(copies / ncol)
    x = src["x_location"].to_numpy()
    y = src["y_location"].to_numpy()
    w = float(x.max() - x.min()) + gap
    h = float(y.max() - y.min()) + gap
    tid = src["transcript_id"].to_numpy().astype(np.int64)
    cid = src["cell_id"].to_numpy().astype(np.int64)
    if tid.max() >= (1 << ID_SHIFT) or cid.max() >= CELL_STRIDE:
        raise SeggerInputError(f"{source}: ids too large to make unique copies")
    info = {"source": str(source), "n_rows": int(n_rows), "n_source": int(n_src), "copies": int(copies),
            "grid": [int(ncol), int(nrow)], "extent_um": [round(ncol * w, 1), round(nrow * h, 1)], "path": str(out)}
    if out.exists() and not overwrite:
        meta = pq.ParquetFile(out).metadata
        if meta.num_rows == n_rows:
            return info
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    written = 0
    try:
        with pq.ParquetWriter(tmp, src.schema, compression="zstd") as writer:
            for c in range(copies):
                take = min(n_src, n_rows - written)
                if take <= 0:
                    break
                part = src.slice(0, take)
                i, j = divmod(c, nrow)
                cols = {
                    "x_location": pa.array(x[:take] + i * w),
                    "y_location": pa.array(y[:take] + j * h),
                    "transcript_id": pa.array(tid[:take] + (np.int64(c) << ID_SHIFT)),
                    "cell_id": pa.array(np.where(cid[:take] >= 0, cid[:take] + c * CELL_STRIDE, -1)),
                }
                for name, arr in cols.items():
                    k = part.schema.get_field_index(name)
                    part = part.set_column(k, part.schema.field(k), arr.cast(part.schema.field(k).type))
                writer.write_table(part, row_group_size=row_group_size)
                written += take
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
    return info


def source_extent(path: str | os.PathLike) -> tuple[float, float, float, float]:
    """(xmin, ymin, xmax, ymax) of a Xenium transcripts parquet (reads only x and y)."""
    t = pq.read_table(path, columns=["x_location", "y_location"])
    xr, yr = pc.min_max(t["x_location"]), pc.min_max(t["y_location"])
    return (xr["min"].as_py(), yr["min"].as_py(), xr["max"].as_py(), yr["max"].as_py())
