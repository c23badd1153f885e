"""Masked LM through the real CLI: prepare with an MLM tokenizer, fit, fill-mask, exact resume with the same
masks, and the errors for a tokenizer that cannot serve the objective."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import yaml

from tests.e2e.helpers import kill_and_resume, make_project, run, scalars


@pytest.fixture(scope="module")
def mlm_project(tmp_path_factory, stdlib_corpus) -> Path:
    return make_project(tmp_path_factory.mktemp("mlm-project"), stdlib_corpus, objective="mlm")


def test_mlm_fit_trains_a_bert_with_the_tokenizers_special_ids_and_fills_masks(mlm_project):
    result = run("fit", "--config", "tiny.yaml", cwd=mlm_project)
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = mlm_project / "runs" / "tiny"
    hparams = yaml.safe_load((run_dir / "hparams.yaml").read_text())
    assert hparams["objective"] == "mlm" and hparams["preset"] == "bert-tiny"
    # The MLM tokenizer's ids, linked from the data module (data_prep's kind: mlm).
    assert hparams["token_ids"]["mask_token_id"] == 3 and hparams["token_ids"]["pad_token_id"] == 1
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert any(key.startswith("model.bert.") for key in checkpoint["state_dict"])
    metrics = scalars(run_dir)
    train_loss = [value for _, value in metrics["train/loss"]]
    val_loss = [value for _, value in metrics["val/loss"]]
    assert train_loss[0] > 5.5 and train_loss[-1] < train_loss[0] - 0.4, train_loss  # from ~ln(512) = 6.24
    assert len(val_loss) == 2 and val_loss[-1] < val_loss[0]
    assert metrics["val/ppl"][-1][1] == pytest.approx(math.exp(val_loss[-1]), rel=1e-4)
    assert "fill-mask for" in result.stdout and "<mask> 2:" in result.stdout
    assert "val/bpb" in result.stdout


def test_mlm_validation_loss_is_the_same_on_every_evaluation_of_the_same_weights(mlm_project):
    if not (mlm_project / "runs/tiny/checkpoints/last.ckpt").is_file():
        assert run("fit", "--config", "tiny.yaml", cwd=mlm_project).returncode == 0
    losses = []
    for batch_size in ("8", "5"):  # fixed masks per window: the batching does not change them
        result = run(
            "validate", "--config", "tiny.yaml", "--ckpt_path", "last", "--data.batch_size", batch_size, cwd=mlm_project
        )
        assert result.returncode == 0, result.stderr[-3000:]
        losses.append(float(result.stdout.split("val/loss")[1].split()[0]))
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)


def test_mlm_resume_after_a_kill_sees_the_same_windows_masks_and_losses(mlm_project):
    common = [
        "--config",
        "tiny.yaml",
        "--trainer.max_steps",
        "8",
        "--trainer.accumulate_grad_batches",
        "2",
        "--checkpoint.every_n_train_steps",
        "3",
        "--trainer.val_check_interval",
        "100",
    ]
    # Killed at the start of step 6; the last checkpoint is after step 3.
    expected, before, after = kill_and_resume(mlm_project, common, "mlm-resumed", kill_at_step=5)
    assert len(expected) == 16 and len(before) == 10  # two micro-batches per step
    assert all(record["labels"] is not None for record in expected)
    # After the step-3 checkpoint: micro-batches 7..16 of the uninterrupted run, masks (inputs and labels) included.
    assert [(r["windows"], r["labels"]) for r in after] == [(r["windows"], r["labels"]) for r in expected[6:]]
    assert [r["loss"] for r in after] == pytest.approx([r["loss"] for r in expected[6:]], rel=1e-4)
    # Masks change from step to step: no two micro-batches share their labels.
    assert len({r["labels"] for r in expected}) == len(expected)


def test_mlm_with_a_tokenizer_without_mask_token_fails_before_any_work(mlm_project, tmp_path, stdlib_corpus):
    clm_project = make_project(tmp_path, stdlib_corpus, prepared=False)  # a causal-LM tokenizer: end of text only
    result = run(
        "fit", "--config", "tiny.yaml", "--model.objective", "mlm", "--model.preset", "bert-tiny", cwd=clm_project
    )
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "model.objective mlm needs a mask token" in errors[0], result.stderr[-2000:]
    assert "tokenizer.kind: mlm" in errors[0] and "Traceback" not in result.stderr
    assert not (clm_project / "data" / "small").exists()  # nothing prepared, nothing trained
    assert not (clm_project / "runs").exists()
