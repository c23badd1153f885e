"""The progress bar of a pretraining run: loss, perplexity, learning rate and tokens/s, and an epoch display
that makes sense for step-bounded runs (Lightning's rich bar shows ``Epoch 0/-2`` when only ``max_steps`` is
set)."""

from __future__ import annotations

import math

import torch
from lightning.pytorch.callbacks import TQDMProgressBar

# What the bar shows (short name -> logged name), in this order; absent names are left out.
SHOWN = {
    "loss": "train/loss",
    "ppl": "train/ppl",
    "lr": "train/lr",
    "tok/s": "train/tokens_per_s",
    "mfu": "train/mfu",
    "val_loss": "val/loss",
    "val_bpb": "val/bpb",
}


def short_number(value: float) -> str:
    """Four significant digits; large counts with a k/M suffix, tiny rates (learning rates) in e-notation."""
    if not math.isfinite(value):
        return str(value)
    magnitude = abs(value)
    if magnitude >= 1e6:
        return f"{value / 1e6:.3g}M"
    if magnitude >= 1e4:
        return f"{value / 1e3:.3g}k"
    if 0 < magnitude < 1e-2:
        return f"{value:.2e}"
    return f"{value:.4g}"


class PretrainProgressBar(TQDMProgressBar):
    """Lightning's tqdm progress bar, showing :data:`SHOWN` from everything the run logs, described as
    ``Epoch E · step S/max_steps``. (tqdm draws in the training thread, between steps; Lightning's rich bar
    renders from a second thread that competes with the step for the CPU: a measurable cost on small machines.)

    Args:
        refresh_rate: Batches between refreshes of the bar.
        leave: Keep one finished bar per epoch on screen.
    """

    def __init__(self, refresh_rate: int = 1, leave: bool = False) -> None:
        super().__init__(refresh_rate=refresh_rate, leave=leave)
        self._shown: dict[str, str] = {}
        self._read_at: tuple[int, bool] | None = None

    def describe(self, trainer) -> str:
        description = f"Epoch {trainer.current_epoch}"
        if trainer.max_steps and trainer.max_steps > 0:
            description += f" · step {trainer.global_step}/{trainer.max_steps}"
        elif trainer.max_epochs is not None and trainer.max_epochs > 0:
            description += f"/{trainer.max_epochs}"  # an epoch-bounded run: which of how many
        return description

    def on_train_epoch_start(self, trainer, *args) -> None:
        super().on_train_epoch_start(trainer, *args)
        self.train_progress_bar.set_description(self.describe(trainer), refresh=False)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        bar = self.train_progress_bar
        if bar is not None and self._should_update(batch_idx + 1, bar.total):
            bar.set_description(self.describe(trainer), refresh=False)
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def get_metrics(self, trainer, pl_module) -> dict[str, str]:
        """Read the logged values (a device sync) only when the logger writes them, or after validation."""
        every = max(1, trainer.log_every_n_steps or 1)
        moment = (trainer.global_step, trainer.training)
        if self._read_at is not None and (
            moment == self._read_at or (trainer.training and trainer.global_step % every and self._shown)
        ):
            return self._shown
        self._read_at = moment
        logged = trainer.callback_metrics
        shown = {}
        for short, name in SHOWN.items():
            value = logged.get(name)
            if value is None:
                continue
            value = value.item() if isinstance(value, torch.Tensor) else float(value)
            shown[short] = short_number(value)
        self._shown = shown
        return shown
