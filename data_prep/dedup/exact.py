"""Stage 3: duplicate removal, in one pass over the documents in pipeline order.

First exact duplicates (same 16-byte BLAKE2b digest of the cleaned text), then near duplicates through the
MinHash LSH index of :mod:`data_prep.dedup.minhash`. A document is removed when a document with a smaller stable
id (earlier in pipeline order: inputs in listing order, then position) is an exact duplicate of it, or a near
duplicate whose signature-estimated Jaccard is >= the threshold, whether or not that document was itself removed:
a rule of pairs, so a parallel engine reaches the same result. Every removal is written to the audit file
``duplicates.jsonl``: the removed document's source and position, the smaller-id document it duplicated
(``duplicate_of``), the surviving document that chain of duplicates leads to (``kept``), and how.
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
from data_prep.dedup.lsh import NearDuplicateIndex
from data_prep.dedup.minhash import NearDedupConfig, signature_dtype
from data_prep.read.sources import Document

# Documents looked up in the LSH index per call (the index's insertion session batches its writes).
DEDUP_BATCH_DOCUMENTS = 1024


@dataclass
class DedupConfig:
    """Duplicate removal."""

    exact: bool = True
    """Drop documents whose cleaned text is byte-identical to an earlier one."""
    near: NearDedupConfig = field(default_factory=NearDedupConfig)
    """Near-duplicate removal with MinHash LSH (``near.enabled: false`` turns it off)."""


def text_digest(text: str) -> bytes:
    """16-byte BLAKE2b digest of the text: collision odds are negligible and a set of them stays small."""
    return hashlib.blake2b(text.encode("utf-8", errors="surrogatepass"), digest_size=16).digest()


class DuplicateFinder:
    """Decides, document by document in pipeline order (the documents' stable ids), whether each one duplicates
    an earlier document: exactly (the same digest) or nearly (estimated Jaccard >= threshold), whether or not that
    earlier document was itself removed. So the decision for a document depends only on the documents with smaller
    ids, which any engine can compute in any order. The audit names that smaller-id partner (``duplicate_of``) and
    the surviving document its chain of partners leads to (``kept``)."""

    def __init__(self, config: DedupConfig) -> None:
        self.config = config
        self.first_by_digest: dict[bytes, str] = {}  # digest -> key of its first document
        self.near_index = NearDuplicateIndex(config.near) if config.near.enabled else None
        self.location_by_key: dict[str, tuple[str, int]] = {}  # key -> (source, position)
        self.kept_by_key: dict[str, str] = {}  # key -> key of the surviving document of its chain (itself if kept)
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
        keys = [str(self._next_key + n) for n in range(len(chunk))]
        self._next_key += len(chunk)
        candidates = []  # chunk positions that go to the near-duplicate index: the first of each digest
        copies: dict[int, str] = {}  # chunk position -> key of the earlier document with the same text
        for i, (document, digest) in enumerate(chunk):
            self.location_by_key[keys[i]] = (sys.intern(document.source), document.position)
            first = self.first_by_digest.get(digest) if self.config.exact else None
            if first is not None:
                copies[i] = first
            else:
                if self.config.exact:
                    self.first_by_digest[digest] = keys[i]
                candidates.append(i)
        verdicts: list[str | None] = [None] * len(candidates)
        if self.near_index is not None and candidates:
            verdicts = self.near_index.add_batch([keys[i] for i in candidates], signatures[candidates])
        partners: dict[int, tuple[str, str]] = {i: (first, "exact") for i, first in copies.items()}
        partners.update({i: (of, "near") for i, of in zip(candidates, verdicts) if of is not None})
        for i in range(len(chunk)):  # in order: a partner's surviving document is known before its own
            key = keys[i]
            if i not in partners:
                self.kept_by_key[key] = key
                continue
            partner, kind = partners[i]
            self.kept_by_key[key] = self.kept_by_key[partner]
            self._remove(keep, i, key, partner, kind, audit)
        return keep

    def _remove(self, keep: list[bool], i: int, key: str, partner: str, kind: str, audit: TextIO) -> None:
        keep[i] = False
        if kind == "exact":
            self.exact += 1
        else:
            self.near += 1
        location = self.location_by_key
        _write_audit(audit, location[key], location[self.kept_by_key[key]], location[partner], kind)

    def counts(self) -> dict:
        counts = {"exact": self.exact, "near": self.near}
        if self.near_index is not None:
            counts["index_documents"] = len(self.near_index)
        return counts


def _read_rows(path: Path, first_row: int, rows: int, num_perm: int, dtype: np.dtype) -> np.ndarray:
    """Rows ``first_row ..`` of the raw MinHash signature file written by the documents stage."""
    itemsize = np.dtype(dtype).itemsize
    flat = np.fromfile(path, dtype=dtype, count=rows * num_perm, offset=first_row * num_perm * itemsize)
    return flat.reshape(rows, num_perm)


def _write_audit(
    audit: TextIO, removed: tuple[str, int], kept: tuple[str, int], partner: tuple[str, int], kind: str
) -> None:
    record = {
        "removed": {"source": removed[0], "position": removed[1]},
        "kept": {"source": kept[0], "position": kept[1]},
        "duplicate_of": {"source": partner[0], "position": partner[1]},
        "kind": kind,
    }
    audit.write(json.dumps(record, ensure_ascii=False) + "\n")
