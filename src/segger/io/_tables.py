"""Low-level helpers shared by the readers.

Reading table files (parquet / CSV / TSV, optionally gzip-compressed) into pandas, resolving
column aliases, and normalising ids, names, flags and numbers into the tidy transcripts table of
:mod:`segger.schema`. Everything here is vectorised over rows; Python-level work is only ever done
on the *unique* values of a column (genes, cells), never per transcript.

Input files are only ever opened for reading.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from segger import schema
from segger.errors import SeggerInputError, one_line

PARQUET_SUFFIXES = (".parquet", ".pq")
CSV_SUFFIXES = (".csv", ".csv.gz", ".tsv", ".tsv.gz", ".txt", ".txt.gz")
TABLE_SUFFIXES = PARQUET_SUFFIXES + CSV_SUFFIXES

# Text columns that must never be type-inferred as numbers by the CSV reader (their first block
# may look numeric, e.g. CosMx ``CellComp`` = "0" or MERSCOPE ``gene`` = "1", while later blocks
# are not). Ids are normalised to strings anyway.
TEXT_COLUMNS = (
    "feature_name", "gene", "target", "gene_name", "gene_symbol", "feature",
    "cell_id", "cell_ID", "cellID", "cell", "CellComp", "compartment", "fov_name",
    "EntityID", "Name", "Type", "ParentType",
)

# Values of a *text* cell-id column that mean "not assigned to a cell".
UNASSIGNED_STRINGS = ("UNASSIGNED", "", "-1", "nan", "NaN", "None")


def table_suffix(path: str | Path) -> str | None:
    """The recognised table suffix of ``path`` (``.csv.gz`` counts as one), or None."""
    name = Path(path).name.lower()
    for suffix in sorted(TABLE_SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return suffix
    return None


def check_file(path: str | Path, what: str = "input") -> Path:
    """Return ``path`` as a Path after checking it exists, is a file and is not 0 bytes."""
    path = Path(path)
    if not path.exists():
        raise SeggerInputError(f"{path}: {what} file not found; check the path")
    if path.is_dir():
        raise SeggerInputError(f"{path}: expected a {what} file but this is a folder")
    if path.stat().st_size == 0:
        raise SeggerInputError(
            f"{path}: the {what} file is empty (0 bytes); export or copy it again"
        )
    return path


def _read_csv(path: Path, delimiter: str) -> pd.DataFrame:
    """CSV → DataFrame with pyarrow (fast, gzip by suffix); pandas as a fallback for mixed types."""
    convert = pa_csv.ConvertOptions(
        column_types={name: pa.string() for name in TEXT_COLUMNS},
        strings_can_be_null=False,
    )
    try:
        table = pa_csv.read_csv(
            path,
            parse_options=pa_csv.ParseOptions(delimiter=delimiter),
            convert_options=convert,
        )
    except pa.ArrowInvalid as exc:
        if "conversion error" not in str(exc).lower():
            raise
        # a column's type changed after the first block: let pandas read it as object
        return pd.read_csv(path, sep=delimiter, low_memory=False)
    df = table.to_pandas()
    # pandas names an empty header "Unnamed: 0"; do the same (MERSCOPE writes one)
    df.columns = [c if c != "" else f"Unnamed: {i}" for i, c in enumerate(df.columns)]
    return df


def read_table(path: str | Path, what: str = "table", columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Read a parquet / CSV / TSV (optionally .gz) file into a DataFrame with a RangeIndex.

    Raises :class:`SeggerInputError` naming the file when it is missing, empty (0 bytes or 0 rows),
    truncated or otherwise unreadable. A pandas index stored in a parquet file is dropped.
    """
    path = check_file(path, what)
    suffix = table_suffix(path)
    if suffix is None:
        raise SeggerInputError(
            f"{path}: unsupported {what} file type; use one of {', '.join(TABLE_SUFFIXES)}"
        )
    kind = "parquet" if suffix in PARQUET_SUFFIXES else "CSV/TSV"
    if kind == "parquet":
        try:
            names = list(pq.read_schema(path).names)
        except (pa.ArrowException, OSError, ValueError):
            names = []
        _check_duplicate_columns(names, path, what)
    try:
        if kind == "parquet":
            df = pq.read_table(path, columns=list(columns) if columns else None).to_pandas()
        else:
            delimiter = "\t" if suffix.startswith((".tsv", ".txt")) else ","
            df = _read_csv(path, delimiter)
            if columns:
                df = df[list(columns)]
    except SeggerInputError:
        raise
    except (pa.ArrowException, OSError, ValueError, EOFError, zlib.error, UnicodeDecodeError,
            pd.errors.ParserError, KeyError) as exc:
        raise SeggerInputError(
            f"{path}: cannot read this {kind} {what} file ({one_line(exc)[:200]}); it may be "
            f"truncated or not a {kind} file: export or copy it again"
        ) from exc
    _check_duplicate_columns([str(c) for c in df.columns], path, what)
    df = df.reset_index(drop=True)
    if len(df) == 0:
        raise SeggerInputError(
            f"{path}: the {what} file has no rows (columns: {', '.join(map(str, df.columns))}); "
            "export it again or choose another file"
        )
    return df


def _check_duplicate_columns(names: Sequence[str], path, what: str) -> None:
    seen, dup = set(), []
    for n in names:
        if n in seen and n not in dup:
            dup.append(n)
        seen.add(n)
    if dup:
        raise SeggerInputError(f"{path}: the {what} file has column {dup[0]!r} twice; keep one of them (rename or "
                               "drop the other) and write the file again")


def read_columns(path: str | Path) -> list[str]:
    """Column names of a table file, reading only its schema / header."""
    path = check_file(path)
    suffix = table_suffix(path)
    try:
        if suffix in PARQUET_SUFFIXES:
            return list(pq.read_schema(path).names)
        sep = "\t" if suffix and suffix.startswith((".tsv", ".txt")) else ","
        return [str(c) for c in pd.read_csv(path, sep=sep, nrows=0).columns]
    except (pa.ArrowException, OSError, ValueError, EOFError, zlib.error, UnicodeDecodeError,
            pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise SeggerInputError(
            f"{path}: cannot read the column names ({one_line(exc)[:200]}); the file may be "
            "truncated or not a table: export or copy it again"
        ) from exc


# --------------------------------------------------------------------------- column resolution


def find_column(columns: Iterable[str], aliases: Sequence[str]) -> str | None:
    """The first of ``aliases`` present in ``columns`` (exact match first, then case-insensitive)."""
    columns = [str(c) for c in columns]
    for alias in aliases:
        if alias in columns:
            return alias
    lower = {c.lower(): c for c in columns}
    for alias in aliases:
        if alias.lower() in lower:
            return lower[alias.lower()]
    return None


def require_column(df: pd.DataFrame, path: str | Path, role: str, aliases: Sequence[str]) -> str:
    """Like :func:`find_column` but raise a one-line SeggerInputError naming file, role and aliases."""
    col = find_column(df.columns, aliases)
    if col is None:
        found = ", ".join(map(str, df.columns))
        raise SeggerInputError(
            f"{path}: missing required {role} column '{aliases[0]}' (accepted names: "
            f"{', '.join(aliases)}); columns found: {found}; rename the column or pick the right platform"
        )
    return col


# --------------------------------------------------------------------------- value normalisation


def to_float(series: pd.Series, path: str | Path, column: str) -> np.ndarray:
    """A numeric column as float64; a non-numeric column raises naming the file and column."""
    if pd.api.types.is_bool_dtype(series.dtype):
        raise SeggerInputError(
            f"{path}: column '{column}' must be numeric but is boolean; choose the right column"
        )
    if pd.api.types.is_numeric_dtype(series.dtype):
        return series.to_numpy(dtype=np.float64, na_value=np.nan)
    values = series
    if isinstance(values.dtype, pd.CategoricalDtype):
        values = values.astype(object)
    first = values.dropna().iloc[0] if values.notna().any() else None
    if isinstance(first, (bytes, bytearray)):
        values = values.str.decode("utf-8", errors="replace")
    conv = pd.to_numeric(values, errors="coerce")
    suspect = conv.isna() & values.notna()
    if suspect.any():
        # "nan" / "" text is a legitimate missing value, not a type error
        text = values[suspect].astype(str).str.strip().str.lower()
        bad = text[~text.isin(["nan", ""])]
        if len(bad):
            raise SeggerInputError(
                f"{path}: column '{column}' must be numeric but holds text such as "
                f"{values[bad.index[0]]!r} ({len(bad)} rows); fix the column or map the right column to it"
            )
    return conv.to_numpy(dtype=np.float64, na_value=np.nan)


def _unique_to_text(value) -> str | None:
    """One unique id/name value → its text (bytes decoded, integral numbers as decimal text)."""
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray, np.bytes_)):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        if np.isnan(value):
            return None
        if float(value).is_integer():
            return str(int(value))
        return repr(float(value))
    return str(value)


def normalise_cell_ids(
    values,
    unassigned_ints: Sequence[int] = (-1,),
    unassigned_strings: Sequence[str] = UNASSIGNED_STRINGS,
) -> np.ndarray:
    """Vendor cell ids → object array of strings, ``None`` where unassigned.

    Integers become their decimal text (``-1`` → ``None``; pass ``unassigned_ints=(0,)`` for CosMx),
    bytes are decoded, integral floats (ids read from a CSV with gaps) lose their ``.0``, and the
    texts ``"UNASSIGNED"``, ``""`` (and ``"-1"``) become ``None``, as do missing values.
    """
    s = values if isinstance(values, pd.Series) else pd.Series(values)
    n = len(s)
    out = np.empty(n, dtype=object)
    out[:] = None
    if n == 0:
        return out
    dtype = s.dtype
    if pd.api.types.is_integer_dtype(dtype) and not isinstance(dtype, pd.CategoricalDtype):
        unsigned = pd.api.types.is_unsigned_integer_dtype(dtype)
        ok = s.notna().to_numpy()
        arr = s[ok].to_numpy(dtype=np.uint64 if unsigned else np.int64)
        codes, uniques = pd.factorize(arr)  # text is built once per distinct id
        text = np.asarray(uniques).astype(str).astype(object)
        targets = [u for u in unassigned_ints if not unsigned or u >= 0]
        if targets:
            text[np.isin(uniques, np.asarray(targets, dtype=arr.dtype))] = None
        out[ok] = text[codes]
        return out
    codes, uniques = pd.factorize(s, use_na_sentinel=True)
    texts = np.asarray([_unique_to_text(u) for u in np.asarray(uniques, dtype=object)] + [None], dtype=object)
    unassigned = set(unassigned_strings) | {str(int(u)) for u in unassigned_ints}
    for i, t in enumerate(texts):  # over unique ids only
        if t is not None and t.strip() in unassigned:
            texts[i] = None
    return texts[codes]  # code -1 picks the trailing None


def normalise_text(series: pd.Series, path: str | Path, column: str, what: str = "gene") -> np.ndarray:
    """A name column (str, bytes or categorical) → object array of str; missing names raise."""
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    if (codes < 0).any():
        n = int((codes < 0).sum())
        raise SeggerInputError(
            f"{path}: column '{column}' has {n} empty {what} names; remove those rows or fill them in"
        )
    texts = np.asarray([_unique_to_text(u) for u in np.asarray(uniques, dtype=object)], dtype=object)
    return texts[codes]


def normalise_flag(series: pd.Series | None, n: int) -> np.ndarray:
    """A 0/1, bool or text ("true"/"yes"/"nuclear") flag column → bool array (missing → False)."""
    if series is None:
        return np.zeros(n, dtype=bool)
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return series.fillna(False).to_numpy(dtype=bool)
    if pd.api.types.is_numeric_dtype(dtype):
        v = series.to_numpy(dtype=np.float64, na_value=np.nan)
        return np.nan_to_num(v, nan=0.0) != 0
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    truth = np.asarray(
        [str(_unique_to_text(u)).strip().lower() in ("1", "true", "t", "yes", "y", "nuclear") for u in uniques]
        + [False],
        dtype=bool,
    )
    return truth[codes]


def transcript_ids(series: pd.Series | None, n: int, path: str | Path, column: str | None) -> np.ndarray:
    """Vendor molecule ids as int64 (unique), or the row number 0..n-1 when there is no column."""
    if series is None:
        return np.arange(n, dtype=np.int64)
    dtype = series.dtype
    if pd.api.types.is_unsigned_integer_dtype(dtype) and not series.hasnans:
        arr = series.to_numpy()
        if arr.size and arr.max() > np.iinfo(np.int64).max:
            raise SeggerInputError(
                f"{path}: column '{column}' has ids above the int64 range (e.g. {arr.max()}); "
                "drop the column to use row numbers instead"
            )
        ids = arr.astype(np.int64)
    elif pd.api.types.is_integer_dtype(dtype) and not series.hasnans:
        ids = series.to_numpy(dtype=np.int64)
    else:
        vals = to_float(series, path, column) if not pd.api.types.is_numeric_dtype(dtype) else \
            series.to_numpy(dtype=np.float64, na_value=np.nan)
        if np.isnan(vals).any() or not np.all(np.mod(vals, 1) == 0):
            raise SeggerInputError(
                f"{path}: column '{column}' must hold whole-number molecule ids (found missing or "
                "fractional values); fix it or drop the column to use row numbers"
            )
        ids = vals.astype(np.int64)
    uniq, counts = np.unique(ids, return_counts=True)
    if uniq.size != ids.size:
        dup = uniq[counts > 1]
        raise SeggerInputError(
            f"{path}: column '{column}' has {int((counts[counts > 1] - 1).sum())} duplicate transcript ids "
            f"(e.g. {int(dup[0])}); ids must be unique: remove the duplicated rows or drop the column "
            "to number the rows instead"
        )
    return ids


def tidy_transcripts(
    raw: pd.DataFrame,
    consumed: Iterable[str | None],
    *,
    transcript_id: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    z: np.ndarray | None,
    gene: np.ndarray,
    qv: np.ndarray | None,
    nuclear: np.ndarray,
    cell_id: np.ndarray,
    compartment: np.ndarray | None = None,
) -> pd.DataFrame:
    """Assemble the schema's transcripts table; other ``raw`` columns follow unchanged.

    An extra input column whose name collides with a canonical one is kept as ``input_<name>``.
    """
    n = len(raw)
    data = {
        schema.TX_ID: np.asarray(transcript_id, dtype=np.int64),
        schema.X: np.asarray(x, dtype=np.float64),
        schema.Y: np.asarray(y, dtype=np.float64),
        schema.Z: np.zeros(n) if z is None else np.asarray(z, dtype=np.float64),
        schema.GENE: np.asarray(gene, dtype=object),
        schema.QV: np.full(n, np.nan) if qv is None else np.asarray(qv, dtype=np.float64),
        schema.NUCLEAR: np.asarray(nuclear, dtype=bool),
        schema.CELL_ID: np.asarray(cell_id, dtype=object),
    }
    if compartment is not None:
        data[schema.COMPARTMENT] = np.asarray(compartment, dtype=object)
    consumed = {c for c in consumed if c is not None}
    for col in raw.columns:
        if col in consumed:
            continue
        name = str(col)
        while name in data:
            name = f"input_{name}"
        data[name] = raw[col].to_numpy()
    return pd.DataFrame(data, copy=False)
