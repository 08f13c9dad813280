"""Shared utilities with no scientific content: output folders (layout, paths, lock, staging, publish)."""

from segger.utils.outdir import (
    BACKUP_PREFIX,
    BOUNDARIES_FILE,
    CELLS_FILE,
    LOCK_NAME,
    MODEL_FILES,
    OOC_PREFIX,
    OUTPUT_FILES,
    QC_FILE,
    RUN_MARKER,
    STAGING_PREFIX,
    TRANSCRIPTS_FILE,
    OutputBusyError,
    OutputLock,
    check_output_path,
    output_session,
    publish,
    require_complete,
    staged_path,
    sweep_backups,
    sweep_leftovers,
    sweep_work_dir,
)

__all__ = [
    "BACKUP_PREFIX", "BOUNDARIES_FILE", "CELLS_FILE", "LOCK_NAME", "MODEL_FILES", "OOC_PREFIX", "OUTPUT_FILES",
    "QC_FILE", "RUN_MARKER", "STAGING_PREFIX", "TRANSCRIPTS_FILE",
    "OutputBusyError", "OutputLock", "check_output_path", "output_session", "publish", "require_complete",
    "staged_path",
    "sweep_backups", "sweep_leftovers", "sweep_work_dir",
]
