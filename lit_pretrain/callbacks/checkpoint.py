"""The CLI's ``checkpoint`` group: Lightning's ``ModelCheckpoint`` (every N steps, every N minutes, last, best-k by
a logged metric) with three changes a pretraining run needs:

* metric names with a slash (``val/loss``, our naming) in ``filename`` give one file, not a ``val/`` directory:
  ``--checkpoint.filename '{step}-{val/loss:.4f}'`` writes ``step=40-val_loss=5.1234.ckpt``;
* ``train_time_interval`` (e.g. ``0:30:00``) replaces the step interval instead of failing as "mutually
  exclusive" with the default ``every_n_train_steps``;
* ``monitor`` (e.g. ``val/loss``) with ``save_top_k`` keeps the best k checkpoints as measured at each
  validation, while the step or time interval keeps saving ``last``;
* ``export_on_end``: when ``fit`` ends, the final ``last`` checkpoint is exported to a Hugging Face directory
  (``export_dir``, by default ``<run dir>/hf``), as ``python -m lit_pretrain export`` does.
"""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path
from typing import Literal

from lightning.pytorch.callbacks import ModelCheckpoint


class PretrainCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` (all of its arguments) plus:

    Args:
        export_on_end: Export the last checkpoint to a Hugging Face model directory when ``fit`` completes (not
            after a preemption stop: the resumed run exports when it completes).
        export_dir: Where to export; default ``<run dir>/hf``. A previous export there is replaced.
    """

    def __init__(
        self,
        dirpath: str | None = None,
        filename: str | None = None,
        monitor: str | None = None,
        verbose: bool = False,
        save_last: bool | Literal["link"] | None = None,
        save_top_k: int = 1,
        save_on_exception: bool = False,
        save_weights_only: bool = False,
        mode: str = "min",
        auto_insert_metric_name: bool = True,
        every_n_train_steps: int | None = None,
        train_time_interval: timedelta | None = None,
        every_n_epochs: int | None = None,
        save_on_train_epoch_end: bool | None = None,
        enable_version_counter: bool = True,
        export_on_end: bool = False,
        export_dir: str | None = None,
    ) -> None:
        if train_time_interval is not None:
            every_n_train_steps = None  # time wins over the step interval (Lightning allows only one)
        super().__init__(
            dirpath=dirpath,
            filename=filename,
            monitor=monitor,
            verbose=verbose,
            save_last=save_last,
            save_top_k=save_top_k,
            save_on_exception=save_on_exception,
            save_weights_only=save_weights_only,
            mode=mode,
            auto_insert_metric_name=auto_insert_metric_name,
            every_n_train_steps=every_n_train_steps,
            train_time_interval=train_time_interval,
            every_n_epochs=every_n_epochs,
            save_on_train_epoch_end=save_on_train_epoch_end,
            enable_version_counter=enable_version_counter,
        )
        self.export_on_end, self.export_dir = export_on_end, export_dir

    def _format_checkpoint_name(self, filename, metrics, prefix=None, auto_insert_metric_name=True) -> str:
        name = super()._format_checkpoint_name(filename, metrics, prefix, auto_insert_metric_name)
        return name.replace("/", "_")  # "val/loss=5.12" must not become a directory

    def _save_topk_checkpoint(self, trainer, monitor_candidates) -> None:
        # With a step or time interval Lightning ranks checkpoints at those steps by the last validation's
        # value (stale, and one measurement ranked several times): here the best-k are kept at each validation,
        # the interval saves only ``last``.
        if self.monitor is None or self._every_n_epochs >= 1 or getattr(self, "_ranking", False):
            super()._save_topk_checkpoint(trainer, monitor_candidates)

    def on_validation_end(self, trainer, pl_module) -> None:
        super().on_validation_end(trainer, pl_module)
        if self.monitor is None or self._every_n_epochs >= 1 or trainer.sanity_checking or trainer.state.fn != "fit":
            return
        if trainer.fast_dev_run or self.save_top_k == 0:
            return
        self._ranking = True
        try:
            candidates = self._monitor_candidates(trainer)
            super()._save_topk_checkpoint(trainer, candidates)
            self._save_last_checkpoint(trainer, candidates)  # as Lightning does after a ranking: last is current
        finally:
            self._ranking = False

    def on_train_end(self, trainer, pl_module) -> None:
        super().on_train_end(trainer, pl_module)  # the final save_last
        if not self.export_on_end or any(getattr(c, "received", None) for c in trainer.callbacks):
            return  # a Preemption callback received its signal: this is a stop, not the end
        trainer.strategy.barrier("lit_pretrain.export_on_end")  # every rank's shards are written
        if trainer.is_global_zero:
            self.export(trainer)
        trainer.strategy.barrier("lit_pretrain.exported")

    def export(self, trainer) -> Path:
        from lit_pretrain.export import export

        last = Path(self.dirpath) / f"{self.CHECKPOINT_NAME_LAST}{self.FILE_EXTENSION}"
        run_dir = Path(self.dirpath).parent
        out = Path(self.export_dir) if self.export_dir else run_dir / "hf"
        data = getattr(trainer.lightning_module, "data_description", None)
        written = export(last, out, data.tokenizer_dataset if data is not None else None, replace=True)
        sys.stderr.write(f"lit_pretrain: exported {last} -> {written}\n")
        return written
