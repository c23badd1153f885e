"""The tokenizer and tokens stages: the training sample, per-input token parts (by whichever engine runs them),
and the tokenizer's bytes-per-token report. Packing the parts into shards: :mod:`data_prep.tokens.pack`."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from functools import partial
from itertools import chain, islice
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from data_prep.batching import batched
from data_prep.config import DataPrepConfig
from data_prep.documents import DocumentsFile
from data_prep.read.sources import Document, Input
from data_prep.report import Report
from data_prep.split import assign_split
from data_prep.tokens.tokenizer import (
    encode_documents,
    load_comparison_tokenizer,
    text_tokens,
)
from data_prep.workdir import (
    read_json,
    tmp_sibling,
    write_json_atomic,
)


def tokenizer_report(config, inputs, kept_documents, split_info: dict, show: bool) -> dict:
    """Bytes per token per split (text tokens: the end-of-text separators left out), and the same for
    ``tokenizer.compare_with`` on the same kept text when it is given."""

    def per_split(tokens: dict[str, int]) -> dict[str, float]:
        return {s: round(split_info[s]["bytes"] / tokens[s], 4) for s in split_info if tokens.get(s)}

    ours = {split: info["tokens"] - info["documents"] for split, info in split_info.items()}
    result = {"bytes_per_token": per_split(ours)}
    if config.tokenizer.compare_with is not None:
        other = load_comparison_tokenizer(config.tokenizer.compare_with)
        theirs: Counter = Counter()
        for item in tqdm(inputs, desc="compare tokenizer", unit="input", disable=not show):
            for batch in batched(kept_documents(item), config.shards.batch_documents):
                for split in {s for _, _, s in batch}:
                    theirs[split] += text_tokens(other, [d.text for d, _, s in batch if s == split])
        result["compare_with"] = {"path": config.tokenizer.compare_with, "bytes_per_token": per_split(theirs)}
    return result


def _train_bytes_estimate(report: Report, config: DataPrepConfig) -> float:
    held_out = config.split.val_fraction + config.split.test_fraction
    return report.bytes_kept_before_dedup * (1.0 - held_out)


def training_sample(texts, report: Report, config: DataPrepConfig) -> list[str]:
    """Kept train documents, spread across the whole corpus, up to ``tokenizer.sample_bytes``."""
    fraction = min(1.0, config.tokenizer.sample_bytes / max(1, _train_bytes_estimate(report, config)))
    sample, total = [], 0
    for index, text in enumerate(texts):
        # Deterministic thinning: keep every k-th document so the sample spans all inputs.
        if fraction < 1.0 and int(index * fraction) == int((index + 1) * fraction):
            continue
        sample.append(text)
        total += len(text.encode("utf-8", "surrogatepass"))
        if total >= config.tokenizer.sample_bytes:
            break
    return sample


class KeptDocuments:
    """``(document, digest, split)`` of an input's documents that dedup kept, read from the work files (so a Ray
    task on another node reads them too)."""

    def __init__(self, documents_dir: Path, per_input_fp: dict, dedup_dir: Path, split) -> None:
        self.documents_dir, self.per_input_fp, self.dedup_dir, self.split = (
            documents_dir,
            per_input_fp,
            dedup_dir,
            split,
        )

    def __call__(self, item: Input) -> Iterator[tuple[Document, bytes, str]]:
        files = DocumentsFile(self.documents_dir, item.id, self.per_input_fp[item.id])
        mask = np.load(self.dedup_dir / f"{item.id}.keep.npy")
        for (document, digest), kept in zip(files.documents(), mask):
            if kept:
                yield document, digest, assign_split(digest, self.split)


def _tokens_marker(tokens_dir: Path, item: Input) -> Path:
    return tokens_dir / f"{item.id}.done.json"


def run_tokens_stage(
    inputs, kept_documents, tokenizer_file, eot, dtype, splits, tokens_dir, config, show, engine
) -> dict:
    """Tokens stage: per input, per split, the flat tokens and document lengths, through the engine (here, or
    Ray tasks over groups of inputs). Returns input id -> info."""
    todo = [item for item in inputs if not _tokens_marker(tokens_dir, item).is_file()]
    progress = tqdm(total=len(inputs), initial=len(inputs) - len(todo), desc="tokenize", unit="input", disable=not show)
    job = partial(
        tokenize_inputs, kept_documents=kept_documents, tokenizer_file=str(tokenizer_file), eot=eot, dtype=dtype,
        splits=splits, tokens_dir=tokens_dir, batch_size=config.shards.batch_documents,
    )  # fmt: skip
    engine.map_groups(job, todo, tokens_dir, progress.update)
    progress.close()
    return {item.id: read_json(_tokens_marker(tokens_dir, item)) for item in inputs}


def tokenize_inputs(
    items, advance, *, kept_documents, tokenizer_file: str, eot: int, dtype, splits, tokens_dir: Path, batch_size: int
) -> int:
    """The tokens stage of some inputs, as every engine runs it.

    ``encode_batch`` is parallel inside one call, so small inputs (a source file each, typically) are encoded
    together, ``batch_size`` documents per call; a large input streams through in such batches. Each input gets
    its own part files and completion marker, so a killed run resumes per input (and the parts do not depend on
    which inputs were encoded together)."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(tokenizer_file)
    pending: list[tuple[Input, list]] = []  # small unfinished inputs waiting to be encoded together

    def flush() -> None:
        texts = [document.text for _, batch in pending for document, _, _ in batch]
        tokens, lengths = encode_documents(tokenizer, texts, eot, dtype)
        first_document = first_token = 0
        for item, batch in pending:
            count = int(lengths[first_document : first_document + len(batch)].sum())
            with _SplitPartWriters(tokens_dir, item.id, splits, dtype) as writers:
                writers.write_batch(
                    batch,
                    tokens[first_token : first_token + count],
                    lengths[first_document : first_document + len(batch)],
                )
            write_json_atomic(_tokens_marker(tokens_dir, item), writers.info)
            first_document += len(batch)
            first_token += count
        if advance is not None:
            advance(len(pending))
        pending.clear()

    for item in items:
        documents = kept_documents(item)
        head = list(islice(documents, batch_size))
        if len(head) < batch_size:
            pending.append((item, head))
            if sum(len(batch) for _, batch in pending) >= batch_size:
                flush()
            continue
        with _SplitPartWriters(tokens_dir, item.id, splits, dtype) as writers:
            for batch in chain([head], batched(documents, batch_size)):
                tokens, lengths = encode_documents(tokenizer, [d.text for d, _, _ in batch], eot, dtype)
                writers.write_batch(batch, tokens, lengths)
        write_json_atomic(_tokens_marker(tokens_dir, item), writers.info)
        if advance is not None:
            advance(1)
    if pending:
        flush()
    return len(items)


class _SplitPartWriters:
    """Per split, ``<input>.<split>.bin`` (tokens) and ``.len`` (document lengths), renamed on success."""

    def __init__(self, directory: Path, input_id: str, splits, dtype) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.paths = {
            split: (directory / f"{input_id}.{split}.bin", directory / f"{input_id}.{split}.len") for split in splits
        }
        self.handles = {}
        self.info = {split: {"tokens": 0, "documents": 0, "bytes": 0} for split in splits}

    def __enter__(self) -> "_SplitPartWriters":
        for split, (tokens_path, lengths_path) in self.paths.items():
            self.handles[split] = (open(tmp_sibling(tokens_path), "wb"), open(tmp_sibling(lengths_path), "wb"))
        return self

    def write_batch(self, batch: list, tokens: np.ndarray, lengths: np.ndarray) -> None:
        """``batch``: (document, digest, split) triples; ``tokens``/``lengths``: their encoding, in order."""
        assignments = np.array([split for _, _, split in batch])
        for split, (tokens_handle, lengths_handle) in self.handles.items():
            selected = assignments == split
            if not selected.any():
                continue
            tokens_handle.write(tokens[np.repeat(selected, lengths)].tobytes())
            lengths_handle.write(lengths[selected].astype(np.int64).tobytes())
            info = self.info[split]
            info["tokens"] += int(lengths[selected].sum())
            info["documents"] += int(selected.sum())
            info["bytes"] += sum(len(d.text.encode("utf-8", "surrogatepass")) for d, _, s in batch if s == split)

    def __exit__(self, exc_type, *exc) -> None:
        for tokens_handle, lengths_handle in self.handles.values():
            tokens_handle.close()
            lengths_handle.close()
        for path in (p for pair in self.paths.values() for p in pair):
            if exc_type is None:
                os.replace(tmp_sibling(path), path)
            else:
                tmp_sibling(path).unlink(missing_ok=True)
