"""Checking that a prepared dataset on disk is the one its manifest describes, before a run trains on it.

Two levels, both against what ``manifest.json`` recorded when the shards were written:

* sizes (cheap, a ``stat`` per file and 8 bytes of each ``.idx``): every listed shard and its index exist, each
  shard holds a whole number of tokens and as many as its index ends at, and a split's shards add up to the
  split's token count. Catches missing, truncated and appended-to files.
* hashes (reads every byte once): each shard's SHA-256 and the tokenizer file's equal the manifest's. Catches
  bytes overwritten in place, which sizes cannot see.

A dataset is hashed once: a successful check is recorded in ``verified.json`` beside the manifest with each
file's size, modification and change times and inode, and a later run whose files still have them skips the
hashing (a write into a file changes its modification time; a copy, even one that keeps modification times, gets
a new inode). A mismatch raises :class:`~data_prep.errors.DataPrepError` with one line
naming the file and what differs.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np

from data_prep.errors import DataPrepError
from data_prep.tokens.shards import INDEX_DTYPE, MANIFEST_FILE, sha256_file
from data_prep.workdir import write_json_atomic

VERIFIED_FILE = "verified.json"
AGAIN = "prepare the dataset again (delete the directory and rerun python -m data_prep, or fit with its prepare_config)"


def shard_paths(directory: Path, manifest: dict) -> list[tuple[str, Path]]:
    """(split, path) of every shard the manifest lists, in split and file order."""
    return [(split, Path(directory) / name) for split, info in manifest["splits"].items() for name in info["files"]]


def _index_end(index: Path) -> int:
    """The last offset of a shard's ``.idx``: where its last document ends, i.e. the shard's token count."""
    itemsize = np.dtype(INDEX_DTYPE).itemsize
    size = index.stat().st_size
    if size < itemsize or size % itemsize:
        raise DataPrepError(f"'{index}' has {size:,} bytes, not a whole number of offsets: it is damaged; {AGAIN}")
    return int(np.fromfile(index, dtype=INDEX_DTYPE, count=1, offset=size - itemsize)[0])


def check_sizes(directory: Path, manifest: dict) -> None:
    """Every shard and its index present, of the length the index and the manifest say (see the module doc)."""
    directory = Path(directory)
    itemsize = np.dtype(manifest["dtype"]).itemsize
    totals: dict[str, int] = {}
    for split, path in shard_paths(directory, manifest):
        index = path.with_suffix(".idx")
        for needed in (path, index):
            if not needed.is_file():
                raise DataPrepError(f"'{needed}' is missing (listed in '{directory / MANIFEST_FILE}'); {AGAIN}")
        size = path.stat().st_size
        if size % itemsize:
            raise DataPrepError(
                f"'{path}' has {size:,} bytes, not a whole number of {manifest['dtype']} tokens: it is truncated or "
                f"damaged; {AGAIN}"
            )
        tokens, indexed = size // itemsize, _index_end(index)
        if tokens != indexed:
            raise DataPrepError(
                f"'{path}' holds {tokens:,} tokens but its index '{index.name}' ends at {indexed:,}: the shard is "
                f"truncated or was appended to; {AGAIN}"
            )
        totals[split] = totals.get(split, 0) + tokens
    for split, info in manifest["splits"].items():
        if totals.get(split, 0) != info["tokens"]:
            raise DataPrepError(
                f"the {split} shards of '{directory}' hold {totals.get(split, 0):,} tokens but its manifest says "
                f"{info['tokens']:,}; {AGAIN}"
            )
    tokenizer = directory / manifest["tokenizer"]["file"]
    if not tokenizer.is_file():
        raise DataPrepError(f"'{tokenizer}' is missing (listed in '{directory / MANIFEST_FILE}'); {AGAIN}")


def check_hashes(directory: Path, manifest: dict) -> int:
    """Each shard's and the tokenizer's SHA-256 against the manifest; returns the bytes read."""
    directory = Path(directory)
    expected = [
        (path, manifest["splits"][split]["sha256"][path.name]) for split, path in shard_paths(directory, manifest)
    ]
    tokenizer = manifest["tokenizer"]
    if tokenizer.get("sha256"):
        expected.append((directory / tokenizer["file"], tokenizer["sha256"]))
    read = 0
    for path, digest in expected:
        actual = sha256_file(path)
        read += path.stat().st_size
        if actual != digest:
            raise DataPrepError(
                f"'{path}' has SHA-256 {actual[:12]}… but its manifest records {digest[:12]}…: its bytes changed "
                f"after it was prepared; {AGAIN}"
            )
    return read


def _identity(directory: Path, manifest: dict) -> dict:
    """What a recorded verification holds for: the manifest's bytes and each checked file's size and mtime."""
    paths = [path for _, path in shard_paths(directory, manifest)] + [directory / manifest["tokenizer"]["file"]]
    files = {}
    for path in paths:
        stat = path.stat()
        # A write changes the mtime; a copy (even one keeping mtimes, cp -p, rsync -a) changes the inode and ctime.
        files[path.name] = [stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino]
    manifest_bytes = (directory / MANIFEST_FILE).read_bytes()
    return {"manifest_sha256": hashlib.sha256(manifest_bytes).hexdigest(), "files": files}


def is_recorded(directory: Path, manifest: dict) -> bool:
    """Whether ``verified.json`` records a hash check of exactly these files (same sizes and mtimes)."""
    path = Path(directory) / VERIFIED_FILE
    try:
        recorded = json.loads(path.read_text())
        return {k: recorded.get(k) for k in ("manifest_sha256", "files")} == _identity(Path(directory), manifest)
    except (OSError, ValueError):
        return False


def record(directory: Path, manifest: dict, seconds: float | None = None) -> bool:
    """Record a successful hash check; False when the directory cannot be written (a read-only copy)."""
    payload = {**_identity(Path(directory), manifest), "algorithm": "sha256", "verified_at": time.time()}
    if seconds is not None:
        payload["seconds"] = round(seconds, 3)
    try:
        write_json_atomic(Path(directory) / VERIFIED_FILE, payload)
    except (OSError, DataPrepError):  # read-only, or full (DiskFullError): the next run hashes again
        return False
    return True


def verify(directory: Path, manifest: dict, hashes: bool) -> tuple[int, float, bool] | None:
    """Sizes always; with ``hashes``, the hashes unless a verification of these files is recorded (then recorded
    anew). Returns (bytes hashed, seconds, whether it was recorded) when it hashed, None otherwise; raises
    ``DataPrepError`` on a mismatch."""
    check_sizes(directory, manifest)
    if not hashes or is_recorded(directory, manifest):
        return None
    started = time.perf_counter()
    read = check_hashes(directory, manifest)
    seconds = time.perf_counter() - started
    return read, seconds, record(directory, manifest, seconds)


def content_fingerprint(manifest: dict) -> str:
    """A short digest of what a dataset holds, from its manifest: each split's shards in order with their SHA-256
    and the token dtype. Preparing the same data again (even under a changed config that writes the same bytes)
    gives the same digest; any other token gives another."""
    content = {
        "dtype": manifest["dtype"],
        "splits": {
            split: [[name, info["sha256"].get(name)] for name in info["files"]]
            for split, info in sorted(manifest["splits"].items())
        },
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]
