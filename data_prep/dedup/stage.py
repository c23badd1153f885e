"""The dedup stage: one pass over the documents work files in pipeline order, writing each input's keep mask
and ``duplicates.jsonl`` (reused when its ``done.json`` exists)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from data_prep.dedup.exact import DuplicateFinder
from data_prep.documents import DocumentsFile
from data_prep.report import Report
from data_prep.workdir import (
    atomic_path,
    read_json,
    write_json_atomic,
)

DUPLICATES_FILE = "duplicates.jsonl"


def run_dedup_stage(config, inputs, documents_dir, per_input_fp, dedup_dir: Path, report: Report, show: bool) -> None:
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
