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

from data_prep.errors import DataPrepError


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
    """Appends tokenized documents of one split to ``.bin``/``.idx`` files, rolling over to a new shard once
    the current one holds ``tokens_per_shard`` tokens (documents are never split across shards)."""

    def __init__(self, directory: Path, split: str, dtype: np.dtype, tokens_per_shard: int) -> None:
        self.directory, self.split, self.dtype, self.tokens_per_shard = (
            directory,
            split,
            np.dtype(dtype),
            tokens_per_shard,
        )
        self.files: list[str] = []
        self.sha256: dict[str, str] = {}
        self.tokens = self.documents = self.bytes = 0
        self._handle = None
        self._offsets: list[int] = []
        self._shard_tokens = 0

    def _open_next(self) -> None:
        self._close_current()
        name = f"{self.split}_{len(self.files):05d}.bin"
        self.files.append(name)
        self._handle = open(self.directory / name, "wb")
        self._offsets, self._shard_tokens = [0], 0

    def _close_current(self) -> None:
        if self._handle is None:
            return
        self._handle.close()
        bin_name = self.files[-1]
        np.asarray(self._offsets, dtype=INDEX_DTYPE).tofile(self.directory / bin_name.replace(".bin", ".idx"))
        self.sha256[bin_name] = sha256_file(self.directory / bin_name)
        self._handle = None

    def add_documents(self, token_lists: list[list[int]], num_bytes: int) -> None:
        """Write whole documents (each already ending in the end-of-text token)."""
        if not token_lists:
            return
        if self._handle is None or self._shard_tokens >= self.tokens_per_shard:
            self._open_next()
        lengths = [len(tokens) for tokens in token_lists]
        flat = np.concatenate([np.asarray(tokens, dtype=self.dtype) for tokens in token_lists])
        flat.tofile(self._handle)
        for length in lengths:
            self._shard_tokens += length
            self._offsets.append(self._shard_tokens)
        self.tokens += len(flat)
        self.documents += len(token_lists)
        self.bytes += num_bytes

    def close(self) -> dict:
        self._close_current()
        return {
            "files": self.files,
            "tokens": self.tokens,
            "documents": self.documents,
            "bytes": self.bytes,
            "sha256": self.sha256,
        }


def write_json_atomic(path: Path, payload: dict) -> None:
    """Write to a temporary name then rename, so readers never see a half-written file."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


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
