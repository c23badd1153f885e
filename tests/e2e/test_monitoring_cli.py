"""What a user sees of a run, through the real CLI on the shipped quickstart configs (shrunk to a tiny model by
``make_project``, every monitoring group as shipped): every metric in TensorBoard, samples every
``sample.every_n_steps`` as text, and a progress bar with loss, perplexity, learning rate and tokens/s."""

from __future__ import annotations

import math

import pytest

from tests.e2e.helpers import make_project, run, scalars

EVERY_RUN = [
    "train/loss", "train/ppl", "train/bpb", "train/lr", "train/grad_norm", "train/clip_fraction",
    "grad_norm/block_00", "grad_norm/block_01", "grad_norm/other", "train/tokens_per_s", "train/samples_per_s",
    "train/step_time_s", "train/tokens_seen", "val/loss", "val/ppl", "val/bpb",
]  # fmt: skip
STEPS = ["--trainer.max_steps", "8", "--trainer.val_check_interval", "4", "--sample.every_n_steps", "4"]


@pytest.fixture(scope="module", params=["clm", "mlm"])
def monitored(request, tmp_path_factory, stdlib_corpus):
    project = make_project(tmp_path_factory.mktemp(f"monitor-{request.param}"), stdlib_corpus, request.param)
    result = run("fit", "--config", "tiny.yaml", *STEPS, "--trainer.enable_progress_bar", "true", cwd=project)
    assert result.returncode == 0, result.stderr[-3000:]
    return request.param, project, result


def test_every_metric_of_the_monitoring_issue_is_in_tensorboard(monitored):
    objective, project, _ = monitored
    metrics = scalars(project / "runs/tiny")
    assert set(EVERY_RUN) <= set(metrics), set(EVERY_RUN) - set(metrics)
    assert "train/mfu" not in metrics and "train/memory_peak_gib" not in metrics  # CPU: omitted, not faked
    assert [step for step, _ in metrics["train/loss"]] == list(range(8))  # tiny.yaml logs every step
    val_loss = metrics["val/loss"][-1][1]
    assert metrics["val/ppl"][-1][1] == pytest.approx(math.exp(val_loss), rel=1e-5)
    # log_every_n_steps 1: each window is one step, so train/ppl is exp(train/loss) step by step.
    for (_, loss), (_, ppl) in zip(metrics["train/loss"], metrics["train/ppl"]):
        assert ppl == pytest.approx(math.exp(loss), rel=1e-5)


def test_samples_every_n_steps_are_printed_and_logged_as_text(monitored):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    objective, project, result = monitored
    accumulator = EventAccumulator(str(project / "runs/tiny"))
    accumulator.Reload()
    events = accumulator.Tensors(f"samples/{objective}/text_summary")
    assert [e.step for e in events] == [4, 8]  # every 4 steps; the end of fit (step 8) is not sampled twice
    headers = [line for line in result.stdout.splitlines() if line.startswith("----- ") and "after" in line]
    assert [line.split(" after ")[1] for line in headers] == ["4 steps -----", "8 steps -----"]
    text = events[-1].tensor_proto.string_val[0].decode()
    if objective == "clm":
        assert "def fibonacci(n):" in text
    else:
        assert "<mask> 1:" in text and "<mask> 2:" in text  # top-k predictions for both masked positions


def test_the_progress_bar_shows_loss_ppl_lr_and_tokens_per_second_and_a_sensible_epoch(monitored):
    _, _, result = monitored
    shown = result.stdout + result.stderr
    assert "Epoch 0 · step 8/8" in shown
    assert "/-2" not in shown and "Epoch 0/-" not in shown
    for key in ("loss=", "ppl=", "lr=", "tok/s=", "val_loss="):
        assert key in shown, key


def test_a_progress_bar_of_ones_own_in_trainer_callbacks_replaces_ours(tmp_path, stdlib_corpus):
    project = make_project(tmp_path, stdlib_corpus)
    own = ["--trainer.callbacks+=lightning.pytorch.callbacks.TQDMProgressBar", "--trainer.enable_progress_bar", "true"]
    result = run("fit", "--config", "tiny.yaml", "--trainer.max_steps", "2", "--sample.enabled", "false", *own,
                 cwd=project)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]  # Lightning refuses two bars: ours stepped aside
    shown = result.stdout + result.stderr
    assert "Epoch 0:" in shown and "· step" not in shown  # Lightning's tqdm bar, not ours
