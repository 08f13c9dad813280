"""The reach estimator (max_distance from the data) on synthetic tissues whose answer is known."""

from __future__ import annotations

import numpy as np
import shapely

from segger.data.reach import REACH_HIGH, REACH_LOW, estimate_reach


def _tissue(cell_radius: float, background: float, seed: int = 0):
    """Nuclei (radius 3 µm) on a 40 µm grid; transcripts uniform in discs of ``cell_radius`` around
    them (dense) plus a uniform ``background`` density everywhere (per µm²)."""
    rng = np.random.default_rng(seed)
    centres = np.array([(x, y) for x in range(20, 400, 40) for y in range(20, 400, 40)], float)
    geoms = np.array([shapely.Point(c).buffer(3.0) for c in centres], dtype=object)
    pts = []
    for c in centres:
        n = int(2.0 * np.pi * cell_radius ** 2)
        r = cell_radius * np.sqrt(rng.random(n))
        a = 2 * np.pi * rng.random(n)
        pts.append(c + np.c_[r * np.cos(a), r * np.sin(a)])
    n_bg = int(background * 400 * 400)
    pts.append(rng.random((n_bg, 2)) * 400)
    return np.concatenate(pts), geoms


def test_cells_ending_at_8_um_give_a_reach_near_5_um_outside_the_nucleus():
    xy, geoms = _tissue(cell_radius=8.0, background=0.02)
    reach = estimate_reach(xy, geoms)
    assert 4.0 <= reach <= 7.0, reach  # the cell edge is 8 - 3 = 5 µm outside the nucleus outline


def test_larger_cells_reach_farther():
    small = estimate_reach(*_tissue(cell_radius=6.0, background=0.02))
    large = estimate_reach(*_tissue(cell_radius=12.0, background=0.02))
    assert large > small + 3.0, (small, large)


def test_reach_is_clipped_and_defined_without_nuclei():
    xy, geoms = _tissue(cell_radius=30.0, background=0.5)  # dense everywhere: never thins out
    assert estimate_reach(xy, geoms) == REACH_HIGH
    assert estimate_reach(xy, np.array([], dtype=object)) == REACH_HIGH
    xy, geoms = _tissue(cell_radius=3.2, background=0.0)  # nothing outside the nuclei
    assert estimate_reach(xy, geoms) == REACH_LOW


def test_graph_records_the_reach(pkg_lung_graph=None):
    import pandas as pd

    from segger import schema as S
    from segger.data import GraphParams, build_graph

    xy, geoms = _tissue(cell_radius=8.0, background=0.02)
    tx = pd.DataFrame({S.X: xy[:, 0], S.Y: xy[:, 1], S.GENE: "g"})
    c = shapely.centroid(geoms)
    bd = pd.DataFrame({S.BD_ID: [str(i) for i in range(len(geoms))], S.GEOMETRY: geoms,
                       S.X: shapely.get_x(c), S.Y: shapely.get_y(c)})
    b = build_graph(tx, bd)
    assert b.info["max_distance_source"] == "estimated" and 4.0 <= b.max_distance <= 7.0
    given = build_graph(tx, bd, GraphParams(max_distance=2.5))
    assert given.max_distance == 2.5 and given.info["max_distance_source"] == "given"
