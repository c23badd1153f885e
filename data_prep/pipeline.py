"""Runs the stages in order and makes the run resumable; each stage lives with its data:

    inputs ─► documents (read → clean → filter → digest → MinHash; on the engine, one work file per input;
              :mod:`data_prep.documents`)
           ─► dedup (exact, then MinHash LSH near-duplicates; one pass in pipeline order, or a shuffle on Ray;
                     :mod:`data_prep.dedup.stage`)
           ─► tokenizer (trained on a sample of the kept train documents, or loaded)
           ─► tokens (on the engine, one work file per input and split; :mod:`data_prep.tokens.stage`)
           ─► shards + duplicates.jsonl + report.json + manifest.json (written last)

Work files live in ``<output_dir>/work/`` under names that carry the fingerprint of what decides their content
(see :mod:`data_prep.workdir`), so a re-run after a kill reuses every finished file and redoes the rest, and a
changed config key redoes only the stages that read it. The result is byte-identical to an uninterrupted run
(``report.json`` aside: it records this run's timings).
"""

from __future__ import annotations

import errno
import os
import shutil
from dataclasses import asdict
from pathlib import Path

from data_prep.config import NON_SEMANTIC_KEYS, NON_SEMANTIC_READ_KEYS, DataPrepConfig
from data_prep.dedup.minhash import SIGNATURE_FIELDS
from data_prep.dedup.shuffle import read_digests
from data_prep.dedup.stage import DUPLICATES_FILE, run_dedup_stage
from data_prep.documents import DocumentsFile, run_documents_stage
from data_prep.engines import make_engine
from data_prep.errors import DataPrepError, DiskFullError, disk_full_error
from data_prep.read import python_prose
from data_prep.read.sources import Input, list_files, split_into_parts
from data_prep.report import Report
from data_prep.split import TRAIN, VAL, check_fractions, missing_splits
from data_prep.tokens.pack import pack_shards
from data_prep.tokens.shards import (
    FORMAT_VERSION,
    MANIFEST_FILE,
    dtype_for_vocab,
    read_manifest,
    sha256_file,
)
from data_prep.tokens.stage import KeptDocuments, run_tokens_stage, tokenizer_report, training_sample
from data_prep.tokens.tokenizer import (
    HF_TOKENIZER_DIR,
    TOKENIZER_FILE,
    end_of_text_id,
    load_or_train_tokenizer,
    planned_token_ids,
    planned_vocab_size,
)
from data_prep.workdir import (
    copy_file,
    file_identity,
    fingerprint,
    remove_temporary_files,
    replace_tree,
    write_json_atomic,
)

WORK_DIR = "work"
REPORT_ONLY_TOKENIZER_KEYS = ("compare_with",)
REPORT_FILE = "report.json"


def resolve_workers(num_workers: int) -> int:
    return num_workers if num_workers > 0 else (os.cpu_count() or 1)


def _stage_fingerprints(config: DataPrepConfig, inputs: list[Input]) -> dict:
    """One fingerprint per stage, each covering its own keys and the stages it reads."""
    near = config.dedup.near
    # The MinHash signatures are computed in the documents stage; threshold and bands/rows only matter to dedup.
    signature_keys = {k: getattr(near, k) for k in SIGNATURE_FIELDS} if near.enabled else None
    read = {k: v for k, v in asdict(config.read).items() if k not in NON_SEMANTIC_READ_KEYS}
    documents = fingerprint(FORMAT_VERSION, read, config.clean, config.filters, signature_keys)
    per_input = {
        item.id: fingerprint(documents, _input_identity(item), item.byte_range, item.row_groups) for item in inputs
    }
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
    """Path, size and modification time of the input (of every file inside it, for a directory input); for a
    part of the built-in prose source, a hash of its texts (installing a package changes it)."""
    if item.kind == "python_prose":
        return [item.path, python_prose.identity(item.path)]
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
    """Prepare ``config.output_dir`` (or reuse it when already finished) and return its manifest.

    Raises :class:`DataPrepError` for bad input (the output directory is then removed if this call created
    it) and its subclass :class:`DiskFullError` when the disk fills up (the work finished so far is kept, for the
    same command to reuse once space is freed)."""
    output = Path(config.output_dir)
    # What can be found wrong before reading anything is found now, not after hours of work.
    check_fractions(config.split)
    files = list_files(config.sources, config.read)
    _check_two_documents_possible(files, config)
    inputs = [part for item in files for part in split_into_parts(item, config.read.part_mb)]
    fingerprints = _stage_fingerprints(config, inputs)
    # The finished dataset's identity: that of the whole files, since the parts large files are read in change
    # the work files but not the dataset.
    fingerprints["dataset"] = (
        fingerprints["shards"] if inputs == files else _stage_fingerprints(config, files)["shards"]
    )
    manifest = _finished_dataset(output, fingerprints["dataset"])
    if manifest is not None:
        print(f"data_prep: reusing finished dataset in {output} (same config and inputs)")
        return manifest
    if output.exists() and (not output.is_dir() or _foreign_directory(output)):
        raise DataPrepError(f"output_dir '{output}' exists and is not a prepared dataset; choose another --output_dir")
    planned_token_ids(config.tokenizer)  # its settings; a pretrained one is loaded (not when reusing, above)
    created_here = not output.exists()
    output.mkdir(parents=True, exist_ok=True)
    (output / MANIFEST_FILE).unlink(missing_ok=True)  # from here on the directory is not a finished dataset
    try:
        return _run(config, inputs, fingerprints, output, show_progress)
    except DiskFullError:
        raise  # the finished work stays for the re-run (each write removed its own temporary file)
    except OSError as error:
        if error.errno != errno.ENOSPC:
            raise
        # A write not named where it happens: name what the error knows (shutil's copies name the source first).
        raise disk_full_error(error.filename2 or error.filename or output) from None
    except DataPrepError:
        # Bad input: nothing useful was made, so leave no trace. (After a crash or a kill the work files stay,
        # for the next run to reuse.)
        if created_here:
            shutil.rmtree(output, ignore_errors=True)
        raise


def _check_two_documents_possible(files: list[Input], config: DataPrepConfig) -> None:
    """Before reading: one text file read whole is one document, which cannot fill both the train and the val
    split. (Other inputs can hold any number of documents, known only once read.)"""
    if len(files) == 1 and files[0].kind == "text" and config.read.split_documents == "file":
        raise DataPrepError(
            f"the only input, '{files[0].path}', is read as one document (read.split_documents: file), which cannot "
            "fill both the train and the val split; add inputs or set read.split_documents: paragraph"
        )


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
        run_documents_stage(config, inputs, documents_dir, fingerprints["documents"], report, show, engine)
    report.stages["documents"]["seconds"] = round(report.stages["documents"]["seconds"] + started, 3)
    _check_documents_fill_the_splits(config, inputs, documents_dir, fingerprints, report)

    with report.stage("dedup"):
        dedup_dir = work / f"dedup.{fingerprints['dedup']}"
        run_dedup_stage(config, inputs, documents_dir, fingerprints["documents"], dedup_dir, report, show, engine)
    kept_documents = KeptDocuments(documents_dir, fingerprints["documents"], dedup_dir, config.split)

    with report.stage("tokenizer"):
        tokenizer_dir = work / f"tokenizer.{fingerprints['tokenizer']}"
        train_texts = (d.text for item in inputs for d, _, split in kept_documents(item) if split == TRAIN)
        tokenizer, tokenizer_info = load_or_train_tokenizer(
            config.tokenizer, tokenizer_dir, lambda: training_sample(train_texts, report, config), show
        )
    eot = end_of_text_id(tokenizer, config.tokenizer)
    vocab_size = planned_vocab_size(config.tokenizer, tokenizer)
    dtype = dtype_for_vocab(vocab_size)

    with report.stage("tokens"):
        tokens_dir = work / f"tokens.{fingerprints['tokens']}"
        tokenizer_file = tokenizer_dir / TOKENIZER_FILE
        parts = run_tokens_stage(
            inputs, kept_documents, tokenizer_file, eot, dtype, splits, tokens_dir, config, show, engine
        )

    with report.stage("shards"):
        split_info = pack_shards(parts, inputs, splits, dtype, tokens_dir, output, config, engine, show)
    if getattr(engine, "peak_worker_rss", 0):  # the largest peak of any Ray task
        report.engine["peak_worker_rss_mb"] = round(engine.peak_worker_rss / 1e6, 1)
    for split, info in split_info.items():
        report.add_split(split, info)
    for split in (TRAIN, VAL):  # dedup can still have removed every document of a split
        if split_info[split]["documents"] == 0:
            raise DataPrepError(
                f"the {split} split is empty ({report.documents_kept} documents kept, split.val_fraction="
                f"{config.split.val_fraction}); add documents or raise split.val_fraction"
            )

    copy_file(tokenizer_dir / TOKENIZER_FILE, output / TOKENIZER_FILE)
    replace_tree(tokenizer_dir / HF_TOKENIZER_DIR, output / HF_TOKENIZER_DIR)
    copy_file(dedup_dir / DUPLICATES_FILE, output / DUPLICATES_FILE)
    semantic_config = {k: v for k, v in config.to_dict().items() if k not in NON_SEMANTIC_KEYS}
    for key in REPORT_ONLY_TOKENIZER_KEYS:
        semantic_config["tokenizer"].pop(key)
    for key in NON_SEMANTIC_READ_KEYS:
        semantic_config["read"].pop(key)
    report.tokenizer = tokenizer_report(config, inputs, kept_documents, split_info, show)
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
        "inputs": len({item.path for item in inputs}),  # the parts of a large file are one input
        "stats": report.counts(),
        "fingerprint": fingerprints["dataset"],
        "config": semantic_config,
    }
    write_json_atomic(output / REPORT_FILE, report.as_dict())
    write_json_atomic(output / MANIFEST_FILE, manifest)
    _prune_work(work, fingerprints, {dedup_dir, tokenizer_dir, tokens_dir})
    remove_temporary_files(output)  # what killed runs left; this run's own writers removed theirs
    if show:
        print(report.funnel())
    return manifest


def _check_documents_fill_the_splits(config, inputs, documents_dir: Path, fingerprints: dict, report: Report) -> None:
    """After the documents stage, before dedup, tokenizer and tokens: a document is kept at all, and some kept
    document falls in the train split and some in the val split (dedup only removes documents, so a split none
    of them falls in would end empty)."""
    if report.documents_kept_before_dedup == 0:
        skipped = report.read["bad_records_skipped"]
        bad = f", bad records skipped: {skipped}" if skipped else ""
        raise DataPrepError(
            f"no documents left after reading, cleaning and filtering {len({item.path for item in inputs})} input(s) from {config.sources} "
            f"({report.read['documents']} read, removed by filter: {dict(report.removed) or 'none'}{bad}); "
            "check the sources, clean.min_chars and the filters' thresholds"
        )
    files = (DocumentsFile(documents_dir, item.id, fingerprints["documents"][item.id]) for item in inputs)
    digests = (row.tobytes() for file in files for row in read_digests(str(file.jsonl)))
    missing = missing_splits(digests, config.split)
    if missing:
        change = "raise" if missing[0] == VAL else "lower"
        raise DataPrepError(
            f"the {missing[0]} split would be empty: none of the {report.documents_kept_before_dedup} documents kept "
            f"after reading, cleaning and filtering falls in it (split.val_fraction={config.split.val_fraction}, "
            f"split.seed={config.split.seed}); add documents, {change} split.val_fraction or change split.seed"
        )


def summary(manifest: dict) -> str:
    parts = []
    for split, info in manifest["splits"].items():
        parts.append(f"{split}: {info['documents']} documents, {info['tokens']:,} tokens, {info['bytes']:,} bytes")
    return "; ".join(parts)


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
