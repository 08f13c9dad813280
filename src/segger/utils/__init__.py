"""Shared utilities with no scientific content: output folders (paths, lock, staging, publish)."""

from segger.utils.outdir import (
    BACKUP_PREFIX,
    LOCK_NAME,
    MODEL_FILES,
    OOC_PREFIX,
    OUTPUT_FILES,
    RUN_MARKER,
    STAGING_PREFIX,
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
    "BACKUP_PREFIX", "LOCK_NAME", "MODEL_FILES", "OOC_PREFIX", "OUTPUT_FILES", "RUN_MARKER", "STAGING_PREFIX",
    "OutputBusyError", "OutputLock", "check_output_path", "output_session", "publish", "require_complete",
    "sweep_backups", "sweep_leftovers", "sweep_work_dir",
]
