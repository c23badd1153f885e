"""What a run did, stage by stage: the counts behind ``report.json`` and the funnel printed at the end.

``report.json`` keys: ``documents.read``, ``documents.kept``, ``removed`` (filter name -> documents),
``duplicates.exact``, ``duplicates.near``, ``tokens.<split>``, ``documents_per_split``, ``bytes`` (read, kept,
per split), ``skipped`` (counts of binary files, null texts, WARC records and, under ``read.on_error: skip``,
bad records), ``repaired`` (invalid UTF-8 documents), ``binary_files`` (``count`` and the ``first`` 20 paths),
``bad_records`` (per file with any: ``count`` and the ``first`` 5 as ``{"at": "line 7", "error": ...}``),
``tokenizer`` (``bytes_per_token`` per split, and ``compare_with``: the same for another tokenizer on the same
text when ``tokenizer.compare_with`` is set), ``engine`` (where the documents stage ran: ``name``, ``workers``,
and for Ray the workers' ``peak_worker_rss_mb``), and ``stages`` (seconds and MB/s of each stage in this run; a
stage reused from an earlier run shows its reuse time). Only the counts (``Report.counts``) go into the manifest.
"""

from __future__ import annotations

import time
from collections import Counter
from contextlib import contextmanager

from data_prep.read.sources import NAMED_BAD_RECORDS

# Binary files named in report.json (all are counted).
NAMED_BINARY_FILES = 20
# Skipped files and bad records named in the printed funnel (report.json names more).
NAMED_IN_FUNNEL = 3


class Report:
    def __init__(self) -> None:
        self.read: Counter = Counter()  # files, documents, bytes, binary_files_skipped, invalid_utf8_documents
        self.binary_files: list[str] = []  # the first NAMED_BINARY_FILES paths skipped as binary
        self.bad_records: dict[str, dict] = {}  # path -> {"count", "first"} (read.on_error: skip)
        self.removed: Counter = Counter()
        self.documents_kept_before_dedup = 0
        self.bytes_kept_before_dedup = 0
        self.duplicates = {"exact": 0, "near": 0}
        self.splits: dict[str, dict] = {}
        self.stages: dict[str, dict] = {}
        self.tokenizer: dict = {}  # bytes per token per split (and of tokenizer.compare_with): report.json only
        self.engine: dict = {}  # where the documents stage ran this time (name, workers, Ray workers' peak memory)

    # -- accumulation ---------------------------------------------------------------------------------------
    @contextmanager
    def stage(self, name: str):
        started = time.perf_counter()
        yield
        self.stages[name] = {"seconds": round(time.perf_counter() - started, 3)}

    def add_read(self, path: str, read: dict, removed: dict, kept: int, kept_bytes: int) -> None:
        """One input's documents-stage figures (``read``: its ``ReadStats`` as a dict), inputs in pipeline order
        (the parts of a file in order, so its bad records come sorted)."""
        self.read.update({key: value for key, value in read.items() if isinstance(value, int)})
        if read["binary_files_skipped"] and len(self.binary_files) < NAMED_BINARY_FILES:
            self.binary_files.append(path)
        if read["bad_records_skipped"]:
            entry = self.bad_records.setdefault(path, {"count": 0, "first": []})
            entry["count"] += read["bad_records_skipped"]
            entry["first"] = (entry["first"] + read["bad_records"])[:NAMED_BAD_RECORDS]
        self.removed.update(removed)
        self.documents_kept_before_dedup += kept
        self.bytes_kept_before_dedup += kept_bytes

    def add_duplicates(self, exact: int, near: int) -> None:
        self.duplicates = {"exact": exact, "near": near}

    def add_split(self, split: str, info: dict) -> None:
        self.splits[split] = {key: info[key] for key in ("documents", "tokens", "bytes")}

    # -- derived figures ------------------------------------------------------------------------------------
    @property
    def documents_kept(self) -> int:
        return self.documents_kept_before_dedup - self.duplicates["exact"] - self.duplicates["near"]

    def counts(self) -> dict:
        """The deterministic part (no timings): recorded in the manifest too."""
        return {
            "documents": {"read": self.read["documents"], "kept": self.documents_kept},
            "files": self.read["files"],
            "removed": dict(sorted(self.removed.items())),
            "duplicates": dict(self.duplicates),
            "skipped": {
                "binary_files": self.read["binary_files_skipped"],
                "null_texts": self.read["null_texts_skipped"],
                "warc_records_not_html_2xx": self.read["warc_records_skipped"],
                "bad_records": self.read["bad_records_skipped"],
            },
            "repaired": {"invalid_utf8_documents": self.read["invalid_utf8_documents"]},
            "tokens": {split: info["tokens"] for split, info in self.splits.items()},
            "documents_per_split": {split: info["documents"] for split, info in self.splits.items()},
            "bytes": {
                "read": self.read["bytes"],
                "kept_before_dedup": self.bytes_kept_before_dedup,
                **{split: info["bytes"] for split, info in self.splits.items()},
            },
        }

    def as_dict(self) -> dict:
        stages = {}
        work_bytes = {"documents": self.read["bytes"], "dedup": self.bytes_kept_before_dedup}
        work_bytes["tokens"] = sum(info["bytes"] for info in self.splits.values())
        for name, timing in self.stages.items():
            stages[name] = dict(timing)
            if name in work_bytes and timing["seconds"] > 0:
                stages[name]["mb_per_second"] = round(work_bytes[name] / 1e6 / timing["seconds"], 2)
        named = {
            "binary_files": {"count": self.read["binary_files_skipped"], "first": self.binary_files},
            "bad_records": self.bad_records,
        }
        return {**self.counts(), **named, "tokenizer": self.tokenizer, "engine": self.engine, "stages": stages}

    def funnel(self) -> str:
        """A human-readable summary, one stage per line, largest number first."""
        read = self.read
        lines = [
            "data_prep funnel:",
            f"  read        {read['documents']:>10,} documents  {read['bytes'] / 1e6:10.1f} MB  from {read['files']:,} files"
            f"  (skipped: {read['binary_files_skipped']} binary files, {read['null_texts_skipped']} null texts, "
            f"{read['warc_records_skipped']} non-HTML WARC records; invalid UTF-8 repaired in "
            f"{read['invalid_utf8_documents']} documents)",
        ]
        lines += self._named_skips()
        for name, count in sorted(self.removed.items(), key=lambda item: -item[1]):
            lines.append(f"  - {name:<24}{count:>10,} documents removed")
        lines.append(f"  - exact duplicates       {self.duplicates['exact']:>10,}")
        lines.append(f"  - near duplicates        {self.duplicates['near']:>10,}")
        lines.append(f"  kept        {self.documents_kept:>10,} documents")
        for split, info in self.splits.items():
            lines.append(
                f"  {split:<11} {info['documents']:>10,} documents  {info['tokens']:>12,} tokens  "
                f"{info['bytes'] / 1e6:8.1f} MB"
            )
        timings = ", ".join(f"{name} {timing['seconds']:.1f}s" for name, timing in self.stages.items())
        lines.append(f"  time: {timings}")
        return "\n".join(lines)

    def _named_skips(self) -> list[str]:
        """Funnel lines naming the first binary files and bad records skipped (report.json has more)."""
        lines = []
        if self.binary_files:
            names = ", ".join(f"'{path}'" for path in self.binary_files[:NAMED_IN_FUNNEL])
            more = " ..." if self.read["binary_files_skipped"] > NAMED_IN_FUNNEL else ""
            lines.append(f"  - binary files skipped   {self.read['binary_files_skipped']:>10,}  {names}{more}")
        if self.bad_records:
            examples = [
                f"'{path}' {record['at']} ({record['error']})"
                for path, entry in self.bad_records.items()
                for record in entry["first"]
            ]
            named = ", ".join(examples[:NAMED_IN_FUNNEL])
            more = " ..." if self.read["bad_records_skipped"] > NAMED_IN_FUNNEL else ""
            lines.append(f"  - bad records skipped    {self.read['bad_records_skipped']:>10,}  {named}{more}")
        if self.binary_files or self.bad_records:
            lines.append("    (skipped files and records are listed in report.json)")
        return lines
