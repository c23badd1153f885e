"""What ``fit --ckpt_path ...`` checks before Lightning restores anything, so a bad checkpoint ends in one line
naming it instead of a traceback halfway through the restore:

* ``last`` with no checkpoint yet: start fresh, with a notice (the first submission of a requeued job);
* a sharded checkpoint directory whose atomic replacement was interrupted between its two renames
  (:func:`lit_pretrain.checkpoint_io.replace_directory`): the complete previous one is put back first;
* a file that is truncated or corrupt, or not a checkpoint: refused;
* a checkpoint of another model (other parameter names or shapes than this config builds): refused.

Shapes are read without loading the weights: a plain checkpoint memory-mapped, a sharded (DCP) directory from
its ``.metadata``. A DeepSpeed directory is left to DeepSpeed's own loader."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from lit_pretrain.checkpoint_io import restore_interrupted_replacements
from lit_pretrain.errors import ConfigError


def find_last(directory: Path) -> Path | None:
    """The newest ``last*.ckpt`` in ``directory`` (what Lightning's ``ckpt_path="last"`` picks), or None."""
    if not directory.is_dir():
        return None
    restore_interrupted_replacements(directory)
    candidates = [path for path in directory.glob("last*.ckpt") if path.suffix == ".ckpt"]
    return max(candidates, key=os.path.getmtime) if candidates else None


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return (text.splitlines()[0] if text else type(error).__name__)[:160]


def checkpoint_shapes(path: Path) -> dict[str, tuple[int, ...]] | None:
    """Parameter name -> shape of a checkpoint written by ``fit`` (None for a DeepSpeed directory)."""
    unreadable = "--ckpt_path '{path}' cannot be loaded ({why}); it is truncated or corrupt: resume from another "
    unreadable += "checkpoint of the run or start without --ckpt_path"
    if path.is_dir():
        if (path / "checkpoint").is_dir() and (path / "latest").is_file():
            return None  # DeepSpeed's layout: its loader checks its own files
        if not (path / ".metadata").is_file():
            raise ConfigError(unreadable.format(path=path, why="a directory without .metadata"))
        from torch.distributed.checkpoint import FileSystemReader

        try:
            metadata = FileSystemReader(str(path)).read_metadata().state_dict_metadata
        except Exception as error:
            raise ConfigError(unreadable.format(path=path, why=_first_line(error))) from None
        prefix = "state_dict."
        return {
            key[len(prefix) :]: tuple(entry.size)
            for key, entry in metadata.items()
            if key.startswith(prefix) and hasattr(entry, "size")
        }
    if not path.is_file():
        raise ConfigError(f"--ckpt_path '{path}' does not exist; give a checkpoint file, a run's checkpoint or last")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as error:
        raise ConfigError(unreadable.format(path=path, why=_first_line(error))) from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ConfigError(f"--ckpt_path '{path}' is not a checkpoint written by fit (it has no state_dict)")
    return {key: tuple(value.shape) for key, value in checkpoint["state_dict"].items()}


def check_same_model(path: Path, module) -> None:
    """Refuse a checkpoint whose parameters are not the ones this config's model has (names and shapes)."""
    saved = checkpoint_shapes(path)
    if saved is None:
        return
    from lit_pretrain.estimate import meta_model

    expected = {f"model.{key}": tuple(value.shape) for key, value in meta_model(module).state_dict().items()}
    missing = sorted(set(expected) - set(saved))
    unexpected = sorted(set(saved) - set(expected))
    different = sorted(key for key in set(expected) & set(saved) if expected[key] != saved[key])
    if not (missing or unexpected or different):
        return
    if different:
        key = different[0]
        what = f"'{key}' is {list(saved[key])} there and {list(expected[key])} here"
    elif missing:
        what = f"it lacks '{missing[0]}' ({len(missing)} parameters of this model missing)"
    else:
        what = f"it has '{unexpected[0]}', which this model does not ({len(unexpected)} such parameters)"
    raise ConfigError(
        f"--ckpt_path '{path}' was written by another model than this config builds: {what}; resume with the "
        "config the run was started with (its config.yaml) or start a new run"
    )
