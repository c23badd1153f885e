"""Runs the stages in order: sources -> clean -> exact dedup -> split -> tokenizer -> shards.

Output is built in a hidden temporary directory beside ``output_dir`` and moved into place only when complete,
so a failure or a kill never leaves a half-written dataset. A finished dataset records a fingerprint of the
config and the inputs (paths, sizes, modification times); re-running with the same fingerprint reuses it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path

from tqdm.auto import tqdm

from data_prep.clean import clean_text
from data_prep.config import NON_SEMANTIC_KEYS, DataPrepConfig
from data_prep.dedup import ExactDeduplicator, text_digest
from data_prep.errors import DataPrepError
from data_prep.shards import (
    FORMAT_VERSION,
    MANIFEST_FILE,
    ShardWriter,
    dtype_for_vocab,
    read_manifest,
    sha256_file,
    write_json_atomic,
)
from data_prep.sources import ReadStats, expand_sources, read_documents
from data_prep.split import TRAIN, VAL, assign_split
from data_prep.tokenizer import TOKENIZER_FILE, sample_for_training, save_tokenizer, train_tokenizer

SPLITS = (TRAIN, VAL)


def fingerprint(config: DataPrepConfig, files: list[Path]) -> str:
    """Hash of everything that decides the output's content: semantic config keys and the input files."""
    semantic = {k: v for k, v in config.to_dict().items() if k not in NON_SEMANTIC_KEYS}
    inputs = []
    for path in files:
        stat = path.stat()
        inputs.append([str(path.resolve()), stat.st_size, stat.st_mtime_ns])
    payload = json.dumps({"format": FORMAT_VERSION, "config": semantic, "inputs": inputs}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def _finished_dataset(output: Path, expected_fingerprint: str) -> dict | None:
    if not (output / MANIFEST_FILE).is_file():
        return None
    try:
        manifest = read_manifest(output)
    except DataPrepError:
        return None
    if manifest.get("fingerprint") != expected_fingerprint:
        return None
    names = [name for split in manifest["splits"].values() for name in split["files"]]
    if not all((output / name).is_file() for name in [*names, manifest["tokenizer"]["file"]]):
        return None
    return manifest


def prepare(config: DataPrepConfig, show_progress: bool = True) -> dict:
    """Prepare ``config.output_dir`` (or reuse it when already finished) and return its manifest."""
    if config.num_workers > 0:
        os.environ.setdefault("RAYON_NUM_THREADS", str(config.num_workers))
    output = Path(config.output_dir)
    files = expand_sources(config.sources, config.read)
    expected = fingerprint(config, files)
    manifest = _finished_dataset(output, expected)
    if manifest is not None:
        print(f"data_prep: reusing finished dataset in {output} (same config and inputs)")
        return manifest
    if output.exists() and (not output.is_dir() or (any(output.iterdir()) and not (output / MANIFEST_FILE).exists())):
        raise DataPrepError(f"output_dir '{output}' exists and is not a prepared dataset; choose another --output_dir")

    output.parent.mkdir(parents=True, exist_ok=True)
    for stale in output.parent.glob(f".{output.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    workdir = output.parent / f".{output.name}.tmp-{os.getpid()}"
    workdir.mkdir()
    try:
        manifest = _build(config, files, expected, workdir, show_progress)
        _move_into_place(workdir, output)
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    return manifest


def _move_into_place(workdir: Path, output: Path) -> None:
    previous = output.parent / f".{output.name}.old-{os.getpid()}"
    if output.exists():
        os.replace(output, previous)
    os.replace(workdir, output)
    shutil.rmtree(previous, ignore_errors=True)


def _collect_documents(config: DataPrepConfig, files: list[Path], show_progress: bool):
    """Read, clean, drop exact duplicates and assign splits; returns texts per split and counts."""
    stats = ReadStats()
    dedup = ExactDeduplicator()
    texts: dict[str, list[str]] = {split: [] for split in SPLITS}
    too_short = 0
    progress = tqdm(files, desc="read+clean", unit="file", disable=not show_progress)
    for document in read_documents(progress, config.read, stats):
        text = clean_text(document.text, config.clean)
        if len(text) < config.clean.min_chars:
            too_short += 1
            continue
        digest = text_digest(text)
        if config.dedup.exact and dedup.is_duplicate(digest):
            continue
        texts[assign_split(digest, config.split.val_fraction, config.split.seed)].append(text)
    counts = {
        "files": stats.files,
        "documents_read": stats.documents,
        "bytes_read": stats.bytes,
        "binary_files_skipped": stats.binary_files_skipped,
        "invalid_utf8_documents": stats.invalid_utf8_documents,
        "too_short": too_short,
        "exact_duplicates": dedup.removed,
    }
    return texts, counts


def _build(config: DataPrepConfig, files: list[Path], expected: str, workdir: Path, show_progress: bool) -> dict:
    started = time.perf_counter()
    texts, counts = _collect_documents(config, files, show_progress)
    if not texts[TRAIN]:
        raise DataPrepError(
            f"no training documents left after reading and cleaning {len(files)} file(s) from {config.sources}; "
            "check the sources and clean.min_chars"
        )
    if not texts[VAL]:
        raise DataPrepError(
            f"the validation split is empty ({len(texts[TRAIN])} documents, split.val_fraction={config.split.val_fraction}); "
            "raise split.val_fraction or add documents"
        )

    tokenizer = train_tokenizer(
        sample_for_training(texts[TRAIN], config.tokenizer.sample_bytes), config.tokenizer, show_progress
    )
    save_tokenizer(tokenizer, workdir, config.tokenizer.end_of_text)
    end_of_text_id = tokenizer.token_to_id(config.tokenizer.end_of_text)
    dtype = dtype_for_vocab(config.tokenizer.vocab_size)

    encode = getattr(tokenizer, "encode_batch_fast", tokenizer.encode_batch)
    splits = {}
    for split in SPLITS:
        writer = ShardWriter(workdir, split, dtype, config.shards.tokens_per_shard)
        split_texts = texts[split]
        step = config.shards.batch_documents
        for begin in tqdm(
            range(0, len(split_texts), step), desc=f"tokenize {split}", unit="batch", disable=not show_progress
        ):
            batch = split_texts[begin : begin + step]
            token_lists = [encoding.ids + [end_of_text_id] for encoding in encode(batch, add_special_tokens=False)]
            writer.add_documents(token_lists, sum(len(t.encode("utf-8", errors="surrogatepass")) for t in batch))
        splits[split] = writer.close()

    manifest = {
        "format_version": FORMAT_VERSION,
        "dtype": dtype.name,
        "vocab_size": config.tokenizer.vocab_size,
        "end_of_text_id": end_of_text_id,
        "tokenizer": {
            "file": TOKENIZER_FILE,
            "sha256": sha256_file(workdir / TOKENIZER_FILE),
            "vocab_size": tokenizer.get_vocab_size(),
            "end_of_text": config.tokenizer.end_of_text,
        },
        "splits": splits,
        "sources": list(config.sources),
        "files": len(files),
        "stats": counts,
        "fingerprint": expected,
        "config": config.to_dict(),
        "seconds": round(time.perf_counter() - started, 2),
    }
    write_json_atomic(workdir / MANIFEST_FILE, manifest)
    return manifest


def summary(manifest: dict) -> str:
    stats = manifest["stats"]
    parts = [f"{stats['documents_read']} documents read from {manifest['files']} files"]
    parts.append(f"{stats['exact_duplicates']} exact duplicates removed")
    for split, info in manifest["splits"].items():
        parts.append(f"{split}: {info['documents']} documents, {info['tokens']:,} tokens, {info['bytes']:,} bytes")
    return "; ".join(parts)
