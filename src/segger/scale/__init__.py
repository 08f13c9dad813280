"""Scale: whole-slide runs tiled out of core on Dask, a fast inference path, scale test data.

* :func:`predict_out_of_core` / :func:`iter_predict_out_of_core` (:mod:`segger.scale.runner`):
  stream a transcripts parquet into spatial tiles with margins, predict each tile with a trained
  model on a Dask cluster (local by default, or an existing ``dask.distributed`` cluster), and
  stream the result to one parquet file. Peak memory is set by the tile size.
* :func:`segment_out_of_core` (:mod:`segger.scale.segment`): the whole ``segger segment`` out of
  core: train on a seeded sample of tiles streamed from disk (:mod:`segger.training.streamed`),
  predict every tile, write every output of an in-memory run.
* the inference forward pass used by :func:`segger.prediction.embed` is :meth:`segger.models.link.SeggerLinkModel.infer` (:mod:`segger.models.fused`; ``segger.prediction.fastgnn`` and ``segger.scale.fastgnn`` are aliases).
* :func:`tile_copies` (:mod:`segger.scale.synth`): 1 M / 10 M-transcript inputs made of copies
  of a real crop laid side by side (benchmarks).
"""

from segger.scale.runner import OutOfCoreConfig, OutOfCoreResult, cpus_available, iter_predict_out_of_core, predict_out_of_core
from segger.scale.segment import SegmentOutOfCoreResult, segment_out_of_core
from segger.scale.synth import tile_copies

__all__ = ["OutOfCoreConfig", "OutOfCoreResult", "cpus_available", "iter_predict_out_of_core", "predict_out_of_core",
           "SegmentOutOfCoreResult", "segment_out_of_core", "tile_copies"]
