"""``PretrainEarlyStopping`` on a tiny model whose ``val/loss`` we dictate: off, it does nothing; on, it stops
after ``patience`` validations of a plateau, and a run resumed from the ``last.ckpt`` written at the stop takes
no step, unless it is resumed with the callback off or a higher patience (the real CLI is in
tests/e2e/test_early_stopping_cli.py)."""

from __future__ import annotations

import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.demos.boring_classes import BoringModel

from lit_pretrain.callbacks import PretrainEarlyStopping
from tests.conftest import quiet_trainer

VAL_EVERY = 2  # steps
# val/loss by the global step of its validation: better at 2 and 4, then a plateau (a change of 0.005 is below
# the min_delta of 0.01 used below). With patience 2 the stop is at step 8.
LOSSES = {2: 5.0, 4: 4.0, 6: 3.995, 8: 3.995, 10: 3.995, 12: 3.995, 14: 3.995, 16: 3.995}
STOP = 8


class Plateau(BoringModel):
    """Logs ``val/loss`` = LOSSES[global step] (or nothing with ``log_val``=False); records each training batch
    as (global step before its optimizer step, batch index in the epoch, epoch)."""

    def __init__(self, log_val: bool = True) -> None:
        super().__init__()
        self.log_val, self.trained = log_val, []

    def training_step(self, batch, batch_idx):
        self.trained.append((self.trainer.global_step, batch_idx, self.trainer.current_epoch))
        return super().training_step(batch, batch_idx)

    def validation_step(self, batch, batch_idx):
        if self.log_val:
            self.log("val/loss", torch.tensor(LOSSES[self.trainer.global_step]))


def fit(tmp_path, callback, *, max_steps=16, every_n_train_steps=VAL_EVERY, ckpt_path=None, log_val=True):
    model = Plateau(log_val)
    checkpoint = ModelCheckpoint(
        dirpath=tmp_path / "checkpoints", save_last=True, every_n_train_steps=every_n_train_steps
    )
    trainer = quiet_trainer(tmp_path, max_steps=max_steps, val_check_interval=VAL_EVERY, limit_val_batches=1,
                            check_val_every_n_epoch=None, enable_checkpointing=True, callbacks=[callback, checkpoint])  # fmt: skip
    trainer.fit(model, ckpt_path=ckpt_path)
    return trainer, model


def callback_state(path) -> dict | None:
    states = torch.load(path, map_location="cpu", weights_only=True)["callbacks"]
    return next((state for key, state in states.items() if key.startswith("PretrainEarlyStopping")), None)


def stopped_run(tmp_path, capsys, every_n_train_steps: int):
    trainer, model = fit(tmp_path, PretrainEarlyStopping(enabled=True, patience=2, min_delta=0.01),
                         every_n_train_steps=every_n_train_steps)  # fmt: skip
    assert trainer.global_step == STOP and model.trained[-1][0] == STOP - 1
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"lit_pretrain: early stopping at step {STOP}: val/loss did not improve by more than 0.01 for 2 validations "
        f"(best 4.0000 at step 4); saved {tmp_path / 'checkpoints/last.ckpt'}"
    )
    return model


def test_disabled_it_does_nothing_and_keeps_no_state(tmp_path):
    callback = PretrainEarlyStopping(patience=1)  # off by default
    trainer, _ = fit(tmp_path / "plateau", callback)
    assert trainer.global_step == 16 and not trainer.should_stop and callback.wait_count == 0
    assert callback.state_dict() == {}
    assert callback_state(tmp_path / "plateau/checkpoints/last.ckpt") is None
    trainer, _ = fit(tmp_path / "no-metric", PretrainEarlyStopping(), log_val=False)  # no val/loss, no error
    assert trainer.global_step == 16


def test_enabled_it_needs_the_metric(tmp_path):
    with pytest.raises(RuntimeError, match="`val/loss` which is not available"):
        fit(tmp_path, PretrainEarlyStopping(enabled=True), log_val=False)


@pytest.mark.parametrize("every_n_train_steps", [VAL_EVERY, 5, 100])
def test_it_stops_after_patience_validations_and_a_resume_takes_no_step(tmp_path, capsys, every_n_train_steps):
    """Whatever the interval saves did before the stop (a save of step 8 before its validation, a last save at
    step 5, none), ``last.ckpt`` holds step 8 and the stop."""
    stopped_run(tmp_path, capsys, every_n_train_steps)
    last = tmp_path / "checkpoints/last.ckpt"
    state = callback_state(last)
    assert torch.load(last, map_location="cpu", weights_only=True)["global_step"] == STOP
    assert (state["stopped_step"], state["wait_count"], state["best_step"]) == (STOP, 2, 4)

    written = last.stat().st_mtime_ns
    for _ in range(2):  # resumed twice: the first resume leaves last.ckpt as it was
        trainer, model = fit(tmp_path, PretrainEarlyStopping(enabled=True, patience=2, min_delta=0.01),
                             every_n_train_steps=every_n_train_steps, ckpt_path=str(last))  # fmt: skip
        assert model.trained == [] and trainer.global_step == STOP
        assert capsys.readouterr().err.splitlines()[-1] == (
            f"lit_pretrain: early stopping: this run stopped early at step {STOP} (val/loss did not improve by more "
            "than 0.01 for 2 validations (best 4.0000 at step 4)); nothing to train. To go on, resume with "
            "--early_stopping.patience above 2 or --early_stopping.enabled false"
        )
        assert last.stat().st_mtime_ns == written


def test_resumed_with_it_off_training_goes_on_where_it_stopped(tmp_path, capsys):
    first = stopped_run(tmp_path, capsys, VAL_EVERY)
    last = tmp_path / "checkpoints/last.ckpt"
    fit(tmp_path, PretrainEarlyStopping(enabled=True, patience=2), ckpt_path=str(last))  # a stopped resume first
    capsys.readouterr()
    trainer, model = fit(tmp_path, PretrainEarlyStopping(enabled=False, patience=2), ckpt_path=str(last))
    assert trainer.global_step == 16
    # The next batch of the same epoch: the checkpoint was written mid-epoch, not as an epoch's end.
    assert model.trained == [(step, step, 0) for step in range(STOP, 16)] and first.trained[-1] == (
        STOP - 1,
        STOP - 1,
        0,
    )
    assert "early stopping" not in capsys.readouterr().err
    assert callback_state(tmp_path / "checkpoints/last.ckpt") is None  # off: it keeps no state


def test_resumed_with_a_higher_patience_it_counts_on_and_stops_again(tmp_path, capsys):
    stopped_run(tmp_path, capsys, VAL_EVERY)
    callback = PretrainEarlyStopping(enabled=True, patience=4, min_delta=0.01)
    trainer, model = fit(tmp_path, callback, ckpt_path=str(tmp_path / "checkpoints/last.ckpt"))
    # 2 validations without improvement were counted before the stop; 2 more (steps 10 and 12) make 4.
    assert trainer.global_step == 12 and [step for step, _, _ in model.trained] == [8, 9, 10, 11]
    err = capsys.readouterr().err.splitlines()
    assert err[0] == (
        "lit_pretrain: early stopping: this run stopped early at step 8; with patience 4 (2 validation(s) without "
        "improvement so far) training goes on"
    )
    assert err[-1].startswith(
        "lit_pretrain: early stopping at step 12: val/loss did not improve by more than 0.01 for 4"
    )


def test_min_steps_wins_and_the_first_validation_past_it_stops(tmp_path, capsys):
    # min_epochs=0: with min_steps alone Lightning sets min_epochs=1 (loops/utilities.py), and an epoch here is
    # 32 steps.
    model = Plateau()
    trainer = quiet_trainer(tmp_path, max_steps=16, min_steps=11, min_epochs=0, val_check_interval=VAL_EVERY, limit_val_batches=1,
                            check_val_every_n_epoch=None, callbacks=[PretrainEarlyStopping(enabled=True, patience=2, min_delta=0.01)])  # fmt: skip
    trainer.fit(model)
    assert trainer.global_step == 12  # patience ran out at step 8; step 12's validation is the first past 11
    assert capsys.readouterr().err.splitlines()[-1] == (
        "lit_pretrain: early stopping at step 12: val/loss did not improve by more than 0.01 for 4 validations "
        "(best 4.0000 at step 4)"
    )
