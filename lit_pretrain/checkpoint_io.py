"""Crash-safe checkpoint files: a kill during a save never leaves a ``last.ckpt`` that cannot be loaded.

Lightning writes a checkpoint through an fsspec transaction whose temporary file lives in the system temporary
directory; when that is another filesystem than the run directory (``/tmp`` on a node's disk, runs on a shared
filesystem: the usual cluster layout) committing it is a copy onto the final name, and a kill during the copy
leaves a truncated checkpoint under it. Here the bytes go to a partial file beside the target, are flushed to
disk, and replace the target in one ``os.replace`` (atomic within a filesystem).

Sharded checkpoints (FSDP2's DCP directory, one file per rank; DeepSpeed's directory) are written in place by
their strategies, so a kill mid-save leaves new shards beside old ones under ``last.ckpt``. Here every rank
writes into a partial directory beside the target instead, and once all have finished rank 0 swaps it in:
the old directory is renamed aside, the new one renamed into place, the old one deleted. A kill between the two
renames leaves the complete old directory aside; :func:`restore_interrupted_replacements` (run before any
resume) puts it back."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from lit_pretrain.errors import NoSpaceLeft

PARTIAL = ".{name}.partial-{pid}"
PARTIAL_DIRECTORY = ".{name}.partial"  # the same on every rank: all of them write their shards into it
OLD = ".{name}.old"  # the previous checkpoint directory while the new one is renamed into place


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
        except Exception as error:
            full = no_space_left(error, path)
            if full is not None:
                raise full from None
            raise
        finally:
            partial.unlink(missing_ok=True)
        fsync_directory(path.parent)  # the rename itself survives a power cut


FULL = (errno.ENOSPC, errno.EDQUOT)


def full_disk_cause(error: BaseException | None) -> OSError | None:
    """The ``OSError`` saying the disk (or the user's quota) is full behind ``error``, looking through the causes
    torch, fsspec and torch.distributed.checkpoint (``CheckpointException.failures``) wrap it in; else None."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in FULL:
            return error
        # CheckpointException.failures: rank -> (exception, traceback summary)
        failures = getattr(error, "failures", None) or {}
        nested = [cause[0] if isinstance(cause, tuple) else cause for cause in failures.values()]
        nested = [cause for cause in nested if isinstance(cause, BaseException)]
        error = nested[0] if nested else (error.__cause__ or error.__context__)
    return None


def no_space_left(error: BaseException, path: Path) -> NoSpaceLeft | None:
    """The one-line error for a save of ``path`` that failed on a full disk; None for any other failure."""
    error = full_disk_cause(error)
    if error is None:
        return None
    try:
        free = shutil.disk_usage(path.parent).free
        room = f"{free / 1e6:,.0f} MB free there now"
    except OSError:
        room = "free space unknown"
    what = "quota exceeded" if error.errno == errno.EDQUOT else "no space left on device"
    return NoSpaceLeft(
        f"{what}: saving '{path}' failed ({room}); the checkpoints saved before it are intact and nothing half-"
        "written is left: free space (or move the run directory), then resume with --ckpt_path last"
    )


def fsync_directory(directory: Path) -> None:
    handle = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def replace_directory(partial: Path, path: Path) -> None:
    """Put the complete checkpoint directory ``partial`` in place of ``path`` (a directory, a file or nothing)."""
    for file in partial.rglob("*"):
        if file.is_file():
            with open(file, "rb") as handle:
                os.fsync(handle.fileno())
    old = path.with_name(OLD.format(name=path.name))
    if old.exists():
        remove(old)  # left aside by an earlier save whose last step did not run
    if path.exists():
        os.replace(path, old)
    os.replace(partial, path)
    fsync_directory(path.parent)
    if old.exists():
        remove(old)


def restore_interrupted_replacements(directory: Path) -> list[Path]:
    """Checkpoints whose replacement was killed between its two renames: the old one is aside and nothing is in
    its place. Put each back (it is complete); returns their paths."""
    restored = []
    for old in directory.glob(OLD.format(name="*")):
        path = old.with_name(old.name[1 : -len(".old")])
        if not path.exists():
            try:
                os.replace(old, path)
            except FileNotFoundError:  # another rank of the same restart put it back first
                pass
            restored.append(path)
    return restored


def writes_directory(strategy) -> bool:
    """Whether this strategy writes a checkpoint as a directory of shards."""
    from lightning.pytorch.strategies import DeepSpeedStrategy, FSDPStrategy, ModelParallelStrategy

    if isinstance(strategy, ModelParallelStrategy):
        return strategy._save_distributed_checkpoint
    if isinstance(strategy, FSDPStrategy):
        return strategy._state_dict_type == "sharded"
    return isinstance(strategy, DeepSpeedStrategy)


def atomic_directory_saves(strategy) -> None:
    """Make the strategy's own ``save_checkpoint`` write sharded checkpoints beside the target and swap them in."""
    save = strategy.save_checkpoint
    if getattr(save, "atomic", False):
        return

    def save_checkpoint(checkpoint: dict[str, Any], filepath, storage_options: Any | None = None) -> None:
        if "://" in str(filepath) or not writes_directory(strategy):
            return save(checkpoint, filepath, storage_options)
        path = Path(strategy.broadcast(str(filepath)))  # rank 0's name, as Lightning's own save does
        partial = path.with_name(PARTIAL_DIRECTORY.format(name=path.name))
        if strategy.is_global_zero and partial.exists():
            remove(partial)  # left by a run killed while saving
        strategy.barrier("lit_pretrain.partial_checkpoint_cleared")
        failure = None
        try:
            save(checkpoint, partial, storage_options)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as error:  # torch.distributed.checkpoint's CheckpointException is a BaseException
            failure = error
        # A failure on one rank only (rank 0 alone writes meta.pt) must stop every rank, not leave the others
        # waiting at the next barrier: the ranks agree on it first.
        if strategy.reduce_boolean_decision(failure is not None, all=False):
            if strategy.is_global_zero:
                remove(partial)  # the shards written so far: the previous checkpoint is untouched
            full = no_space_left(failure, path) if failure is not None else None
            if full is not None:
                raise full from None
            if failure is not None:
                raise failure
            raise RuntimeError(f"saving '{path}' failed on another process (its error is in its own output)")
        strategy.barrier("lit_pretrain.checkpoint_written")
        if strategy.is_global_zero:
            replace_directory(partial, path)
        strategy.barrier("lit_pretrain.checkpoint_replaced")

    save_checkpoint.atomic = True
    strategy.save_checkpoint = save_checkpoint


def make_saves_atomic(strategy) -> None:
    """Give the strategy :class:`AtomicCheckpointIO` unless it was given a checkpoint IO of its own, and make
    its sharded saves write-aside-then-swap."""
    if type(strategy.checkpoint_io) is TorchCheckpointIO:
        strategy.checkpoint_io = AtomicCheckpointIO()
    atomic_directory_saves(strategy)
