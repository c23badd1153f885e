"""Throughput and model FLOPs utilisation (MFU), logged every ``log_every_n_steps`` optimizer steps.

Logged: ``train/tokens_per_s``, ``train/samples_per_s``, ``train/step_time_s`` (rates over the optimizer steps
since the last write), ``train/tokens_seen`` and, on a GPU whose peak this table knows (or with ``peak_flops``),
``train/mfu``; on a CUDA device also ``train/memory_allocated_gib``, ``train/memory_reserved_gib`` and
``train/memory_peak_gib`` (the caching allocator's figures; the peak since the start of fit). The device is
synchronised only at those writes, so timing costs no extra host-device round trip per step.
MFU = achieved model FLOP/s / peak FLOP/s, with model FLOPs from
:func:`lit_pretrain.models.flops_per_token` (6N + 12·L·H·Q·T per token, PaLM's convention; recomputation by
activation checkpointing is not counted, as in PaLM). On CPU MFU is omitted, not estimated.
"""

from __future__ import annotations

import time

import lightning as L
import torch

from lit_pretrain.models import flops_per_token
from lit_pretrain.parallel import data_parallel

# Dense (no sparsity) peak TFLOP/s per GPU from the vendors' data sheets, by precision family.
PEAK_TFLOPS = {
    "H200": {"bf16": 989.0, "fp16": 989.0, "fp8": 1979.0, "fp32": 67.0},
    "H100 NVL": {"bf16": 835.0, "fp16": 835.0, "fp8": 1671.0, "fp32": 60.0},
    "H100 PCIe": {"bf16": 756.0, "fp16": 756.0, "fp8": 1513.0, "fp32": 51.0},
    "H100 SXM": {"bf16": 989.0, "fp16": 989.0, "fp8": 1979.0, "fp32": 67.0},
    "A100": {"bf16": 312.0, "fp16": 312.0, "fp32": 19.5},
    "L40S": {"bf16": 362.0, "fp16": 362.0, "fp8": 733.0, "fp32": 91.6},
    "L4": {"bf16": 121.0, "fp16": 121.0, "fp8": 242.5, "fp32": 30.3},
}


def gpu_family(device_name: str) -> str | None:
    """The row of :data:`PEAK_TFLOPS` for a CUDA device name such as ``NVIDIA H100 80GB HBM3``."""
    name = device_name.upper()
    if "H200" in name:
        return "H200"
    if "H100" in name:
        if "NVL" in name:
            return "H100 NVL"
        return "H100 PCIe" if "PCIE" in name else "H100 SXM"
    if "A100" in name:
        return "A100"
    if "L40S" in name:
        return "L40S"
    if "L4" in name.split() or name.endswith(" L4"):
        return "L4"
    return None


def precision_family(precision: str, fp8: bool = False) -> str:
    if fp8:
        return "fp8"
    if precision.startswith("bf16"):
        return "bf16"
    if precision.startswith("16"):
        return "fp16"
    return "fp32"


def peak_flops(device_name: str, precision: str, fp8: bool = False) -> float | None:
    """Peak FLOP/s of one device at this precision, or None when the table does not know the device."""
    family = gpu_family(device_name)
    if family is None:
        return None
    tflops = PEAK_TFLOPS[family].get(precision_family(precision, fp8))
    return None if tflops is None else tflops * 1e12


class Throughput(L.Callback):
    """Tokens/s, samples/s, time per optimizer step, tokens seen, MFU and CUDA memory, measured between the
    optimizer steps at which the Trainer writes its logs (every ``log_every_n_steps``).

    Args:
        enabled: False switches it off (``--throughput.enabled false``).
        peak_flops: Peak FLOP/s of one device, for devices the table does not know (or to override it); MFU is
            then logged on any device, CPU included.
    """

    def __init__(self, enabled: bool = True, peak_flops: float | None = None) -> None:
        self.enabled, self.peak_flops = enabled, peak_flops
        self.tokens_seen = self._samples = 0
        self._mark: tuple[float, int, int, int] | None = None  # (time, tokens, samples, optimizer step)
        self._flops_per_token: float | None = None
        self._device_peak: float | None = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.enabled:
            return
        self._flops_per_token = flops_per_token(pl_module.model, pl_module.hparams.seq_len)
        self._device_peak = self.peak_flops
        device = trainer.strategy.root_device
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
            if self._device_peak is None:
                name = torch.cuda.get_device_name(device)
                self._device_peak = peak_flops(name, str(trainer.precision), getattr(pl_module.hparams, "fp8", False))

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.enabled and self._mark is None:
            self._set_mark(trainer)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not self.enabled:
            return
        rows, length = batch["input_ids"].shape
        replicas = data_parallel(trainer)[1]  # the processes that took different batches
        self.tokens_seen += rows * length * replicas
        self._samples += rows * replicas
        if (batch_idx + 1) % trainer.accumulate_grad_batches:
            return  # inside an accumulation: the optimizer step is not done yet
        every = trainer.log_every_n_steps
        if not every or trainer.global_step % every or self._mark is None:
            return  # not a step the Trainer writes: no synchronisation, no logging
        start, tokens0, samples0, step0 = self._mark
        end, tokens1, samples1, step1 = self._set_mark(trainer)
        elapsed, steps = end - start, max(1, step1 - step0)
        metrics = {
            "train/tokens_per_s": (tokens1 - tokens0) / elapsed,
            "train/samples_per_s": (samples1 - samples0) / elapsed,
            "train/step_time_s": elapsed / steps,
            "train/tokens_seen": float(self.tokens_seen),
        }
        if self._device_peak:
            achieved = self._flops_per_token * (tokens1 - tokens0) / elapsed  # all devices together
            metrics["train/mfu"] = achieved / (self._device_peak * trainer.world_size)
        device = trainer.strategy.root_device
        if device.type == "cuda":
            gib = 2**30
            metrics["train/memory_allocated_gib"] = torch.cuda.memory_allocated(device) / gib
            metrics["train/memory_reserved_gib"] = torch.cuda.memory_reserved(device) / gib
            metrics["train/memory_peak_gib"] = torch.cuda.max_memory_allocated(device) / gib
        pl_module.log_dict(metrics, on_step=True, on_epoch=False, rank_zero_only=True)

    def on_validation_start(self, trainer, pl_module) -> None:
        self._mark = None  # validation time is not training time: measure again from the next training batch

    def _set_mark(self, trainer) -> tuple[float, int, int, int]:
        self._synchronize(trainer)
        self._mark = (time.perf_counter(), self.tokens_seen, self._samples, trainer.global_step)
        return self._mark

    @staticmethod
    def _synchronize(trainer) -> None:
        if trainer.strategy.root_device.type == "cuda":
            torch.cuda.synchronize(trainer.strategy.root_device)

    def state_dict(self) -> dict:
        return {"tokens_seen": self.tokens_seen}

    def load_state_dict(self, state_dict: dict) -> None:
        self.tokens_seen = state_dict.get("tokens_seen", 0)
