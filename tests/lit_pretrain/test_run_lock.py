"""One run per run directory (``lit_pretrain.run_lock``), with real processes holding and losing the lock. The CLI's
use of it (a second ``fit`` into a running run's directory) is tested in ``tests/e2e/test_preemption_cli.py``, the
takeover after a SIGKILL in ``tests/e2e/test_cli.py``."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

import pytest

from lit_pretrain.errors import ConfigError
from lit_pretrain.run_lock import LOCK_FILE, RunLock
from tests.e2e.helpers import REPO

HOLD = "import sys, time; from lit_pretrain.run_lock import RunLock; RunLock(sys.argv[1]).acquire(); print('held', flush=True); time.sleep(600)"


def holder(directory) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(directory)], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    assert process.stdout.readline().strip() == "held"
    return process


def test_a_live_holder_refuses_a_second_run_and_a_killed_one_is_taken_over(tmp_path, capsys):
    run_dir = tmp_path / "runs" / "tiny"
    process = holder(run_dir)
    try:
        with pytest.raises(ConfigError) as refused:
            RunLock(run_dir).acquire()
        host = socket.gethostname()
        assert str(refused.value).startswith(
            f"run directory '{run_dir}' is in use by PID {process.pid} on host {host} (started "
        )
        assert str(refused.value).endswith(
            "or give this one another run directory (--trainer.logger.init_args.name NEW)"
        )
    finally:
        process.send_signal(signal.SIGKILL)  # dies holding it: no release, its name stays in the file
        process.wait()
    lock = RunLock(run_dir)
    lock.acquire()
    assert (
        f"took over the lock of run directory '{run_dir}' from PID {process.pid} on host {host}"
        in capsys.readouterr().err
    )
    lock.release()
    assert (run_dir / LOCK_FILE).read_text() == ""  # released: nobody named
    second = RunLock(run_dir)
    second.acquire()  # a cleanly released lock is taken without a word
    assert capsys.readouterr().err == ""
    second.release()


def test_abandoning_leaves_the_directory_as_it_was(tmp_path):
    fresh = tmp_path / "runs" / "new"
    lock = RunLock(fresh)
    lock.acquire()
    lock.abandon()
    assert not (tmp_path / "runs").exists()  # created for the lock, removed with it
    used = tmp_path / "used"
    used.mkdir()
    (used / LOCK_FILE).write_text('{"pid": 1, "host": "elsewhere", "started": 0}')  # a crashed run's
    before = (used / LOCK_FILE).read_bytes()
    lock = RunLock(used)
    lock.acquire()
    lock.abandon()
    assert (used / LOCK_FILE).read_bytes() == before and sorted(p.name for p in used.iterdir()) == [LOCK_FILE]


# The child prints its PID once fork() has returned in it, that is after the at-fork hooks ran: the test then knows
# the child has done whatever it does with the lock (printed by the parent, the PID could come before the hook ran).
FORK = (
    "import os, sys, time; from lit_pretrain.run_lock import RunLock; RunLock(sys.argv[1]).acquire(); "
    "child = os.fork()\nif child == 0:\n    print(os.getpid(), flush=True)\ntime.sleep(600)"
)


def test_a_forked_child_outliving_a_killed_run_does_not_keep_its_directory_locked(tmp_path):
    """A DataLoader worker or a data_prep pool process shares the lock's open file; it closes its copy."""
    process = subprocess.Popen([sys.executable, "-c", FORK, str(tmp_path)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    child = int(process.stdout.readline())
    try:
        process.send_signal(signal.SIGKILL)
        process.wait()
        lock = RunLock(tmp_path)
        lock.acquire()  # the child still runs, and does not hold the lock
        lock.release()
    finally:
        os.kill(child, signal.SIGKILL)
