"""The one exception type data preparation raises for bad input, and the one for a full disk.

Its message is a single line that names the culprit (file, key or value) and says what to do; the CLI prints
it as ``error: <message>`` and exits non-zero without a traceback.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class DataPrepError(Exception):
    """Bad input or configuration found while preparing a corpus."""


class DiskFullError(DataPrepError):
    """The disk filled up while a file was written. Unlike other errors, the work already finished is kept: a
    re-run after space is freed reuses it."""


def disk_full_error(path: str | os.PathLike) -> DiskFullError:
    """The one-line error for a full disk while writing ``path``: which file, which filesystem and how full it
    is, what to free, and that the same command resumes."""
    path = Path(path)
    mount = _mount_point(path)
    try:
        free = f"has {shutil.disk_usage(mount).free / 1e6:,.0f} MB free now"
    except OSError:
        free = "is full"
    return DiskFullError(
        f"no space left on device: writing '{path}' (the filesystem mounted at '{mount}' {free}); free space "
        "there and run the same command again: it reuses the work already finished"
    )


def _mount_point(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    while not os.path.ismount(path) and path != path.parent:
        path = path.parent
    return path


@contextmanager
def naming_full_disk(path: str | os.PathLike) -> Iterator[None]:
    """Turn a full disk (``ENOSPC``, which names no file when a ``write`` fails) inside the block into a
    :class:`DiskFullError` naming ``path``, the file being written."""
    try:
        yield
    except OSError as error:
        if error.errno != errno.ENOSPC:
            raise
        raise disk_full_error(path) from None
