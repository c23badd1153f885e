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
from data_prep.errors import naming_full_disk
from data_prep.read.sources import Document, Input
from data_prep.report import Report
from data_prep.split import assign_split
from data_prep.tokens.pieces import text_pieces
from data_prep.tokens.tokenizer import (
    TokenizerConfig,
    encode_documents,
    load_comparison_tokenizer,
    special_tokens,
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
                    texts = [d.text for d, _, s in batch if s == split]
                    theirs[split] += text_tokens(other, texts, config.tokenizer.max_piece_chars)
        result["compare_with"] = {"path": config.tokenizer.compare_with, "bytes_per_token": per_split(theirs)}
    return result


def _train_bytes_estimate(report: Report, config: DataPrepConfig) -> float:
    held_out = config.split.val_fraction + config.split.test_fraction
    return report.bytes_kept_before_dedup * (1.0 - held_out)


def training_sample(texts, report: Report, config: DataPrepConfig) -> Iterator[str]:
    """Kept train documents, spread across the whole corpus, up to ``tokenizer.sample_bytes``, lazily. A document
    longer than ``tokenizer.max_piece_chars`` comes as pieces (cut where the pre-tokenizer ends words anyway, so
    the trainer counts the same words), evenly spaced ones adding up to ``tokenizer.sample_chars_per_document``
    when it is longer than that, and the whole is thinned piece by piece: no document dominates the sample, and
    the trainer never holds one whole."""
    settings = config.tokenizer
    fraction = min(1.0, settings.sample_bytes / max(1, _train_bytes_estimate(report, config)))
    pieces = (piece for text in texts for piece in document_sample(text, settings))
    total = 0
    for index, piece in enumerate(pieces):
        # Deterministic thinning: keep every k-th piece so the sample spans all inputs.
        if fraction < 1.0 and int(index * fraction) == int((index + 1) * fraction):
            continue
        yield piece
        total += len(piece.encode("utf-8", "surrogatepass"))
        if total >= settings.sample_bytes:
            return


def document_sample(text: str, settings: TokenizerConfig) -> Iterator[str]:
    """What one document gives the training sample: its pieces (``settings.max_piece_chars``), every k-th one
    when the document is longer than ``settings.sample_chars_per_document`` (k chosen so that about that many
    characters remain; pieces are cut just under ``max_piece_chars``)."""
    step = max(1, -(-len(text) // settings.sample_chars_per_document))  # ceil; 1 keeps every piece
    pieces = text_pieces(text, settings.max_piece_chars, special_tokens(settings))
    return islice(pieces, 0, None, step)


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
        max_piece_chars=config.tokenizer.max_piece_chars,
    )  # fmt: skip
    engine.map_groups(job, todo, tokens_dir, progress.update)
    progress.close()
    return {item.id: read_json(_tokens_marker(tokens_dir, item)) for item in inputs}


def tokenize_inputs(
    items, advance, *, kept_documents, tokenizer_file: str, eot: int, dtype, splits, tokens_dir: Path, batch_size: int,
    max_piece_chars: int,
) -> int:  # fmt: skip
    """The tokens stage of some inputs, as every engine runs it.

    ``encode_batch`` is parallel inside one call, so small inputs (a source file each, typically) are encoded
    together, ``batch_size`` documents per call; a large input streams through in such batches. A document longer
    than ``max_piece_chars`` is encoded in pieces, at most ``batch_size`` of them per call. Each input gets
    its own part files and completion marker, so a killed run resumes per input (and the parts do not depend on
    which inputs were encoded together)."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(tokenizer_file)
    pending: list[tuple[Input, list]] = []  # small unfinished inputs waiting to be encoded together

    def flush() -> None:
        texts = [document.text for _, batch in pending for document, _, _ in batch]
        tokens, lengths = encode_documents(tokenizer, texts, eot, dtype, max_piece_chars)
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
                texts = [d.text for d, _, _ in batch]
                tokens, lengths = encode_documents(tokenizer, texts, eot, dtype, max_piece_chars)
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
        try:
            for split, paths in self.paths.items():
                self.handles[split] = []
                for path in paths:
                    self.handles[split].append(self._open(path))
        except BaseException as error:  # a full disk at the second file: the first one's is not left behind
            self.__exit__(type(error), error, error.__traceback__)
            raise
        return self

    @staticmethod
    def _open(path: Path):
        with naming_full_disk(path):
            return open(tmp_sibling(path), "wb")

    def write_batch(self, batch: list, tokens: np.ndarray, lengths: np.ndarray) -> None:
        """``batch``: (document, digest, split) triples; ``tokens``/``lengths``: their encoding, in order."""
        assignments = np.array([split for _, _, split in batch])
        for split, (tokens_handle, lengths_handle) in self.handles.items():
            selected = assignments == split
            if not selected.any():
                continue
            tokens_path, lengths_path = self.paths[split]
            with naming_full_disk(tokens_path):
                tokens_handle.write(tokens[np.repeat(selected, lengths)])
            with naming_full_disk(lengths_path):
                lengths_handle.write(lengths[selected].astype(np.int64))
            info = self.info[split]
            info["tokens"] += int(lengths[selected].sum())
            info["documents"] += int(selected.sum())
            info["bytes"] += sum(len(d.text.encode("utf-8", "surrogatepass")) for d, _, s in batch if s == split)

    def __exit__(self, exc_type, *exc) -> None:
        try:
            for split, handles in self.handles.items():
                for path, handle in zip(self.paths[split], handles):
                    with naming_full_disk(path):  # closing flushes the last buffered bytes
                        handle.close()
            if exc_type is None:
                for path in (p for pair in self.paths.values() for p in pair):
                    os.replace(tmp_sibling(path), path)
        finally:
            for path in (p for pair in self.paths.values() for p in pair):
                tmp_sibling(path).unlink(missing_ok=True)
