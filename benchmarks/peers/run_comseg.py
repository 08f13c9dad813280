"""Run the peer ComSeg (PyPI ``comseg``) with its defaults on one prepared crop.

Runs inside ComSeg's own virtual environment (``benchmarks/peers/.venv-comseg``, made by
``setup_comseg.sh``), in a child process of ``benchmarks/quality.py``; it imports nothing of segger.

    .venv-comseg/bin/python run_comseg.py WORKDIR

WORKDIR holds (written by the parent):
  spots.parquet      transcript_id, x, y, gene (µm), in_nucleus (int: 1-based nucleus index of the
                     vendor nucleus polygon the transcript lies in, 0 = none) — the nuclei prior
  centroids.parquet  in_nucleus (1-based index), x, y (µm): the vendor nuclei's centroids
and gets back:
  comseg.parquet     transcript_id, comseg_cell (1-based nucleus index, 0 = not assigned)
  comseg.json        the parameters used and ComSeg's version

ComSeg's defaults (``ComSegDict.run_all()``): k 10, max_cell_radius 15 µm, leiden in-situ clustering,
min_merge_correlation 0.8, mean_cell_diameter 15 µm; the coordinates are µm (dict_scale 1).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd


def main(work: str) -> int:
    import comseg
    from comseg import dataset as ds
    from comseg import dictionary

    work = Path(work)
    spots = pd.read_parquet(work / "spots.parquet")
    cents = pd.read_parquet(work / "centroids.parquet")
    csv_dir = work / "csv"
    cent_dir = work / "centroids"
    csv_dir.mkdir(exist_ok=True)
    cent_dir.mkdir(exist_ok=True)
    spots[["transcript_id", "x", "y", "gene", "in_nucleus"]].to_csv(csv_dir / "crop.csv", index=False)
    cents[["in_nucleus", "x", "y"]].to_csv(cent_dir / "crop.csv", index=False)
    t = time.perf_counter()
    dataset = ds.ComSegDataset(
        path_dataset_folder=str(csv_dir),
        dict_scale={"x": 1, "y": 1, "z": 1},
        mean_cell_diameter=15,
        gene_column="gene",
        image_csv_files=["crop.csv"],
        centroid_csv_files=["crop.csv"],
        path_cell_centroid=str(cent_dir),
        prior_name="in_nucleus",
        disable_tqdm=True,
    )
    dataset.compute_edge_weight()
    cdict = dictionary.ComSegDict(dataset=dataset, mean_cell_diameter=15, community_detection="with_prior",
                                  seed=0, disable_tqdm=True)
    cdict.run_all(disable_tqdm=True)
    G = cdict["crop"].G
    # RNA nodes carry the input columns; the centroid nodes ComSeg adds do not
    rna = [d for _, d in G.nodes(data=True) if d.get("transcript_id") is not None]
    tid = np.array([d["transcript_id"] for d in rna], dtype=np.int64)
    cell = np.array([int(d.get("cell_index_pred", 0) or 0) for d in rna], dtype=np.int64)
    pd.DataFrame({"transcript_id": tid, "comseg_cell": cell}).to_parquet(work / "comseg.parquet", index=False)
    (work / "comseg.json").write_text(json.dumps({
        "comseg_version": getattr(comseg, "__version__", None), "seconds": time.perf_counter() - t,
        "parameters": "ComSegDataset(dict_scale=1, mean_cell_diameter=15, prior_name=in_nucleus) + "
                      "compute_edge_weight() + ComSegDict(community_detection='with_prior', seed=0).run_all()",
        "n_nodes": int(len(tid)), "n_assigned": int((cell > 0).sum()),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
