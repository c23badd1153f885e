"""Callbacks the benchmarks load. Probe: what the GPU check loads into real CLI runs (``class_path: gpu_probe.Probe``): steady-state tokens/s,
peak CUDA memory, the last training loss and what the run's own Throughput callback logged last (MFU, memory
allocated / reserved / peak), appended as one JSON line to ``path`` by rank 0; with ``profile_steps``, the top
costs of the last steps under ``torch.profiler`` too (what limits the run when an MFU target is missed)."""

from __future__ import annotations

import json
import time

import lightning as L
import torch


def top_costs(profiler: torch.profiler.profile, device: bool, count: int = 8) -> list[dict]:
    """The ``count`` operators and kernels with the most self time (on the device when ``device``, else on the
    host), each with its milliseconds and its share of all self time in the profiled steps."""
    events = [e for e in profiler.key_averages() if e.key != "ProfilerStep*"]
    own = (lambda e: e.self_device_time_total) if device else (lambda e: e.self_cpu_time_total)
    total = sum(own(e) for e in events) or 1.0
    ranked = sorted(events, key=own, reverse=True)[:count]
    return [{"name": e.key[:80], "ms": round(own(e) / 1e3, 2), "share": round(own(e) / total, 4)} for e in ranked]


class Probe(L.Callback):
    """Times optimizer steps after ``warmup_steps`` (compilation and allocator warm-up excluded). With
    ``profile_steps`` > 0 the last that many steps run under ``torch.profiler`` instead of being timed."""

    def __init__(self, path: str, name: str, warmup_steps: int = 20, profile_steps: int = 0) -> None:
        self.path, self.name, self.warmup_steps, self.profile_steps = path, name, warmup_steps, profile_steps
        self.start_time = self.start_step = None
        self.stop_time = self.stop_step = None
        self.tokens_per_step = 0
        self.profiler: torch.profiler.profile | None = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.warmup_steps and self.start_time is None:
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self.start_time, self.start_step = time.perf_counter(), trainer.global_step
        rows, length = batch["input_ids"].shape
        self.tokens_per_step = rows * length * trainer.world_size * trainer.accumulate_grad_batches
        profile_from = (trainer.max_steps or 0) - self.profile_steps
        if self.profile_steps and self.profiler is None and trainer.global_step == profile_from > self.warmup_steps:
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self.stop_time, self.stop_step = time.perf_counter(), trainer.global_step  # the timed window ends here
            activities = [torch.profiler.ProfilerActivity.CPU]
            if torch.cuda.is_available():
                activities.append(torch.profiler.ProfilerActivity.CUDA)
            self.profiler = torch.profiler.profile(activities=activities)
            self.profiler.__enter__()

    def on_train_end(self, trainer, pl_module) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        costs = {}
        if self.profiler is not None:
            self.profiler.__exit__(None, None, None)
            profiled = trainer.global_step - self.stop_step
            costs["profiled_steps"] = profiled
            costs["top_host"] = top_costs(self.profiler, device=False)
            if torch.cuda.is_available():
                costs["top_device"] = top_costs(self.profiler, device=True)
        end_time = self.stop_time if self.stop_time is not None else time.perf_counter()
        end_step = self.stop_step if self.stop_step is not None else trainer.global_step
        steps = end_step - (self.start_step or 0)
        elapsed = end_time - self.start_time if self.start_time is not None else float("nan")
        logged = trainer.callback_metrics
        loss = logged.get("train/loss")
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
        for name in ("train/mfu", "train/tokens_per_s", "train/memory_allocated_gib", "train/memory_reserved_gib"):
            if name in logged:  # the monitoring callback's own figures (MFU over the device's dense peak)
                record[f"logged {name}"] = round(float(logged[name]), 4)
        record.update(costs)
        if trainer.is_global_zero:
            with open(self.path, "a") as handle:
                handle.write(json.dumps(record) + "\n")


class AlternateMonitoring(L.Callback):
    """Switches every monitoring callback on and off in alternating blocks of ``block`` optimizer steps within one
    run and records each step's wall time with its state, so drift of a shared machine hits both alike. A step
    is timed from its ``on_train_batch_start`` to the next one's, so every hook it triggers (the progress bar
    and the sample at its end included) is inside its own interval. With Lightning's SimpleProfiler in the run
    (``--trainer.profiler simple``) the time spent in each callback hook is written too. Used by
    benchmarks/callbacks_overhead.py; written as JSON to ``path`` when training ends."""

    MONITORING = ("GradientNorm", "Throughput", "StabilityGuard", "GenerateSample", "PretrainProgressBar")

    def __init__(self, path: str, block: int = 5) -> None:
        self.path, self.block = path, block
        self.steps: list[tuple[float, bool]] = []  # (seconds, monitoring on)
        self._started: tuple[float, bool] | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        now = time.perf_counter()
        if self._started is not None:
            self.steps.append((now - self._started[0], self._started[1]))
        # Blocks by the step count after this step, so a sample taken at a multiple of the block is "on".
        on = (trainer.global_step + 1) // self.block % 2 == 0
        for callback in trainer.callbacks:
            if type(callback).__name__ not in self.MONITORING:
                continue
            if hasattr(callback, "disable") and hasattr(callback, "enable"):  # the progress bar
                callback.enable() if on else callback.disable()
            else:
                callback.enabled = on
        self._started = (now, on)

    def on_train_end(self, trainer, pl_module) -> None:
        durations = getattr(trainer.profiler, "recorded_durations", {})
        hooks = {
            action: sum(values)
            for action, values in durations.items()
            if action.removeprefix("[Callback]").startswith(self.MONITORING)
        }
        if trainer.is_global_zero:
            with open(self.path, "w") as handle:
                json.dump({"steps": self.steps, "hooks": hooks}, handle)
