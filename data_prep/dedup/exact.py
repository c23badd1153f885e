"""Stage 3: duplicate removal, in one pass over the documents in pipeline order.

First exact duplicates (same 16-byte BLAKE2b digest of the cleaned text), then near duplicates through the
MinHash LSH index of :mod:`data_prep.dedup.minhash`. The first document of a duplicate cluster in pipeline order
survives, so the result does not depend on timing or worker count. Every removal is written to the audit
file ``duplicates.jsonl``: the removed document's source and position, the kept one it duplicated, and how.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import numpy as np

from data_prep.batching import batched
from data_prep.dedup.minhash import NearDedupConfig, NearDuplicateIndex, signature_dtype
from data_prep.read.sources import Document

# Documents looked up in the LSH index per call (the index's insertion session batches its writes).
DEDUP_BATCH_DOCUMENTS = 1024


@dataclass
class DedupConfig:
    """Duplicate removal."""

    exact: bool = True
    """Drop documents whose cleaned text is byte-identical to an earlier kept one."""
    near: NearDedupConfig = field(default_factory=NearDedupConfig)
    """Near-duplicate removal with MinHash LSH (``near.enabled: false`` turns it off)."""


def text_digest(text: str) -> bytes:
    """16-byte BLAKE2b digest of the text: collision odds are negligible and a set of them stays small."""
    return hashlib.blake2b(text.encode("utf-8", errors="surrogatepass"), digest_size=16).digest()


class DuplicateFinder:
    """Decides, document by document in pipeline order, whether each one duplicates an earlier kept one."""

    def __init__(self, config: DedupConfig) -> None:
        self.config = config
        self.kept_by_digest: dict[bytes, tuple[str, int]] = {}  # digest -> (source, position) of the kept doc
        self.near_index = NearDuplicateIndex(config.near) if config.near.enabled else None
        self.kept_by_key: dict[str, tuple[str, int]] = {}  # LSH key -> (source, position)
        self.exact = self.near = 0
        self._next_key = 0

    def process_input(
        self, documents: Iterable[tuple[Document, bytes]], signatures_path: Path | None, audit: TextIO
    ) -> np.ndarray:
        """Returns the keep mask of one input's documents; writes each removal to ``audit``."""
        mask: list[bool] = []
        num_perm = self.config.near.num_perm
        row = 0
        for chunk in batched(documents, DEDUP_BATCH_DOCUMENTS):
            signatures = None
            if self.near_index is not None:
                signatures = _read_rows(signatures_path, row, len(chunk), num_perm, signature_dtype(self.config.near))
            row += len(chunk)
            mask.extend(self._process_chunk(chunk, signatures, audit))
        return np.asarray(mask, dtype=bool)

    def _process_chunk(self, chunk, signatures, audit) -> list[bool]:
        keep = [True] * len(chunk)
        locations = [(sys.intern(document.source), document.position) for document, _ in chunk]
        candidates = []  # chunk positions that go to the near-duplicate index
        first_in_chunk: dict[bytes, int] = {}  # digest -> chunk position of its first candidate
        copies: dict[int, list[int]] = {}  # candidate position -> later exact copies of it in this chunk
        for i, (_, digest) in enumerate(chunk):
            if self.config.exact and digest in self.kept_by_digest:
                self._remove(keep, i, locations[i], self.kept_by_digest[digest], "exact", audit)
            elif self.config.exact and digest in first_in_chunk:
                copies.setdefault(first_in_chunk[digest], []).append(i)
            else:
                first_in_chunk[digest] = i
                candidates.append(i)
        verdicts: list[str | None] = [None] * len(candidates)
        keys = [str(self._next_key + n) for n in range(len(candidates))]
        self._next_key += len(candidates)
        if self.near_index is not None and candidates:
            verdicts = self.near_index.add_batch(keys, signatures[candidates])
        for i, key, duplicate_of in zip(candidates, keys, verdicts):
            if duplicate_of is None:
                if self.near_index is not None:
                    self.kept_by_key[key] = locations[i]
                self.kept_by_digest[chunk[i][1]] = locations[i]
                original, kind = locations[i], "exact"
            else:
                original = self.kept_by_key[duplicate_of]
                self._remove(keep, i, locations[i], original, "near", audit)
                kind = "near"  # copies of a near duplicate are near duplicates of its original too
            for j in copies.get(i, []):
                self._remove(keep, j, locations[j], original, kind, audit)
        return keep

    def _remove(self, keep: list[bool], i: int, location, original, kind: str, audit: TextIO) -> None:
        keep[i] = False
        if kind == "exact":
            self.exact += 1
        else:
            self.near += 1
        _write_audit(audit, location, original, kind)

    def counts(self) -> dict:
        counts = {"exact": self.exact, "near": self.near}
        if self.near_index is not None:
            counts["index_documents"] = len(self.kept_by_key)
        return counts


def _read_rows(path: Path, first_row: int, rows: int, num_perm: int, dtype: np.dtype) -> np.ndarray:
    """Rows ``first_row ..`` of the raw MinHash signature file written by the documents stage."""
    itemsize = np.dtype(dtype).itemsize
    flat = np.fromfile(path, dtype=dtype, count=rows * num_perm, offset=first_row * num_perm * itemsize)
    return flat.reshape(rows, num_perm)


def _write_audit(audit: TextIO, removed: tuple[str, int], kept: tuple[str, int], kind: str) -> None:
    record = {
        "removed": {"source": removed[0], "position": removed[1]},
        "kept": {"source": kept[0], "position": kept[1]},
        "kind": kind,
    }
    audit.write(json.dumps(record, ensure_ascii=False) + "\n")
