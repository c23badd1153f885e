"""Callbacks the end-to-end tests load into the real CLI through ``--config`` (class_path: recorder.X)."""

from __future__ import annotations

import hashlib
import json
import os

import lightning as L


class BatchRecorder(L.Callback):
    """Appends one JSON line per training batch (step, hash of its model inputs, hash of its labels if it has
    any, loss) to ``path``. Inputs are hashed after the objective's transform, so for MLM equal hashes mean the
    same windows with the same masks. With ``kill_at_step`` it dies like a SIGKILL (no cleanup, no checkpoint) when that step begins."""

    def __init__(self, path: str, kill_at_step: int | None = None) -> None:
        self.path, self.kill_at_step = path, kill_at_step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.kill_at_step is not None and trainer.global_step == self.kill_at_step:
            os._exit(9)
        self._digest = hashlib.sha1(batch["input_ids"].cpu().numpy().tobytes()).hexdigest()
        labels = batch.get("labels")
        self._labels = None if labels is None else hashlib.sha1(labels.cpu().numpy().tobytes()).hexdigest()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        with open(self.path, "a") as handle:
            record = {
                "step": trainer.global_step,
                "windows": self._digest,
                "labels": self._labels,
                "loss": float(outputs["loss"]),
            }
            handle.write(json.dumps(record) + "\n")


class PeakMemory(L.Callback):
    """Writes ``<path>.<rank>.json``: this process's resident memory when the model is about to be built
    (``setup``), its peak resident memory (``ru_maxrss``) once it is built (``on_fit_start``), and the parameter
    bytes this rank holds locally and the model has in all. Run with ``MALLOC_MMAP_THRESHOLD_`` low so freed
    tensors leave the resident set, on a prepared dataset (preparation has a peak of its own)."""

    def __init__(self, path: str) -> None:
        self.path = path

    @staticmethod
    def _peak() -> int:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kilobytes on Linux

    def setup(self, trainer, pl_module, stage) -> None:
        with open("/proc/self/statm") as handle:
            self.before = int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def on_fit_start(self, trainer, pl_module) -> None:
        from torch.distributed.tensor import DTensor

        parameters = list(pl_module.model.parameters())
        local = sum((p.to_local() if isinstance(p, DTensor) else p).numel() * p.element_size() for p in parameters)
        record = {
            "before": self.before,
            "after": self._peak(),
            "local_parameter_bytes": local,
            "model_parameter_bytes": sum(p.numel() * p.element_size() for p in parameters),
        }
        with open(f"{self.path}.{trainer.global_rank}.json", "w") as handle:
            json.dump(record, handle)
