"""Stop on a non-finite loss before it reaches the weights; warn about (or skip) loss spikes.

The loss checked is the training step's global mean (identical on every rank), so every rank takes the same
decision and none is left waiting in a collective. A NaN/Inf loss raises :class:`LossNotFinite` before the
optimizer step: no weight update and no checkpoint see it, so ``--ckpt_path last`` resumes from the last good
state. A spike is a loss above ``spike_factor`` x the running mean (an exponential moving average, after
``warmup_steps`` steps); it is warned about and, with ``skip_spikes``, its batch is dropped: no backward and no
weight update (the step counter and the schedule still advance).

Reading a loss on the host waits for the device. Without ``skip_spikes`` the module hands the loss over with
:meth:`StabilityGuard.watch` (an asynchronous copy to pinned host memory) and the check runs in
``on_before_optimizer_step``, once the backward pass is queued: the device keeps computing the backward while
the host waits for the forward's loss, so the check costs no idle device time. Dropping a spike's batch must be
decided before its backward, so ``skip_spikes`` reads the loss in the training step (one wait per batch).
"""

from __future__ import annotations

import math

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_warn

from lit_pretrain.errors import ConfigError
from lit_pretrain.strategies import is_deepspeed


class LossNotFinite(RuntimeError):
    """The training loss became NaN or Inf."""


class StabilityGuard(L.Callback):
    """Args:
    enabled: False switches it off (``--stability.enabled false``).
    spike_factor: A loss above this multiple of the running mean is a spike.
    warmup_steps: Steps before spikes are looked for (the early loss falls fast).
    skip_spikes: Drop a spike's batch (no backward, no weight update; the step still counts).
    ema_decay: Weight of the past in the running mean.
    """

    def __init__(
        self,
        enabled: bool = True,
        spike_factor: float = 2.0,
        warmup_steps: int = 50,
        skip_spikes: bool = False,
        ema_decay: float = 0.98,
    ) -> None:
        self.enabled, self.spike_factor, self.warmup_steps = enabled, spike_factor, warmup_steps
        self.skip_spikes, self.ema_decay = skip_spikes, ema_decay
        self.mean: float | None = None
        self.seen = self.spikes = 0
        self._pending: list[tuple[torch.Tensor, torch.cuda.Event | None, int]] = []  # (host loss, copied, step)

    def watch(self, loss: torch.Tensor, step: int) -> None:
        """Queue a training batch's global mean loss for the check before the optimizer step, copied to the host
        without waiting for the device."""
        value = loss.detach().float()
        if value.is_cuda:
            host = torch.empty((), dtype=torch.float32, pin_memory=True)
            host.copy_(value, non_blocking=True)
            copied = torch.cuda.Event()
            copied.record(torch.cuda.current_stream(value.device))  # the stream the copy was queued on
            self._pending.append((host, copied, step))
        else:
            self._pending.append((value.clone(), None, step))

    def _take_pending(self) -> list[tuple[float, int]]:
        pending, self._pending = self._pending, []
        values = []
        for host, copied, step in pending:  # every micro-batch of the step, in order
            if copied is not None:
                copied.synchronize()  # the forward's loss: done by now, while the backward runs on
            values.append((float(host), step))
        return values

    def check_runnable(self, trainer: L.Trainer) -> None:
        """``skip_spikes`` drops a batch by returning None from the training step, which Lightning supports on
        one process and not under DeepSpeed: refuse it elsewhere before any work."""
        if not (self.enabled and self.skip_spikes):
            return
        processes = trainer.num_devices * trainer.num_nodes
        if processes > 1 or is_deepspeed(trainer.strategy):
            where = "DeepSpeed" if is_deepspeed(trainer.strategy) else f"{processes} processes"
            raise ConfigError(
                f"stability.skip_spikes drops a batch on one process without DeepSpeed only, not on {where}; "
                "pass --stability.skip_spikes false (spikes are then warned about)"
            )

    def setup(self, trainer, pl_module, stage: str) -> None:
        if stage == "fit":
            self.check_runnable(trainer)

    def on_train_start(self, trainer, pl_module) -> None:
        self._pending = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        for loss, step in self._take_pending():  # before the update and clipping: a NaN never reaches the weights
            self.check(loss, step)

    def on_train_end(self, trainer, pl_module) -> None:
        """Micro-batches whose optimizer step never came (a stop inside an accumulation window, e.g. by
        ``max_time``): their losses never reached the weights, so a non-finite one is a warning, not a stop."""
        for loss, step in self._take_pending():
            if not math.isfinite(loss):
                rank_zero_warn(
                    f"train/loss was {loss} at step {step} in a micro-batch whose optimizer step never ran (training "
                    "stopped inside the accumulation window); the weights never saw it"
                )

    def check(self, loss: float, step: int) -> bool:
        """Called by the module with the global mean loss of a training batch; True: skip this batch."""
        if not self.enabled:
            return False
        if not math.isfinite(loss):
            raise LossNotFinite(
                f"train/loss is {loss} at step {step}; stopped before it reached the weights. The last checkpoint "
                "is intact: lower --model.lr (or raise --model.warmup_steps, --trainer.gradient_clip_val) and resume "
                "with --ckpt_path last"
            )
        spike = self.seen >= self.warmup_steps and self.mean is not None and loss > self.spike_factor * self.mean
        if spike:
            self.spikes += 1
            action = "its batch is skipped" if self.skip_spikes else "training goes on"
            rank_zero_warn(
                f"loss spike at step {step}: {loss:.4f} > {self.spike_factor} x running mean {self.mean:.4f}; {action}"
            )
            if self.skip_spikes:
                return True
        self.seen += 1
        self.mean = loss if self.mean is None else self.ema_decay * self.mean + (1 - self.ema_decay) * loss
        return False

    def state_dict(self) -> dict:
        return {"mean": self.mean, "seen": self.seen, "spikes": self.spikes}

    def load_state_dict(self, state_dict: dict) -> None:
        self.mean, self.seen, self.spikes = state_dict["mean"], state_dict["seen"], state_dict["spikes"]
