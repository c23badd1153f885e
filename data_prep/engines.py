"""Where the per-input work of the documents stage runs: ``--engine local`` (default: this process, documents
fanned out to a local process pool) or ``--engine ray`` (Ray tasks over groups of inputs, on this machine or a
running Ray cluster).

Both call the same per-input function (:func:`data_prep.pipeline.process_input`) and write the same work files
through the same atomic renames, so their outputs are byte-identical and a driver killed mid-run reuses what
either finished. A Ray task whose worker dies is retried by Ray (``max_retries``): its partial files carry the
dead process's id and are never renamed into place. On a cluster, ``output_dir`` must be on storage every node
sees (a shared filesystem); a worker that cannot write there fails the run with one line naming the node and
the directory.

The tokens stage runs the same way (groups of inputs, each task loading the tokenizer from the work directory).
Deduplication runs as a shuffle of Ray tasks (:mod:`data_prep.dedup.shuffle`), the shards stage as one task per
shard (:mod:`data_prep.tokens.pack`); tokenizer training (on a sample) runs in the driver.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from data_prep.errors import DataPrepError, disk_full_error

# Inputs per Ray task: enough that task overhead (milliseconds) and the filters' set-up are amortised over
# many small files, few enough that a retried task redoes little.
RAY_INPUTS_PER_TASK = 32


@dataclass
class RayConfig:
    """The Ray engine (``--engine ray``)."""

    address: str | None = None
    """``null``: start a local Ray on this machine; ``auto`` or ``ray://host:port``: join that running cluster."""
    num_workers: int = 0
    """Parallel tasks at most; 0: the cluster's CPUs."""
    partition_records: int = 4_000_000
    """Deduplication shuffle: records (one per document and LSH band, 32 bytes each) per partition, which is
    what one reduce task holds in memory; the number of partitions follows from the corpus."""

    def __post_init__(self) -> None:
        if int(self.num_workers) < 0:
            raise DataPrepError(f"ray.num_workers must be 0 (the cluster's CPUs) or more, got {self.num_workers}")
        if int(self.partition_records) < 1:
            raise DataPrepError(f"ray.partition_records must be at least 1, got {self.partition_records}")


def require_ray():
    try:
        import ray
    except ImportError:
        raise DataPrepError("--engine ray needs Ray: pip install -e '.[ray]' (or pip install 'ray[default]')") from None
    return ray


class LocalEngine:
    """This process reads each input in turn; a pool of ``workers`` processes cleans, filters and hashes."""

    name = "local"
    dedup_as_shuffle = False  # one pass in this process (data_prep.dedup.exact)

    def __init__(self, workers: int) -> None:
        self.workers = workers

    def run_inputs(self, job: Callable[..., None], items: list, processor_args: tuple, advance: Callable) -> None:
        """The documents stage: ``job(item, pool)`` per input, documents through the process pool."""
        from data_prep.process import ParallelProcessor

        with ParallelProcessor(self.workers if items else 0, *processor_args) as pool:
            for item in items:
                job(item, pool)
                advance(1)

    def map_groups(self, function: Callable[..., int], items: list, directory: Path, advance: Callable) -> None:
        """``function(items, advance)`` over all the items, here."""
        if items:
            function(items, advance)

    def run_tasks(self, function: Callable, arguments: list[tuple], directory: Path, advance: Callable) -> list:
        """``function(*args)`` for each tuple of ``arguments``, here, in order; their results in order."""
        results = []
        for args in arguments:
            results.append(function(*args))
            advance(1)
        return results

    def close(self) -> None:
        pass


def _documents_group(job: Callable[..., None], processor_args: tuple, items: list, advance: Callable | None) -> int:
    """The documents stage of a group of inputs in this process, documents processed inline."""
    from data_prep.process import ParallelProcessor

    with ParallelProcessor(0, *processor_args) as inline:
        for item in items:
            job(item, inline)
            if advance is not None:
                advance(1)
    return len(items)


def task_groups(items: list, size: int) -> list[list]:
    """Consecutive groups of at most ``size`` inputs, except that a part of a large file is a group alone: it is
    already about ``read.part_mb`` of work."""
    groups: list[list] = []
    current: list = []
    for item in items:
        if getattr(item, "is_part", False):
            groups.extend([current, [item]] if current else [[item]])
            current = []
            continue
        current.append(item)
        if len(current) == size:
            groups.append(current)
            current = []
    return [*groups, current] if current else groups


def _run_task(function: Callable, args: tuple, directory: str) -> tuple[object, int]:
    """A Ray task: ``function(*args)`` in this worker process. Returns (its result, the worker's peak resident
    memory in bytes while running it: on Linux the peak is reset first, so a long-lived worker's earlier tasks
    do not count; elsewhere the process's peak so far)."""
    reset = _reset_peak_rss()
    try:
        Path(directory).mkdir(parents=True, exist_ok=True)
        result = function(*args)
    except OSError as error:
        if error.errno == errno.ENOSPC:  # a full disk, not storage the node cannot reach
            raise disk_full_error(error.filename2 or error.filename or directory) from None
        raise DataPrepError(
            f"a Ray worker on {socket.gethostname()} cannot write to '{directory}' ({error.strerror or error}); "
            "output_dir must be on storage every node sees"
        ) from None
    return result, _peak_rss() if reset else _max_rss()


def _reset_peak_rss() -> bool:
    try:  # Linux: writing 5 to clear_refs resets VmHWM, the peak resident set size
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _peak_rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return _max_rss()


def _max_rss() -> int:
    import resource

    return (
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    )  # Linux reports KiB (macOS bytes: an over-estimate)


class RayEngine:
    """Groups of inputs as Ray tasks, at most ``num_workers`` in flight."""

    name = "ray"
    dedup_as_shuffle = True  # map and reduce tasks (data_prep.dedup.shuffle): no process holds the index

    def __init__(self, config: RayConfig, work_dir: Path) -> None:
        ray = require_ray()
        self.ray, self.work_dir = ray, work_dir
        self.started_here = not ray.is_initialized()
        if self.started_here:
            if config.address not in (None, "auto"):
                check_reachable(config.address)
            options = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
            try:
                if config.address is None:
                    ray.init(**options)
                else:
                    ray.init(address=config.address, **options)
            except Exception as error:  # ConnectionError, ValueError, RuntimeError: Ray's errors differ by case
                where = config.address or "a local Ray"
                reason = " ".join(str(error).split())[:200]
                raise DataPrepError(
                    f"--ray.address {where}: cannot start or reach a Ray cluster ({reason}); check the address "
                    "(ray start --head prints it) or leave it unset to start Ray on this machine"
                ) from None
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.workers = config.num_workers if config.num_workers > 0 else max(1, cpus)
        self._task = ray.remote(num_cpus=1, max_retries=3)(_run_task)
        self.peak_worker_rss = 0  # the largest peak resident memory any worker reported, bytes

    def run_inputs(self, job: Callable[..., None], items: list, processor_args: tuple, advance: Callable) -> None:
        """The documents stage: groups of inputs as tasks, each processing its documents inline."""
        self.map_groups(partial(_documents_group, job, processor_args), items, self.work_dir, advance)

    def map_groups(self, function: Callable[..., int], items: list, directory: Path, advance: Callable) -> None:
        """``function(group, None)`` as one Ray task per group of ``RAY_INPUTS_PER_TASK`` items."""
        groups = [(group, None) for group in task_groups(items, RAY_INPUTS_PER_TASK)]
        self.run_tasks(function, groups, directory, advance, advance_by_result=True)

    def run_tasks(
        self, function: Callable, arguments: list[tuple], directory: Path, advance: Callable, advance_by_result=False
    ) -> list:
        """``function(*args)`` as one Ray task per tuple of ``arguments``, at most ``workers`` in flight; their
        results in the order of ``arguments``. ``advance`` gets 1 per task (its result with ``advance_by_result``)."""
        ray = self.ray
        results: list = [None] * len(arguments)
        pending: dict = {}  # reference -> index

        def finished(reference) -> None:
            result, peak = ray.get(reference)
            self.peak_worker_rss = max(self.peak_worker_rss, peak)
            results[pending.pop(reference)] = result
            advance(result if advance_by_result else 1)

        def wait_one() -> None:
            done, _ = ray.wait(list(pending), num_returns=1)
            finished(done[0])

        # Stored once: a function that carries data (a partial over the shuffle's spec, the stage's settings)
        # would otherwise be copied into the object store for every task and mapped into every worker.
        function_ref = ray.put(function) if arguments else None
        try:
            for index, args in enumerate(arguments):
                while len(pending) >= self.workers:  # bounded: num_workers tasks in flight, whatever the inputs
                    wait_one()
                pending[self._task.remote(function_ref, args, str(directory))] = index
            while pending:
                wait_one()
        except ray.exceptions.RayTaskError as error:
            cause = getattr(error, "cause", None)
            if isinstance(cause, DataPrepError):
                raise cause from None
            raise
        return results

    def close(self) -> None:
        if self.started_here:
            self.ray.shutdown()


def check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail in seconds, not after Ray's minutes of retries, when nothing listens at ``host:port``."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise DataPrepError(f"--ray.address {address}: expected auto, host:port or ray://host:port")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as error:
        raise DataPrepError(
            f"--ray.address {address}: nothing answers there ({error.strerror or error}); start the cluster with "
            "ray start --head (it prints the address) or leave --ray.address unset to start Ray on this machine"
        ) from None


def make_engine(engine: str, ray: RayConfig, workers: int, work_dir: Path):
    if engine == "local":
        return LocalEngine(workers)
    if engine == "ray":
        return RayEngine(ray, work_dir)
    raise DataPrepError(f"engine '{engine}' is unknown; use local or ray")
