"""Preemption with a real signal to a real training process: SIGTERM or SIGUSR1 saves ``last`` after the current
step and exits 0; ``--ckpt_path last`` then continues exactly as the uninterrupted run. And ``--ckpt_path last``
before any checkpoint exists starts fresh with one visible line."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from tests.e2e.helpers import environment, make_project, read_records, recorder_config, run

COMMON = ["--config", "tiny.yaml", "--trainer.max_steps", "30", "--checkpoint.every_n_train_steps", "100",
          "--trainer.val_check_interval", "100", "--sample.enabled", "false"]  # fmt: skip


@pytest.fixture(scope="module")
def project(tmp_path_factory, stdlib_corpus):
    project = make_project(tmp_path_factory.mktemp("preemption"), stdlib_corpus)
    config, record = recorder_config(project, "reference")
    result = run("fit", *COMMON, "--config", config, "--trainer.logger.init_args.name", "reference", cwd=project)
    assert result.returncode == 0, result.stderr[-3000:]
    return project, read_records(record)


@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGUSR1"])
def test_a_signal_saves_last_stops_cleanly_and_the_resume_is_exact(project, signal_name):
    project, expected = project
    name = f"preempted-{signal_name}"
    config, record = recorder_config(project, f"{name}-first", pause_s=0.2)  # slow enough to be signalled mid-way
    args = [sys.executable, "-m", "lit_pretrain", "fit", *COMMON, "--config", config,
            "--trainer.logger.init_args.name", name]  # fmt: skip
    process = subprocess.Popen(args, cwd=project, env=environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)  # fmt: skip
    deadline = time.monotonic() + 300
    while not (record.is_file() and len(record.read_text().splitlines()) >= 5):
        assert process.poll() is None and time.monotonic() < deadline, "the run ended before it could be signalled"
        time.sleep(0.05)
    process.send_signal(getattr(signal, signal_name))
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr[-3000:]
    before = read_records(record)
    stopped = before[-1]["step"]
    assert 5 <= stopped < 30  # it stopped early, after a whole optimizer step
    notice = [line for line in stderr.splitlines() if line.startswith(f"lit_pretrain: {signal_name} received")]
    assert notice == [
        f"lit_pretrain: {signal_name} received: saved runs/{name}/checkpoints/last.ckpt after step {stopped}; "
        "resume with --ckpt_path last"
    ]
    config, resumed_record = recorder_config(project, f"{name}-resumed")
    result = run("fit", *COMMON, "--config", config, "--trainer.logger.init_args.name", name, "--ckpt_path", "last",
                 cwd=project)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    after = read_records(resumed_record)
    assert [r["step"] for r in after] == list(range(stopped + 1, 31))  # nothing repeated, nothing skipped
    assert [r["windows"] for r in after] == [r["windows"] for r in expected[stopped:]]
    assert [r["loss"] for r in after] == pytest.approx([r["loss"] for r in expected[stopped:]], rel=1e-5)


def test_ckpt_path_last_without_a_checkpoint_starts_fresh_with_one_line(tmp_path, stdlib_corpus):
    project = make_project(tmp_path, stdlib_corpus)
    result = run("fit", "--config", "tiny.yaml", "--trainer.max_steps", "2", "--sample.enabled", "false",
                 "--ckpt_path", "last", cwd=project)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "lit_pretrain: --ckpt_path last: no checkpoint in runs/tiny/checkpoints yet; starting fresh" in result.stderr
    assert "No checkpoint will be loaded" not in result.stderr  # Lightning's own multi-line warning is not shown
    assert (project / "runs/tiny/checkpoints/last.ckpt").is_file()
