"""Errors that reach the user as one line: what is wrong, where, and what to do."""


class SeggerError(Exception):
    """Base class of every error the CLI and GUI show as a one-line message."""


class SeggerInputError(SeggerError, ValueError):
    """Bad input (file, column, value or parameter). The message names it and the fix."""


class CheckpointError(SeggerError):
    """A checkpoint cannot be used (unsafe, corrupt, or incompatible)."""


def one_line(exc: BaseException) -> str:
    """The message of ``exc`` folded onto one line (for the CLI and GUI notifications)."""
    text = " ".join(str(exc).split())
    if not isinstance(exc, SeggerError):
        text = f"{type(exc).__name__}: {text}"
    return text
