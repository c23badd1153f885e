"""Stopping without losing work: on SIGTERM or SIGUSR1 (SLURM's ``--signal=USR1@90`` before the time limit,
Kubernetes' and most schedulers' SIGTERM) or Ctrl-C (SIGINT) the run finishes the optimizer step it is in, saves the
``last`` checkpoint and stops cleanly (exit 0), so ``--ckpt_path last`` continues exactly where it stopped. A
second Ctrl-C stops at once, without saving (the previous checkpoints stay intact: saves are atomic).

Lightning installs a SIGTERM handler of its own when the loop starts, after ``on_fit_start``, wrapping whatever was
there: it marks the run as stopping and ends it at the next batch (exit 0, no checkpoint), which raced with ours
when the signal landed during a periodic save or a sample. So this callback installs its handlers again in
``on_train_start``, replacing Lightning's for the signals it owns: ours alone decide. With ``enabled: false``
nothing is touched, and Lightning's own handling (SLURM auto-requeue included) works as without this callback."""

from __future__ import annotations

import os
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
        self.signals = list(signals) if signals is not None else ["SIGTERM", "SIGUSR1", "SIGINT"]
        self.received: str | None = None
        self._previous: dict[int, object] = {}

    def _install(self) -> None:
        if not self.enabled or threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be installed from the main thread
        for name in self.signals:
            number = getattr(signal, name)
            previous = signal.signal(number, self._note)
            self._previous.setdefault(number, previous)  # what was there before fit, restored at its end

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._install()  # from the first moment there is anything to save

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._install()  # again, over the SIGTERM handler Lightning registered after on_fit_start

    def _note(self, number, frame) -> None:
        name = signal.Signals(number).name
        if name == "SIGINT" and self.received is not None:
            os.write(2, b"\nlit_pretrain: Ctrl-C again: stopping now, without saving this step\n")
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt  # Lightning's own graceful shutdown, exit 1
        if self.received is not None:
            return  # a repeated SIGTERM: the save is already on its way
        self.received = name  # acted on between steps, never inside one
        if name == "SIGINT":  # os.write: print() may be in use by the code this handler interrupted
            os.write(
                2,
                b"\nlit_pretrain: Ctrl-C: finishing this step, then saving last.ckpt (Ctrl-C again stops at once, without saving)\n",
            )

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

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._restore()  # at the very end: a signal during the final save or sample still counts as ours

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._restore()

    def _restore(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous.clear()
