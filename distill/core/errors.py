"""User-facing errors: the CLI prints these as one line and exits with code 2, never a traceback."""

from __future__ import annotations

import errno

FULL = (errno.ENOSPC, errno.EDQUOT)  # no space left, disk quota exceeded


class MgaError(Exception):
    """A mistake in input, config or environment that the user can fix."""

    exit_code = 2


class DiskFull(MgaError):
    """A write failed for want of space; what was kept is said in the message."""

    def first(self) -> DiskFull:
        """The first full-disk error of a chain: later ones come from clean-up (accounting, closing files) and
        would hide what the first one says was kept."""
        first, context = self, self.__context__
        while context is not None:
            if isinstance(context, DiskFull):
                first = context
            context = context.__context__
        return first


_FULL_MESSAGES = ("No space left on device", "Disk quota exceeded", "database or disk is full")


def is_disk_full(error: BaseException) -> bool:
    """A write that failed because the file system is full (or over quota): an OS error, a SQLite commit, or a
    library's error that carries only the OS message (pyarrow, safetensors when a checkpoint is saved)."""
    if isinstance(error, OSError) and error.errno in FULL:
        return True
    return any(message in str(error) for message in _FULL_MESSAGES)


def disk_full(path: object, kept: str) -> DiskFull:
    """The error for a full disk at `path`: what was kept, and that a rerun resumes."""
    return DiskFull(f"{path}: no space left on device; {kept}. Free some space and rerun the same command: "
                    "it resumes where it stopped")
