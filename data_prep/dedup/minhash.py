"""Near-duplicate detection, part one: MinHash signatures of shingle sets (the LSH over them is
:mod:`data_prep.dedup.lsh`).

Shingles
    ``word`` (default): the text is lowercased (``lowercase``) and split into words exactly as ``str.split()``
    does (any run of Unicode whitespace separates words); a shingle is ``ngram`` consecutive words.
    ``char``: the same words joined by single spaces (so re-indenting or re-wrapping changes nothing); a shingle
    is ``ngram`` consecutive characters (code points).
    A document with fewer than ``ngram`` words (characters) has exactly one shingle, its whole normalised text;
    a document without any word has no shingle: its signature is datasketch's empty value, it is never a
    near-duplicate and never enters the index. :func:`shingle_strings` is the plain-Python definition the fast
    path is tested against.

Hashing (why this is fast)
    Each word is hashed once with xxh3-64 (``map`` over ``bytes.split()``, no Python bytecode per word); the
    64-bit hash of a shingle is a numpy-vectorised combination of its words' (characters') values
    ``fmix64(sum_k value[i + k] * C_k)`` with fixed odd constants ``C_k``. No Python-level work happens per
    shingle: the ``MinHash.update`` loop the issue warns about hashes every shingle with SHA-1 in Python.

MinHash values (datasketch 2.0 scheme ``affine32`` by default, recorded in :attr:`NearDedupConfig.scheme`)
    The permutations are datasketch's own (``MinHash(num_perm, seed, scheme).permutations``) and the values are
    computed with datasketch's formulas, vectorised over blocks of ``BLOCK_ROWS`` shingles of possibly many
    documents (``np.minimum.reduceat`` per document): a signature row is bit-identical to
    ``MinHash(num_perm, seed=seed, scheme=scheme, hashfunc=identity).update_batch(hashes)`` over the shingles'
    scheme inputs (the tests check it). Only the shingle hashing is ours, which is why datasketch's per-shingle
    ``hashfunc`` call is not used: feeding the same integers through ``update_batch`` adds a Python call per
    shingle and builds one unbounded ``(shingles, num_perm)`` array per document.

Memory
    Signatures are computed per block of ``BLOCK_ROWS`` shingles and texts are shingled in whitespace-aligned
    pieces of about ``SEGMENT_CHARS`` characters, so the signature stage's memory is bounded by those constants
    (plus the text itself).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np
import xxhash
from datasketch import MinHash

from data_prep.errors import DataPrepError
from data_prep.segments import whitespace_segments

# Fields of NearDedupConfig that change the signatures (the others only change the dedup decision).
SIGNATURE_FIELDS = ("shingle", "ngram", "num_perm", "lowercase", "seed", "scheme")
SCHEMES = ("affine32", "affine64", "legacy")
# Shingles permuted at once: a BLOCK_ROWS x num_perm scratch array (2 MiB at 128 permutations, uint32).
BLOCK_ROWS = 4096
# Shingle hashes gathered (over consecutive documents) before they are permuted.
FLUSH_ROWS = 16 * BLOCK_ROWS
# Texts longer than this are shingled piece by piece, cut at whitespace, with identical results.
SEGMENT_CHARS = 1 << 20

_MERSENNE_PRIME = np.uint64((1 << 61) - 1)
_MAX_HASH32 = np.uint64((1 << 32) - 1)
_LOW32 = np.uint64(0xFFFFFFFF)
# ASCII characters that str.split() treats as whitespace but bytes.split() does not.
_STR_ONLY_ASCII_SPACE = "\x1c\x1d\x1e\x1f"


@dataclass
class NearDedupConfig:
    """Near-duplicate removal with MinHash LSH (YAML section ``dedup.near``)."""

    enabled: bool = True
    """Run near-duplicate removal after exact deduplication."""
    shingle: Literal["word", "char"] = "word"
    """Shingle unit: ``word`` n-grams (whitespace-separated words) or ``char`` n-grams of the text with its
    whitespace runs collapsed to single spaces."""
    ngram: int = 5
    """Words (or characters) per shingle. A document shorter than this is one shingle: its whole text."""
    num_perm: int = 128
    """MinHash permutations: more estimate Jaccard more precisely (standard error sqrt(J(1-J)/num_perm))
    and cost proportionally more time and memory."""
    threshold: float = 0.8
    """A document whose estimated Jaccard similarity with any earlier document (kept or not) is at or above this
    is a near-duplicate of it and is removed."""
    lowercase: bool = True
    """Lowercase the text before shingling."""
    seed: int = 1
    """Seed of datasketch's MinHash permutations."""
    scheme: Literal["affine32", "affine64", "legacy"] = "affine32"
    """datasketch MinHash permutation scheme: ``affine32`` (datasketch 2.0's default, uint32 values),
    ``affine64`` (uint64, for sets of ~1e8 shingles) or ``legacy`` (datasketch < 2.0's values)."""
    bands: int = 0
    """LSH bands; 0 chooses bands and rows so that a pair at exactly ``threshold`` becomes a candidate with
    probability >= 0.99 (candidates are then verified on the whole signature)."""
    rows: int = 0
    """Signature values per LSH band; 0 chooses automatically (see ``bands``)."""

    def __post_init__(self) -> None:
        def bad(message: str) -> DataPrepError:
            return DataPrepError(f"dedup.near: {message}")

        if self.shingle not in ("word", "char"):
            raise bad(f"shingle must be 'word' or 'char', got {self.shingle!r}")
        if self.scheme not in SCHEMES:
            raise bad(f"scheme must be one of {', '.join(SCHEMES)}, got {self.scheme!r}")
        if int(self.ngram) < 1:
            raise bad(f"ngram must be at least 1, got {self.ngram}")
        if int(self.num_perm) < 2:
            raise bad(f"num_perm must be at least 2, got {self.num_perm}")
        if not 0.0 < float(self.threshold) <= 1.0:
            raise bad(f"threshold must be in (0, 1], got {self.threshold}")
        if self.bands < 0 or self.rows < 0:
            raise bad("bands and rows must not be negative")
        if self.bands and self.rows and self.bands * self.rows > self.num_perm:
            raise bad(f"bands x rows = {self.bands * self.rows} exceeds num_perm = {self.num_perm}")
        if self.bands == 1 or (self.rows and self.num_perm // self.rows < 2 and not self.bands):
            raise bad("the LSH needs at least 2 bands (datasketch's MinHashLSH refuses fewer)")


# -- shingling --------------------------------------------------------------------------------------------
def shingle_strings(text: str, config: NearDedupConfig) -> set[str]:
    """The shingle set in plain Python: the definition the fast path (:func:`shingles`) implements."""
    words = (text.lower() if config.lowercase else text).split()
    n = config.ngram
    if config.shingle == "word":
        units, join = words, " ".join
    else:
        units, join = " ".join(words), "".join
    if not units:
        return set()
    if len(units) < n:
        return {join(units)}
    return {join(units[i : i + n]) for i in range(len(units) - n + 1)}


def shingles(text: str, config: NearDedupConfig) -> np.ndarray:
    """The shingle set as sorted unique 64-bit hashes (one per element of :func:`shingle_strings`, barring
    64-bit collisions)."""
    pieces = list(_shingle_hashes(text, config))
    return np.unique(np.concatenate(pieces)) if pieces else np.empty(0, dtype=np.uint64)


@lru_cache(maxsize=None)
def _mix_constants(n: int) -> np.ndarray:
    """Odd 64-bit multipliers, one per position in a shingle (fixed: they do not depend on the seed)."""
    rng = np.random.default_rng(0x5EED_5A1E)
    return rng.integers(0, 1 << 63, size=n, dtype=np.uint64) * np.uint64(2) + np.uint64(1)


def _fmix64(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finaliser, in place (a bijection that spreads the bits)."""
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xFF51AFD7ED558CCD)
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xC4CEB9FE1A85EC53)
    h ^= h >> np.uint64(33)
    return h


def _fmix32(h: np.ndarray) -> np.ndarray:
    h ^= h >> np.uint32(16)
    h *= np.uint32(0x85EBCA6B)
    h ^= h >> np.uint32(13)
    h *= np.uint32(0xC2B2AE35)
    h ^= h >> np.uint32(16)
    return h


def _combine(values: np.ndarray, width: int) -> np.ndarray:
    """64-bit hash of every window of ``width`` consecutive values (an order-sensitive combination)."""
    constants = _mix_constants(width)
    count = values.size - width + 1
    h = values[:count] * constants[0]
    for k in range(1, width):
        h += values[k : k + count] * constants[k]
    return _fmix64(h)


def _word_values(segment: str) -> np.ndarray:
    """xxh3-64 of each word (``str.split()`` words, UTF-8 encoded)."""
    if not segment.isascii() or any(c in segment for c in _STR_ONLY_ASCII_SPACE):
        segment = " ".join(segment.split())  # now bytes.split() splits exactly where str.split() does
    data = segment.encode("utf-8", errors="surrogatepass")
    return np.fromiter(map(xxhash.xxh3_64_intdigest, data.split()), dtype=np.uint64)


def _char_values(normalised: str) -> np.ndarray:
    """Code points, as uint64."""
    if normalised.isascii():
        return np.frombuffer(normalised.encode("ascii"), dtype=np.uint8).astype(np.uint64)
    data = normalised.encode("utf-32-le", errors="surrogatepass")
    return np.frombuffer(data, dtype=np.uint32).astype(np.uint64)


def _unit_values(text: str, config: NearDedupConfig) -> Iterator[np.ndarray]:
    """The document's words (or characters) as 64-bit values, piece by piece."""
    first = True
    for segment in whitespace_segments(text, SEGMENT_CHARS):
        if config.lowercase:
            segment = segment.lower()
        if config.shingle == "word":
            yield _word_values(segment)
        else:
            normalised = " ".join(segment.split())
            if normalised:
                yield _char_values(normalised if first else " " + normalised)
                first = False


def _shingle_hashes(text: str, config: NearDedupConfig) -> Iterator[np.ndarray]:
    """64-bit hashes of the document's shingles, piece by piece (a shingle spanning two pieces appears once)."""
    n = config.ngram
    carry = np.empty(0, dtype=np.uint64)  # the last n - 1 units, which start the next piece's first shingles
    emitted = False
    for values in _unit_values(text, config):
        if values.size == 0:
            continue
        if carry.size:
            values = np.concatenate([carry, values])
        if values.size >= n:
            yield _combine(values, n)
            emitted = True
            carry = values[values.size - (n - 1) :]
        else:
            carry = values
    if not emitted and carry.size:
        yield _combine(carry, carry.size)  # fewer units than one shingle: the whole text is the shingle


# -- MinHash signatures ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Permutations:
    scheme: str
    a: np.ndarray
    b: np.ndarray
    dtype: np.dtype
    empty: int  # datasketch's initial (maximum) hash value: a signature row of only this has no shingle

    def inputs(self, hashes: np.ndarray) -> np.ndarray:
        """Shingle hashes -> what datasketch feeds to the permutations (after its ``hashfunc`` and pre-mix)."""
        if self.scheme == "affine32":
            return _fmix32((hashes & _LOW32).astype(np.uint32))
        if self.scheme == "affine64":
            return _fmix64(hashes.copy())
        return hashes & _LOW32  # legacy: a 32-bit hash value, permuted modulo the Mersenne prime 2^61 - 1

    def permute(self, inputs: np.ndarray, out: np.ndarray) -> np.ndarray:
        """``out[k, i]`` = permutation k of input i (permutations along rows: the reductions then run over
        contiguous memory)."""
        np.multiply(self.a[:, None], inputs[None, :], out=out)
        np.add(out, self.b[:, None], out=out)
        if self.scheme == "legacy":
            np.remainder(out, _MERSENNE_PRIME, out=out)
            np.bitwise_and(out, _MAX_HASH32, out=out)
        return out


@lru_cache(maxsize=16)
def _permutations(num_perm: int, seed: int, scheme: str) -> _Permutations:
    reference = MinHash(num_perm=num_perm, seed=seed, scheme=scheme)
    a, b = (np.asarray(p) for p in reference.permutations)
    values = reference.hashvalues
    return _Permutations(scheme, a.copy(), b.copy(), values.dtype, int(values[0]))


def signature_dtype(config: NearDedupConfig) -> np.dtype:
    """dtype of :func:`signatures`' rows: uint32 for ``affine32``, uint64 otherwise."""
    return _permutations(config.num_perm, config.seed, config.scheme).dtype


class _SignatureAccumulator:
    """Gathers shingle hashes of consecutive documents and folds them into their signature rows."""

    def __init__(self, out: np.ndarray, permutations: _Permutations) -> None:
        self.out, self.permutations = out, permutations
        self.scratch = np.empty((out.shape[1], BLOCK_ROWS), dtype=permutations.dtype)
        self.pieces: list[np.ndarray] = []
        self.owners: list[int] = []
        self.rows = 0

    def add(self, document: int, hashes: np.ndarray) -> None:
        self.pieces.append(hashes)
        self.owners.append(document)
        self.rows += hashes.size
        if self.rows >= FLUSH_ROWS:
            self.flush()

    def flush(self) -> None:
        if not self.pieces:
            return
        inputs = self.permutations.inputs(np.concatenate(self.pieces))
        sizes = np.fromiter((p.size for p in self.pieces), dtype=np.int64, count=len(self.pieces))
        owners = np.asarray(self.owners, dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        # Runs of one document (its pieces are consecutive): start offsets and owner.
        new_run = np.ones(owners.size, dtype=bool)
        new_run[1:] = owners[1:] != owners[:-1]
        run_starts, run_owners = starts[new_run], owners[new_run]
        total = inputs.size
        for lo in range(0, total, BLOCK_ROWS):
            hi = min(lo + BLOCK_ROWS, total)
            first = np.searchsorted(run_starts, lo, side="right") - 1
            last = np.searchsorted(run_starts, hi, side="left")
            local_starts = np.maximum(run_starts[first:last], lo) - lo
            permuted = self.permutations.permute(inputs[lo:hi], self.scratch[:, : hi - lo])
            minima = np.minimum.reduceat(permuted, local_starts, axis=1)
            rows = run_owners[first:last]
            self.out[rows] = np.minimum(self.out[rows], minima.T)
        self.pieces, self.owners, self.rows = [], [], 0


def signatures(texts: Sequence[str], config: NearDedupConfig) -> np.ndarray:
    """MinHash signatures, shape ``(len(texts), num_perm)``, dtype :func:`signature_dtype`; in this process."""
    permutations = _permutations(config.num_perm, config.seed, config.scheme)
    out = np.full((len(texts), config.num_perm), permutations.empty, dtype=permutations.dtype)
    accumulator = _SignatureAccumulator(out, permutations)
    for document, text in enumerate(texts):
        for hashes in _shingle_hashes(text, config):
            accumulator.add(document, hashes)
    accumulator.flush()
    return out
