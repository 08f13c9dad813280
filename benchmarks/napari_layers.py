"""napari layer benchmark at a million transcripts (issue 3 item 6; not a timed unit test).

Measures, model-side (napari's ``ViewerModel``: layer objects, no drawing):

* adding a 1 M-transcript Points layer coloured by cell (``result_to_points`` + ``add_points``; ≤ 2 s);
* re-thresholding and recolouring it (``Prediction.assign`` + the Predict widget's
  ``recolor_points``; ≤ 200 ms);
* adding 1 M attention edges as a Vectors layer (``attention_to_vectors`` + ``add_vectors``; ≤ 2 s);
* a click's hit test at 1 M points: the correction widget's KD-tree vs napari's ``layer.get_value``;
* one correction edit (``update_result_rows`` + setting features/colours) and a lasso selection;

and, in a real Qt viewer (offscreen), the largest GUI-thread stall seen by a 5 ms ``QTimer``
heartbeat while the widgets' workers build the graph, train, predict and fine-tune (≤ 100 ms).

The 1 M data: the real Xenium crop (breast by default) tiled k times on a grid, with unique
transcript, vendor cell and nucleus ids per copy; the prediction is the *real* cached scores of a
tiny model trained on the crop, tiled the same way (candidate and neighbour arrays offset per
copy) — a full predict at 1 M on this 2-core CPU is avoided, and assign/recolour costs depend only
on the array sizes. Attention edges: the tiny model's real tx→tx attention (top-k) tiled.

    python benchmarks/napari_layers.py --json benchmarks/results/napari_layers.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = {"breast": "xenium_breast", "lung": "xenium_lung"}


def _timed(fn, repeats: int = 1):
    """(median seconds, all seconds, last result) of ``fn()``."""
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times, out


def _load() -> dict:
    la = os.getloadavg()
    return {"loadavg_1m": round(la[0], 2), "loadavg_5m": round(la[1], 2), "cpus": os.cpu_count()}


# ----------------------------------------------------------------------------------------------
# real crop -> model -> tiled 1 M data
# ----------------------------------------------------------------------------------------------
def prepare(sample_key: str, epochs: int, log):
    import torch

    from segger.data import build_graph
    from segger.io import read_sample
    from segger.prediction import PredictConfig, attention_edges, predict
    from segger.progress import run
    from segger.training import TrainConfig, TrainingRun

    folder = ROOT / "src" / "segger" / "sample_data" / sample_key
    sample = read_sample(folder)
    bundle = build_graph(sample.transcripts, sample.nuclei)
    tiny = dict(init_emb=8, hidden_channels=8, out_channels=8, heads=1, num_mid_layers=0)
    t0 = time.perf_counter()
    tr = TrainingRun(bundle, TrainConfig(epochs=epochs, device="cpu", **tiny))
    run(tr.iter_train())
    train_s = time.perf_counter() - t0
    model = tr.model.eval()
    t0 = time.perf_counter()
    pred = predict(model, bundle, PredictConfig(device="cpu"))
    predict_s = time.perf_counter() - t0
    with torch.no_grad():
        att = attention_edges(model, bundle, ("tx", "neighbors", "tx"), top_k=5, device="cpu")
    log(f"real crop {sample_key}: {len(bundle.transcripts):,} transcripts, {len(bundle.nuclei):,} nuclei; "
        f"tiny model {epochs} epoch(s) in {train_s:.1f} s, predict {predict_s:.2f} s, {len(att):,} attention edges")
    return sample, bundle, model, pred, att, {"train_s": train_s, "predict_s": predict_s}


def tile(bundle, pred, att, n_target: int):
    """The crop, its prediction and its attention edges tiled to ``n_target`` transcripts."""
    import torch
    from torch_geometric.data import HeteroData

    from segger import schema as S
    from segger.data import TX_BD, GraphBundle
    from segger.prediction import Prediction

    tx, nuc = bundle.transcripts, bundle.nuclei
    n_tx, n_bd = len(tx), len(nuc)
    k = int(np.ceil(n_target / n_tx))
    ncol = int(np.ceil(np.sqrt(k)))
    w = float(tx[S.X].max() - tx[S.X].min()) + 20.0
    h = float(tx[S.Y].max() - tx[S.Y].min()) + 20.0
    copy = np.repeat(np.arange(k), n_tx)
    dx, dy = (copy % ncol) * w, (copy // ncol) * h
    t = pd.DataFrame({c: np.tile(tx[c].to_numpy(), k) for c in tx.columns if c != S.GENE})
    t[S.GENE] = pd.Categorical.from_codes(np.tile(tx[S.GENE].astype("category").cat.codes.to_numpy(), k),
                                          categories=tx[S.GENE].astype("category").cat.categories)
    t[S.X] = t[S.X].to_numpy() + dx
    t[S.Y] = t[S.Y].to_numpy() + dy
    id_span = int(tx[S.TX_ID].max()) + 1
    t[S.TX_ID] = t[S.TX_ID].to_numpy(dtype=np.int64) + copy.astype(np.int64) * id_span
    if S.CELL_ID in t.columns:
        cid = t[S.CELL_ID].astype("string").to_numpy(dtype=object)
        has = pd.notna(cid)
        suffix = np.char.add("-t", copy.astype(str)).astype(object)
        cid[has] = cid[has] + suffix[has]
        t[S.CELL_ID] = cid
    t = t.iloc[:n_target].reset_index(drop=True)
    bcopy = np.repeat(np.arange(k), n_bd)
    nb = pd.DataFrame({
        S.BD_ID: (np.tile(nuc[S.BD_ID].astype(str).to_numpy(dtype=object), k)
                  + np.char.add("-t", bcopy.astype(str)).astype(object)),
        S.X: np.tile(nuc[S.X].to_numpy(), k) + (bcopy % ncol) * w,
        S.Y: np.tile(nuc[S.Y].to_numpy(), k) + (bcopy // ncol) * h,
    })

    def tiled_pairs(a, b, off_a, off_b):
        m = len(a)
        oa = np.repeat(np.arange(k, dtype=np.int64) * off_a, m)
        ob = np.repeat(np.arange(k, dtype=np.int64) * off_b, m)
        return np.tile(a, k) + oa, np.tile(b, k) + ob

    ct, cb = tiled_pairs(pred.cand_tx, pred.cand_bd, n_tx, n_bd)
    cs = np.tile(pred.cand_score, k)
    keep = ct < n_target
    ns, nd = tiled_pairs(pred.nn_src, pred.nn_dst, n_tx, n_tx)
    nsim = np.tile(pred.nn_sim, k)
    keep_n = (ns < n_target) & (nd < n_target)
    bel = bundle.data[TX_BD].edge_index.numpy()
    bt, bb = tiled_pairs(bel[0], bel[1], n_tx, n_bd)
    keep_b = bt < n_target
    data = HeteroData()
    data["tx"].num_nodes = n_target
    data["tx"].pos = torch.from_numpy(np.stack([t[S.X].to_numpy(np.float32), t[S.Y].to_numpy(np.float32),
                                                np.zeros(len(t), np.float32)], axis=1))  # fragment extents
    data["bd"].num_nodes = len(nb)
    data[TX_BD].edge_index = torch.from_numpy(np.stack([bt[keep_b], bb[keep_b]]))
    big = GraphBundle(data, t, nb, bundle.vocab, bundle.params, info={"tiled": k})
    tile = (lambda a: None if a is None else np.tile(a, k)[keep])  # the rule's per-candidate arrays
    tiled_pred = Prediction(big, ct[keep], cb[keep], cs[keep], ns[keep_n], nd[keep_n], nsim[keep_n],
                            config=pred.config, cand_d_abs=tile(pred.cand_d_abs), cand_choice=tile(pred.cand_choice))
    asrc, adst = tiled_pairs(att["src"].to_numpy(np.int64), att["dst"].to_numpy(np.int64), n_tx, n_tx)
    aw = np.tile(att["weight"].to_numpy(np.float32), k)
    ka = (asrc < n_target) & (adst < n_target)
    edges = pd.DataFrame({"src": asrc[ka], "dst": adst[ka], "weight": aw[ka]})
    return big, tiled_pred, edges, k


# ----------------------------------------------------------------------------------------------
# model-side timings
# ----------------------------------------------------------------------------------------------
def model_side(big, tpred, edges, n_edges: int, repeats: int, log) -> dict:
    from napari.components import ViewerModel

    from segger import schema as S
    from segger.napari._w_predict import recolor_points
    from segger.napari.layers import (
        PointIndex,
        attention_to_vectors,
        points_in_polygons,
        result_to_points,
        update_result_rows,
    )

    out: dict = {}
    cut = float(tpred.config.score_cut)
    s, _, result = _timed(lambda: tpred.assign(score_cut=cut), 1)
    out["first_assign_s"] = s
    alt = alt_cut(tpred, cut)
    res_alt = tpred.assign(score_cut=alt)
    moved = float((res_alt[S.SEGGER_CELL_ID].to_numpy() != result[S.SEGGER_CELL_ID].to_numpy()).mean())
    out["rethreshold_cuts"] = {"a": cut, "b": alt, "fraction_changed": moved}
    n = len(result)
    n_cells = int(pd.unique(result[S.SEGGER_CELL_ID]).size)
    log(f"tiled result: {n:,} transcripts, {n_cells:,} cells/fragments (first assign {s:.2f} s)")

    # 1) add a 1M-transcript layer coloured by cell
    parts = {"to_points": [], "add_points": []}
    vm = layer = None
    for _ in range(repeats):
        vm = ViewerModel()
        t0 = time.perf_counter()
        data, kwargs, _ = result_to_points(result)
        t1 = time.perf_counter()
        layer = vm.add_points(data, **kwargs)
        t2 = time.perf_counter()
        parts["to_points"].append(t1 - t0)
        parts["add_points"].append(t2 - t1)
    tot = [a + b for a, b in zip(parts["to_points"], parts["add_points"])]
    out["add_layer"] = {"seconds": statistics.median(tot), "runs": tot, "target_s": 2.0,
                        "to_points_s": statistics.median(parts["to_points"]),
                        "add_points_s": statistics.median(parts["add_points"])}
    log(f"add 1M layer coloured by cell: {out['add_layer']['seconds']:.2f} s "
        f"(colours+features {out['add_layer']['to_points_s']:.2f} s, add_points {out['add_layer']['add_points_s']:.2f} s)")

    # 2) re-threshold + recolour (Predict widget path), fragments on (default) and off
    for frag in (True, False):
        a_t, r_t = [], []
        for i in range(repeats):
            c = alt if i % 2 == 0 else cut
            t0 = time.perf_counter()
            res, codes = tpred.assign_with_codes(score_cut=c, fragments=frag)  # the Predict widget's path
            t1 = time.perf_counter()
            recolor_points(layer, res, codes)
            t2 = time.perf_counter()
            a_t.append(t1 - t0)
            r_t.append(t2 - t1)
        tot = [a + b for a, b in zip(a_t, r_t)]
        key = "rethreshold" + ("" if frag else "_no_fragments")
        out[key] = {"seconds": statistics.median(tot), "runs": tot, "target_s": 0.2,
                    "assign_s": statistics.median(a_t), "recolour_s": statistics.median(r_t), "fragments": frag}
        log(f"re-threshold {cut:.2f} <-> {alt:.2f} ({moved:.1%} of transcripts change cell) + recolour "
            f"(fragments {'on' if frag else 'off'}): {out[key]['seconds'] * 1e3:.0f} ms "
            f"(assign {out[key]['assign_s'] * 1e3:.0f} ms, recolour {out[key]['recolour_s'] * 1e3:.0f} ms)")

    # 3) 1M attention edges as Vectors
    e = edges.iloc[:n_edges]
    v_t, a_t = [], []
    for _ in range(repeats):
        vm2 = ViewerModel()
        t0 = time.perf_counter()
        vdata, vkw, _ = attention_to_vectors(e, big.transcripts, big.nuclei, ("tx", "neighbors", "tx"))
        t1 = time.perf_counter()
        vm2.add_vectors(vdata, **vkw)
        t2 = time.perf_counter()
        v_t.append(t1 - t0)
        a_t.append(t2 - t1)
    tot = [a + b for a, b in zip(v_t, a_t)]
    out["attention_vectors"] = {"seconds": statistics.median(tot), "runs": tot, "target_s": 2.0,
                                "n_edges": int(len(e)), "to_vectors_s": statistics.median(v_t),
                                "add_vectors_s": statistics.median(a_t)}
    log(f"add {len(e):,} attention edges as Vectors: {out['attention_vectors']['seconds']:.2f} s")

    # 4) click hit test: KD-tree vs napari's get_value
    build_s, _, index = _timed(lambda: PointIndex.from_layer(layer), 1)
    rng = np.random.default_rng(0)
    pos = np.asarray(layer.data, dtype=np.float64)
    picks = rng.choice(len(pos), 200, replace=False)
    clicks = pos[picks] + rng.normal(0, 0.05, (len(picks), 2))
    t0 = time.perf_counter()
    kd = [index.nearest(y, x, 0.5) for y, x in clicks]
    kd_s = (time.perf_counter() - t0) / len(clicks)
    nv = 10
    t0 = time.perf_counter()
    nap = [layer.get_value(tuple(c), world=True) for c in clicks[:nv]]
    nap_s = (time.perf_counter() - t0) / nv
    # napari returns the top-most point whose disc covers the cursor, the KD-tree the nearest one:
    # check the KD-tree's pick is never farther from the click than napari's
    d_kd = [np.hypot(*(pos[i] - c)) for i, c in zip(kd[:nv], clicks[:nv]) if i >= 0]
    d_np = [np.hypot(*(pos[i] - c)) for i, c in zip(nap, clicks[:nv]) if i is not None]
    same = float(np.mean([a == b for a, b in zip(kd[:nv], nap)]))
    out["hit_test"] = {"kdtree_build_s": build_s, "kdtree_click_ms": kd_s * 1e3, "napari_get_value_ms": nap_s * 1e3,
                       "speedup": nap_s / kd_s, "same_point_fraction": same,
                       "kdtree_mean_dist_um": float(np.mean(d_kd)) if d_kd else None,
                       "napari_mean_dist_um": float(np.mean(d_np)) if d_np else None,
                       "n_points": int(len(pos)), "napari_clicks": nv, "kdtree_clicks": int(len(clicks))}
    log(f"hit test at {len(pos):,} points: KD-tree {kd_s * 1e6:.0f} µs/click (built once in {build_s:.2f} s) vs "
        f"napari get_value {nap_s * 1e3:.0f} ms/click → {nap_s / kd_s:,.0f}x; same point {same:.0%} "
        f"(mean distance to the click: KD-tree {out['hit_test']['kdtree_mean_dist_um']:.3f} µm, napari "
        f"{out['hit_test']['napari_mean_dist_um'] or float('nan'):.3f} µm)")

    # 5) one correction edit, and a lasso around ~one cell
    cells = result[S.SEGGER_CELL_ID].to_numpy(dtype=object)
    edit = {}
    for m in (1, 100):
        rows = rng.choice(len(pos), m, replace=False)

        def go():
            f, c = update_result_rows(layer.features, layer.face_color, rows, np.full(m, "edited-cell", object),
                                      np.full(m, "cytoplasm", object), np.ones(m, bool))
            layer.features = f
            layer.face_color = c

        s, runs, _ = _timed(go, repeats)
        edit[str(m)] = {"seconds": s, "runs": runs}
    centre = pos[picks[0]]
    t = np.linspace(0, 2 * np.pi, 40, endpoint=False)
    lasso = np.column_stack([centre[0] + 8 * np.sin(t), centre[1] + 8 * np.cos(t)])
    s_lasso, _, inside = _timed(lambda: points_in_polygons(index.yx, [lasso]), repeats)
    out["correction_edit"] = {"rows": edit, "lasso_s": s_lasso, "lasso_points": int(len(inside))}
    log(f"correction edit at 1M: 1 row {edit['1']['seconds'] * 1e3:.0f} ms, 100 rows {edit['100']['seconds'] * 1e3:.0f} ms; "
        f"lasso (r = 8 µm, {len(inside)} points) {s_lasso * 1e3:.0f} ms")
    del cells
    return out, result, res_alt


def alt_cut(tpred, cut: float) -> float:
    """A second score cut that moves about a tenth of the assigned transcripts (a real recolour)."""
    scores = tpred.best_score[(tpred.best_bd >= 0) & (tpred.best_score >= cut)]
    return float(max(np.quantile(scores, 0.10), cut + 0.01)) if len(scores) else cut + 0.1


# ----------------------------------------------------------------------------------------------
# GUI-thread stall while the workers run (real Qt viewer, offscreen)
# ----------------------------------------------------------------------------------------------
class Heartbeat:
    """A 5 ms QTimer on the GUI thread; the gaps between its ticks are the GUI-thread stalls.

    A watchdog thread samples the GUI thread's Python stack whenever a tick is overdue by more
    than ``sample_after_ms``, so the report says *what* stalled (innermost project/napari frames)."""

    def __init__(self, interval_ms: int = 5, sample_after_ms: float = 50.0):
        import threading

        from qtpy.QtCore import Qt, QTimer

        self.interval = interval_ms
        self.timer = QTimer()
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self._tick)
        self.ticks: list[float] = []
        self.sample_after = sample_after_ms / 1e3
        self.main_id = threading.get_ident()
        self.samples: dict[str, int] = {}
        self._watch = None
        self._stop = threading.Event()

    def _tick(self):
        self.ticks.append(time.perf_counter())

    def _watchdog(self):
        import traceback

        while not self._stop.wait(0.01):
            if not self.ticks or time.perf_counter() - self.ticks[-1] < self.sample_after:
                continue
            frame = sys._current_frames().get(self.main_id)
            if frame is None:
                continue
            stack = traceback.extract_stack(frame)
            keep = [f for f in stack if "segger" in f.filename or "napari" in f.filename or "vispy" in f.filename]
            key = " <- ".join(f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in reversed((keep or stack)[-4:]))
            self.samples[key] = self.samples.get(key, 0) + 1

    def _gc(self, phase, info):
        if phase == "start":
            self._gc_t0 = time.perf_counter()
        elif self._gc_t0 is not None:
            self.gc_pauses.append((info.get("generation", -1), time.perf_counter() - self._gc_t0))
            self._gc_t0 = None

    def start(self):
        import gc
        import threading

        self.ticks = [time.perf_counter()]
        self.samples = {}
        self.gc_pauses: list[tuple[int, float]] = []  # Python's cyclic GC holds the GIL: every thread waits
        self._gc_t0 = None
        if self._gc not in gc.callbacks:
            gc.callbacks.append(self._gc)
        self._stop.clear()
        self._watch = threading.Thread(target=self._watchdog, daemon=True)
        self._watch.start()
        self.timer.start()

    def stop(self) -> dict:
        import gc

        self.timer.stop()
        self._stop.set()
        if self._gc in gc.callbacks:
            gc.callbacks.remove(self._gc)
        if self._watch is not None:
            self._watch.join()
        self.ticks.append(time.perf_counter())
        gaps = np.diff(self.ticks) * 1e3
        top = sorted(self.samples.items(), key=lambda kv: -kv[1])[:5]
        return {"max_gap_ms": float(gaps.max()), "p99_gap_ms": float(np.percentile(gaps, 99)),
                "ticks": int(len(gaps)), "seconds": float(self.ticks[-1] - self.ticks[0]),
                "interval_ms": self.interval,
                "stall_stacks": [{"samples_10ms": n, "stack": k} for k, n in top],
                "gc_max_pause_ms": 1e3 * max((t for _, t in self.gc_pauses), default=0.0),
                "gc_full_collections": sum(1 for g, _ in self.gc_pauses if g == 2)}


def _wait(pred, timeout_s: float) -> None:
    """Run the Qt event loop (idle-blocking, like napari's) until ``pred()`` or timeout."""
    from qtpy.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    check = QTimer()
    check.setInterval(20)
    deadline = time.perf_counter() + timeout_s
    check.timeout.connect(lambda: loop.quit() if pred() or time.perf_counter() > deadline else None)
    check.start()
    loop.exec()
    check.stop()


def fast_neighbourhood(bundle, tx_index, radius):
    """Same result as ``segger.corrections.finetune.neighbourhood``: one KD-tree over the given
    transcripts, one nearest-distance query for all transcripts (O(N log k), no huge lists)."""
    from scipy.spatial import cKDTree

    pos = bundle.data["tx"].pos.numpy()[:, :2]
    if len(tx_index) == 0:
        return np.zeros(0, dtype=np.int64)
    d, _ = cKDTree(pos[np.unique(tx_index)]).query(pos, k=1, distance_upper_bound=np.nextafter(radius, np.inf))
    return np.flatnonzero(np.isfinite(d))


def gui_stall(sample, sample_key: str, epochs: int, size: str, ft_steps: int, log,
              compare_neighbourhood: bool = True) -> dict:
    import napari

    from segger import schema as S
    from segger.napari._reader import sample_to_layers

    # a real, visible window when there is a display (Xvfb: QT_QPA_PLATFORM=xcb), else offscreen
    viewer = napari.Viewer(show=os.environ.get("QT_QPA_PLATFORM", "") not in ("offscreen", "minimal"))
    for data, kw, kind in sample_to_layers(sample, prefix="bench",
                                           metadata={"sample": sample_key, "source": str(ROOT)}):
        getattr(viewer, f"add_{kind}")(data, **kw)

    def dock(name):
        return viewer.window.add_plugin_dock_widget("napari-segger", name)[1]

    hb = Heartbeat(5)
    out: dict = {}

    def phase(name, start, widget, timeout, apply_method=None):
        applied = []
        if apply_method is not None:  # time the main-thread slot that applies the result
            inner = getattr(widget, apply_method)

            def timed(*args, **kwargs):
                t0 = time.perf_counter()
                try:
                    return inner(*args, **kwargs)
                finally:
                    applied.append(time.perf_counter() - t0)

            setattr(widget, apply_method, timed)
        hb.start()
        start()
        _wait(lambda: not widget.busy, timeout)
        _wait(lambda: False, 0.3)  # let the results land on the main thread
        rec = hb.stop()
        rec["error"] = getattr(widget.job, "last_error", None) and str(widget.job.last_error)
        if apply_method is not None:
            delattr(widget, apply_method)
            rec["apply_on_main_thread_ms"] = 1e3 * sum(applied)
        out[name] = rec
        log(f"GUI stall during {name}: max {rec['max_gap_ms']:.0f} ms (p99 {rec['p99_gap_ms']:.0f} ms, "
            f"{rec['ticks']} ticks over {rec['seconds']:.1f} s)"
            + (f"; applying the result on the main thread took {rec['apply_on_main_thread_ms']:.0f} ms"
               if "apply_on_main_thread_ms" in rec else ""))

    d = dock("Data & graph")
    phase("build graph", d.build, d, 300)
    t = dock("Train / fine-tune")
    t.epochs.setValue(epochs)
    t.size_combo.setCurrentText(size)
    t.device_combo.setCurrentText("cpu")
    phase("train", t.train, t, 600)
    out["train"]["epochs"] = epochs
    out["train"]["model_size"] = size
    p = dock("Predict")
    p.outlines.setChecked(False)
    phase("predict", p.predict, p, 300, "_apply_prediction")
    c = dock("Correct & fine-tune")
    c.open_corrections(None)
    res = c.state.result
    cells = res[S.SEGGER_CELL_ID].astype(str).to_numpy()
    bd = set(c.state.bundle.nuclei[S.BD_ID].astype(str))
    rows = np.flatnonzero(np.isin(cells, list(bd)))[:: max(1, len(cells) // 30)][:20]
    targets = pd.unique(cells[rows])
    for i, r in enumerate(rows):
        c.select_rows([r])
        c.set_target(targets[(list(targets).index(cells[r]) + 1) % len(targets)])
        c.assign()
    c.steps.setValue(ft_steps)
    phase("fine-tune", c.finetune, c, 300, "_apply_finetune")
    out["fine-tune"]["corrections"] = int(len(c.store))
    out["fine-tune"]["steps"] = ft_steps
    if compare_neighbourhood:
        # the same fine-tune with the core's neighbourhood() replaced by an equivalent KD-tree
        # distance query (proposed fix: query_ball_point over every core transcript holds the GIL)
        import segger.corrections.finetune as F

        original = F.neighbourhood
        F.neighbourhood = fast_neighbourhood
        try:
            phase("fine-tune (proposed neighbourhood)", c.finetune, c, 300, "_apply_finetune")
        finally:
            F.neighbourhood = original
    viewer.close()
    return out


def widget_edit(result, result_alt, repeats: int, log) -> dict:
    """GUI-thread costs in a Qt viewer at 1 M transcripts: the Predict widget's recolour (with the
    canvas refresh it triggers), and one correction in the widget (click, assign, undo)."""
    import napari

    from segger import schema as S
    from segger.napari._viewer import upsert_layer
    from segger.napari._viewer import set_face_colors
    from segger.napari._w_predict import recolor_points
    from segger.napari.layers import result_layer_update, result_to_points

    # instrument: count the canvas (vispy) refreshes of the big layer, to check what is timed
    from napari._vispy.layers import points as vispy_points

    refreshes = []
    original = vispy_points.VispyPointsLayer._on_data_change

    def counting(self, *args):
        t0 = time.perf_counter()
        original(self)
        if len(self.layer.data) == len(result):
            refreshes.append(time.perf_counter() - t0)

    vispy_points.VispyPointsLayer._on_data_change = counting
    viewer = napari.Viewer(show=False)
    t0 = time.perf_counter()
    layer = upsert_layer(viewer, result_to_points(result))
    add_qt_s = time.perf_counter() - t0
    rec, rec1, n_ref, n_ref1 = [], [], [], []
    for i in range(repeats):
        r = result_alt if i % 2 == 0 else result
        refreshes.clear()
        t0 = time.perf_counter()
        recolor_points(layer, r)
        rec.append(time.perf_counter() - t0)
        n_ref.append(len(refreshes))
    for i in range(repeats):
        r = result if i % 2 == 0 else result_alt  # always a change of colours
        refreshes.clear()
        t0 = time.perf_counter()
        feats, colors = result_layer_update(layer.features, r)
        layer.features = feats
        set_face_colors(layer, colors)
        rec1.append(time.perf_counter() - t0)
        n_ref1.append(len(refreshes))
    recolour = {"predict_recolor_points_qt_s": statistics.median(rec), "one_refresh_recolour_qt_s": statistics.median(rec1),
                "canvas_refreshes": {"recolor_points": n_ref, "one_refresh": n_ref1},
                "runs": {"recolor_points": rec, "one_refresh": rec1}}
    log(f"Qt viewer, 1M recolour: Predict's recolor_points {recolour['predict_recolor_points_qt_s']:.2f} s "
        f"({n_ref} canvas refreshes); with one canvas refresh {recolour['one_refresh_recolour_qt_s']:.2f} s ({n_ref1})")
    c = viewer.window.add_plugin_dock_widget("napari-segger", "Correct & fine-tune")[1]
    c.open_corrections(None)
    t0 = time.perf_counter()
    c.state.set_result(result, {"score_cut": 0.5})
    set_result_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    c.point_index()
    index_s = time.perf_counter() - t0
    c.set_active(True)
    cells = c._cells.astype(str)
    pos = np.asarray(layer.data, dtype=np.float64)
    rng = np.random.default_rng(1)
    rows = rng.choice(np.flatnonzero(cells != S.UNASSIGNED), 6, replace=False)
    clicks, assigns, undos = [], [], []
    for r, other in zip(rows[:3], rows[3:]):
        t0 = time.perf_counter()
        hit = c.click(*pos[r])
        clicks.append(time.perf_counter() - t0)
        assert hit == r, (hit, r)
        c.set_target(cells[other])
        t0 = time.perf_counter()
        c.assign()
        assigns.append(time.perf_counter() - t0)
    refreshes.clear()
    for _ in range(2):
        t0 = time.perf_counter()
        c.undo()
        undos.append(time.perf_counter() - t0)
    undo_refreshes = len(refreshes)
    vispy_points.VispyPointsLayer._on_data_change = original
    out = {"n_transcripts": int(len(result)), "add_layer_qt_s": add_qt_s, "recolour": recolour,
           "apply_result_s": set_result_s,
           "kdtree_build_s": index_s, "click_ms": 1e3 * statistics.median(clicks),
           "assign_ms": 1e3 * statistics.median(assigns), "undo_ms": 1e3 * statistics.median(undos),
           "canvas_refreshes_per_undo": undo_refreshes / 2,
           "runs": {"click": clicks, "assign": assigns, "undo": undos}}
    log(f"widget at {len(result):,} transcripts: click {out['click_ms']:.0f} ms, assign {out['assign_ms']:.0f} ms, "
        f"undo {out['undo_ms']:.0f} ms (GUI thread; layer added to the Qt viewer in {add_qt_s:.2f} s)")
    viewer.close()
    return out


# ----------------------------------------------------------------------------------------------
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", required=True, help="output JSON")
    ap.add_argument("--sample", choices=sorted(SAMPLES), default="breast")
    ap.add_argument("--n", type=int, default=1_000_000, help="transcripts in the tiled data")
    ap.add_argument("--edges", type=int, default=1_000_000, help="attention edges in the Vectors layer")
    ap.add_argument("--epochs", type=int, default=3, help="tiny model epochs for the tiled prediction")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--stall-epochs", type=int, default=10, help="training epochs during the stall measurement")
    ap.add_argument("--stall-size", default="default", help="model size during the stall measurement")
    ap.add_argument("--finetune-steps", type=int, default=15)
    ap.add_argument("--skip-gui", action="store_true", help="only the model-side timings")
    a = ap.parse_args(argv)

    def log(msg):
        print(msg, flush=True)

    import torch

    torch.set_num_threads(1)  # the 2-core machine is shared; one thread keeps the numbers stable

    out = {"machine": {"python": sys.version.split()[0], "platform": platform.platform(),
                       "qt_platform": os.environ.get("QT_QPA_PLATFORM"), "torch_threads": 1,
                       "load_before": _load()},
           "targets": {"add_layer_s": 2.0, "rethreshold_s": 0.2, "attention_vectors_s": 2.0, "gui_stall_ms": 100.0}}
    key = SAMPLES[a.sample]
    sample, bundle, model, pred, att, info = prepare(key, a.epochs, log)
    t0 = time.perf_counter()
    big, tpred, edges, k = tile(bundle, pred, att, a.n)
    out["data"] = {
        "sample": key, "crop_transcripts": int(len(bundle.transcripts)), "tiles": k,
        "n_transcripts": int(len(big.transcripts)), "n_nuclei": int(len(big.nuclei)),
        "n_attention_edges_available": int(len(edges)), "tile_seconds": time.perf_counter() - t0,
        "prediction": (f"real cached scores of a tiny model ({a.epochs} epoch(s), trained in "
                       f"{info['train_s']:.1f} s; predict on the crop {info['predict_s']:.2f} s) tiled {k}x with "
                       "unique transcript / nucleus / vendor cell ids per copy (no 1 M GNN pass)"),
        "attention": "the tiny model's tx→tx attention (top 5 per transcript) tiled the same way",
    }
    if len(edges) < a.edges:
        log(f"note: only {len(edges):,} attention edges available (asked {a.edges:,})")
    out["model_side"], result, result_alt = model_side(big, tpred, edges, a.edges, a.repeats, log)
    del big, tpred, edges
    if not a.skip_gui:
        out["gui_stall"] = gui_stall(sample, key, a.stall_epochs, a.stall_size, a.finetune_steps, log)
        out["widget_edit"] = widget_edit(result, result_alt, a.repeats, log)
    out["machine"]["load_after"] = _load()
    ms = out["model_side"]
    out["summary"] = {
        "add_layer_s": ms["add_layer"]["seconds"], "add_layer_met": ms["add_layer"]["seconds"] <= 2.0,
        "rethreshold_s": ms["rethreshold"]["seconds"], "rethreshold_met": ms["rethreshold"]["seconds"] <= 0.2,
        "rethreshold_no_fragments_s": ms["rethreshold_no_fragments"]["seconds"],
        "attention_vectors_s": ms["attention_vectors"]["seconds"],
        "attention_vectors_met": ms["attention_vectors"]["seconds"] <= 2.0,
        "hit_test_speedup": ms["hit_test"]["speedup"],
    }
    if "gui_stall" in out:
        worst = max(v["max_gap_ms"] for k, v in out["gui_stall"].items() if "proposed" not in k)
        out["summary"].update(gui_stall_train_ms=out["gui_stall"]["train"]["max_gap_ms"],
                              gui_stall_train_met=out["gui_stall"]["train"]["max_gap_ms"] <= 100.0,
                              gui_stall_worst_ms=worst)
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps(out, indent=2, default=str))
    log(json.dumps(out["summary"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
