"""The ``checkpoint`` group's policies through the real CLI: best-k by ``val/loss`` ranked at each validation with
the slash kept out of file names, ``last`` on the step interval, every N seconds instead of every N steps, and
``--checkpoint.export_on_end`` writing the final weights as a Hugging Face directory."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.e2e.helpers import make_project, recorder_config, run, scalars


@pytest.fixture(scope="module")
def project(tmp_path_factory, stdlib_corpus) -> Path:
    return make_project(tmp_path_factory.mktemp("policy"), stdlib_corpus)


def test_best_k_by_validation_loss_last_on_the_interval_and_export_on_end(project):
    result = run("fit", "--config", "tiny.yaml", "--trainer.max_steps", "30", "--trainer.val_check_interval", "5",
                 "--trainer.limit_val_batches", "4",
                 "--checkpoint.every_n_train_steps", "20", "--checkpoint.monitor", "val/loss",
                 "--checkpoint.save_top_k", "2", "--checkpoint.filename", "{step}-{val/loss:.4f}",
                 "--checkpoint.export_on_end", "true", "--trainer.logger.init_args.name", "best",
                 "--sample.enabled", "false", cwd=project)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = project / "runs/best"
    checkpoints = run_dir / "checkpoints"
    assert all(path.is_file() for path in checkpoints.iterdir())  # no "val/" directory from the metric's name
    # Lightning logs a validation inside step N at the loop's batch index, N - 1.
    val_loss = {index + 1: value for index, value in scalars(run_dir)["val/loss"]}
    assert sorted(val_loss) == [5, 10, 15, 20, 25, 30]
    best_two = sorted(val_loss, key=val_loss.get)[:2]
    expected = sorted(f"step={step}-val_loss={val_loss[step]:.4f}.ckpt" for step in best_two)
    assert sorted(p.name for p in checkpoints.glob("step=*")) == expected  # ranked at every validation
    for name in expected:
        step = int(name.split("-")[0].removeprefix("step="))
        assert torch.load(checkpoints / name, map_location="cpu", weights_only=True)["global_step"] == step
    last = torch.load(checkpoints / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["global_step"] == 30

    from safetensors.torch import load_file

    out = run_dir / "hf"
    assert f"lit_pretrain: exported runs/best/checkpoints/last.ckpt -> {out.resolve()}" in result.stderr
    exported = load_file(out / "model.safetensors")
    assert (out / "tokenizer.json").is_file() and exported
    for key, value in exported.items():  # the final weights, not an earlier checkpoint's
        assert torch.equal(value, last["state_dict"][f"model.{key}"]), key


def test_train_time_interval_saves_by_the_clock_instead_of_the_step_interval(project):
    """Steps of at least 0.1 s (a recorder pause), a save every 1 s: several saves, at least 1 s apart, while
    tiny.yaml's every_n_train_steps (20) is replaced instead of refused as "mutually exclusive"."""
    config, _ = recorder_config(project, "timed", pause_s=0.1)
    result = run("fit", "--config", "tiny.yaml", "--config", config, "--trainer.max_steps", "40",
                 "--trainer.limit_val_batches", "0", "--checkpoint.train_time_interval", "0:00:01",
                 "--checkpoint.save_top_k", "-1", "--checkpoint.filename", "{step}",
                 "--trainer.logger.init_args.name", "timed", "--sample.enabled", "false", cwd=project)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    saved = sorted((project / "runs/timed/checkpoints").glob("step=*.ckpt"), key=lambda p: p.stat().st_mtime)
    steps = [int(path.stem.removeprefix("step=")) for path in saved]
    assert len(steps) >= 3 and steps == sorted(steps) and steps != [20, 40], steps  # 4 s or more: 3 saves or more
    times = [path.stat().st_mtime for path in saved]
    assert all(later - earlier > 0.9 for earlier, later in zip(times, times[1:])), times
