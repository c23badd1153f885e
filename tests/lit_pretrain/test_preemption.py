"""The preemption callback owns its signals while ``fit`` trains and gives them back on every way out (the real
signals to real processes are in tests/e2e/test_preemption_cli.py)."""

from __future__ import annotations

import signal

import pytest
from lightning.pytorch.demos.boring_classes import BoringModel

from lit_pretrain.callbacks import Preemption
from tests.conftest import quiet_trainer


class SeesHandlers(BoringModel):
    """Records the SIGTERM/SIGINT handlers in force during training; raises at step ``fail_at`` if given."""

    def __init__(self, fail_at: int | None = None) -> None:
        super().__init__()
        self.fail_at, self.seen = fail_at, []

    def training_step(self, batch, batch_idx):
        self.seen.append((signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)))
        if batch_idx == self.fail_at:
            raise RuntimeError("a bug in the step")
        return super().training_step(batch, batch_idx)


@pytest.mark.parametrize("fail_at", [None, 2])
def test_its_handlers_alone_run_during_training_and_the_previous_ones_come_back(tmp_path, fail_at):
    before = (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGUSR1))
    callback, model = Preemption(), SeesHandlers(fail_at)
    trainer = quiet_trainer(tmp_path, max_steps=4, callbacks=[callback], limit_val_batches=2, num_sanity_val_steps=1)
    if fail_at is None:
        trainer.fit(model)
    else:
        with pytest.raises(RuntimeError, match="a bug in the step"):
            trainer.fit(model)
    # Not Lightning's composite SIGTERM handler, which would end the run at the next batch without our save.
    assert all(handlers == (callback._note, callback._note) for handlers in model.seen)
    after = (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGUSR1))
    assert after == before
