"""lit_pretrain: pretrain causal language models on PyTorch Lightning, from raw text to checkpoints."""

from __future__ import annotations

__all__ = ["PretrainDataModule", "PretrainModule"]


def __getattr__(name: str):
    # Imported on first use: ``import lit_pretrain.run_lock`` (or the plot command) need not load torch and
    # transformers first.
    if name == "PretrainDataModule":
        from lit_pretrain.data import PretrainDataModule

        return PretrainDataModule
    if name == "PretrainModule":
        from lit_pretrain.module import PretrainModule

        return PretrainModule
    raise AttributeError(f"module 'lit_pretrain' has no attribute {name!r}")
