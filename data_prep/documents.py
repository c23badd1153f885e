"""The documents stage: each input read, cleaned, filtered and hashed (digest, MinHash) into its work files
(``work/documents/<input>.<fingerprint>.jsonl`` + ``.sig`` + ``.stats.json``), by whichever engine runs it."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, replace
from functools import partial
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from data_prep.batching import batched
from data_prep.config import DataPrepConfig
from data_prep.errors import naming_full_disk
from data_prep.process import BATCH_CHARS, ParallelProcessor, ProcessedBatch
from data_prep.read.readers import count_newlines, read_input
from data_prep.read.sources import Document, Input, ReadStats
from data_prep.workdir import (
    atomic_path,
    read_json,
    write_json_atomic,
)

# Documents handed to a worker process at a time: large enough to amortise inter-process transfer.
PROCESS_BATCH_DOCUMENTS = 256


class DocumentsFile:
    """The kept documents of one input: ``.jsonl`` (text, source, position, digest) plus ``.sig`` (raw MinHash
    rows). The ``.jsonl`` is renamed into place last, so its existence marks the input as done."""

    def __init__(self, directory: Path, input_id: str, stage_fingerprint: str) -> None:
        stem = directory / f"{input_id}.{stage_fingerprint}"
        self.jsonl, self.signatures, self.stats = (Path(f"{stem}{ext}") for ext in (".jsonl", ".sig", ".stats.json"))

    def done(self) -> bool:
        return self.jsonl.is_file()

    def documents(self) -> Iterator[tuple[Document, bytes]]:
        with open(self.jsonl, encoding="utf-8") as handle:
            for line in handle:
                record = json.loads(line)
                document = Document(record["text"], record["source"], record["position"], record.get("url"))
                yield document, bytes.fromhex(record["digest"])


def _text_chars(document: Document) -> int:
    return len(document.text)


def _write_batch(batch: ProcessedBatch, jsonl, sig, files: DocumentsFile) -> None:
    with naming_full_disk(files.jsonl):
        for document, digest in zip(batch.documents, batch.digests):
            record = {"digest": digest.hex(), "source": document.source, "position": document.position}
            if document.url is not None:
                record["url"] = document.url
            record["text"] = document.text
            jsonl.write(json.dumps(record, ensure_ascii=False))
            jsonl.write("\n")  # apart: a huge document's line is not copied once more to end it
    if batch.signatures is not None:
        with naming_full_disk(files.signatures):
            sig.write(np.ascontiguousarray(batch.signatures))


def run_documents_stage(config, inputs, directory, per_input_fp, report, show: bool, engine) -> None:
    """Documents stage: each unfinished input goes through the engine (local pool or Ray tasks) into its work
    files."""
    todo = [item for item in inputs if not DocumentsFile(directory, item.id, per_input_fp[item.id]).done()]
    processor_args = (config.clean, config.filters, config.dedup.near, config.dedup.near.enabled)
    progress = tqdm(
        total=len(inputs), initial=len(inputs) - len(todo), desc="read+clean+filter", unit="input", disable=not show
    )
    if todo:
        job = partial(process_input, config, directory, per_input_fp)
        engine.run_inputs(job, number_parts(todo, inputs, engine, directory), processor_args, progress.update)
    report.engine = {"name": engine.name, "workers": engine.workers}
    progress.close()
    for item in inputs:
        stats = read_json(DocumentsFile(directory, item.id, per_input_fp[item.id]).stats)
        report.add_read(item.path, stats["read"], stats["removed"], stats["kept"], stats["kept_bytes"])


def number_parts(todo: list[Input], inputs: list[Input], engine, directory: Path) -> list[Input]:
    """``todo`` with each part of a large file given its first line number: the line breaks before it, counted
    by one engine task per part of that file (so positions stay the file's line numbers)."""
    files = {item.path for item in todo if item.byte_range is not None and not item.first_part}
    if not files:
        return todo
    parts = [item for item in inputs if item.path in files and item.byte_range is not None]  # in file order
    ranges = [(item.path, max(item.byte_range[0] - 1, 0), item.byte_range[1] - 1) for item in parts]
    counts = engine.run_tasks(count_newlines, ranges, directory, lambda *_: None)
    first_lines, before = {}, {}
    for item, count in zip(parts, counts):
        # Line breaks before byte start - 1 end the lines that start before the part; the next line is its first.
        seen = before.get(item.path, 0)
        first_lines[item.id] = 1 if item.first_part else seen + 2
        before[item.path] = seen + count
    return [replace(item, first_position=first_lines[item.id]) if item.id in first_lines else item for item in todo]


def process_input(config: DataPrepConfig, directory: Path, per_input_fp: dict, item: Input, pool) -> None:
    """The documents stage of one input, as every engine runs it: read, then clean, filter and hash through
    ``pool``, into the input's work files (renamed into place when complete)."""
    _process_one_input(config, item, DocumentsFile(directory, item.id, per_input_fp[item.id]), pool)


def _process_one_input(config: DataPrepConfig, item: Input, files: DocumentsFile, pool: ParallelProcessor) -> None:
    stats, removed, kept, kept_bytes = ReadStats(), Counter(), 0, 0
    with atomic_path(files.jsonl) as jsonl_tmp, atomic_path(files.signatures) as sig_tmp:
        # Each file's close (its last buffered bytes) is named by its own path on a full disk; so is each write.
        with (
            naming_full_disk(files.jsonl),
            open(jsonl_tmp, "w", encoding="utf-8") as jsonl,
            naming_full_disk(files.signatures),
            open(sig_tmp, "wb") as sig,
        ):
            documents = read_input(item, config.read, stats)
            for batch in pool.map(batched(documents, PROCESS_BATCH_DOCUMENTS, BATCH_CHARS, _text_chars)):
                _write_batch(batch, jsonl, sig, files)
                removed.update(batch.removed)
                kept += len(batch.documents)
                kept_bytes += sum(len(d.text.encode("utf-8", "surrogatepass")) for d in batch.documents)
        # The stats file goes first: the .jsonl (renamed last, on leaving this block) marks the input done.
        write_json_atomic(
            files.stats, {"read": asdict(stats), "removed": dict(removed), "kept": kept, "kept_bytes": kept_bytes}
        )
