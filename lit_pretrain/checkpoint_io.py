"""Crash-safe checkpoint files: a kill during a save never leaves a ``last.ckpt`` that cannot be loaded.

Lightning writes a checkpoint through an fsspec transaction whose temporary file lives in the system temporary
directory; when that is another filesystem than the run directory (``/tmp`` on a node's disk, runs on a shared
filesystem: the usual cluster layout) committing it is a copy onto the final name, and a kill during the copy
leaves a truncated checkpoint under it. Here the bytes go to a partial file beside the target, are flushed to
disk, and replace the target in one ``os.replace`` (atomic within a filesystem)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

PARTIAL = ".{name}.partial-{pid}"


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` whose saves to a local path are write-to-partial, fsync, atomic replace."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if "://" in str(path):  # object stores: fsspec's own upload is all-or-nothing there
            return super().save_checkpoint(checkpoint, path, storage_options)
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        for stale in path.parent.glob(PARTIAL.format(name=path.name, pid="*")):
            stale.unlink(missing_ok=True)  # left by a run killed while saving
        partial = path.with_name(PARTIAL.format(name=path.name, pid=os.getpid()))
        try:
            with open(partial, "wb") as handle:
                torch.save(checkpoint, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)  # the rename itself survives a power cut
        finally:
            os.close(directory)


def make_saves_atomic(strategy) -> None:
    """Give the strategy :class:`AtomicCheckpointIO` unless it was given a checkpoint IO of its own."""
    if type(strategy.checkpoint_io) is TorchCheckpointIO:
        strategy.checkpoint_io = AtomicCheckpointIO()
