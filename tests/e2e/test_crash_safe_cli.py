"""Kill a real training process with SIGKILL at random moments while it saves a large checkpoint every step, with
the system temporary directory on another filesystem than the run (the usual cluster layout, where Lightning's
own transactional save ends in a copy onto the final name): ``last.ckpt`` always loads, and the run resumes."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.e2e.helpers import environment, make_project, run

OTHER_FILESYSTEM = Path("/dev/shm")
BIG = ["--model.config", '{"n_embd": 512, "n_layer": 8, "n_head": 8}', "--data.batch_size", "1",
       "--checkpoint.every_n_train_steps", "1", "--trainer.val_check_interval", "1000", "--sample.enabled", "false",
       "--trainer.max_steps", "1000"]  # fmt: skip


@pytest.mark.skipif(not OTHER_FILESYSTEM.is_dir(), reason="needs /dev/shm (a second filesystem) for TMPDIR")
def test_sigkill_during_saves_never_leaves_a_last_checkpoint_that_cannot_be_loaded(tmp_path, stdlib_corpus):
    project = make_project(tmp_path, stdlib_corpus)
    if project.stat().st_dev == OTHER_FILESYSTEM.stat().st_dev:
        pytest.skip("/dev/shm is on the run directory's filesystem here")
    last = project / "runs/tiny/checkpoints/last.ckpt"
    env = {**environment(), "TMPDIR": str(OTHER_FILESYSTEM)}
    steps_seen, full_size = [], None
    for _ in range(3):  # three kills mid-save, each round resuming from what the last one left
        before = last.stat().st_mtime_ns if last.is_file() else None
        process = subprocess.Popen([sys.executable, "-m", "lit_pretrain", "fit", "--config", "tiny.yaml", *BIG,
                                    "--ckpt_path", "last"], cwd=project, env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)  # fmt: skip
        deadline = time.monotonic() + 300
        armed = False
        while True:
            assert process.poll() is None and time.monotonic() < deadline, "the run died by itself or never saved"
            if not armed:  # first let this round resume and land one whole save
                if last.is_file() and last.stat().st_mtime_ns != before:
                    time.sleep(0.5)
                    full_size, armed = full_size or last.stat().st_size, True
                time.sleep(0.01)
                continue
            # then kill the moment last.ckpt is being written again (a file smaller than a whole checkpoint:
            # last.ckpt itself, or the partial file an atomic save writes beside it)
            sizes = [f.stat().st_size for f in last.parent.glob("*last.ckpt*")]
            if any(0 < size < 0.9 * full_size for size in sizes):
                process.send_signal(signal.SIGKILL)
                break
            time.sleep(0.001)
        process.wait()
        checkpoint = torch.load(last, map_location="cpu", weights_only=True)  # raises on a truncated file
        steps_seen.append(checkpoint["global_step"])
    assert steps_seen == sorted(steps_seen) and steps_seen[-1] > steps_seen[0]  # each round resumed and went on
    result = run("fit", "--config", "tiny.yaml", *BIG[:-1], str(steps_seen[-1] + 2), "--ckpt_path", "last",
                 cwd=project)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert torch.load(last, map_location="cpu", weights_only=True)["global_step"] == steps_seen[-1] + 2
