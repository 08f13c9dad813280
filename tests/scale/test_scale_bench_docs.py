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


@pytest.fixture(scope="module")
def run():
    spec = importlib.util.spec_from_file_location("bench_run", ROOT / "benchmarks" / "run.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


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
