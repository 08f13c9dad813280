"""End-to-end segmentation (read → graph → train (or reuse a checkpoint) → predict → export).

The workflow lives in :mod:`segger.workflows` (one for the CLI, the widgets and Python users);
this module keeps the names it had: ``segment``, ``iter_segment``, ``SegmentResult``,
``no_nuclei_reason`` and the output-folder helpers of :mod:`segger.utils.outdir`.
"""

from __future__ import annotations

from segger.utils.outdir import (BACKUP_PREFIX, OUTPUT_FILES, STAGING_PREFIX, check_output_path,  # noqa: F401
                                 output_session, publish, sweep_leftovers)
from segger.workflows import SegmentResult, iter_segment, no_nuclei_reason, segment  # noqa: F401

__all__ = ["SegmentResult", "iter_segment", "no_nuclei_reason", "segment", "BACKUP_PREFIX", "OUTPUT_FILES",
           "STAGING_PREFIX", "check_output_path", "output_session", "publish", "sweep_leftovers"]
