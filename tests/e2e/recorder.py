"""Callbacks the end-to-end tests load into the real CLI through ``--config`` (class_path: recorder.X)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import time

import lightning as L


class BatchRecorder(L.Callback):
    """Appends one JSON line per training batch (step, rank, epoch, hash of its model inputs and of each input
    row, hash of its labels if it has any, loss) to ``path``. Inputs are hashed after the objective's transform, so for MLM equal hashes mean the
    same windows with the same masks. With ``kill_at_step`` it dies like a SIGKILL (no cleanup, no checkpoint) when that step begins.
    ``pause_s`` sleeps after each batch (a slower run, so a test can signal it mid-way)."""

    def __init__(self, path: str, kill_at_step: int | None = None, pause_s: float = 0.0) -> None:
        self.path, self.kill_at_step, self.pause_s = path, kill_at_step, pause_s

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.kill_at_step is not None and trainer.global_step == self.kill_at_step:
            os._exit(9)
        inputs = batch["input_ids"].cpu().numpy()
        self._digest = hashlib.sha1(inputs.tobytes()).hexdigest()
        self._rows = [hashlib.sha1(row.tobytes()).hexdigest()[:16] for row in inputs]
        labels = batch.get("labels")
        self._labels = None if labels is None else hashlib.sha1(labels.cpu().numpy().tobytes()).hexdigest()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        with open(self.path, "a") as handle:
            record = {
                "step": trainer.global_step,
                "rank": trainer.global_rank,
                "epoch": trainer.current_epoch,
                "rows": self._rows,
                "windows": self._digest,
                "labels": self._labels,
                "loss": float(outputs["loss"]),
            }
            handle.write(json.dumps(record) + "\n")
        if self.pause_s:
            time.sleep(self.pause_s)


class PeakMemory(L.Callback):
    """Writes ``<path>.<rank>.json``: the most parameter bytes this rank held at any time while the model was
    built, the parameter bytes it holds once built (``on_fit_start``), and what the model has in all.

    Parameters are counted from the tensors themselves (a DTensor by its local shard, a meta tensor as nothing)
    right before every ``fully_shard`` call, when the block about to be sharded is whole, and once the model is
    built: the peak of what a rank holds is at one of those moments."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.peak, self.model = 0, None

    @staticmethod
    def held(model) -> int:
        from torch.distributed.tensor import DTensor

        total = 0
        for parameter in {id(p): p for p in model.parameters()}.values():
            local = parameter.to_local() if isinstance(parameter, DTensor) else parameter
            total += 0 if local.is_meta else local.numel() * local.element_size()
        return total

    def setup(self, trainer, pl_module, stage) -> None:
        import torch.distributed.fsdp as fsdp

        import lit_pretrain.models as models

        materialize, fully_shard = models.materialize, fsdp.fully_shard

        def seeing_materialize(model, *args, **kwargs):  # remember the model being built
            self.model = model
            return materialize(model, *args, **kwargs)

        def counting_fully_shard(module, *args, **kwargs):
            if self.model is not None:
                self.peak = max(self.peak, self.held(self.model))
            return fully_shard(module, *args, **kwargs)

        models.materialize, fsdp.fully_shard = seeing_materialize, counting_fully_shard

    def on_fit_start(self, trainer, pl_module) -> None:
        held = self.held(pl_module.model)
        record = {
            "peak_parameter_bytes": max(self.peak, held),
            "local_parameter_bytes": held,
            "model_parameter_bytes": sum(p.numel() * p.element_size() for p in pl_module.model.parameters()),
        }
        with open(f"{self.path}.{trainer.global_rank}.json", "w") as handle:
            json.dump(record, handle)


class InjectFault(L.Callback):
    """Multiplies the loss of the first training batch of step ``at_step`` by ``factor`` (``nan`` makes it NaN),
    once."""

    def __init__(self, at_step: int, factor: float) -> None:
        self.at_step, self.factor, self.fired = at_step, factor, False

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        objective = pl_module.objective
        if not hasattr(objective, "_clean_loss"):
            objective._clean_loss = objective.loss
        if trainer.global_step == self.at_step and not self.fired:
            self.fired = True
            clean, factor = objective._clean_loss, self.factor

            def faulty(model, batch):
                loss_sum, count = clean(model, batch)
                return loss_sum * factor, count

            objective.loss = faulty
        else:
            objective.loss = objective._clean_loss


class SignalDuring(L.Callback):
    """Sends ``signal_name`` to its own process from inside the first periodic checkpoint save (``during="save"``),
    the first sample (``during="sample"``) or the first validation batch (``during="validation"``, not the sanity
    check) at or after step ``at_step``: the handler runs right there, while the save, the sample or the validation
    is on the stack, as when a scheduler's signal lands in the middle of one."""

    def __init__(self, during: str, at_step: int = 1, signal_name: str = "SIGTERM") -> None:
        self.during, self.at_step, self.signal_name, self.fired = during, at_step, signal_name, False

    def _signal_then(self, trainer, function):
        def wrapped(*args, **kwargs):
            if not self.fired and trainer.global_step >= self.at_step:
                self.fired = True
                os.kill(os.getpid(), getattr(signal, self.signal_name))
            return function(*args, **kwargs)

        return wrapped

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        if self.during == "validation" and not trainer.sanity_checking:
            self._signal_then(trainer, lambda: None)()

    def on_fit_start(self, trainer, pl_module) -> None:  # after setup, where the run's checkpoint IO is set
        if self.during == "validation":
            return
        if self.during == "save":
            io = trainer.strategy.checkpoint_io
            io.save_checkpoint = self._signal_then(trainer, io.save_checkpoint)
        else:
            from lit_pretrain.callbacks import GenerateSample

            sampler = next(c for c in trainer.callbacks if isinstance(c, GenerateSample))
            sampler.generate = self._signal_then(trainer, sampler.generate)


class FillDisk(L.Callback):
    """At the end of step ``at_step``, writes zeros into ``path`` until its filesystem is full (a real ENOSPC),
    as another job filling a shared disk would."""

    def __init__(self, path: str, at_step: int) -> None:
        self.path, self.at_step = path, at_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step != self.at_step or os.path.exists(self.path):
            return
        with open(self.path, "wb", buffering=0) as handle:
            try:
                while True:
                    handle.write(b"\0" * 65536)
            except OSError:
                pass
            try:
                while True:
                    handle.write(b"\0")
            except OSError:
                pass
