"""A callback the GPU check loads into real CLI runs (``class_path: gpu_probe.Probe``): steady-state tokens/s,
peak CUDA memory and the last training loss, appended as one JSON line to ``path`` by rank 0."""

from __future__ import annotations

import json
import time

import lightning as L
import torch


class Probe(L.Callback):
    """Times optimizer steps after ``warmup_steps`` (compilation and allocator warm-up excluded)."""

    def __init__(self, path: str, name: str, warmup_steps: int = 20) -> None:
        self.path, self.name, self.warmup_steps = path, name, warmup_steps
        self.start_time = self.start_step = None
        self.tokens_per_step = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.warmup_steps and self.start_time is None:
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self.start_time, self.start_step = time.perf_counter(), trainer.global_step
        rows, length = batch["input_ids"].shape
        self.tokens_per_step = rows * length * trainer.world_size * trainer.accumulate_grad_batches

    def on_train_end(self, trainer, pl_module) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        steps = trainer.global_step - (self.start_step or 0)
        elapsed = time.perf_counter() - self.start_time if self.start_time is not None else float("nan")
        loss = trainer.callback_metrics.get("train/loss")
        record = {
            "name": self.name,
            "steps": trainer.global_step,
            "train/loss": None if loss is None else round(float(loss), 4),
            "tokens_per_s": round(steps * self.tokens_per_step / elapsed) if steps > 0 else None,
            "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)
            if torch.cuda.is_available()
            else None,
            "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
            "precision": str(trainer.precision),
            "strategy": type(trainer.strategy).__name__,
        }
        if trainer.is_global_zero:
            with open(self.path, "a") as handle:
                handle.write(json.dumps(record) + "\n")
