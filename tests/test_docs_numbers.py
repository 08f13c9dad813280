"""Numbers in README.md and docs/benchmarks.md agree with the results JSON they come from.

Each claim is a sentence fragment of the Markdown with ``{}`` where a number goes, the JSON file
and the path of each number, and its format. The fragment, filled in from the JSON, must appear in
the Markdown: a re-run that changes the JSON, or an edit of the text, fails here until both agree.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NAPARI = "benchmarks/results/napari_layers.json"
SCALE = "benchmarks/results/scale-cpu.json"
QUALITY = "benchmarks/quality.json"
BENCH = "docs/benchmarks.md"
REGION = "benchmarks/results/napari_region.json"
XVFB = "benchmarks/results/napari_layers_xvfb.json"
SCALE_MD = "docs/scale.md"
CORR = "benchmarks/results/corrections.json"
CELLS = "benchmarks/results/cell_outputs.json"


def _get(data, path: str):
    for part in path.split("/"):
        data = data[int(part)] if isinstance(data, list) else data[part]
    return data


def s2(v):  # seconds, 2 decimals
    return f"{v:.2f}"


def s1(v):
    return f"{v:.1f}"


def ms(v):  # seconds → whole ms
    return f"{v * 1000:.0f}"


def ms0(v):  # ms → whole ms
    return f"{v:.0f}"


def us(v):  # ms → whole µs
    return f"{v * 1000:.0f}"


def hundreds(v):
    return f"{round(v, -2):,.0f}"


def flat(v):
    return f"{v:g}"


def count(v):  # 873414 -> 873,414
    return f"{v:,}"


def met(ok):
    return "met" if ok else "**missed**"


def whole(v):  # 835.9 -> 836, 2389.4 -> 2,389
    return f"{v:,.0f}"


def x2(v):  # ratio, 2 decimals
    return f"{v:.2f}"


M = "model_side"
G = "gui_stall"
W = "widget_edit"
#: (markdown file, fragment, json file, [(path, format), ...])
CLAIMS = [
    (BENCH, "load average {} at the start and {} at the\nend; torch on {} thread", NAPARI,
     [("machine/load_before/loadavg_1m", flat), ("machine/load_after/loadavg_1m", flat), ("machine/torch_threads", flat)]),
    (BENCH, "(`result_to_points` {} s + `add_points` {} s) | ≤ {} s | **{} s**", NAPARI,
     [(f"{M}/add_layer/to_points_s", s2), (f"{M}/add_layer/add_points_s", s2), (f"{M}/add_layer/target_s", flat),
      (f"{M}/add_layer/seconds", s2)]),
    (BENCH, "| ≤ {} ms | **{} ms** (before the fix below: 454 ms) | missed by {} ms", NAPARI,
     [(f"{M}/rethreshold/target_s", ms), (f"{M}/rethreshold/seconds", ms),
      (None, lambda d: ms(d[M]["rethreshold"]["seconds"] - d[M]["rethreshold"]["target_s"]))]),
    (BENCH, "(assign {} s + recolour {} s) | ≤ 200 ms | {} ms", NAPARI,
     [(f"{M}/rethreshold_no_fragments/assign_s", s2), (f"{M}/rethreshold_no_fragments/recolour_s", s2),
      (f"{M}/rethreshold_no_fragments/seconds", ms)]),
    (BENCH, "(`attention_to_vectors` {} s + `add_vectors` {} s) | ≤ 2 s | **{} s**", NAPARI,
     [(f"{M}/attention_vectors/to_vectors_s", s2), (f"{M}/attention_vectors/add_vectors_s", s2),
      (f"{M}/attention_vectors/seconds", s2)]),
    (BENCH, "KD-tree (built once: {} s) | – | **{} µs** per click", NAPARI,
     [(f"{M}/hit_test/kdtree_build_s", s2), (f"{M}/hit_test/kdtree_click_ms", us)]),
    (BENCH, "napari `layer.get_value` | – | {} ms per click | KD-tree {}× faster", NAPARI,
     [(f"{M}/hit_test/napari_get_value_ms", ms0), (f"{M}/hit_test/speedup", hundreds)]),
    (BENCH, "on average {} µm from a\nclick", NAPARI, [(f"{M}/hit_test/kdtree_mean_dist_um", s2)]),
    (BENCH, "cursor: on average {} µm away. The two picks agree on {} clicks out of {}.", NAPARI,
     [(f"{M}/hit_test/napari_mean_dist_um", s2),
      (None, lambda d: f"{d[M]['hit_test']['same_point_fraction'] * d[M]['hit_test']['napari_clicks']:.0f}"),
      (f"{M}/hit_test/napari_clicks", flat)]),
    (BENCH, "**training** runs in a worker ({} s) | ≤ 100 ms | **{} ms**", NAPARI,
     [(f"{G}/train/seconds", s1), (f"{G}/train/max_gap_ms", ms0)]),
    (BENCH, "(result applied on the main thread: {} ms) | ≤ 100 ms | {} / {} ms", NAPARI,
     [(f"{G}/predict/apply_on_main_thread_ms", ms0), (f"{G}/build graph/max_gap_ms", ms0),
      (f"{G}/predict/max_gap_ms", ms0)]),
    (BENCH, "**fine-tuning on corrections** ({} s) | ≤ 100 ms | **{} ms**", NAPARI,
     [(f"{G}/fine-tune/seconds", s1), (f"{G}/fine-tune/max_gap_ms", ms0)]),
    (BENCH, "`neighbourhood()` fix ({} s) | ≤ 100 ms | {} ms", NAPARI,
     [(f"{G}/fine-tune (proposed neighbourhood)/seconds", s1), (f"{G}/fine-tune (proposed neighbourhood)/max_gap_ms", ms0)]),
    (BENCH, "in the re-run, with the fix in the library, {} ms against {} ms.", NAPARI,
     [(f"{G}/fine-tune (proposed neighbourhood)/max_gap_ms", ms0), (f"{G}/fine-tune/max_gap_ms", ms0)]),
    (BENCH, "| click (KD-tree hit test + selection marker) | {} ms |", NAPARI, [(f"{W}/click_ms", ms0)]),
    (BENCH, "| one edit, pure array work (`update_result_rows`) | {} ms |", NAPARI,
     [(f"{M}/correction_edit/rows/1/seconds", ms)]),
    (BENCH, "| lasso selection (8 µm radius, {} points) | {} ms |", NAPARI,
     [(f"{M}/correction_edit/lasso_points", flat), (f"{M}/correction_edit/lasso_s", ms)]),
    (BENCH, "| assign one transcript, whole widget path | {} ms |", NAPARI, [(f"{W}/assign_ms", ms0)]),
    (BENCH, "| undo | {} ms |", NAPARI, [(f"{W}/undo_ms", ms0)]),
    (BENCH, "two refreshes: {} s in the Qt viewer against {} s", NAPARI,
     [(f"{W}/recolour/predict_recolor_points_qt_s", s2), (f"{M}/rethreshold/recolour_s", s2)]),
    (BENCH, "It gives one refresh\n     and {} s;", NAPARI, [(f"{W}/recolour/one_refresh_recolour_qt_s", s2)]),
    # scale suite
    (BENCH, "the 15 k and 186 k runs were a single tile ({}, {} and {} tiles)", SCALE,
     [("sizes/15k/stages/out_of_core/n_tiles", flat), ("sizes/186k/stages/out_of_core/n_tiles", flat),
      ("sizes/1m/stages/out_of_core/n_tiles", flat)]),
    (BENCH, "| **2.49 GB** ({} tiles of {} µm", SCALE,
     [("sizes/10m/stages/out_of_core/n_tiles", flat), ("sizes/10m/stages/out_of_core/tile_size_um", ms0)]),
    (BENCH, "**{} after {} s** (the first epoch; {} s with read + graph)", SCALE,
     [("time_to_quality/best_auroc", flat), ("time_to_quality/seconds_to_target", s1),
      ("time_to_quality/seconds_to_target_incl_read_graph", s1)]),
    # napari: a 1 mm² region of a 30 M whole slide (generated by benchmarks/napari_region.py --docs; the
    # summary in docs/scale.md by hand)
    (BENCH, "load average {} at the start and {} at the end", REGION,
     [("machine/load_before/loadavg_1m", flat), ("machine/load_after/loadavg_1m", flat)]),
    (BENCH, "its {} outlines by `write_boundaries` in {} row groups of a {} µm grid", REGION,
     [("data/n_outlines", count), ("data/boundaries_row_groups", flat), ("data/boundaries_layout/grid_um", ms0)]),
    (BENCH, "holds {} transcripts and {} outlines; {} of {} transcript row groups and {} of {} outline row groups",
     REGION, [("summary/n_transcripts", count), ("summary/n_outlines", count), ("summary/row_groups_read", flat),
              ("summary/row_groups", flat), ("summary/outline_row_groups_read", flat),
              ("summary/outline_row_groups", flat)]),
    (BENCH, "| open the folder + first region + layers (runs: {}, {}, {}) | **{}** | ≤ {} s: {} |", REGION,
     [("summary/runs_total_s/0", s2), ("summary/runs_total_s/1", s2), ("summary/runs_total_s/2", s2),
      ("summary/total_s", s2), ("target/total_s", flat), ("summary/met", met)]),
    (BENCH, "| … read the transcripts / the outlines | {} / {} | |", REGION,
     [("median/read_transcripts_s", s2), ("median/read_outlines_s", s2)]),
    (BENCH, "| … layer data / add the layers | {} / {} | |", REGION,
     [("median/layer_data_s", s2), ("median/add_layers_s", s2)]),
    (BENCH, "| each further region, source open (runs: {}, {}, {}) | {} | ≤ {} s: {} |", REGION,
     [("summary/warm_runs_total_s/0", s2), ("summary/warm_runs_total_s/1", s2), ("summary/warm_runs_total_s/2", s2),
      ("summary/warm_total_s", s2), ("target/total_s", flat), ("summary/warm_met", met)]),
    (BENCH, "the whole-file index instead | {} | – |", REGION, [("baseline/whole_file_outline_index_s", s2)]),
    (BENCH, "Reading the outlines of the region costs {} s", REGION, [("median/read_outlines_s", s2)]),
    # the whole-slide cell-output step alone (benchmarks/cell_outputs.py; its table is generated, these by hand)
    (SCALE_MD, "[benchmarks](benchmarks.md)): {} / {} / {} GB at 1 / 10 / 30 M, under the 4 GB target", CELLS,
     [("sizes/1m/peak_rss_gb", s2), ("sizes/10m/peak_rss_gb", s2), ("sizes/30m/peak_rss_gb", s2)]),
    (SCALE_MD, "slowly: {} GB peak at 30 M measured", CELLS, [("sizes/30m/peak_rss_gb", s2)]),
    (BENCH, "the step peaks at {} GB at 30 M", CELLS, [("sizes/30m/peak_rss_gb", s2)]),
    (SCALE_MD, "{} outlines in\n{} row groups), a 1 × 1 mm box at the slide's centre ({} transcripts,\n{} outlines; "
               "{} of {} transcript and {} of {} outline row groups read)", REGION,
     [("data/n_outlines", count), ("data/boundaries_row_groups", flat), ("summary/n_transcripts", count),
      ("summary/n_outlines", count), ("summary/row_groups_read", flat), ("summary/row_groups", flat),
      ("summary/outline_row_groups_read", flat), ("summary/outline_row_groups", flat)]),
    (SCALE_MD, "| open the folder + first region | {} | ≤ 2 s: {} |", REGION,
     [("summary/total_s", s2), ("summary/met", met)]),
    (SCALE_MD, "| each further region (source open) | {} | ≤ 2 s: {} |", REGION,
     [("summary/warm_total_s", s2), ("summary/warm_met", met)]),
    (SCALE_MD, "The outlines of a region cost {} s to read; the whole-file index they needed before the bounds\n"
               "columns took {} s", REGION, [("median/read_outlines_s", s2), ("baseline/whole_file_outline_index_s", s2)]),
    (SCALE_MD, "({} s), the layer data ({} s: the Labels raster of the outlines, the points' colours) and\n"
               "napari adding the layers ({} s)", REGION,
     [("median/read_transcripts_s", s2), ("median/layer_data_s", s2), ("median/add_layers_s", s2)]),
    (SCALE_MD, "(the three runs:\n{}, {}, {} s;", REGION,
     [("summary/runs_total_s/0", s2), ("summary/runs_total_s/1", s2), ("summary/runs_total_s/2", s2)]),
    # quality benchmark header (generated, but the JSON is the record)
    (BENCH, "commit `{}`{} · AMD EPYC ({} cores) · torch {} on {} thread(s)", QUALITY,
     [(None, lambda d: d["meta"]["machine"]["git_commit"][:10]),
      (None, lambda d: " (src dirty)" if d["meta"]["machine"]["git_dirty"] else ""),
      ("meta/machine/cpu_count", flat), ("meta/machine/torch", str), ("meta/torch_threads_used", flat)]),
    # the real-window (Xvfb) re-run of issue 12
    (BENCH, "load average {} at the start and\n{} at the end. Changes measured here", XVFB,
     [("machine/load_before/loadavg_1m", flat), ("machine/load_after/loadavg_1m", flat)]),
    (BENCH, "model side (assign {} s + recolour {} s) | ≤ 200 ms | **{} ms** | met", XVFB,
     [(f"{M}/rethreshold/assign_s", s2), (f"{M}/rethreshold/recolour_s", s2), (f"{M}/rethreshold/seconds", ms)]),
    (BENCH, "the same with fragments off | ≤ 200 ms | {} ms | met", XVFB,
     [(f"{M}/rethreshold_no_fragments/seconds", ms)]),
    (BENCH, "**training** runs in a worker ({} s) | ≤ 100 ms | **{} ms** | met", XVFB,
     [(f"{G}/train/seconds", s1), (f"{G}/train/max_gap_ms", ms0)]),
    (BENCH, "(result applied on the main thread: {} ms) | ≤ 100 ms | {} / {} ms | predict", XVFB,
     [(f"{G}/predict/apply_on_main_thread_ms", ms0), (f"{G}/build graph/max_gap_ms", ms0),
      (f"{G}/predict/max_gap_ms", ms0)]),
    (BENCH, "(result applied: {} ms) | ≤ 100 ms | {} ms | **missed**", XVFB,
     [(f"{G}/fine-tune/apply_on_main_thread_ms", ms0), (f"{G}/fine-tune/max_gap_ms", ms0)]),
    (BENCH, "with its one canvas refresh | – | {} s |", XVFB,
     [(f"{W}/recolour/predict_recolor_points_qt_s", s2)]),
]

# the review queue vs random clicks (issue 12 #11): benchmarks/corrections.py --review-queue
RQ = "review_queue/tissues"
RQ_TISSUES = ("lung", "segtraq", "bidcell", "lung@1")
CLAIMS += [
    (BENCH, "Errors before any click (transcripts): " + ", ".join(f"{t} {{}} of {{}}" for t in RQ_TISSUES) + ".", CORR,
     [(f"{RQ}/{t}/{k}", count) for t in RQ_TISSUES for k in ("n_errors", "n_transcripts")]),
    *[(BENCH, f"| {t} | {n} | {{}} | {{}} ± {{}} | **{{}}×** | {{}} | {{}} |", CORR,
       [(f"{RQ}/{t}/by_clicks/{n}/queue", count), (f"{RQ}/{t}/by_clicks/{n}/random_mean", whole),
        (f"{RQ}/{t}/by_clicks/{n}/random_sd", whole), (f"{RQ}/{t}/by_clicks/{n}/ratio", x2),
        (f"{RQ}/{t}/by_clicks/{n}/largest_cells_first", count), (f"{RQ}/{t}/by_clicks/{n}/oracle", count)])
      for t in RQ_TISSUES for n in (5, 10, 25, 50)],
    (BENCH, "the errors of random clicks for 25 clicks — **{}** on every\ntissue (lowest ratio {}×, mean {}×)", CORR,
     [("review_queue/met", lambda ok: "met" if ok else "missed"), ("review_queue/ratio_25_min", x2),
      ("review_queue/ratio_25_mean", x2)]),
]


def _render(claim):
    _, fragment, jfile, fields = claim
    data = json.loads((ROOT / jfile).read_text())
    vals = [fmt(data) if path is None else fmt(_get(data, path)) for path, fmt in fields]
    return fragment.format(*vals)


@pytest.mark.parametrize("claim", CLAIMS, ids=[c[1][:40] for c in CLAIMS])
def test_markdown_number_matches_its_json(claim):
    text = (ROOT / claim[0]).read_text()
    want = _render(claim)
    assert want in text, f"{claim[0]} should say {want!r} (from {claim[2]})"


def test_ooc_same_cell_claim_matches_the_json():
    data = json.loads((ROOT / SCALE).read_text())
    vals = [data["sizes"][k]["info"]["ooc_vs_in_memory_same_cell"] for k in ("15k", "186k", "1m")]
    text = (ROOT / BENCH).read_text()
    assert "`ooc_vs_in_memory_same_cell` is 1.000" in text
    assert all(f"{v:.3f}" == "1.000" for v in vals), vals
    # the doc names the metric one-sided (the JSON's metric) rather than claiming equality
    assert "one-sided" in text


def test_a_wrong_number_is_caught(tmp_path):
    """The checker itself: a changed JSON value no longer matches the text."""
    claim = CLAIMS[1]
    data = json.loads((ROOT / NAPARI).read_text())
    data["model_side"]["add_layer"]["seconds"] += 0.1
    (tmp_path / "n.json").write_text(json.dumps(data))
    assert _render(claim) in (ROOT / BENCH).read_text()
    fake = (claim[0], claim[1], str(tmp_path / "n.json"), claim[3])  # an absolute path wins over ROOT
    assert _render(fake) not in (ROOT / BENCH).read_text()
