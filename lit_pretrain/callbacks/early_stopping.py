"""The CLI's ``early_stopping`` group: Lightning's ``EarlyStopping`` on ``val/loss``, off unless
``--early_stopping.enabled true``, with a stop that survives a resume.

Checked at the end of every validation (our runs validate every ``trainer.val_check_interval`` steps, so never
at a training epoch's end): when the monitored value has not improved by more than ``min_delta`` for
``patience`` validations in a row, training stops after that validation, with one line on stderr. Lightning's
``trainer.min_steps`` and ``trainer.min_epochs`` win: until they are met no stop is taken (the count goes on; the
first validation after that stops). Lightning makes ``min_epochs`` 1 when only ``min_steps`` is given.

A stop must hold when the job is resubmitted with ``--ckpt_path last``. Two things in Lightning 2.6 would lose
it: ``last.ckpt`` may have been written before the validation that decided the stop (an interval save of the same
step, in ``on_train_batch_end``), or not at all at that step; and a resume from a checkpoint saved before a
step's validation skips that validation. So when it stops, this callback writes ``last`` again through the run's
``ModelCheckpoint`` (mid-epoch, as Lightning's own validation-end saves are), with the stop in its state. A run
resumed from that checkpoint takes no step: it says so in one line and ends. To go on past the stop, resume with
a higher ``--early_stopping.patience`` (the count of validations without improvement is kept, and the new
patience applies) or with ``--early_stopping.enabled false`` (the callback then does nothing and keeps no state,
so enabling it again later starts a fresh count).
"""

from __future__ import annotations

import sys
from typing import Any, Literal

import lightning as L
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.callbacks.early_stopping import EarlyStoppingReason
from lightning.pytorch.utilities import rank_zero_warn


class PretrainEarlyStopping(EarlyStopping):
    """Stop training when the validation loss stops improving (``--early_stopping.enabled true``).

    Args:
        enabled: Stop training when ``monitor`` stops improving. False (the default) makes this callback do
            nothing; a stopped run resumed with False trains on.
        monitor: The logged metric watched at the end of each validation.
        patience: Validations in a row without an improvement by more than ``min_delta`` before training stops.
            Resuming a stopped run with a higher patience goes on from the count it had.
        min_delta: An improvement must be larger than this: a change of ``monitor`` in the ``mode`` direction by
            at most ``min_delta`` counts as none.
        mode: ``min``: lower is better (a loss); ``max``: higher is better.
        verbose: Also log each improvement of ``monitor`` (Lightning's messages); the line saying that training
            stops is always printed.
    """

    def __init__(
        self,
        enabled: bool = False,
        monitor: str = "val/loss",
        patience: int = 3,
        min_delta: float = 0.0,
        mode: Literal["min", "max"] = "min",
        verbose: bool = True,
    ) -> None:
        # check_on_train_epoch_end=False: checked after each validation (val_check_interval is in steps here);
        # check_finite=False: a NaN or infinite value is one more validation without improvement.
        super().__init__(
            monitor=monitor, min_delta=min_delta, patience=patience, verbose=verbose, mode=mode, strict=True,
            check_finite=False, check_on_train_epoch_end=False, log_rank_zero_only=True,
        )  # fmt: skip
        self.enabled = enabled
        self.stopped_step: int | None = None  # the global step whose validation stopped training
        self.best_step: int | None = None  # the global step whose validation gave best_score
        self._stop_min_delta = abs(self.min_delta)  # the min_delta the recorded stop was decided with

    # -- state -------------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        if not self.enabled:
            return {}  # Lightning stores no entry for an empty state: nothing to restore later
        return {**super().state_dict(), "stopped_step": self.stopped_step, "best_step": self.best_step,
                "min_delta": abs(self.min_delta)}  # fmt: skip

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if not self.enabled:
            return
        patience = self.patience
        super().load_state_dict(state_dict)
        self.patience = patience  # Lightning restores the checkpoint's patience: this run's setting wins
        self.stopped_step = state_dict.get("stopped_step")
        self.best_step = state_dict.get("best_step")
        self._stop_min_delta = state_dict.get("min_delta", abs(self.min_delta))

    # -- hooks ---------------------------------------------------------------------------------------------------
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        pass  # Lightning's picks the epoch's end for some Trainer settings; here it is always validation end

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pass  # never checked at an epoch's end (see setup)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.enabled:
            super().on_validation_end(trainer, pl_module)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """After a resume (callback state is restored before this hook under every strategy; ``on_fit_start`` may
        come before it): a stop in the checkpoint that still holds ends the run before its first step."""
        if not self.enabled:
            return
        if not trainer.enable_validation:
            rank_zero_warn(
                f"early_stopping is enabled but this run never validates, so it never stops early: {self.monitor} "
                "is read at the end of each validation (trainer.limit_val_batches is 0 or there is no validation data)"
            )
        if self.stopped_step is None:
            return
        stopped = f"early stopping: this run stopped early at step {self.stopped_step}"
        if self.wait_count < self.patience:
            self._forget_stop()
            self._say(trainer, f"{stopped}; with patience {self.patience} ({self.wait_count} validation(s) without "
                               "improvement so far) training goes on")  # fmt: skip
        elif not trainer.fit_loop._can_stop_early:
            self._forget_stop()
            self._say(trainer, f"{stopped}; trainer.min_steps or min_epochs is not reached: training goes on")
        else:
            trainer.should_stop = True  # FitLoop.done is read right after on_train_start: no step runs
            for callback in trainer.checkpoint_callbacks:  # the checkpoint resumed from holds this step already:
                if isinstance(callback, ModelCheckpoint) and trainer.ckpt_path is not None:  # no save_last again
                    callback._last_global_step_saved = trainer.global_step
                    callback._last_checkpoint_saved = callback._last_checkpoint_saved or str(trainer.ckpt_path)
            self._say(trainer, f"{stopped} ({self._why(self._stop_min_delta)}); nothing to train. To go on, resume "
                               f"with --early_stopping.patience above {self.wait_count} or --early_stopping.enabled false")  # fmt: skip

    # -- the check ------------------------------------------------------------------------------------------------
    def _run_early_stopping_check(self, trainer: L.Trainer) -> None:
        """Lightning's check (at each validation's end), except that a stop is taken only when the Trainer can
        stop (``min_steps`` met; Lightning would set ``should_stop`` and train on), and is saved in ``last``."""
        logs = trainer.callback_metrics
        if trainer.fast_dev_run or not self._validate_condition_metric(logs):
            return
        best = self.best_score
        should_stop, reason = self._evaluate_stopping_criteria(logs[self.monitor].squeeze())
        if self.best_score is not best:
            self.best_step = trainer.global_step
        should_stop = trainer.strategy.reduce_boolean_decision(should_stop, all=False)  # one rank stops all
        if not (should_stop and trainer.fit_loop._can_stop_early):
            self.stopping_reason = EarlyStoppingReason.NOT_STOPPED
            if reason and self.verbose and not should_stop:
                self._log_info(trainer, reason, self.log_rank_zero_only)
            return
        trainer.should_stop = True
        self.stopping_reason, self.stopping_reason_message = EarlyStoppingReason.PATIENCE_EXHAUSTED, reason
        self.stopped_step, self.stopped_epoch = trainer.global_step, trainer.current_epoch
        self._stop_min_delta = abs(self.min_delta)
        saved = self._save_last(trainer)
        self._say(trainer, f"early stopping at step {self.stopped_step}: {self._why(self._stop_min_delta)}"
                           + (f"; saved {saved}" if saved else ""))  # fmt: skip

    def _why(self, min_delta: float) -> str:
        at = f" at step {self.best_step}" if self.best_step is not None else ""
        return (
            f"{self.monitor} did not improve by more than {min_delta:g} for {self.wait_count} validations "
            f"(best {float(self.best_score):.4f}{at})"
        )

    @staticmethod
    def _save_last(trainer: L.Trainer) -> str | None:
        """``last`` again through each ModelCheckpoint that keeps one, now holding the stop: a checkpoint of this
        step, if any, was written before its validation. Saved mid-epoch, as Lightning's validation-end saves are,
        so a resume past the stop continues the epoch's data where it was."""
        saved = None
        for callback in trainer.checkpoint_callbacks:
            if isinstance(callback, ModelCheckpoint) and callback.save_last:
                callback._save_last_checkpoint(trainer, callback._monitor_candidates(trainer))  # Lightning 2.x
                saved = callback.last_model_path
        return saved

    def _forget_stop(self) -> None:
        self.stopped_step, self.stopping_reason_message = None, None
        self.stopping_reason = EarlyStoppingReason.NOT_STOPPED

    @staticmethod
    def _say(trainer: L.Trainer, message: str) -> None:
        if trainer.is_global_zero:
            print(f"lit_pretrain: {message}", file=sys.stderr, flush=True)
