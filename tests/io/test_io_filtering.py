"""filter_transcripts report counts, id normalisation, unit sanity warnings."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from segger import schema
from segger.errors import SeggerInputError
from segger.io import (
    DEFAULT_CONTROL_PATTERNS,
    FilterReport,
    check_units,
    control_mask,
    filter_transcripts,
    normalise_cell_ids,
    read_sample,
)


def _tx(genes, qv, x=None):
    n = len(genes)
    return pd.DataFrame(
        {
            schema.TX_ID: np.arange(n, dtype=np.int64),
            schema.X: np.arange(n, dtype=float) if x is None else np.asarray(x, float),
            schema.Y: np.zeros(n),
            schema.Z: np.zeros(n),
            schema.GENE: np.asarray(genes, dtype=object),
            schema.QV: np.asarray(qv, float),
            schema.NUCLEAR: np.zeros(n, bool),
            schema.CELL_ID: np.full(n, None, object),
        }
    )


def test_filter_counts_are_disjoint_and_ordered():
    genes = ["A", "NegControlProbe_1", "BLANK_0001", "B", "antisense_X", "NegPrb3", "Blank-7", "C", "D",
             "SystemControl1", "Negative2", "UnassignedCodeword_1", "DeprecatedCodeword_2", "blank_lower"]
    qv = [40, 10, 40, 10, 40, 40, 40, np.nan, 40, 40, 40, 40, 40, 5]
    x = [0, 1, 2, 3, 4, 5, 6, 7, np.inf, 9, 10, 11, 12, 13]
    df = _tx(genes, qv, x)
    orig = df.copy()
    out, r = filter_transcripts(df, min_qv=20)
    pd.testing.assert_frame_equal(df, orig)  # input untouched
    assert r.rows_in == 14
    assert r.removed_nonfinite == 1  # "D"
    assert r.removed_controls == 9  # the low-qv control is counted as a control
    assert r.removed_controls_by_pattern == {p: 1 for p in DEFAULT_CONTROL_PATTERNS}
    assert r.removed_qv == 2  # "B" and "blank_lower" (case-sensitive prefixes: not a control)
    assert r.rows_kept == 2 and list(out[schema.GENE]) == ["A", "C"]  # NaN qv kept
    assert r.rows_kept + r.removed_qv + r.removed_controls + r.removed_nonfinite == r.rows_in
    assert isinstance(out.index, pd.RangeIndex)
    assert "2 kept" in r.summary() and "NaN/inf" in r.summary()
    assert r.to_dict()["rows_removed"] == 12


def test_filter_options():
    df = _tx(["A", "BLANK_1", "B"], [40, 40, 5])
    out, r = filter_transcripts(df, min_qv=None, control_patterns=())
    assert len(out) == 3 and r.removed_qv == 0 and r.removed_controls == 0
    out, r = filter_transcripts(df, min_qv=0, control_patterns=["BLANK*"])  # glob-style star accepted
    assert len(out) == 2 and r.removed_controls_by_pattern == {"BLANK": 1}
    mask, counts = control_mask(pd.Series(["BLANK_1", "A", None]))
    assert mask.tolist() == [True, False, False] and counts == {"BLANK": 1}
    assert "NegControl" in DEFAULT_CONTROL_PATTERNS and isinstance(FilterReport().summary(), str)


@pytest.mark.parametrize(
    "genes, qv, x, match",
    [
        (["A", "B"], [10, 12], [0, 1], r"qv < 20.*min_qv"),
        (["BLANK_1", "NegControlProbe_2"], [40, 40], [0, 1], r"control probes.*filter_controls=False"),
        (["A", "B"], [40, 40], [np.nan, np.inf], r"NaN or infinite"),
    ],
)
def test_everything_filtered_raises(genes, qv, x, match):
    with pytest.raises(SeggerInputError, match=match):
        filter_transcripts(_tx(genes, qv, x), source="in.parquet")


def test_all_low_qv_sample_names_file(tmp_path, lung_raw):
    df = lung_raw.copy()
    df["qv"] = 5.0
    folder = tmp_path / "x"
    folder.mkdir()
    df.to_parquet(folder / "transcripts.parquet")
    with pytest.raises(SeggerInputError, match=r"transcripts.parquet.*qv < 20.*--min-qv"):
        read_sample(folder)
    assert len(read_sample(folder, min_qv=0, nuclei="none").transcripts) == 15_000 - 33


def test_nonfinite_rows_dropped_with_warning(tmp_path, lung_raw):
    df = lung_raw.copy()
    df.loc[df.index[:5], "x_location"] = np.nan
    df.loc[df.index[5:7], "y_location"] = np.inf
    df["qv"] = 40.0
    path = tmp_path / "t.parquet"
    df.to_parquet(path)
    s = read_sample(path, platform="xenium", nuclei="none", filter_controls=False)
    assert s.filter_report.removed_nonfinite == 7 and len(s.transcripts) == 15_000 - 7
    assert any("NaN/inf" in w for w in s.warnings)


def test_normalise_cell_ids_conventions():
    assert normalise_cell_ids(pd.Series(["abc-1", "UNASSIGNED", "", None])).tolist() == ["abc-1", None, None, None]
    assert normalise_cell_ids(pd.Series([5, -1, 0], dtype=np.int32)).tolist() == ["5", None, "0"]
    assert normalise_cell_ids(pd.Series([5, 0]), unassigned_ints=(0,)).tolist() == ["5", None]
    assert normalise_cell_ids(pd.Series([b"ab", b"", b"UNASSIGNED"])).tolist() == ["ab", None, None]
    assert normalise_cell_ids(pd.Series([3.0, np.nan, -1.0])).tolist() == ["3", None, None]
    big = np.array([2**63 + 5, 7], dtype=np.uint64)
    assert normalise_cell_ids(pd.Series(big)).tolist() == [str(2**63 + 5), "7"]
    assert normalise_cell_ids(pd.Series(["a", "b"], dtype="category")).tolist() == ["a", "b"]
    assert normalise_cell_ids(pd.Series([1, None], dtype="Int64")).tolist() == ["1", None]


def test_check_units(lung_raw):
    t = pd.DataFrame({schema.X: lung_raw.x_location.astype(float), schema.Y: lung_raw.y_location.astype(float)})
    assert check_units(t) == []
    px = t / 0.12028 - 17000  # CosMx-like pixels, a small extent
    w = check_units(px)
    assert len(w) == 1 and "pixels" in w[0] and "spacing" in w[0]
    huge = t * 200
    w = check_units(huge)
    assert any("span" in m for m in w)
    tiny = t / 1000
    assert any("mm" in m for m in check_units(tiny))
