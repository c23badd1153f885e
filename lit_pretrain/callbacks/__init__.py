"""Callbacks observe a run; each file holds one."""

from lit_pretrain.callbacks.checkpoint import PretrainCheckpoint
from lit_pretrain.callbacks.early_stopping import PretrainEarlyStopping
from lit_pretrain.callbacks.grad_norm import GradientNorm
from lit_pretrain.callbacks.preemption import Preemption
from lit_pretrain.callbacks.progress import PretrainProgressBar
from lit_pretrain.callbacks.sample import GenerateSample
from lit_pretrain.callbacks.stability import LossNotFinite, StabilityGuard
from lit_pretrain.callbacks.throughput import Throughput

__all__ = [
    "GenerateSample",
    "GradientNorm",
    "LossNotFinite",
    "Preemption",
    "PretrainCheckpoint",
    "PretrainEarlyStopping",
    "PretrainProgressBar",
    "StabilityGuard",
    "Throughput",
]
