"""Stopping without losing work: on SIGTERM or SIGUSR1 (SLURM's ``--signal=USR1@90`` before the time limit,
Kubernetes' and most schedulers' SIGTERM) or Ctrl-C (SIGINT) the run finishes the optimizer step it is in, saves the
``last`` checkpoint and stops cleanly (exit 0), so ``--ckpt_path last`` continues exactly where it stopped. A
second Ctrl-C stops at once, without saving (the previous checkpoints stay intact: saves are atomic).

Lightning installs a SIGTERM handler of its own when the loop starts, after ``on_fit_start``, wrapping whatever was
there: it marks the run as stopping and ends it at the next batch (exit 0, no checkpoint), which raced with ours
when the signal landed during a periodic save. So this callback installs its handlers again when the sanity check
and the training start, replacing Lightning's for the signals it owns: ours alone decide. And Lightning's
teardown is told to put back the handlers from before ``fit`` (not ours), on every way out. A signal that arrives
during a validation pass inside training is acted on when the pass ends. With ``enabled: false`` nothing is
touched, and Lightning's own handling (SLURM auto-requeue included) works as without this callback."""

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
        self._previous: dict[int, object] = {}  # the handlers before fit, put back when it ends
        self._announce = True  # whether this process prints the Ctrl-C line (global rank 0)

    # -- owning the signals ----------------------------------------------------------------------------------
    def _install(self, trainer: L.Trainer) -> None:
        if not self.enabled or threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be installed from the main thread
        for name in self.signals:
            number = getattr(signal, name)
            previous = signal.signal(number, self._note)
            self._previous.setdefault(number, previous)
        self._hand_back_on_teardown(trainer)

    def _hand_back_on_teardown(self, trainer: L.Trainer) -> None:
        """Lightning's teardown re-installs the handlers it found when it registered its own (ours, installed in
        ``on_fit_start``): make it put back the ones from before fit instead, on every way out."""
        originals = getattr(getattr(trainer, "_signal_connector", None), "_original_handlers", None)
        if isinstance(originals, dict):
            for number, previous in self._previous.items():
                if number in originals:
                    originals[number] = previous

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.received, self._announce = None, trainer.is_global_zero
        self._install(trainer)  # from the first moment there is anything to save

    def on_sanity_check_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._install(trainer)  # over the SIGTERM handler Lightning registered after on_fit_start

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._install(trainer)  # the same when there is no sanity check

    def _note(self, number, frame) -> None:
        name = signal.Signals(number).name
        if name == "SIGINT" and self.received is not None:
            if self._announce:
                os.write(2, b"\nlit_pretrain: Ctrl-C again: stopping now, without saving this step\n")
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt  # Lightning's own graceful shutdown, exit 1
        if self.received is not None:
            return  # a repeated SIGTERM: the save is already on its way
        self.received = name  # acted on between steps, never inside one
        if name == "SIGINT" and self._announce:  # os.write: print() may be in use by the code interrupted here
            os.write(
                2,
                b"\nlit_pretrain: Ctrl-C: finishing this step, then saving last.ckpt (Ctrl-C again stops at once, without saving)\n",
            )

    # -- acting on them ----------------------------------------------------------------------------------------
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if (batch_idx + 1) % trainer.accumulate_grad_batches == 0:  # only at an optimizer-step boundary
            self._stop_if_signalled(trainer, pl_module)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # A validation pass can be longer than a scheduler's grace period: a signal that arrived during it is
        # acted on when it ends (the training step before it is complete), not after one more step.
        if trainer.state.fn == "fit" and not trainer.sanity_checking:
            self._stop_if_signalled(trainer, pl_module)

    def _stop_if_signalled(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.enabled or trainer.should_stop:
            return
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
        self._restore()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._hand_back_on_teardown(trainer)  # Lightning's teardown follows, before ours
        self._restore()

    def _restore(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous.clear()
