"""Resumable work: fingerprints that name stage outputs, and writes that are never seen half-done.

Every stage writes its output under ``<output_dir>/work/`` in files whose names carry a fingerprint of what
decides their content (the stage's config keys, the fingerprints of the stages it reads, the input file's
identity). A file is written under a temporary name and renamed when complete, so its existence is its
completion marker. A failing write removes its temporary file; a killed run leaves at most ``*.tmp-<pid>`` files,
which later runs ignore and the next run that finishes deletes.
Changing a config key changes only the fingerprints of the stages that read it, so only those are redone.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

from data_prep.errors import naming_full_disk


def fingerprint(*parts: Any) -> str:
    """Short stable hash of JSON-serialisable parts (dataclasses are turned into dicts)."""
    normalised = [asdict(part) if is_dataclass(part) else part for part in parts]
    payload = json.dumps(normalised, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def file_identity(path: Path) -> list:
    """What tells a changed input from an unchanged one without reading it: path, size, modification time."""
    stat = path.stat()
    return [str(path.resolve()), stat.st_size, stat.st_mtime_ns]


TMP_GLOB = "*.tmp-*"  # what a killed run can leave behind: ignored, overwritten or removed by the next
_TMP_NAME = re.compile(r"\.tmp-\d+$")  # exactly the names tmp_sibling gives


def tmp_sibling(path: Path) -> Path:
    """The one name a file (or directory) is written under before it is renamed onto ``path``: beside it (so
    the rename is atomic, on the same filesystem) and per process (two writers never share one)."""
    return path.with_name(f"{path.name}.tmp-{os.getpid()}")


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary sibling path to write; rename it onto ``path`` only if the block succeeds (the temporary
    file is removed either way). A full disk in the block is a :class:`DiskFullError` naming ``path``."""
    tmp = tmp_sibling(path)
    try:
        with naming_full_disk(path):
            path.parent.mkdir(parents=True, exist_ok=True)
            yield tmp
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_json_atomic(path: Path, payload: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def replace_tree(source: Path, destination: Path) -> None:
    with naming_full_disk(destination):
        if destination.exists():
            shutil.rmtree(destination)
        shutil.copytree(source, destination)


def copy_file(source: Path, destination: Path) -> None:
    """``shutil.copyfile``, a full disk named by the file being written (shutil names the source)."""
    with naming_full_disk(destination):
        shutil.copyfile(source, destination)


def remove_temporary_files(directory: Path) -> None:
    """Delete what killed runs left under ``directory`` (files and directories named by :func:`tmp_sibling`): a
    finished run calls it, when no writer of its own is left."""
    for leftover in sorted(directory.rglob(TMP_GLOB), reverse=True):  # a directory's contents before it
        if not _TMP_NAME.search(leftover.name):  # e.g. an input named notes.tmp-1.txt: not ours to delete
            continue
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)
