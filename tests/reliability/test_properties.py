"""Property-based tests (hypothesis) of the readers and the graph builder (issue 6, item 1).

Readers: random small tables (random column names, dtypes, NaN/inf, missing columns; parquet or
CSV) and random bytes never crash with anything but :class:`SeggerInputError`, never modify the
file, and what they return is finite and in the schema.

Graph builder: on random point clouds and nuclei, every tx–tx edge is at most ``dist_tx`` long,
each node receives at most ``k_tx`` edges (and all its neighbours when it has fewer), there are
no self loops or duplicates, every candidate nucleus is within ``dist_bd`` of the transcript (or
is its own nucleus), the inputs are not modified, and building twice gives the same graph.
"""

from __future__ import annotations

import hashlib
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from segger import schema as S
from segger.errors import SeggerInputError

SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
                derandomize=True)

# --------------------------------------------------------------------------------------------
# readers
# --------------------------------------------------------------------------------------------
NAMES = ["x", "y", "gene", "qv", "cell_id", "nuclear", "transcript_id", "z", "x_location", "feature_name",
         "compartment", "extra", "X", "Gene"]
KINDS = ["float", "float_nan", "float_inf", "int", "uint", "str", "str_num", "bool", "none", "category",
         "mixed", "bytes"]


def _column(kind: str, n: int, rng: np.random.Generator):
    if kind == "float":
        return rng.normal(100, 50, n)
    if kind == "float_nan":
        v = rng.normal(100, 50, n)
        v[rng.random(n) < 0.3] = np.nan
        return v
    if kind == "float_inf":
        v = rng.normal(100, 50, n)
        v[rng.random(n) < 0.2] = np.inf
        v[rng.random(n) < 0.1] = -np.inf
        return v
    if kind == "int":
        return rng.integers(-3, 50, n)
    if kind == "uint":
        return rng.integers(0, 2**63, n, dtype=np.uint64) * np.uint64(2)
    if kind == "str":
        return np.array([f"g{v}" for v in rng.integers(0, 5, n)], dtype=object)
    if kind == "str_num":
        return np.array([f"{v:.2f}" if v > 0.2 else "nan" for v in rng.random(n)], dtype=object)
    if kind == "bool":
        return rng.random(n) < 0.5
    if kind == "none":
        return np.array([None] * n, dtype=object)
    if kind == "category":
        return pd.Categorical(rng.choice(["A", "B", "UNASSIGNED"], n))
    if kind == "mixed":
        return np.array([None if v < 0.2 else (f"c{int(v * 10)}" if v < 0.6 else str(int(v * 100)))
                         for v in rng.random(n)], dtype=object)
    if kind == "bytes":
        return np.array([f"b{v}".encode() for v in rng.integers(0, 4, n)], dtype=object)
    raise AssertionError(kind)


@st.composite
def random_tables(draw):
    n = draw(st.integers(0, 40))
    names = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=8, unique=True))
    if draw(st.booleans()):  # half the tables have the required columns, so the deeper code runs too
        names = ["x", "y", "gene"] + [c for c in names if c not in ("x", "y", "gene")]
    kinds = [draw(st.sampled_from(KINDS)) for _ in names]
    if names[:3] == ["x", "y", "gene"] and draw(st.booleans()):  # ... often with sensible dtypes
        kinds[:3] = ["float_nan", "float", "str"]
    seed = draw(st.integers(0, 2**32 - 1))
    fmt = draw(st.sampled_from(["parquet", "csv", "tsv"]))
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({name: _column(kind, n, rng) for name, kind in zip(names, kinds)})
    return df, fmt


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write(df: pd.DataFrame, fmt: str, folder: Path) -> Path:
    path = folder / f"table.{fmt}"
    try:
        if fmt == "parquet":
            df.to_parquet(path, index=False)
        else:
            df.to_csv(path, sep="," if fmt == "csv" else "\t", index=False)
    except Exception:  # noqa: BLE001 - a table pandas/pyarrow cannot write is not a reader test
        assume(False)
    return path


@settings(max_examples=120, **SETTINGS)
@given(table=random_tables(), nuclei=st.sampled_from(["none", "approximate", "auto"]),
       min_qv=st.sampled_from([None, 0, 20]))
def test_read_sample_on_random_tables(table, nuclei, min_qv):
    from segger.io import read_sample, read_table

    df, fmt = table
    with tempfile.TemporaryDirectory() as tmp:
        path = _write(df, fmt, Path(tmp))
        before = _sha(path)
        for call in (lambda: read_table(path), lambda: read_sample(path, platform="table", nuclei=nuclei,
                                                                    min_qv=min_qv)):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    out = call()
            except SeggerInputError as exc:
                msg = str(exc)
                assert msg.strip() and "\n" not in msg.strip(), msg  # one line
                continue
            if hasattr(out, "transcripts"):
                tx = out.transcripts
                assert list(tx.columns[:8]) == S.TX_COLUMNS
                assert np.isfinite(tx[S.X].to_numpy(np.float64)).all()
                assert np.isfinite(tx[S.Y].to_numpy(np.float64)).all()
                assert tx[S.TX_ID].is_unique
                assert len(tx) > 0
                assert all(c in out.nuclei.columns for c in S.BD_COLUMNS)
        assert _sha(path) == before, "the reader modified its input"


@settings(max_examples=40, **SETTINGS)
@given(data=st.binary(min_size=1, max_size=600), suffix=st.sampled_from([".parquet", ".csv", ".csv.gz", ".tsv"]),
       keep_magic=st.booleans())
def test_read_table_on_random_bytes(data, suffix, keep_magic):
    from segger.io import read_table

    if keep_magic and suffix == ".parquet":
        data = b"PAR1" + data + b"PAR1"  # looks like parquet at both ends
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"t{suffix}"
        path.write_bytes(data)
        try:
            read_table(path)
        except SeggerInputError as exc:
            assert str(path) in str(exc)
        assert path.read_bytes() == data


# --------------------------------------------------------------------------------------------
# graph builder
# --------------------------------------------------------------------------------------------
@st.composite
def point_clouds(draw):
    n = draw(st.integers(1, 120))
    m = draw(st.integers(0, 6))
    seed = draw(st.integers(0, 2**32 - 1))
    snap = draw(st.booleans())  # snap to a coarse grid: duplicate points and exact ties
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 60, (n, 2))
    if snap:
        xy = np.round(xy / 2.5) * 2.5
    params = dict(k_tx=draw(st.integers(1, 12)), dist_tx=draw(st.floats(0.5, 25)),
                  k_bd=draw(st.integers(1, 5)), dist_bd=draw(st.floats(0.5, 40)),
                  belongs=draw(st.sampled_from(["auto", "polygon", "flag"])))
    import shapely

    centres = rng.uniform(0, 60, (m, 2))
    radii = rng.uniform(1, 6, m)
    ids = [f"n{j}" for j in range(m)]
    geoms = [shapely.Point(c).buffer(r, quad_segs=6) for c, r in zip(centres, radii)]
    nuclei = pd.DataFrame({S.BD_ID: pd.Series(ids, dtype=object), S.GEOMETRY: pd.Series(geoms, dtype=object),
                           S.X: [g.centroid.x for g in geoms], S.Y: [g.centroid.y for g in geoms],
                           S.BD_SOURCE: "polygon"})
    cell = rng.choice(np.array(ids + [None], dtype=object), n) if m else np.full(n, None, dtype=object)
    tx = pd.DataFrame({S.TX_ID: np.arange(n, dtype=np.int64), S.X: xy[:, 0], S.Y: xy[:, 1], S.Z: 0.0,
                       S.GENE: rng.choice(["A", "B", "C", "D"], n).astype(object), S.QV: 40.0,
                       S.NUCLEAR: rng.random(n) < 0.4, S.CELL_ID: cell})
    return tx, nuclei, params


def _edges(data, et):
    return data[et].edge_index.numpy()


@settings(max_examples=60, **SETTINGS)
@given(cloud=point_clouds())
def test_graph_builder_properties(cloud):
    from segger.data import GraphParams, build_graph
    from segger.data.graph import TX_BD, TX_CAND, TX_TX

    tx, nuclei, p = cloud
    tx_before, nuc_before = tx.copy(deep=True), nuclei.copy(deep=True)
    params = GraphParams(**p)
    bundle = build_graph(tx, nuclei, params)
    data = bundle.data
    xy = tx[[S.X, S.Y]].to_numpy()
    n = len(tx)

    # tx–tx: j → i, shorter than dist_tx, ≤ k_tx in-edges, no self loops, no duplicates
    src, dst = _edges(data, TX_TX)
    assert (src != dst).all()
    d = np.linalg.norm(xy[src] - xy[dst], axis=1)
    assert (d <= params.dist_tx + 1e-6).all()
    indeg = np.bincount(dst, minlength=n)
    assert indeg.max(initial=0) <= params.k_tx
    assert len(np.unique(src * n + dst)) == len(src)
    # ... and a node with fewer than k_tx in-edges got all its neighbours within dist_tx
    full = np.linalg.norm(xy[:, None] - xy[None], axis=2)
    np.fill_diagonal(full, np.inf)
    surely = (full < params.dist_tx - 1e-6).sum(axis=1)
    maybe = (full <= params.dist_tx + 1e-6).sum(axis=1)
    assert (indeg >= np.minimum(surely, params.k_tx)).all()
    assert (indeg <= np.minimum(maybe, params.k_tx)).all()

    # belongs ⊆ candidates; candidates within dist_bd of the centroid unless it is the own nucleus
    bt, bb = _edges(data, TX_BD)
    ct, cb = _edges(data, TX_CAND)
    m = max(len(nuclei), 1)
    cand_keys = set((ct * m + cb).tolist())
    bel_keys = set((bt * m + bb).tolist())
    assert bel_keys <= cand_keys
    assert len(cand_keys) == len(ct)
    if len(ct):
        cxy = nuclei[[S.X, S.Y]].to_numpy()
        dc = np.linalg.norm(xy[ct] - cxy[cb], axis=1)
        own = np.isin(ct * m + cb, list(bel_keys))
        assert ((dc <= params.dist_bd + 1e-6) | own).all()
        per_tx = np.bincount(ct, minlength=n)
        assert per_tx.max() <= params.k_bd + 1
    assert len(bt) == len(np.unique(bt))  # a transcript belongs to at most one nucleus
    assert data[TX_CAND].d_rel.shape[0] == len(ct)
    assert np.isfinite(data[TX_CAND].d_rel.numpy()).all()

    # inputs untouched; the same graph again
    pd.testing.assert_frame_equal(tx, tx_before)
    pd.testing.assert_frame_equal(nuclei, nuc_before)
    again = build_graph(tx, nuclei, params).data
    for et in (TX_TX, TX_BD, TX_CAND):
        np.testing.assert_array_equal(_edges(again, et), _edges(data, et))
    np.testing.assert_array_equal(again["tx"].x.numpy(), data["tx"].x.numpy())
    np.testing.assert_array_equal(again["bd"].x.numpy(), data["bd"].x.numpy())


@settings(max_examples=30, **SETTINGS)
@given(k_tx=st.one_of(st.integers(-5, 200), st.floats(allow_nan=True), st.booleans(), st.none()),
       dist=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10, 5000), st.text(max_size=3)))
def test_graph_params_reject_nonsense_with_an_input_error(k_tx, dist):
    from segger.data import GraphParams

    ok_k = isinstance(k_tx, int) and not isinstance(k_tx, bool) and 1 <= k_tx <= 100
    ok_d = isinstance(dist, (int, float)) and not isinstance(dist, bool) and np.isfinite(dist) and 0 < dist <= 1000
    params = GraphParams(k_tx=k_tx, dist_tx=dist)
    if ok_k and ok_d:
        assert params.validate() is params
    else:
        with pytest.raises(SeggerInputError):
            params.validate()
