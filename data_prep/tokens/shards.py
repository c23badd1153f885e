"""The token shard format, owned here: ``data_prep`` writes it, ``lit_pretrain.data`` reads it.

A prepared dataset directory holds:

* ``{split}_{index:05d}.bin``: the split's tokens as a flat little-endian array (``uint16`` when the vocabulary
  fits, else ``uint32``), documents back to back, each followed by the end-of-text token;
* ``{split}_{index:05d}.idx``: ``uint64`` offsets (in tokens) where each document starts, plus the end;
* ``manifest.json``: dtype, per-split files/tokens/documents/bytes/sha256, the tokenizer file and its hash,
  the sources and the fingerprint of the config and inputs that produced it. It is written last, atomically:
  a directory without a manifest is not a finished dataset.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data_prep.errors import DataPrepError, naming_full_disk
from data_prep.workdir import tmp_sibling


@dataclass
class ShardConfig:
    """Token shards on disk."""

    tokens_per_shard: int = 100_000_000
    """Start a new shard file after this many tokens."""
    batch_documents: int = 512
    """Documents handed to the tokenizer per ``encode_batch`` call (parallel inside the tokenizer)."""


MANIFEST_FILE = "manifest.json"
FORMAT_VERSION = 1
INDEX_DTYPE = np.uint64


def dtype_for_vocab(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 2**16 else np.dtype(np.uint32)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class ShardWriter:
    """Appends tokenized documents of one split to ``.bin``/``.idx`` files, opening a new shard at the first
    document boundary after the current one holds ``tokens_per_shard`` tokens (documents are never split).

    Files are written under temporary names and renamed when their shard is complete; the SHA-256 of each
    shard is computed while writing. A full disk is a :class:`DiskFullError` naming the shard; :meth:`discard`
    removes the unfinished shard's temporary files.
    """

    def __init__(self, directory: Path, split: str, dtype: np.dtype, tokens_per_shard: int, first_index: int = 0):
        self.directory, self.split, self.dtype = Path(directory), split, np.dtype(dtype)
        self.tokens_per_shard, self.first_index = tokens_per_shard, first_index
        self.files: list[str] = []
        self.sha256: dict[str, str] = {}
        self.tokens = self.documents = self.bytes = 0
        self._handle = None
        self._hash = None
        self._offsets: list[np.ndarray] = []
        self._shard_tokens = 0

    def _tmp(self, name: str) -> Path:
        return tmp_sibling(self.directory / name)

    def _open_next(self) -> None:
        self._close_current()
        name = f"{self.split}_{self.first_index + len(self.files):05d}.bin"
        self.files.append(name)
        with naming_full_disk(self.directory / name):
            self._handle = open(self._tmp(name), "wb")
        self._hash = hashlib.sha256()
        self._offsets, self._shard_tokens = [np.zeros(1, dtype=INDEX_DTYPE)], 0

    def _close_current(self) -> None:
        if self._handle is None:
            return
        bin_name = self.files[-1]
        idx_name = bin_name.replace(".bin", ".idx")
        with naming_full_disk(self.directory / bin_name):
            self._handle.close()
            self._handle = None
        with naming_full_disk(self.directory / idx_name):
            np.concatenate(self._offsets).astype(INDEX_DTYPE).tofile(self._tmp(idx_name))
        os.replace(self._tmp(idx_name), self.directory / idx_name)
        os.replace(self._tmp(bin_name), self.directory / bin_name)
        self.sha256[bin_name] = self._hash.hexdigest()

    def discard(self) -> None:
        """After a failure: close and delete the unfinished shard's temporary files (finished shards stay)."""
        if self.files:
            if self._handle is not None:
                self._handle.close()
                self._handle = None
            for name in (self.files[-1], self.files[-1].replace(".bin", ".idx")):
                self._tmp(name).unlink(missing_ok=True)

    def add(self, tokens: np.ndarray, lengths: np.ndarray, num_bytes: int) -> None:
        """Write documents given as one flat token array and each document's length (end-of-text included)."""
        lengths = np.asarray(lengths, dtype=np.int64)
        if len(lengths) == 0:
            return
        tokens = np.ascontiguousarray(tokens, dtype=self.dtype)
        ends = np.cumsum(lengths)  # ends[k]: end of document k in ``tokens``
        first = 0  # first document not yet written
        while first < len(lengths):
            if self._handle is None or self._shard_tokens >= self.tokens_per_shard:
                self._open_next()
            begin = int(ends[first - 1]) if first else 0
            room = self.tokens_per_shard - self._shard_tokens
            # Take documents up to and including the one that fills the shard.
            last = min(int(np.searchsorted(ends, begin + room, side="left")), len(lengths) - 1)
            chunk = tokens[begin : int(ends[last])]  # a view: written and hashed without a copy
            with naming_full_disk(self.directory / self.files[-1]):
                self._handle.write(chunk)
            self._hash.update(chunk)
            self._offsets.append(self._shard_tokens + (ends[first : last + 1] - begin).astype(INDEX_DTYPE))
            self._shard_tokens += len(chunk)
            first = last + 1
        self.tokens += int(ends[-1])
        self.documents += len(lengths)
        self.bytes += num_bytes

    def add_documents(self, token_lists: list[list[int]], num_bytes: int) -> None:
        """Write whole documents given as token lists (each already ending in the end-of-text token)."""
        if token_lists:
            lengths = np.fromiter((len(t) for t in token_lists), dtype=np.int64, count=len(token_lists))
            self.add(np.concatenate([np.asarray(t, dtype=self.dtype) for t in token_lists]), lengths, num_bytes)

    def close(self) -> dict:
        self._close_current()
        return {
            "files": self.files,
            "tokens": self.tokens,
            "documents": self.documents,
            "bytes": self.bytes,
            "sha256": self.sha256,
        }


def read_manifest(directory: str | Path) -> dict:
    """Load and sanity-check ``manifest.json``; raise ``DataPrepError`` naming the file when it is unusable."""
    path = Path(directory) / MANIFEST_FILE
    if not path.is_file():
        raise DataPrepError(f"'{path}' not found; run 'python -m data_prep --config ...' to prepare the dataset")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise DataPrepError(f"'{path}' is unreadable ({error}); delete the directory and prepare it again") from error
    for key in ("dtype", "splits", "tokenizer", "format_version"):
        if key not in manifest:
            raise DataPrepError(f"'{path}' has no '{key}' key; delete the directory and prepare it again")
    if manifest["format_version"] != FORMAT_VERSION:
        raise DataPrepError(
            f"'{path}' has shard format {manifest['format_version']}, this version reads {FORMAT_VERSION}; prepare it again"
        )
    return manifest


def shard_token_count(path: Path, dtype: np.dtype) -> int:
    return path.stat().st_size // np.dtype(dtype).itemsize


def read_tokens(path: Path, dtype: np.dtype, start: int, count: int) -> np.ndarray:
    """Read ``count`` tokens from ``start`` without mapping the whole shard (a long-lived memmap grows RSS)."""
    dtype = np.dtype(dtype)
    return np.fromfile(path, dtype=dtype, count=count, offset=start * dtype.itemsize)


def read_document_offsets(bin_path: Path) -> np.ndarray:
    return np.fromfile(bin_path.with_suffix(".idx"), dtype=INDEX_DTYPE)
