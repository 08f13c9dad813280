"""User corrections: pure edit rules and their application (:mod:`.edits`), an undoable, persisted
correction log (:mod:`.store`) and fine-tuning on it (:mod:`.finetune`, imported on first use:
it needs PyTorch, the edits and the log do not)."""

from segger.corrections.edits import (
    Edit,
    apply_corrections,
    changed_transcripts,
    merge_cells,
    reassign,
    split_cell,
)
from segger.corrections.store import ACTIONS, COLUMNS, CorrectionStore, corrections_from_table, sidecar_path

_FINETUNE = ("FinetuneConfig", "FinetuneRun", "correction_edges", "finetune_and_repredict", "neighbourhood",
             "repredict_region")


def __getattr__(name):
    if name in _FINETUNE:
        from segger.corrections import finetune

        return getattr(finetune, name)
    raise AttributeError(f"module 'segger.corrections' has no attribute {name!r}")


__all__ = ["Edit", "apply_corrections", "changed_transcripts", "merge_cells", "reassign", "split_cell",
           *_FINETUNE, "ACTIONS", "COLUMNS", "CorrectionStore", "corrections_from_table", "sidecar_path"]
