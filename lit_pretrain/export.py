"""``python -m lit_pretrain export <checkpoint or run dir> <out dir>``: a Hugging Face model directory
(``config.json`` with the tokenizer's special ids, ``model.safetensors``, the tokenizer's files) from a
checkpoint of ``fit``, loadable with ``AutoModelForCausalLM`` / ``AutoModelForMaskedLM`` and ``AutoTokenizer``
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
        if (path / "checkpoint").is_dir() or (path / ".metadata").is_file():
            return path  # a sharded (distributed) checkpoint directory
        raise ConfigError(f"export: '{path}' holds no checkpoints/last.ckpt; give a run directory or a .ckpt file")
    raise ConfigError(f"export: '{path}' does not exist; give a run directory (runs/<name>) or a .ckpt file")


def load_checkpoint(path: Path) -> dict:
    if path.is_dir():
        raise ConfigError(
            f"export: '{path}' is a sharded checkpoint directory; exporting those is not supported yet: train with "
            "save_distributed_checkpoint: false (configs/strategy/fsdp.yaml) or export a full checkpoint"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)  # never unpickles code
    except Exception as error:  # truncated, corrupt, or not a checkpoint at all
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ConfigError(f"export: '{path}' cannot be loaded as a checkpoint ({first[:160]})") from None


def model_from_checkpoint(checkpoint: dict, path: Path):
    """(PretrainModule with its weights loaded, data module hyperparameters)."""
    from lit_pretrain.module import PretrainModule

    hparams = checkpoint.get("hyper_parameters")
    if not hparams or "state_dict" not in checkpoint:
        raise ConfigError(f"export: '{path}' is not a lit_pretrain checkpoint (no hyperparameters or state_dict)")
    accepted = inspect.signature(PretrainModule.__init__).parameters  # the CLI also stores its "_instantiator"
    module = PretrainModule(**{key: value for key, value in hparams.items() if key in accepted})
    module.configure_model()
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
    return module, checkpoint.get("datamodule_hyper_parameters") or {}


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


def export(source: Path, out: Path, dataset_dir: str | None = None) -> Path:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"export: '{out}' exists and is not empty; give a new directory or remove it")
    checkpoint_path = resolve_checkpoint(source)
    checkpoint = load_checkpoint(checkpoint_path)
    module, data_hparams = model_from_checkpoint(checkpoint, checkpoint_path)
    tokenizer_dir = tokenizer_directory(data_hparams, dataset_dir)
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        module.model.save_pretrained(str(partial), safe_serialization=True)
        for file in tokenizer_dir.iterdir():
            shutil.copy2(file, partial / file.name)
        if out.exists():
            out.rmdir()  # empty (checked above)
        os.replace(partial, out)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return out


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m lit_pretrain export", description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="a run directory (runs/<name>) or a .ckpt file")
    parser.add_argument("out", type=Path, help="the Hugging Face model directory to write (new or empty)")
    parser.add_argument("--dataset_dir", default=None, help="the prepared dataset, if not where the run found it")
    options = parser.parse_args(argv)
    try:
        out = export(options.source, options.out, options.dataset_dir)
    except ConfigError as error:
        sys.stderr.write(f"error: {error}\n")
        raise SystemExit(2) from None
    print(f"exported {options.source} -> {out}")
