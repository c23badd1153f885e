"""Throughput and model FLOPs utilisation (MFU), logged every ``log_every_n_steps`` optimizer steps.

Logged (TensorBoard tags): ``train/tokens_per_s``, ``train/samples_per_s``, ``train/step_time_s``,
``train/tokens_seen`` and, on a GPU whose peak this table knows (or with ``peak_flops``), ``train/mfu``.
MFU = achieved model FLOP/s / peak FLOP/s, with model FLOPs from
:func:`lit_pretrain.models.flops_per_token` (6N + 12·L·H·Q·T per token, PaLM's convention; recomputation by
activation checkpointing is not counted, as in PaLM). On CPU MFU is omitted, not estimated.
"""

from __future__ import annotations

import time
from collections import deque

import lightning as L
import torch

from lit_pretrain.models import flops_per_token

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
    """Tokens/s, samples/s, time per optimizer step, tokens seen and MFU, logged every optimizer step (the
    Trainer's ``log_every_n_steps`` decides what is written) as rates over the last ``window`` steps.

    Args:
        enabled: False switches it off (``--throughput.enabled false``).
        peak_flops: Peak FLOP/s of one device, for devices the table does not know (or to override it); MFU is
            then logged on any device, CPU included.
        window: Optimizer steps the rates are measured over.
    """

    def __init__(self, enabled: bool = True, peak_flops: float | None = None, window: int = 10) -> None:
        self.enabled, self.peak_flops, self.window = enabled, peak_flops, max(1, window)
        self.tokens_seen = self._samples = 0
        self._marks: deque[tuple[float, int, int]] = deque(maxlen=self.window + 1)  # (time, tokens, samples)
        self._flops_per_token: float | None = None
        self._device_peak: float | None = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.enabled:
            return
        self._flops_per_token = flops_per_token(pl_module.model, pl_module.hparams.seq_len)
        self._device_peak = self.peak_flops
        if self._device_peak is None and trainer.strategy.root_device.type == "cuda":
            name = torch.cuda.get_device_name(trainer.strategy.root_device)
            self._device_peak = peak_flops(name, str(trainer.precision), getattr(pl_module.hparams, "fp8", False))

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.enabled and not self._marks:
            self._synchronize(trainer)
            self._marks.append((time.perf_counter(), self.tokens_seen, self._samples))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not self.enabled:
            return
        rows, length = batch["input_ids"].shape
        self.tokens_seen += rows * length * trainer.world_size
        self._samples += rows * trainer.world_size
        if (batch_idx + 1) % trainer.accumulate_grad_batches:
            return  # inside an accumulation: the optimizer step is not done yet
        self._synchronize(trainer)
        self._marks.append((time.perf_counter(), self.tokens_seen, self._samples))
        (start, tokens0, samples0), (end, tokens1, samples1) = self._marks[0], self._marks[-1]
        elapsed, steps = end - start, len(self._marks) - 1
        metrics = {
            "train/tokens_per_s": (tokens1 - tokens0) / elapsed,
            "train/samples_per_s": (samples1 - samples0) / elapsed,
            "train/step_time_s": elapsed / steps,
            "train/tokens_seen": float(self.tokens_seen),
        }
        if self._device_peak:
            achieved = self._flops_per_token * (tokens1 - tokens0) / elapsed  # all devices together
            metrics["train/mfu"] = achieved / (self._device_peak * trainer.world_size)
        pl_module.log_dict(metrics, on_step=True, on_epoch=False, rank_zero_only=True)

    def on_validation_start(self, trainer, pl_module) -> None:
        self._marks.clear()  # validation time is not training time: restart the window after it

    @staticmethod
    def _synchronize(trainer) -> None:
        if trainer.strategy.root_device.type == "cuda":
            torch.cuda.synchronize(trainer.strategy.root_device)

    def state_dict(self) -> dict:
        return {"tokens_seen": self.tokens_seen}

    def load_state_dict(self, state_dict: dict) -> None:
        self.tokens_seen = state_dict.get("tokens_seen", 0)
