"""``python -m lit_pretrain export <checkpoint or run dir> <out dir>``: a Hugging Face model directory
(``config.json`` with the tokenizer's special ids, ``model.safetensors``, the tokenizer's files) from a
checkpoint of ``fit`` (a plain file, an FSDP2-sharded DCP directory written by any number of ranks, or a
DeepSpeed ZeRO directory), loadable with ``AutoModelForCausalLM`` / ``AutoModelForMaskedLM`` and ``AutoTokenizer``
without ``trust_remote_code``.

A run directory exports its ``checkpoints/last.ckpt``. The architecture and special ids come from the
checkpoint's hyperparameters, the tokenizer from the dataset it was trained on (``hf_tokenizer/`` beside the
manifest; ``--dataset_dir`` when the run was started from another directory). The output is written to a
temporary directory beside the target and renamed into place: never half an export under the final name."""

from __future__ import annotations

import argparse
import inspect
import json
import os
import shutil
import sys
from pathlib import Path

import torch

from lit_pretrain.checkpoint_io import full_disk_cause, replace_directory
from lit_pretrain.errors import ConfigError

HF_TOKENIZER_DIR = "hf_tokenizer"


def resolve_checkpoint(path: Path) -> Path:
    """A ``.ckpt`` file as given, or a run directory's ``checkpoints/last.ckpt``."""
    if path.is_file():
        return path
    if path.is_dir():
        last = path / "checkpoints" / "last.ckpt"
        if last.exists():
            return last
        if is_deepspeed_checkpoint(path) or (path / ".metadata").is_file():
            return path  # a sharded (DCP) or DeepSpeed checkpoint directory
        raise ConfigError(f"export: '{path}' holds no checkpoints/last.ckpt; give a run directory or a .ckpt file")
    raise ConfigError(f"export: '{path}' does not exist; give a run directory (runs/<name>) or a .ckpt file")


def is_deepspeed_checkpoint(path: Path) -> bool:
    return path.is_dir() and (path / "latest").is_file()


def load_checkpoint(path: Path) -> dict:
    """The checkpoint's dict; for a sharded (DCP) directory its ``meta.pt`` (hyperparameters, loop state) with
    ``state_dict`` left as the directory, read later straight into the built model."""
    if is_deepspeed_checkpoint(path):
        return load_deepspeed_checkpoint(path)
    if path.is_dir():
        meta = path / "meta.pt"
        if not (path / ".metadata").is_file() or not meta.is_file():
            raise ConfigError(f"export: '{path}' is a directory but not a sharded checkpoint (no .metadata, meta.pt)")
        checkpoint = _torch_load(meta)
        checkpoint["state_dict"] = path
        return checkpoint
    return _torch_load(path)


def _torch_load(path: Path) -> dict:
    from lit_pretrain.resume import not_a_torch_file

    why = not_a_torch_file(path)
    if why is not None:
        raise ConfigError(f"export: '{path}' cannot be loaded as a checkpoint ({why})")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)  # never unpickles code
    except Exception as error:  # truncated, corrupt, or not a checkpoint at all
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ConfigError(f"export: '{path}' cannot be loaded as a checkpoint ({first[:160]})") from None


def load_deepspeed_checkpoint(path: Path) -> dict:
    """A DeepSpeed checkpoint directory (ZeRO 1-3, as Lightning's DeepSpeedStrategy writes it): the fp32 weights
    gathered from the partitions by DeepSpeed's own ``zero_to_fp32``, the hyperparameters from its client state
    (Lightning keeps the LightningModule's ``state_dict`` keys under ``_forward_module.``)."""
    try:
        from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint
    except ImportError:
        raise ConfigError(f"export: '{path}' is a DeepSpeed checkpoint; pip install deepspeed to export it") from None
    tag = (path / "latest").read_text().strip()
    states = sorted((path / tag).glob("*model_states.pt"))
    if not states:
        raise ConfigError(f"export: '{path}/{tag}' holds no *model_states.pt; the DeepSpeed checkpoint is incomplete")
    # DeepSpeed's own files carry its config objects: they are loaded as DeepSpeed loads them (a checkpoint of
    # your own run; weights_only does not apply to DeepSpeed's format).
    client = torch.load(states[0], map_location="cpu", weights_only=False)
    weights = get_fp32_state_dict_from_zero_checkpoint(str(path), tag=tag)
    prefix = "_forward_module."
    client["state_dict"] = {key.removeprefix(prefix): value for key, value in weights.items()}
    return client


def load_sharded_weights(module, directory: Path) -> None:
    """Read a DCP checkpoint's model entries (not its optimizer state) into ``module``'s whole tensors, resharded
    from however many ranks wrote it; refuse one of another model."""
    from torch.distributed.checkpoint import load

    from lit_pretrain.resume import checkpoint_shapes

    saved = checkpoint_shapes(directory)
    expected = {key: tuple(value.shape) for key, value in module.state_dict().items()}
    if saved != expected:
        first = sorted(set(saved) ^ set(expected)) or sorted(k for k in saved if saved[k] != expected[k])
        raise ConfigError(f"export: '{directory}' does not match its own model config (first difference: {first[0]})")
    state = module.state_dict()
    load({"state_dict": state}, checkpoint_id=str(directory), no_dist=True)
    module.load_state_dict(state, strict=True)


def model_from_checkpoint(checkpoint: dict, path: Path):
    """(PretrainModule with its weights loaded, data module hyperparameters)."""
    from lit_pretrain.module import PretrainModule

    hparams = checkpoint.get("hyper_parameters")
    if not hparams or "state_dict" not in checkpoint:
        raise ConfigError(f"export: '{path}' is not a lit_pretrain checkpoint (no hyperparameters or state_dict)")
    accepted = inspect.signature(PretrainModule.__init__).parameters  # the CLI also stores its "_instantiator"
    module = PretrainModule(**{key: value for key, value in hparams.items() if key in accepted})
    module.configure_model()
    if isinstance(checkpoint["state_dict"], Path):
        load_sharded_weights(module, checkpoint["state_dict"])
        module.model.eval()
        return module, data_facts(checkpoint)
    prefix = "model."
    state = {
        key[len(prefix) :].replace("_orig_mod.", ""): value
        for key, value in checkpoint["state_dict"].items()
        if key.startswith(prefix)
    }
    try:
        module.model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise ConfigError(
            f"export: '{path}' does not match its own model config ({str(error).splitlines()[0]})"
        ) from None
    module.model.eval()
    return module, data_facts(checkpoint)


def data_facts(checkpoint: dict) -> dict:
    """Where the checkpoint's run found its tokenizer: the data description it saved (``tokenizer_dataset``), or
    for a checkpoint written before descriptions, its data module's ``dataset_dir``."""
    description = checkpoint.get("data_description")
    if isinstance(description, dict) and description.get("tokenizer_dataset"):
        return {"dataset_dir": description["tokenizer_dataset"]}
    hparams = checkpoint.get("datamodule_hyper_parameters") or {}
    return {"dataset_dir": hparams.get("dataset_dir")}


def tokenizer_directory(data_hparams: dict, dataset_dir: str | None) -> Path:
    directory = Path(dataset_dir or data_hparams.get("dataset_dir") or "")
    manifest = directory / "manifest.json"
    if not manifest.is_file():
        raise ConfigError(
            f"export: the run's dataset '{directory}' has no manifest.json here; pass --dataset_dir <prepared dataset>"
        )
    hf_dir = directory / json.loads(manifest.read_text())["tokenizer"].get("hf_dir", HF_TOKENIZER_DIR)
    if not hf_dir.is_dir():
        raise ConfigError(f"export: the dataset '{directory}' has no {hf_dir.name}/ tokenizer; prepare it again")
    return hf_dir


def export(source: Path, out: Path, dataset_dir: str | None = None, replace: bool = False) -> Path:
    """Write the export; ``replace``: an earlier export in ``out`` (it has a config.json) is swapped for the new
    one (``--checkpoint.export_on_end`` of a resumed run), else ``out`` must be new or empty."""
    previous = replace and out.is_dir() and (out / "config.json").is_file()
    if out.exists() and not previous and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"export: '{out}' exists and is not empty; give a new directory or remove it")
    checkpoint_path = resolve_checkpoint(source)
    checkpoint = load_checkpoint(checkpoint_path)
    module, data_hparams = model_from_checkpoint(checkpoint, checkpoint_path)
    tokenizer_dir = tokenizer_directory(data_hparams, dataset_dir)
    out = out.resolve()
    partial = out.with_name(f".{out.name}.partial-{os.getpid()}")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir()
    except OSError as error:
        blocker = next((p for p in out.parents if p.exists()), None)
        why = f"'{blocker}' is a file" if blocker is not None and not blocker.is_dir() else error.strerror
        raise ConfigError(f"export: cannot write '{out}' ({why}); give an output directory you can write to") from None
    try:
        module.model.save_pretrained(str(partial), safe_serialization=True)
        for file in tokenizer_dir.iterdir():
            shutil.copy2(file, partial / file.name)
        if previous:
            replace_directory(partial, out)
        else:
            if out.exists():
                out.rmdir()  # empty (checked above)
            os.replace(partial, out)
    except Exception as error:  # an OSError, or safetensors' own error for a failed write ("... (os error 28)")
        if not isinstance(error, OSError) and "os error" not in str(error):
            raise
        full = full_disk_cause(error) is not None or "(os error 28)" in str(error)
        what = "no space left on device" if full else getattr(error, "strerror", None) or str(error).splitlines()[0]
        raise ConfigError(
            f"export: writing '{out}' failed ({what}); nothing was left there: free space or choose another output "
            "directory"
        ) from None
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lit_pretrain export", description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="a run directory (runs/<name>) or a .ckpt file")
    parser.add_argument("out", type=Path, help="the Hugging Face model directory to write (new or empty)")
    parser.add_argument("--dataset_dir", default=None, help="the prepared dataset, if not where the run found it")
    return parser


def main(argv: list[str]) -> None:
    options = build_parser().parse_args(argv)
    try:
        out = export(options.source, options.out, options.dataset_dir)
    except ConfigError as error:
        sys.stderr.write(f"error: {error}\n")
        raise SystemExit(2) from None
    print(f"exported {options.source} -> {out}")
