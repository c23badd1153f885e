"""What ``fit --ckpt_path ...`` checks before Lightning restores anything, so a bad checkpoint ends in one line
naming it instead of a traceback halfway through the restore:

* ``last`` with no checkpoint yet: start fresh, with a notice (the first submission of a requeued job);
* a sharded checkpoint directory whose atomic replacement was interrupted between its two renames
  (:func:`lit_pretrain.checkpoint_io.replace_directory`): the complete previous one is put back first;
* a file that is truncated or corrupt, or not a checkpoint: refused;
* a file that is empty or random bytes: refused, saying so (torch's own message for it is about mmap);
* a checkpoint of another model (other parameter names or shapes than this config builds): refused;
* ``fit`` only: a checkpoint trained on another data order (another dataset, ``data.seq_len`` or ``data.seed``)
  or another batch layout (``batch_size x processes``, accumulation): refused, naming the key and both values.

Everything is read without loading the weights: a plain checkpoint memory-mapped, a sharded (DCP) directory from
its ``.metadata`` and ``meta.pt``. A DeepSpeed directory is left to DeepSpeed's own loader (and the data module's
own check when Lightning restores it). The CLI runs these checks before it writes anything into the run
directory, so a refused resume leaves it as it was."""

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


ZIP_MAGIC = b"PK\x03\x04"  # torch.save writes a zip archive (since torch 1.6, and all Lightning checkpoints)


def not_a_torch_file(path: Path) -> str | None:
    """Why ``path`` cannot be a ``torch.save`` file, judged from its first bytes, or None when it may be one:
    torch's own error for these ("mmap can only be used with files saved with ...") names none of it."""
    with open(path, "rb") as handle:
        head = handle.read(len(ZIP_MAGIC))
    if not head:
        return "it is empty (0 bytes)"
    if head != ZIP_MAGIC:
        return f"it does not start as a torch.save file does ({path.stat().st_size:,} bytes of something else)"
    return None


def read_checkpoint(path: Path) -> tuple[dict[str, tuple[int, ...]] | None, dict | None]:
    """(parameter name -> shape, everything else the checkpoint holds but the weights and optimizer state) of a
    checkpoint written by ``fit``, without loading its weights; (None, None) for a DeepSpeed directory."""
    unreadable = "--ckpt_path '{path}' cannot be loaded ({why}); it is truncated or corrupt: resume from another "
    unreadable += "checkpoint of the run or start without --ckpt_path"
    if path.is_dir():
        if (path / "checkpoint").is_dir() and (path / "latest").is_file():
            return None, None  # DeepSpeed's layout: its loader checks its own files
        if not (path / ".metadata").is_file():
            raise ConfigError(unreadable.format(path=path, why="a directory without .metadata"))
        from torch.distributed.checkpoint import FileSystemReader

        try:
            metadata = FileSystemReader(str(path)).read_metadata().state_dict_metadata
            meta = (
                torch.load(path / "meta.pt", map_location="cpu", weights_only=True)
                if (path / "meta.pt").is_file()
                else {}
            )
        except Exception as error:
            raise ConfigError(unreadable.format(path=path, why=_first_line(error))) from None
        prefix = "state_dict."
        shapes = {
            key[len(prefix) :]: tuple(entry.size)
            for key, entry in metadata.items()
            if key.startswith(prefix) and hasattr(entry, "size")
        }
        return shapes, meta
    if not path.is_file():
        raise ConfigError(f"--ckpt_path '{path}' does not exist; give a checkpoint file, a run's checkpoint or last")
    why = not_a_torch_file(path)
    if why is not None:
        raise ConfigError(unreadable.format(path=path, why=why))
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as error:
        raise ConfigError(unreadable.format(path=path, why=_first_line(error))) from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ConfigError(f"--ckpt_path '{path}' is not a checkpoint written by fit (it has no state_dict)")
    shapes = {key: tuple(value.shape) for key, value in checkpoint["state_dict"].items()}
    return shapes, {key: value for key, value in checkpoint.items() if key not in ("state_dict", "optimizer_states")}


def checkpoint_shapes(path: Path) -> dict[str, tuple[int, ...]] | None:
    """Parameter name -> shape of a checkpoint written by ``fit`` (None for a DeepSpeed directory)."""
    return read_checkpoint(path)[0]


def check_same_model(path: Path, module, saved: dict[str, tuple[int, ...]] | None = None) -> None:
    """Refuse a checkpoint whose parameters are not the ones this config's model has (names and shapes)."""
    saved = checkpoint_shapes(path) if saved is None else saved
    if saved is None:
        return
    expected = {f"model.{key}": tuple(value.shape) for key, value in module.meta_model().state_dict().items()}
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


def saved_data_order(meta: dict) -> dict:
    """The data order a checkpoint's run trained in (``PretrainDataModule.data_order``); for a checkpoint written
    before it was saved, what the data module's hyperparameters tell (window length and seed)."""
    for value in meta.values():  # saved under the data module's class name, which a subclass changes
        if isinstance(value, dict) and isinstance(value.get("data_order"), dict):
            return value["data_order"]
    hparams = meta.get("datamodule_hyper_parameters") or {}
    return {key: hparams[key] for key in ("seq_len", "seed") if key in hparams}


def saved_layout(meta: dict) -> dict | None:
    """The training loader's saved state (position and layout), or None when the checkpoint has none."""
    try:
        states = meta["loops"]["fit_loop"]["state_dict"]["combined_loader"]
    except (KeyError, TypeError):
        return None
    return states[0] if states and isinstance(states[0], dict) else None


def check_resume(path: Path, module, datamodule, trainer, fitting: bool) -> None:
    """Everything a resume from ``path`` must agree on, before anything is restored or written: the model's
    parameters and, to continue training (``fitting``), the data order (dataset, window length, seed) and the
    batch layout (``windows.check_layout``). Evaluating a checkpoint on other data or windows is allowed."""
    from lit_pretrain.windows import check_layout

    shapes, meta = read_checkpoint(path)
    check_same_model(path, module, shapes)
    if not fitting or meta is None or not hasattr(datamodule, "check_data_order"):
        return
    if datamodule.prepared:  # else it is prepared (and checked) at restore
        datamodule.check_data_order(saved_data_order(meta), f"--ckpt_path '{path}'")
    layout = saved_layout(meta)
    if layout is not None:
        check_layout(layout, datamodule.layout(trainer))
