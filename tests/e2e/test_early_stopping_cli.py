"""``--early_stopping.*`` through the real CLI, in this process (no subprocess start-up; the callback's cases are
in tests/lit_pretrain/test_early_stopping.py): a real plateau (``--model.lr 0``: the weights never change, so
``val/loss`` is the same at every validation) stops after ``patience`` validations, ``last.ckpt`` holds the
stop, ``--ckpt_path last`` takes no step, and the same resume with ``--early_stopping.enabled false`` trains on."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from tests.e2e.helpers import cli, make_project, scalars

NAME = "plateau"
# Validation every 2 steps: step 2 sets the best val/loss, steps 4 and 6 do not beat it, so patience 2 stops at 6.
FIT = ["fit", "--config", "tiny.yaml", "--model.lr", "0", "--model.warmup_steps", "0", "--trainer.max_steps", "50",
       "--trainer.val_check_interval", "2", "--trainer.limit_val_batches", "2", "--sample.enabled", "false",
       "--trainer.logger.init_args.name", NAME, "--early_stopping.enabled", "true",
       "--early_stopping.patience", "2"]  # fmt: skip
STOP = 6


@pytest.fixture(scope="module")
def project(tmp_path_factory, stdlib_corpus) -> Path:
    return make_project(tmp_path_factory.mktemp("early-stopping"), stdlib_corpus)


def trained_steps(project: Path) -> list[int]:
    """The global steps with a logged ``train/loss`` (one per optimizer step: ``log_every_n_steps`` is 1)."""
    return [index + 1 for index, _ in scalars(project / "runs" / NAME)["train/loss"]]


def test_a_plateau_stops_after_patience_validations_and_the_resume_takes_no_step(project, capsys):
    result = cli(project, *FIT, capsys=capsys)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if "early stopping" in line]
    assert len(lines) == 1 and re.fullmatch(
        rf"lit_pretrain: early stopping at step {STOP}: val/loss did not improve by more than 0 for 2 validations "
        rf"\(best \d+\.\d{{4}} at step 2\); saved runs/{NAME}/checkpoints/last\.ckpt",
        lines[0],
    ), lines
    val_loss = scalars(project / "runs" / NAME)["val/loss"]
    assert [index + 1 for index, _ in val_loss] == [2, 4, 6] and len({value for _, value in val_loss}) == 1
    assert trained_steps(project) == list(range(1, STOP + 1))
    last = project / "runs" / NAME / "checkpoints" / "last.ckpt"
    assert torch.load(last, map_location="cpu", weights_only=True)["global_step"] == STOP

    result = cli(project, *FIT, "--ckpt_path", "last", capsys=capsys)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if "early stopping" in line]
    assert len(lines) == 1 and lines[0].startswith(
        f"lit_pretrain: early stopping: this run stopped early at step {STOP} (val/loss did not improve by more "
        "than 0 for 2 validations (best "
    ), lines
    assert lines[0].endswith(
        "nothing to train. To go on, resume with --early_stopping.patience above 2 or --early_stopping.enabled false"
    )
    assert trained_steps(project) == list(range(1, STOP + 1))  # not a single step more
    assert torch.load(last, map_location="cpu", weights_only=True)["global_step"] == STOP

    # Off, the same resume trains on from the stop (to max_steps 8 here, to keep it short).
    result = cli(project, *FIT, "--early_stopping.enabled", "false", "--trainer.max_steps", "8", "--ckpt_path", "last",
                 capsys=capsys)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "early stopping" not in result.stderr
    assert trained_steps(project) == list(range(1, 9))
    assert torch.load(last, map_location="cpu", weights_only=True)["global_step"] == 8
