"""Bad inputs raise one-line SeggerInputError naming the file / column, and stay byte-identical."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from _io_helpers import tree_hash
from segger.errors import SeggerInputError, one_line
from segger.io import detect_platform, read_polygons, read_sample


def _raises(path_or_folder, match, **kwargs):
    folder = path_or_folder if path_or_folder.is_dir() else path_or_folder.parent
    before = tree_hash(folder)
    with pytest.raises(SeggerInputError, match=match) as info:
        read_sample(path_or_folder, **kwargs)
    assert "\n" not in one_line(info.value)
    assert tree_hash(folder) == before  # the input bytes are unchanged
    return str(info.value)


def test_missing_path(tmp_path):
    with pytest.raises(SeggerInputError, match="nothere"):
        read_sample(tmp_path / "nothere")
    with pytest.raises(SeggerInputError, match="nothere"):
        detect_platform(tmp_path / "nothere")


def test_folder_without_transcripts(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    msg = _raises(tmp_path, "no transcripts file found")
    assert str(tmp_path) in msg
    for name in ("transcripts.parquet", "detected_transcripts.csv", "_tx_file.csv"):
        assert name in msg
    with pytest.raises(SeggerInputError, match="no xenium transcripts file"):
        read_sample(tmp_path, platform="xenium")


def test_empty_file(xenium_copy):
    (xenium_copy / "transcripts.parquet").write_bytes(b"")
    msg = _raises(xenium_copy, "empty")
    assert "transcripts.parquet" in msg


def test_zero_rows(xenium_copy, lung_raw):
    lung_raw.iloc[:0].to_parquet(xenium_copy / "transcripts.parquet")
    _raises(xenium_copy, r"transcripts.parquet.*no rows")


def test_truncated_parquet(xenium_copy):
    p = xenium_copy / "transcripts.parquet"
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    msg = _raises(xenium_copy, r"transcripts.parquet.*cannot read.*truncated")
    assert "parquet" in msg


def test_truncated_polygons(xenium_copy):
    p = xenium_copy / "nucleus_boundaries.parquet"
    p.write_bytes(p.read_bytes()[:1000])
    _raises(xenium_copy, r"nucleus_boundaries.parquet.*cannot read")


def test_truncated_csv_gz(tmp_path, lung_raw):
    full = tmp_path / "full.csv.gz"
    lung_raw.to_csv(full, index=False)
    folder = tmp_path / "x"
    folder.mkdir()
    (folder / "transcripts.csv.gz").write_bytes(full.read_bytes()[:5000])
    _raises(folder, r"transcripts.csv.gz.*cannot read")


def test_missing_column_names_aliases(xenium_copy, lung_raw):
    lung_raw.drop(columns=["feature_name"]).to_parquet(xenium_copy / "transcripts.parquet")
    msg = _raises(xenium_copy, r"transcripts.parquet.*gene column 'feature_name'")
    assert "accepted names: feature_name, gene, target" in msg
    assert "columns found: transcript_id, cell_id" in msg


def test_missing_x_in_table(tmp_path):
    p = tmp_path / "t.csv"
    pd.DataFrame({"xx": [1.0], "y": [2.0], "gene": ["A"]}).to_csv(p, index=False)
    msg = _raises(p, r"t.csv.*x column 'x'")
    assert "x_location" in msg and "global_x" in msg


def test_non_numeric_x(xenium_copy, lung_raw):
    df = lung_raw.copy()
    df["x_location"] = df["x_location"].astype(str)
    df.loc[df.index[3], "x_location"] = "abc"
    df.to_parquet(xenium_copy / "transcripts.parquet")
    msg = _raises(xenium_copy, r"transcripts.parquet.*'x_location' must be numeric")
    assert "'abc'" in msg


def test_duplicate_transcript_ids(xenium_copy, lung_raw):
    df = lung_raw.copy()
    df.loc[df.index[1], "transcript_id"] = df["transcript_id"].iloc[0]
    df.to_parquet(xenium_copy / "transcripts.parquet")
    _raises(xenium_copy, r"transcripts.parquet.*'transcript_id'.*1 duplicate transcript ids")


def test_bad_parameters(lung_dir, bidcell_dir):
    with pytest.raises(SeggerInputError, match="nuclei='blob'"):
        read_sample(lung_dir, nuclei="blob")
    with pytest.raises(SeggerInputError, match="platform="):
        read_sample(lung_dir, platform="visium")
    with pytest.raises(SeggerInputError, match="boundaries="):
        read_sample(lung_dir, boundaries="membrane")
    with pytest.raises(SeggerInputError, match="min_qv"):
        read_sample(lung_dir, min_qv=-3)
    _raises(bidcell_dir, r"no nucleus polygons found.*nuclei='approximate'", nuclei="polygons")


def test_unsupported_file(tmp_path):
    p = tmp_path / "data.xlsx"
    p.write_bytes(b"PK\x03\x04")
    _raises(p, "not a recognised transcripts file")
    q = tmp_path / "poly.json"
    q.write_text("{}")
    with pytest.raises(SeggerInputError, match="poly.json"):
        read_polygons(q)


def test_empty_gene_names(tmp_path):
    p = tmp_path / "t.parquet"
    pd.DataFrame({"x": [1.0, 2.0], "y": [1.0, 2.0], "gene": ["A", None]}).to_parquet(p)
    _raises(p, r"t.parquet.*'gene' has 1 empty gene names")


def test_fractional_transcript_ids(tmp_path):
    p = tmp_path / "t.parquet"
    pd.DataFrame({"x": [1.0, 2.0], "y": [1.0, 2.0], "gene": ["A", "B"], "transcript_id": [1.5, 2.0]}).to_parquet(p)
    _raises(p, r"t.parquet.*'transcript_id'.*whole-number")
    q = tmp_path / "u.parquet"
    pd.DataFrame({"x": [1.0], "y": [1.0], "gene": ["A"], "transcript_id": np.array([2**64 - 1], np.uint64)}).to_parquet(q)
    _raises(q, r"u.parquet.*int64 range")
