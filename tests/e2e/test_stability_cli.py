"""The stability guard through the real CLI, with injected faults: a NaN loss stops the run before the weights
see it and the last checkpoint resumes; a spike is warned about, or its batch dropped."""

from __future__ import annotations

import math

import torch
import yaml

from tests.e2e.helpers import make_project, run

STEPS = ["--trainer.max_steps", "12", "--trainer.val_check_interval", "12", "--sample.enabled", "false"]


def fault(project, at_step: int, factor: float) -> str:
    callbacks = [{"class_path": "recorder.InjectFault", "init_args": {"at_step": at_step, "factor": factor}}]
    (project / "fault.yaml").write_text(yaml.safe_dump({"trainer": {"callbacks": callbacks}}))
    return "fault.yaml"


def test_nan_loss_stops_with_one_line_and_the_last_checkpoint_resumes(tmp_path, stdlib_corpus):
    project = make_project(tmp_path, stdlib_corpus)
    every4 = ["--checkpoint.every_n_train_steps", "4"]
    result = run("fit", "--config", "tiny.yaml", "--config", fault(project, 6, math.nan), *STEPS, *every4, cwd=project)
    assert result.returncode == 3, result.stderr[-2000:]
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith("error: train/loss is nan at step 6; stopped before it reached the weights.")
    )
    checkpoint = torch.load(project / "runs/tiny/checkpoints/last.ckpt", map_location="cpu", weights_only=True)
    assert checkpoint["global_step"] == 4
    assert all(torch.isfinite(value).all() for value in checkpoint["state_dict"].values() if value.is_floating_point())
    resumed = run("fit", "--config", "tiny.yaml", *STEPS, *every4, "--ckpt_path", "last", cwd=project)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert torch.load(project / "runs/tiny/checkpoints/last.ckpt", weights_only=True)["global_step"] == 12


def test_a_loss_spike_is_warned_about_or_its_batch_dropped(tmp_path, stdlib_corpus):
    project = make_project(tmp_path, stdlib_corpus)
    guard = ["--stability.warmup_steps", "3", "--config", fault(project, 6, 10.0)]
    warned = run("fit", "--config", "tiny.yaml", *STEPS, *guard, cwd=project)
    assert warned.returncode == 0, warned.stderr[-2000:]
    assert "loss spike at step 6:" in warned.stderr and "training goes on" in warned.stderr
    skipped = run("fit", "--config", "tiny.yaml", *STEPS, *guard, "--stability.skip_spikes", "true",
                  "--trainer.logger.init_args.name", "skip", cwd=project)  # fmt: skip
    assert skipped.returncode == 0, skipped.stderr[-2000:]
    assert "loss spike at step 6:" in skipped.stderr and "its batch is skipped" in skipped.stderr
    checkpoint = torch.load(project / "runs/skip/checkpoints/last.ckpt", map_location="cpu", weights_only=True)
    assert checkpoint["global_step"] == 12
