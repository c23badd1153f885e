"""The dedup stage: each input's keep mask and ``duplicates.jsonl`` (reused when its ``done.json`` exists).

``--engine local``: one pass over the documents work files in pipeline order (:mod:`data_prep.dedup.exact`).
``--engine ray``: the same rule as a shuffle of Ray tasks (:mod:`data_prep.dedup.shuffle`), same bytes."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from data_prep.dedup.exact import DuplicateFinder
from data_prep.dedup.shuffle import ShuffleSpec, partition_count, run_shuffle_dedup
from data_prep.documents import DocumentsFile
from data_prep.report import Report
from data_prep.workdir import (
    atomic_path,
    read_json,
    write_json_atomic,
)

DUPLICATES_FILE = "duplicates.jsonl"


def run_dedup_stage(
    config, inputs, documents_dir, per_input_fp, dedup_dir: Path, report: Report, show: bool, engine=None
) -> None:
    """Writes each input's boolean keep mask, in one pass here or as a shuffle on the Ray engine. Reused when
    already done."""
    done_marker = dedup_dir / "done.json"
    if not done_marker.is_file():
        files = [DocumentsFile(documents_dir, item.id, per_input_fp[item.id]) for item in inputs]
        masks = [dedup_dir / f"{item.id}.keep.npy" for item in inputs]
        if getattr(engine, "dedup_as_shuffle", False):
            counts = _shuffle(config, files, masks, dedup_dir, engine, show)
        else:
            counts = _one_pass(config, files, masks, dedup_dir, show)
        write_json_atomic(done_marker, counts)
        shutil.rmtree(dedup_dir / "shuffle", ignore_errors=True)
    counts = read_json(done_marker)
    report.add_duplicates(counts["exact"], counts["near"])


def _save_mask(path: Path, mask: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.save(handle, mask)


def _one_pass(config, files: list[DocumentsFile], masks: list[Path], dedup_dir: Path, show: bool) -> dict:
    finder = DuplicateFinder(config.dedup)
    with atomic_path(dedup_dir / DUPLICATES_FILE) as audit_tmp, open(audit_tmp, "w") as audit:
        for documents, mask in tqdm(zip(files, masks), total=len(files), desc="dedup", unit="input", disable=not show):
            _save_mask(mask, finder.process_input(documents.documents(), documents.signatures, audit))
    return finder.counts()


def _shuffle(config, files: list[DocumentsFile], masks: list[Path], dedup_dir: Path, engine, show: bool) -> dict:
    from data_prep.engines import RAY_INPUTS_PER_TASK

    counts = [read_json(f.stats)["kept"] for f in files]
    partitions = partition_count(sum(counts), config.dedup, config.ray.partition_records)
    spec = ShuffleSpec(
        dedup=config.dedup,
        directory=str(dedup_dir / "shuffle" / f"p{partitions}"),
        jsonl=tuple(str(f.jsonl) for f in files),
        signatures=tuple(str(f.signatures) for f in files),
        first=tuple(int(x) for x in np.concatenate([[0], np.cumsum(counts, dtype=np.int64)])),
        partitions=partitions,
        inputs_per_task=RAY_INPUTS_PER_TASK,
    )
    result = run_shuffle_dedup(spec, engine, dedup_dir / DUPLICATES_FILE, show)
    for path, mask in zip(masks, result["masks"]):
        _save_mask(path, mask)
    return result["counts"]
