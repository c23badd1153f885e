"""Near-duplicate detection, part two: the LSH over MinHash signatures (:mod:`data_prep.dedup.minhash`).

Rule (the same for every engine)
    A document is a near duplicate of the earliest document with a smaller stable id (pipeline order; kept or
    itself removed) that shares at least one LSH band with it and whose signature-estimated Jaccard, computed
    exactly as datasketch's ``MinHash.jaccard``, is ``>= threshold``. The LSH bands/rows are chosen so that a
    pair exactly at the threshold shares a band with probability ``>= CANDIDATE_RECALL`` (datasketch's default
    optimiser weighs false positives and negatives equally and misses ~60 % of pairs at J = 0.8 with 128
    permutations): candidates are verified on the full signature, so a loose LSH costs only a few extra
    comparisons.

In one process
    :class:`NearDuplicateIndex` wraps an in-memory datasketch ``MinHashLSH`` (its Redis storage is not offered:
    its users report ~160 inserts/s, datasketch #127, #168). Every document is inserted, as a ``LeanMinHash``
    through an insertion session. The index grows with the documents that reach it:
    ``benchmarks/near_dedup_speed.py`` measures its bytes per document (tracemalloc) next to
    :meth:`NearDuplicateIndex.memory_bytes`.

As a shuffle
    :func:`band_keys` gives each (band, band values) a 64-bit key; :mod:`data_prep.dedup.shuffle` groups
    documents by key across processes, so no process holds the index (equal bands always get equal keys; a key
    collision only adds a candidate, which the full-signature check then decides).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import numpy as np
from datasketch import LeanMinHash, MinHashLSH

from data_prep.dedup.minhash import NearDedupConfig, _fmix64, _mix_constants, _permutations

# Probability that a pair with Jaccard exactly at the threshold is an LSH candidate (automatic bands/rows).
CANDIDATE_RECALL = 0.99
# Rows of kept signatures per storage block of the index.
SIGNATURE_BLOCK_ROWS = 1 << 14
# Mixed into each band's key so that equal values in different bands are different buckets.
_BAND_SALT = np.uint64(0x9E3779B97F4A7C15)


def lsh_params(config: NearDedupConfig) -> tuple[int, int]:
    """(bands, rows) of the LSH: the configured ones, or else the largest ``rows`` (fewest spurious candidates)
    and then the fewest ``bands`` (least memory) for which a pair at exactly ``threshold`` collides in some
    band with probability >= CANDIDATE_RECALL."""
    n, t = config.num_perm, float(config.threshold)
    if config.bands and config.rows:
        return config.bands, config.rows
    if config.bands:
        return config.bands, n // config.bands
    if config.rows:
        return n // config.rows, config.rows
    for rows in range(n // 2, 0, -1):
        hit = t**rows
        for bands in range(2, n // rows + 1):
            if 1.0 - (1.0 - hit) ** bands >= CANDIDATE_RECALL:
                return bands, rows
    return n, 1


class NearDuplicateIndex:
    """Documents' MinHash signatures in an in-memory datasketch ``MinHashLSH``; decides duplicates by stable id
    (pipeline order). The indexed documents' keys and signatures verify LSH candidates."""

    def __init__(
        self,
        config: NearDedupConfig,
        insertion_buffer: int = 50_000,
    ) -> None:
        self.config = config
        self.bands, self.rows = lsh_params(config)
        self._lsh_args = {"num_perm": config.num_perm, "params": (self.bands, self.rows)}
        self.lsh = MinHashLSH(**self._lsh_args)
        self.insertion_buffer = insertion_buffer
        permutations = _permutations(config.num_perm, config.seed, config.scheme)
        self._dtype, self._empty = permutations.dtype, permutations.empty
        self._keys: list[str] = []  # ordinal (the LSH key, in insertion order) -> caller's key
        self._signature_blocks: list[np.ndarray] = []

    def __len__(self) -> int:
        """Number of indexed documents (every one with shingles, duplicates included)."""
        return len(self._keys)

    def add_batch(self, keys: Sequence[str], sigs: np.ndarray) -> list[str | None]:
        """Process documents in the given (global, deterministic) order, their stable ids. For each: if any
        *earlier* document (kept or itself a duplicate) is an LSH candidate whose signature-estimated Jaccard is
        >= threshold, return the earliest such document's key, else None; either way insert it (through an
        insertion session). The verdict depends only on which earlier documents match, not on what happened to
        them, so any engine that compares each document with all smaller ids reaches the same one. Documents of a
        batch see the earlier ones of the same batch. A document without shingles (all-empty signature) is never
        a duplicate and is not indexed."""
        sigs = self._check_signatures(sigs, len(keys))
        verdicts: list[str | None] = []
        with self.lsh.insertion_session(buffer_size=self.insertion_buffer) as session:
            for key, row in zip(keys, sigs):
                if not (row != self._empty).any():
                    verdicts.append(None)
                    continue
                minhash = LeanMinHash(seed=self.config.seed, hashvalues=row, scheme=self.config.scheme)
                original = self._earliest_match(self.lsh.query(minhash), row)
                verdicts.append(None if original is None else self._keys[original])
                ordinal = len(self._keys)
                session.insert(ordinal, minhash, check_duplication=False)
                self._store(ordinal, row)
                self._keys.append(key)
        return verdicts

    def _check_signatures(self, sigs: np.ndarray, count: int) -> np.ndarray:
        sigs = np.asarray(sigs)
        if sigs.ndim != 2 or sigs.shape != (count, self.config.num_perm):
            raise ValueError(f"expected signatures of shape ({count}, {self.config.num_perm}), got {sigs.shape}")
        if sigs.dtype != self._dtype:
            if sigs.dtype.kind not in "iu" or (sigs.size and (sigs.min() < 0 or sigs.max() > self._empty)):
                raise ValueError(f"signatures out of range for MinHash scheme {self.config.scheme!r}")
            sigs = sigs.astype(self._dtype)
        return sigs

    def _store(self, ordinal: int, row: np.ndarray) -> None:
        block, offset = divmod(ordinal, SIGNATURE_BLOCK_ROWS)
        if block == len(self._signature_blocks):
            self._signature_blocks.append(np.empty((SIGNATURE_BLOCK_ROWS, self.config.num_perm), self._dtype))
        self._signature_blocks[block][offset] = row

    def signature(self, ordinal: int) -> np.ndarray:
        block, offset = divmod(ordinal, SIGNATURE_BLOCK_ROWS)
        return self._signature_blocks[block][offset]

    def _earliest_match(self, candidates: list, row: np.ndarray) -> int | None:
        """The smallest ordinal among candidates whose estimated Jaccard with ``row`` is >= threshold."""
        if not candidates:
            return None
        ordinals = np.unique(np.fromiter(candidates, dtype=np.int64, count=len(candidates)))
        kept = np.stack([self.signature(int(o)) for o in ordinals])
        estimates = estimated_jaccard(kept, row, self.config.num_perm)
        matches = ordinals[estimates >= self.config.threshold]
        return int(matches[0]) if matches.size else None

    def memory_bytes(self) -> int:
        """Bytes held by the index (the LSH's dicts, sets, band keys and the kept signatures and keys), found by
        walking its objects: O(index size), meant for a report at the end."""
        size = sys.getsizeof
        total = size(self._keys) + sum(size(k) for k in self._keys)
        total += sum(block.nbytes for block in self._signature_blocks)
        seen: set[int] = set()  # band keys are shared between the key table and the bucket tables
        table = self.lsh.keys._dict
        total += size(table)
        for ordinal, band_keys in table.items():
            total += size(ordinal) + size(band_keys)
            for band_key in band_keys:
                if id(band_key) not in seen:
                    seen.add(id(band_key))
                    total += size(band_key)
        for hashtable in self.lsh.hashtables:
            buckets = hashtable._dict
            total += size(buckets)
            for band_key, bucket in buckets.items():
                total += size(bucket) + (0 if id(band_key) in seen else size(band_key))
        return total

    def bytes_per_document(self) -> float | None:
        """:meth:`memory_bytes` per indexed document."""
        total = self.memory_bytes()
        return None if not self._keys else total / len(self._keys)


def band_keys(sigs: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """``(len(sigs), bands)`` uint64: the key of each document's band ``b`` (signature values ``b*rows`` to
    ``(b+1)*rows``, the ranges datasketch's ``MinHashLSH`` uses). Equal values in the same band give equal keys."""
    values = np.asarray(sigs).astype(np.uint64, copy=False)
    constants = _mix_constants(rows)
    keys = np.empty((values.shape[0], bands), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for band in range(bands):
            block = values[:, band * rows : (band + 1) * rows]
            h = np.full(values.shape[0], np.uint64(band + 1) * _BAND_SALT, dtype=np.uint64)
            for k in range(rows):
                h += block[:, k] * constants[k]
            keys[:, band] = _fmix64(h)
    return keys


def estimated_jaccard(candidates: np.ndarray, row: np.ndarray, num_perm: int) -> np.ndarray:
    """Estimated Jaccard of ``row`` with each candidate row, exactly as datasketch's ``MinHash.jaccard``."""
    return np.count_nonzero(candidates == row, axis=1) / float(num_perm)
