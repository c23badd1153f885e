"""One run per run directory: an advisory lock held for the life of a run.

Two runs writing into one run directory both finish with exit 0 and leave a ``last.ckpt`` of one beside the
``config.yaml`` of the other, interleaved TensorBoard curves, and a later ``--ckpt_path last`` that resumes one
run's weights under the other's config. So global rank 0 of every ``fit``/``validate``/``test`` takes an exclusive
``flock`` on ``<run dir>/.run.lock`` before it writes anything there, and holds it until the process ends:

* the file names its holder (PID, host, start time) while it is held, and is emptied when the run ends;
* the kernel releases the lock of a process that dies (SIGKILL, OOM, a lost node): the next run takes it over
  and, finding the dead holder's name still in the file, says so in one line;
* a second run into a held directory stops with one line naming the directory, the holder and what to do.

``flock`` locks are advisory and local to one kernel, or shared over NFS where the client maps them to POSIX
locks (Linux since 2.6.12); on a filesystem without locks the run goes ahead with one line saying it is unlocked.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path

from lit_pretrain.errors import ConfigError

LOCK_FILE = ".run.lock"


class RunLock:
    """The lock of one run directory: :meth:`acquire`, then :meth:`release` (or :meth:`abandon` to leave the
    directory exactly as it was found, for a run that was refused before it wrote anything)."""

    def __init__(self, directory: Path, rename_hint: str = "--trainer.logger.init_args.name NEW") -> None:
        self.directory = Path(directory)
        self.path = self.directory / LOCK_FILE
        self.rename_hint = rename_hint
        self._handle: int | None = None
        self._previous: bytes | None = None  # the lock file's bytes before we took it (None: it did not exist)
        self._created: list[Path] = []  # directories this lock had to create

    def acquire(self) -> None:
        """Take the lock or raise ``ConfigError`` naming its live holder."""
        missing = []
        for parent in [self.directory, *self.directory.parents]:
            if parent.exists():
                break
            missing.append(parent)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ConfigError(
                f"run directory '{self.directory}' cannot be created ({error.strerror}); give the run a directory it can "
                "write (--trainer.logger.init_args.save_dir DIR)"
            ) from None
        self._created = missing  # innermost first
        while True:
            existed = self.path.exists()
            try:
                handle = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as error:
                self._forget_created()
                raise ConfigError(
                    f"run directory '{self.directory}' cannot be written ({error.strerror}); give the run a directory it "
                    "can write (--trainer.logger.init_args.save_dir DIR)"
                ) from None
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as error:
                os.close(handle)
                if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    holder = self._read_holder()
                    self._forget_created()
                    raise ConfigError(
                        f"run directory '{self.directory}' is in use by {describe(holder)}; wait for that run to end, "
                        f"or give this one another run directory ({self.rename_hint})"
                    ) from None
                if not existed:
                    self.path.unlink(missing_ok=True)
                    self._forget_created()
                if error.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                    sys.stderr.write(
                        f"lit_pretrain: '{self.path}': this filesystem has no file locks; the run is not protected "
                        f"against a second run into '{self.directory}'\n"
                    )
                    return
                raise
            # The file may have been removed (and re-created by someone else) between our open and our lock:
            # then we hold a lock on a name nobody sees; start over on the current file.
            try:
                same = os.fstat(handle).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(handle)
        self._handle = handle
        # A forked child (a DataLoader worker, a data_prep pool process) shares the locked file description: were
        # it to outlive a killed run, it would keep the directory locked. Children close their copy at once.
        os.register_at_fork(after_in_child=self._close_in_child)
        self._previous = self.path.read_bytes() if existed else None
        holder = self._read_holder()
        try:
            self._write(
                json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(), "argv": sys.argv})
            )
        except OSError as error:  # a full disk: leave the file as it was
            self.abandon()
            raise ConfigError(
                f"run directory '{self.directory}' cannot be written ({error.strerror}); free space there or give the "
                f"run another directory ({self.rename_hint})"
            ) from None
        if holder:
            sys.stderr.write(
                f"lit_pretrain: took over the lock of run directory '{self.directory}' from {describe(holder)}, "
                "which ended without releasing it (killed or crashed)\n"
            )

    def _close_in_child(self) -> None:
        if self._handle is not None:
            os.close(self._handle)  # this process's reference only: the parent keeps its lock
            self._handle = None

    def release(self) -> None:
        """Empty the file (no holder) and unlock it."""
        if self._handle is None:
            return
        self._write("")
        self._close()

    def abandon(self) -> None:
        """Put the lock file back as it was found (or remove it, and any directory the lock created) and unlock."""
        if self._handle is None:
            return
        if self._previous is None:
            self.path.unlink(missing_ok=True)  # while we still hold it: nobody else can be using it
            self._forget_created()
        else:
            try:
                self._write(self._previous)
            except OSError:  # a full disk: the file is at worst emptied, which names no holder
                pass
        self._close()

    def _forget_created(self) -> None:
        for directory in self._created:
            try:
                directory.rmdir()
            except OSError:  # not empty any more: someone else writes there
                break
        self._created = []

    def _write(self, content: str | bytes) -> None:
        os.ftruncate(self._handle, 0)
        os.pwrite(self._handle, content.encode() if isinstance(content, str) else content, 0)
        os.fsync(self._handle)

    def _close(self) -> None:
        fcntl.flock(self._handle, fcntl.LOCK_UN)
        os.close(self._handle)
        self._handle = None

    def _read_holder(self) -> dict:
        try:
            return json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return {}


def describe(holder: dict) -> str:
    if not holder:
        return "another process (it has not written its name yet)"
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("started", 0)))
    return f"PID {holder.get('pid')} on host {holder.get('host')} (started {started})"
