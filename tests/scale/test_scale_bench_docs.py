"""The out-of-core sections of docs/benchmarks.md are what ``benchmarks/run.py`` renders from the
committed results: the run (``scale-cpu-ooc-30m.json``) and its 200 M extrapolation
(``extrapolation-200m.json``, whose numbers are recomputed here from the run)."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUN_JSON = ROOT / "benchmarks" / "results" / "scale-cpu-ooc-30m.json"
EX_JSON = ROOT / "benchmarks" / "results" / "extrapolation-200m.json"
DOC = ROOT / "docs" / "benchmarks.md"


def _load(name: str, file: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / file)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def run():
    return _load("bench_run", "run.py")


def _block(text: str, begin: str, end: str) -> str:
    assert begin in text and end in text, begin
    return begin + text.split(begin, 1)[1].split(end, 1)[0] + end


def test_ooc_section_is_generated_from_the_json(run):
    report = json.loads(RUN_JSON.read_text())
    base = json.loads(run.BASELINE.read_text())
    want = run.ooc_section(report, "benchmarks/results/scale-cpu-ooc-30m.json", base)
    got = _block(DOC.read_text(), run.OOC_BEGIN, run.OOC_END)
    assert got == want.strip()


def test_extrapolation_is_recomputed_from_the_run_and_rendered(run):
    report = json.loads(RUN_JSON.read_text())
    ex = json.loads(EX_JSON.read_text())
    assert ex["source"] == "benchmarks/results/scale-cpu-ooc-30m.json" and ex["source_date"] == report["date"]
    again = run.extrapolate(report, ex["target_n"], ex["source"])
    assert set(again["quantities"]) == set(ex["quantities"])
    for key, q in again["quantities"].items():
        assert math.isclose(q["linear"], ex["quantities"][key]["linear"], rel_tol=1e-9), key
        assert math.isclose(q["power"]["value"], ex["quantities"][key]["power"]["value"], rel_tol=1e-9), key
    assert ex["gpu"]["measured"] is False
    want = run.extrapolation_section(ex, "benchmarks/results/extrapolation-200m.json")
    assert _block(DOC.read_text(), run.EX_BEGIN, run.EX_END) == want.strip()
    assert "not a measurement" in want and "not measured" in want


def test_extrapolation_is_linear_from_the_two_largest_sizes(run):
    report = {"date": "d", "command": "c", "machine": {}, "sizes": {
        s: {"stages": {"out_of_core": {"n_rows": n, "n_tiles": n // 10, "wall_s": w, "cpu_s": 2 * w,
                                       "peak_rss_gb": 2.0, "timings": {"bucket": w / 10, "predict": w * 0.9}}}}
        for s, n, w in (("a", 10, 1.0), ("b", 100, 9.0), ("c", 300, 25.0))}}
    ex = run.extrapolate(report, 2000, "x.json")
    q = ex["quantities"]["wall_s"]
    assert q["slope_per_million"] == pytest.approx((25.0 - 9.0) / 200 * 1e6)
    assert q["linear"] == pytest.approx(25.0 + (25.0 - 9.0) / 200 * 1700)
    assert q["power"]["k"] == pytest.approx(0.944, abs=0.01)
    assert ex["quantities"]["peak_rss_gb"]["linear"] == pytest.approx(2.0)


CELLS_JSON = ROOT / "benchmarks" / "results" / "cell_outputs.json"


@pytest.fixture(scope="module")
def cells_bench():
    return _load("bench_cell_outputs", "cell_outputs.py")


def test_cell_outputs_section_is_generated_from_the_json(cells_bench):
    """docs/benchmarks.md's cell-output memory table is what ``benchmarks/cell_outputs.py`` renders
    from the committed JSON (so its figures and met / missed marks come from the measurement)."""
    report = json.loads(CELLS_JSON.read_text())
    want = cells_bench.section(report, CELLS_JSON.name)
    assert _block(DOC.read_text(), cells_bench.BEGIN, cells_bench.END) == (
        cells_bench.BEGIN + "\n\n" + want.strip() + "\n\n" + cells_bench.END)
    for size, r in report["sizes"].items():
        mark = "met" if r["peak_rss_gb"] <= cells_bench.TARGET_GB else "**missed**"
        assert f"| {size} | {r['n_cells']:,} |" in want and want.split(f"| {size} |", 1)[1].split("\n", 1)[0].rstrip().endswith(f"{mark} |")


def test_repeated_result_has_unique_ids_per_copy(cells_bench, tmp_path):
    """The benchmark's larger inputs repeat a result side by side: every transcript and every cell of
    a copy gets its own id (else cells of different copies would merge into one)."""
    import pandas as pd

    src = tmp_path / "r.parquet"
    pd.DataFrame({"source_row": [0, 1, 2], "transcript_id": [10, 11, 12], "cell_id": [5, -1, 5],
                  "x_location": [0.0, 1.0, 2.0], "y_location": [0.0, 1.0, 2.0],
                  "segger_cell_id": ["5", "UNASSIGNED", "5"]}).to_parquet(src)
    out = cells_bench.repeated_result(src, 7, tmp_path / "big.parquet")
    df = pd.read_parquet(out)
    assert len(df) == 9 and df["transcript_id"].is_unique and df["source_row"].is_unique
    cells = df.loc[df["segger_cell_id"] != "UNASSIGNED", "segger_cell_id"]
    assert cells.nunique() == 3 and (df["segger_cell_id"] == "UNASSIGNED").sum() == 3
    assert df.loc[df["cell_id"] >= 0, "cell_id"].nunique() == 3
    assert df.groupby("segger_cell_id")["x_location"].nunique().max() <= 2  # one copy's cell stays in place
