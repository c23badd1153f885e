"""Monitoring through the real CLI: the always-present callbacks log their metrics, and ``plot`` renders a run's
(or several runs') TensorBoard logs into one PNG."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.helpers import make_project, run, scalars

MONITORED = [
    "train/loss", "train/lr", "val/loss", "val/ppl", "val/bpb", "train/grad_norm", "train/clip_fraction",
    "train/tokens_per_s", "train/samples_per_s", "train/step_time_s", "train/tokens_seen",
]  # fmt: skip


@pytest.fixture(scope="module")
def project(tmp_path_factory, stdlib_corpus) -> Path:
    project = make_project(tmp_path_factory.mktemp("plot"), stdlib_corpus)
    for name, lr in (("a", "3e-3"), ("b", "1e-3")):
        args = ["--trainer.max_steps", "12", "--trainer.val_check_interval", "6", "--sample.enabled", "false"]
        result = run("fit", "--config", "tiny.yaml", *args, "--model.lr", lr, "--trainer.logger.init_args.name", name,
                     cwd=project)  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
    return project


def test_a_cli_run_logs_every_monitored_metric(project):
    metrics = scalars(project / "runs" / "a")
    assert set(MONITORED) <= set(metrics), set(MONITORED) - set(metrics)
    assert metrics["train/tokens_seen"][-1][1] == 12 * 8 * 64  # steps x batch x seq_len
    assert "train/mfu" not in metrics  # CPU: no peak to divide by


def test_plot_renders_one_png_for_one_or_several_runs(project):
    from matplotlib.image import imread

    for runs, out in ((["runs/a"], "one.png"), (["runs/a", "runs/b"], "two.png")):
        result = run("plot", *runs, "--out", out, cwd=project)
        assert result.returncode == 0, result.stderr[-2000:]
        image = imread(project / out)
        assert image.shape[0] >= 600 and image.shape[1] >= 1200
        assert image[..., :3].std() > 0.05  # not blank: curves, axes and labels
    assert (project / "two.png").stat().st_size > (project / "one.png").stat().st_size  # a second run drawn
    assert not list(project.glob(".*.partial.png"))


def test_plot_of_a_directory_without_event_files_is_one_line(project):
    (project / "empty").mkdir()
    result = run("plot", "empty", "--out", "x.png", cwd=project)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: plot: no TensorBoard event files under 'empty'; give a run directory such as runs/quickstart"
    ]
    assert not (project / "x.png").exists()


def test_plot_reads_runs_logged_under_the_names_before_the_train_val_scheme(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    from lit_pretrain.plot import PANELS, event_directories, present, read_scalars

    with SummaryWriter(tmp_path / "old") as writer:
        for step in range(3):
            for tag in ("train_loss", "val_loss", "val_bpb", "lr", "train/grad_norm"):
                writer.add_scalar(tag, 1.0 / (step + 1), step)
    ((_, directory),) = event_directories([str(tmp_path / "old")])
    scalars = read_scalars(directory)
    assert present(scalars, PANELS["loss (nats/token)"]) == ["train_loss", "val_loss"]
    assert present(scalars, PANELS["learning rate"]) == ["lr"]
    assert present(scalars, PANELS["bits per byte"]) == ["val_bpb"]
