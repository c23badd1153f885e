"""Cluster preemption: on SIGTERM or SIGUSR1 (SLURM's ``--signal=USR1@90`` before the time limit, Kubernetes'
and most schedulers' SIGTERM) the run finishes the optimizer step it is in, saves the ``last`` checkpoint and
stops cleanly (exit 0), so ``--ckpt_path last`` continues exactly where it stopped."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

import lightning as L
import torch


class Preemption(L.Callback):
    """Args:
    enabled: False leaves the signals to their defaults (``--preemption.enabled false``).
    signals: Names of the signals that mean "save and stop".
    """

    def __init__(self, enabled: bool = True, signals: list[str] | None = None) -> None:
        self.enabled = enabled
        self.signals = list(signals) if signals is not None else ["SIGTERM", "SIGUSR1"]
        self.received: str | None = None
        self._previous: dict[int, object] = {}

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.enabled or threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be installed from the main thread
        for name in self.signals:
            number = getattr(signal, name)
            self._previous[number] = signal.signal(number, self._note)

    def _note(self, number, frame) -> None:
        self.received = signal.Signals(number).name  # acted on between steps, never inside one

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not self.enabled or (batch_idx + 1) % trainer.accumulate_grad_batches:
            return  # inside an accumulation: stop only at an optimizer-step boundary
        received = self.received is not None
        if trainer.world_size > 1:  # one rank's signal stops every rank at the same step
            flag = torch.tensor(float(received), device=pl_module.device)
            received = bool(trainer.strategy.reduce(flag, reduce_op="max") > 0)
        if not received:
            return
        path = self.save_last(trainer)
        trainer.should_stop = True
        if trainer.is_global_zero:
            print(
                f"lit_pretrain: {self.received or 'a signal'} received: saved {path} after step {trainer.global_step}; "
                "resume with --ckpt_path last",
                file=sys.stderr,
                flush=True,
            )

    @staticmethod
    def save_last(trainer: L.Trainer) -> Path:
        """Save through the run's ModelCheckpoint, so it knows this step is saved: otherwise its end-of-training
        ``save_last`` would overwrite this checkpoint with one that marks the epoch as finished (and a resume
        would skip the rest of it). Without one, save ``<log dir>/checkpoints/last.ckpt`` directly."""
        callback = trainer.checkpoint_callback
        if callback is not None and callback.save_last:
            callback._save_last_checkpoint(trainer, callback._monitor_candidates(trainer))  # Lightning 2.x
            return Path(callback.last_model_path)
        directory = Path(callback.dirpath) if callback is not None and callback.dirpath else None
        if directory is None:
            directory = Path(trainer.log_dir or trainer.default_root_dir) / "checkpoints"
        path = directory / "last.ckpt"
        trainer.save_checkpoint(path)
        if callback is not None:  # the same bookkeeping ModelCheckpoint does after its own saves
            callback._last_global_step_saved, callback._last_checkpoint_saved = trainer.global_step, str(path)
        return path

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous.clear()
