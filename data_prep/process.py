"""Per-document work that runs in parallel worker processes: clean -> quality filters -> digest -> MinHash.

The main process reads documents in order and hands them out in batches; ``multiprocessing``'s ordered
``imap`` returns the results in the same order, so the output never depends on the number of workers.
Workers build their filters once, in :func:`init_worker`.
"""

from __future__ import annotations

import multiprocessing
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace

import numpy as np

from data_prep.dedup.exact import text_digest
from data_prep.dedup.minhash import NearDedupConfig, signatures
from data_prep.quality.clean import CleanConfig, clean_text
from data_prep.quality.filter_config import FilterConfig
from data_prep.quality.filters import QualityFilters
from data_prep.read.sources import Document

# Filter name under which documents shorter than clean.min_chars are counted.
TOO_SHORT = "min_chars"
# Characters of text a batch holds at most (an ever larger document is a batch alone), so that the batches in
# flight (2 per worker) hold a bounded amount of text however large the documents. A batch over this size, one
# huge document, is processed in this process: pickled to a worker and back it would be held twice more in
# each (the documents stage took 2.5 GB that way on a 200 MB document, 0.9 GB processing it here).
BATCH_CHARS = 1 << 24


@dataclass
class ProcessedBatch:
    """What survives of one batch: kept documents (cleaned text) with their digests and MinHash signatures."""

    documents: list[Document] = field(default_factory=list)
    digests: list[bytes] = field(default_factory=list)
    signatures: np.ndarray | None = None  # (len(documents), num_perm) or None when near dedup is off
    removed: Counter = field(default_factory=Counter)  # filter name -> documents removed


class DocumentProcessor:
    """Callable applied to a batch of documents; holds the filters (built once per process)."""

    def __init__(self, clean: CleanConfig, filters: FilterConfig, near: NearDedupConfig, near_enabled: bool) -> None:
        self.clean, self.near, self.near_enabled = clean, near, near_enabled
        self.filters = QualityFilters(filters)

    def __call__(self, batch: list[Document]) -> ProcessedBatch:
        result = ProcessedBatch()
        for document in batch:
            text = clean_text(document.text, self.clean)
            if len(text) < self.clean.min_chars:
                result.removed[TOO_SHORT] += 1
                continue
            removed_by, text = self.filters.apply(text)
            if removed_by is not None:
                result.removed[removed_by] += 1
                continue
            result.documents.append(replace(document, text=text))
            result.digests.append(text_digest(text))
        if self.near_enabled and result.documents:
            result.signatures = signatures([d.text for d in result.documents], self.near)
        return result


_worker_processor: DocumentProcessor | None = None


def init_worker(*args) -> None:
    global _worker_processor
    _worker_processor = DocumentProcessor(*args)


def _process_in_worker(batch: list[Document]) -> ProcessedBatch:
    assert _worker_processor is not None
    return _worker_processor(batch)


def _context():
    """``fork`` where the platform has it (as PyTorch's DataLoader workers do): it needs no re-import of the
    caller's ``__main__``, which ``spawn`` does and which fails for scripts fed on stdin. Elsewhere ``spawn``."""
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


class ParallelProcessor:
    """Maps :class:`DocumentProcessor` over batches with ``workers`` processes (inline when ``workers <= 1``).

    A ``ProcessPoolExecutor`` rather than ``multiprocessing.Pool``: when a worker dies (killed, out of memory,
    failing start-up) the executor raises ``BrokenProcessPool`` instead of silently respawning workers forever.
    """

    def __init__(self, workers: int, *processor_args) -> None:
        self.workers = workers
        self._processor_args = processor_args
        if workers <= 1:
            self._inline = DocumentProcessor(*processor_args)
            self._pool = None
        else:
            self._inline = None
            self._pool = ProcessPoolExecutor(
                workers, mp_context=_context(), initializer=init_worker, initargs=processor_args
            )

    def map(self, batches: Iterable[list[Document]]) -> Iterator[ProcessedBatch]:
        """Results in input order. At most ``2 × workers`` batches are in flight, so memory stays bounded
        however large the input (``Executor.map`` would submit the whole input at once); a batch of more than
        ``BATCH_CHARS`` characters is processed here, after the batches before it."""
        if self._pool is None:
            yield from map(self._inline, batches)
            return
        pending: deque = deque()
        for batch in batches:
            if sum(len(document.text) for document in batch) > BATCH_CHARS:
                while pending:
                    yield pending.popleft().result()
                yield self._here()(batch)
                continue
            pending.append(self._pool.submit(_process_in_worker, batch))
            if len(pending) >= 2 * self.workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()

    def _here(self) -> DocumentProcessor:
        """A processor in this process, built on first use (its filters may load a model)."""
        if self._inline is None:
            self._inline = DocumentProcessor(*self._processor_args)
        return self._inline

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> "ParallelProcessor":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
