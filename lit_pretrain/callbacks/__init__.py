"""Callbacks observe a run; each file holds one."""

from lit_pretrain.callbacks.sample import GenerateSample

__all__ = ["GenerateSample"]
