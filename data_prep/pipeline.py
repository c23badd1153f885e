"""Runs the stages in order and makes the run resumable.

    inputs ─► documents (read → clean → filter → digest → MinHash; parallel, one work file per input)
           ─► dedup (exact, then MinHash LSH near-duplicates; one pass in pipeline order)
           ─► tokenizer (trained on a sample of the kept train documents, or loaded)
           ─► tokens (one work file per input and split)
           ─► shards + duplicates.jsonl + report.json + manifest.json (written last)

Work files live in ``<output_dir>/work/`` under names that carry the fingerprint of what decides their content
(see :mod:`data_prep.workdir`), so a re-run after a kill reuses every finished file and redoes the rest, and a
changed config key redoes only the stages that read it. The result is byte-identical to an uninterrupted run
(``report.json`` aside: it records this run's timings).
"""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict
from functools import partial
from itertools import chain, islice
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from data_prep.batching import batched
from data_prep.config import NON_SEMANTIC_KEYS, DataPrepConfig
from data_prep.dedup.exact import DuplicateFinder
from data_prep.dedup.minhash import SIGNATURE_FIELDS
from data_prep.engines import make_engine
from data_prep.errors import DataPrepError
from data_prep.process import ParallelProcessor, ProcessedBatch
from data_prep.read.readers import read_input
from data_prep.read.sources import Document, Input, ReadStats, list_inputs
from data_prep.report import Report
from data_prep.split import TRAIN, assign_split
from data_prep.tokens.shards import (
    FORMAT_VERSION,
    MANIFEST_FILE,
    ShardWriter,
    dtype_for_vocab,
    read_manifest,
    sha256_file,
)
from data_prep.tokens.tokenizer import (
    HF_TOKENIZER_DIR,
    TOKENIZER_FILE,
    encode_documents,
    end_of_text_id,
    load_comparison_tokenizer,
    load_or_train_tokenizer,
    text_tokens,
)
from data_prep.workdir import (
    TMP_GLOB,
    atomic_path,
    file_identity,
    fingerprint,
    read_json,
    tmp_sibling,
    write_json_atomic,
)

WORK_DIR = "work"
REPORT_ONLY_TOKENIZER_KEYS = ("compare_with",)
DUPLICATES_FILE = "duplicates.jsonl"
REPORT_FILE = "report.json"
# Documents handed to a worker process at a time: large enough to amortise inter-process transfer.
PROCESS_BATCH_DOCUMENTS = 256
# Documents copied into the shards at a time by the final packing step.
PACK_CHUNK_DOCUMENTS = 65536


def resolve_workers(num_workers: int) -> int:
    return num_workers if num_workers > 0 else (os.cpu_count() or 1)


# -- work files of the documents stage --------------------------------------------------------------------
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


def _write_batch(batch: ProcessedBatch, jsonl, sig) -> None:
    for document, digest in zip(batch.documents, batch.digests):
        record = {"digest": digest.hex(), "source": document.source, "position": document.position}
        if document.url is not None:
            record["url"] = document.url
        record["text"] = document.text
        jsonl.write(json.dumps(record, ensure_ascii=False) + "\n")
    if batch.signatures is not None:
        sig.write(np.ascontiguousarray(batch.signatures).tobytes())


# -- the whole run -----------------------------------------------------------------------------------------
def _stage_fingerprints(config: DataPrepConfig, inputs: list[Input]) -> dict:
    """One fingerprint per stage, each covering its own keys and the stages it reads."""
    near = config.dedup.near
    # The MinHash signatures are computed in the documents stage; threshold and bands/rows only matter to dedup.
    signature_keys = {k: getattr(near, k) for k in SIGNATURE_FIELDS} if near.enabled else None
    documents = fingerprint(FORMAT_VERSION, config.read, config.clean, config.filters, signature_keys)
    per_input = {item.id: fingerprint(documents, _input_identity(item)) for item in inputs}
    dedup = fingerprint(sorted(per_input.items()), config.dedup)
    pretrained = config.tokenizer.pretrained
    pretrained_files = _input_identity_of_path(Path(pretrained)) if pretrained else None
    # compare_with changes only report.json: leave it out, so setting it never retrains or re-tokenizes.
    tokenizer_keys = {k: v for k, v in asdict(config.tokenizer).items() if k not in REPORT_ONLY_TOKENIZER_KEYS}
    tokenizer = fingerprint(dedup, config.split, tokenizer_keys, pretrained_files)
    tokens = fingerprint(tokenizer, config.split)
    shards = fingerprint(tokens, config.shards)
    return {"documents": per_input, "dedup": dedup, "tokenizer": tokenizer, "tokens": tokens, "shards": shards}


def _input_identity(item: Input) -> list:
    """Path, size and modification time of the input (of every file inside it, for a directory input)."""
    return _input_identity_of_path(Path(item.path))


def _input_identity_of_path(path: Path) -> list:
    if path.is_dir():
        return [file_identity(p) for p in sorted(path.rglob("*")) if p.is_file()]
    return file_identity(path) if path.exists() else [str(path)]


def _finished_dataset(output: Path, expected: str) -> dict | None:
    if not (output / MANIFEST_FILE).is_file():
        return None
    try:
        manifest = read_manifest(output)
    except DataPrepError:
        return None
    if manifest.get("fingerprint") != expected:
        return None
    names = [name for split in manifest["splits"].values() for name in split["files"]]
    if not all((output / name).is_file() for name in [*names, manifest["tokenizer"]["file"]]):
        return None
    return manifest


def prepare(config: DataPrepConfig, show_progress: bool = True) -> dict:
    """Prepare ``config.output_dir`` (or reuse it when already finished) and return its manifest."""
    output = Path(config.output_dir)
    inputs = list_inputs(config.sources, config.read)
    fingerprints = _stage_fingerprints(config, inputs)
    manifest = _finished_dataset(output, fingerprints["shards"])
    if manifest is not None:
        print(f"data_prep: reusing finished dataset in {output} (same config and inputs)")
        return manifest
    if output.exists() and (not output.is_dir() or _foreign_directory(output)):
        raise DataPrepError(f"output_dir '{output}' exists and is not a prepared dataset; choose another --output_dir")
    created_here = not output.exists()
    output.mkdir(parents=True, exist_ok=True)
    (output / MANIFEST_FILE).unlink(missing_ok=True)  # from here on the directory is not a finished dataset
    try:
        return _run(config, inputs, fingerprints, output, show_progress)
    except DataPrepError:
        # Bad input: nothing useful was made, so leave no trace. (After a crash or a kill the work files stay,
        # for the next run to reuse.)
        if created_here:
            shutil.rmtree(output, ignore_errors=True)
        raise


def _foreign_directory(output: Path) -> bool:
    """Non-empty and neither a finished dataset nor an interrupted run of ours."""
    return any(output.iterdir()) and not (output / MANIFEST_FILE).exists() and not (output / WORK_DIR).is_dir()


def _run(config: DataPrepConfig, inputs: list[Input], fingerprints: dict, output: Path, show: bool) -> dict:
    work = output / WORK_DIR
    report = Report()
    with report.stage("documents"):  # starting Ray, when it is the engine, counts here
        engine = make_engine(config.engine, config.ray, resolve_workers(config.num_workers), work)
    try:
        return _run_stages(config, inputs, fingerprints, output, show, work, report, engine)
    finally:
        engine.close()


def _run_stages(config, inputs, fingerprints, output: Path, show: bool, work: Path, report: Report, engine) -> dict:
    splits = config.split.splits()
    started = report.stages["documents"]["seconds"]
    with report.stage("documents"):
        documents_dir = work / "documents"
        _process_inputs(config, inputs, documents_dir, fingerprints["documents"], report, show, engine)
    report.stages["documents"]["seconds"] = round(report.stages["documents"]["seconds"] + started, 3)
    if report.documents_kept_before_dedup == 0:
        raise DataPrepError(
            f"no documents left after reading, cleaning and filtering {len(inputs)} input(s) from {config.sources} "
            f"({report.read['documents']} read, removed by filter: {dict(report.removed) or 'none'}); "
            "check the sources, clean.min_chars and the filters' thresholds"
        )

    with report.stage("dedup"):
        dedup_dir = work / f"dedup.{fingerprints['dedup']}"
        _deduplicate(config, inputs, documents_dir, fingerprints["documents"], dedup_dir, report, show)
    kept_documents = KeptDocuments(documents_dir, fingerprints["documents"], dedup_dir, config.split)

    with report.stage("tokenizer"):
        tokenizer_dir = work / f"tokenizer.{fingerprints['tokenizer']}"
        train_texts = (d.text for item in inputs for d, _, split in kept_documents(item) if split == TRAIN)
        tokenizer, tokenizer_info = load_or_train_tokenizer(
            config.tokenizer, tokenizer_dir, lambda: _training_sample(train_texts, report, config), show
        )
    eot = end_of_text_id(tokenizer, config.tokenizer)
    # The model's embedding rows: the configured size for a trained tokenizer (it may come out a little smaller
    # on a small corpus, and the model shape should not depend on that), the real size for a pretrained one.
    vocab_size = tokenizer.get_vocab_size()
    if config.tokenizer.pretrained is None:
        vocab_size = max(config.tokenizer.vocab_size, vocab_size)
    dtype = dtype_for_vocab(vocab_size)

    with report.stage("tokens"):
        tokens_dir = work / f"tokens.{fingerprints['tokens']}"
        tokenizer_file = tokenizer_dir / TOKENIZER_FILE
        parts = _tokenize(inputs, kept_documents, tokenizer_file, eot, dtype, splits, tokens_dir, config, show, engine)

    if getattr(engine, "peak_worker_rss", 0):  # Ray workers of the documents and tokens stages
        report.engine["peak_worker_rss_mb"] = round(engine.peak_worker_rss / 1e6, 1)

    with report.stage("shards"):
        split_info = _pack(parts, inputs, splits, dtype, tokens_dir, output, config)
    for split, info in split_info.items():
        report.add_split(split, info)
    for split in (TRAIN, "val"):
        if split_info[split]["documents"] == 0:
            raise DataPrepError(
                f"the {split} split is empty ({report.documents_kept} documents kept, split.val_fraction="
                f"{config.split.val_fraction}); add documents or raise split.val_fraction"
            )

    shutil.copyfile(tokenizer_dir / TOKENIZER_FILE, output / TOKENIZER_FILE)
    _replace_tree(tokenizer_dir / HF_TOKENIZER_DIR, output / HF_TOKENIZER_DIR)
    shutil.copyfile(dedup_dir / DUPLICATES_FILE, output / DUPLICATES_FILE)
    semantic_config = {k: v for k, v in config.to_dict().items() if k not in NON_SEMANTIC_KEYS}
    for key in REPORT_ONLY_TOKENIZER_KEYS:
        semantic_config["tokenizer"].pop(key)
    report.tokenizer = _tokenizer_report(config, inputs, kept_documents, split_info, show)
    manifest = {
        "format_version": FORMAT_VERSION,
        "dtype": dtype.name,
        "vocab_size": vocab_size,
        "end_of_text_id": eot,
        "tokenizer": {
            **tokenizer_info,
            "file": TOKENIZER_FILE,
            "hf_dir": HF_TOKENIZER_DIR,
            "sha256": sha256_file(output / TOKENIZER_FILE),
        },
        "splits": split_info,
        "sources": list(config.sources),
        "inputs": len(inputs),
        "stats": report.counts(),
        "fingerprint": fingerprints["shards"],
        "config": semantic_config,
    }
    write_json_atomic(output / REPORT_FILE, report.as_dict())
    write_json_atomic(output / MANIFEST_FILE, manifest)
    _prune_work(work, fingerprints, {dedup_dir, tokenizer_dir, tokens_dir})
    if show:
        print(report.funnel())
    return manifest


def _tokenizer_report(config, inputs, kept_documents, split_info: dict, show: bool) -> dict:
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


def _process_inputs(config, inputs, directory, per_input_fp, report, show: bool, engine) -> None:
    """Documents stage: each unfinished input goes through the engine (local pool or Ray tasks) into its work
    files."""
    todo = [item for item in inputs if not DocumentsFile(directory, item.id, per_input_fp[item.id]).done()]
    processor_args = (config.clean, config.filters, config.dedup.near, config.dedup.near.enabled)
    progress = tqdm(
        total=len(inputs), initial=len(inputs) - len(todo), desc="read+clean+filter", unit="input", disable=not show
    )
    if todo:
        job = partial(process_input, config, directory, per_input_fp)
        engine.run_inputs(job, todo, processor_args, progress.update)
    report.engine = {"name": engine.name, "workers": engine.workers}
    progress.close()
    for item in inputs:
        stats = read_json(DocumentsFile(directory, item.id, per_input_fp[item.id]).stats)
        report.add_read(stats["read"], stats["removed"], stats["kept"], stats["kept_bytes"])


def process_input(config: DataPrepConfig, directory: Path, per_input_fp: dict, item: Input, pool) -> None:
    """The documents stage of one input, as every engine runs it: read, then clean, filter and hash through
    ``pool``, into the input's work files (renamed into place when complete)."""
    _process_one_input(config, item, DocumentsFile(directory, item.id, per_input_fp[item.id]), pool)


def _process_one_input(config: DataPrepConfig, item: Input, files: DocumentsFile, pool: ParallelProcessor) -> None:
    stats, removed, kept, kept_bytes = ReadStats(), Counter(), 0, 0
    with atomic_path(files.jsonl) as jsonl_tmp, atomic_path(files.signatures) as sig_tmp:
        with open(jsonl_tmp, "w", encoding="utf-8") as jsonl, open(sig_tmp, "wb") as sig:
            for batch in pool.map(batched(read_input(item, config.read, stats), PROCESS_BATCH_DOCUMENTS)):
                _write_batch(batch, jsonl, sig)
                removed.update(batch.removed)
                kept += len(batch.documents)
                kept_bytes += sum(len(d.text.encode("utf-8", "surrogatepass")) for d in batch.documents)
        # The stats file goes first: the .jsonl (renamed last, on leaving this block) marks the input done.
        write_json_atomic(
            files.stats, {"read": asdict(stats), "removed": dict(removed), "kept": kept, "kept_bytes": kept_bytes}
        )


def _deduplicate(config, inputs, documents_dir, per_input_fp, dedup_dir: Path, report: Report, show: bool) -> None:
    """One pass in pipeline order; writes each input's boolean keep mask. Reused when already done."""
    done_marker = dedup_dir / "done.json"
    if not done_marker.is_file():
        finder = DuplicateFinder(config.dedup)
        with atomic_path(dedup_dir / DUPLICATES_FILE) as audit_tmp, open(audit_tmp, "w") as audit:
            for item in tqdm(inputs, desc="dedup", unit="input", disable=not show):
                files = DocumentsFile(documents_dir, item.id, per_input_fp[item.id])
                mask = finder.process_input(files.documents(), files.signatures, audit)
                with atomic_path(dedup_dir / f"{item.id}.keep.npy") as tmp:
                    with open(tmp, "wb") as handle:
                        np.save(handle, mask)
        write_json_atomic(done_marker, finder.counts())
    counts = read_json(done_marker)
    report.add_duplicates(counts["exact"], counts["near"])


def _train_bytes_estimate(report: Report, config: DataPrepConfig) -> float:
    held_out = config.split.val_fraction + config.split.test_fraction
    return report.bytes_kept_before_dedup * (1.0 - held_out)


def _training_sample(texts, report: Report, config: DataPrepConfig) -> list[str]:
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


def _tokenize(inputs, kept_documents, tokenizer_file, eot, dtype, splits, tokens_dir, config, show, engine) -> dict:
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


def _pack(parts: dict, inputs: list[Input], splits, dtype, tokens_dir: Path, output: Path, config) -> dict:
    """Shards stage: concatenate the per-input token parts in pipeline order into the final shards, a bounded
    number of documents at a time (memory does not grow with the size of an input)."""
    for stale in [*output.glob("*.bin"), *output.glob("*.idx"), *output.glob(TMP_GLOB)]:
        stale.unlink()
    split_info = {}
    itemsize = np.dtype(dtype).itemsize
    for split in splits:
        writer = ShardWriter(output, split, dtype, config.shards.tokens_per_shard)
        for item in inputs:
            info = parts[item.id][split]
            if info["documents"] == 0:
                continue
            tokens_path = tokens_dir / f"{item.id}.{split}.bin"
            lengths = np.fromfile(tokens_dir / f"{item.id}.{split}.len", dtype=np.int64)
            ends = np.cumsum(lengths)
            bytes_written = 0
            for first in range(0, len(lengths), PACK_CHUNK_DOCUMENTS):
                last = min(first + PACK_CHUNK_DOCUMENTS, len(lengths))
                begin = int(ends[first - 1]) if first else 0
                tokens = np.fromfile(
                    tokens_path, dtype=dtype, count=int(ends[last - 1]) - begin, offset=begin * itemsize
                )
                # The part's byte count belongs to the split as a whole; credit it with the last chunk.
                chunk_bytes = info["bytes"] - bytes_written if last == len(lengths) else 0
                writer.add(tokens, lengths[first:last], chunk_bytes)
                bytes_written += chunk_bytes
        split_info[split] = writer.close()
    return split_info


def _prune_work(work: Path, fingerprints: dict, current_dirs: set[Path]) -> None:
    """After a finished run, drop work files of other configurations or inputs, so repeated runs with changing
    configs do not pile up copies of the corpus. The current run's work files stay for the next re-run."""
    documents_dir = work / "documents"
    current = set()
    for input_id, fingerprint_ in fingerprints["documents"].items():
        files = DocumentsFile(documents_dir, input_id, fingerprint_)
        current |= {files.jsonl.name, files.signatures.name, files.stats.name}
    for path in documents_dir.iterdir():
        if path.name not in current:
            path.unlink()
    for path in work.iterdir():
        if path.is_dir() and path.name != "documents" and path not in current_dirs:
            shutil.rmtree(path)


def _replace_tree(source: Path, destination: Path) -> None:
    if destination.exists():
        shutil.rmtree(destination)
    shutil.copytree(source, destination)


def summary(manifest: dict) -> str:
    parts = []
    for split, info in manifest["splits"].items():
        parts.append(f"{split}: {info['documents']} documents, {info['tokens']:,} tokens, {info['bytes']:,} bytes")
    return "; ".join(parts)
