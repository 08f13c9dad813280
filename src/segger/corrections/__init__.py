"""User corrections: an undoable, persisted correction log and fine-tuning on it."""

from segger.corrections.finetune import (
    FinetuneConfig,
    FinetuneRun,
    correction_edges,
    finetune_and_repredict,
    neighbourhood,
    repredict_region,
)
from segger.corrections.store import ACTIONS, COLUMNS, CorrectionStore, corrections_from_table, sidecar_path

__all__ = ["FinetuneConfig", "FinetuneRun", "correction_edges", "finetune_and_repredict", "neighbourhood",
           "repredict_region", "ACTIONS", "COLUMNS", "CorrectionStore", "corrections_from_table", "sidecar_path"]
