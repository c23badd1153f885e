"""lit_pretrain: pretrain causal language models on PyTorch Lightning, from raw text to checkpoints."""

from lit_pretrain.data import PretrainDataModule
from lit_pretrain.module import PretrainModule

__all__ = ["PretrainDataModule", "PretrainModule"]
