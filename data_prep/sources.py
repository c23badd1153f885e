"""Stage 1: find the input files and read them as documents.

A source is a file, a directory (searched recursively, filtered by ``read.include``/``read.exclude``) or a
glob pattern. Plain files are one document each; ``.jsonl`` files hold one JSON record per line with the text
under ``read.text_field``. Every document carries its source path and position so later stages and audits can
name it.
"""

from __future__ import annotations

import fnmatch
import glob
import json
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from data_prep.errors import DataPrepError


@dataclass
class ReadConfig:
    """How sources become documents."""

    include: list[str] = field(default_factory=lambda: ["*"])
    """Keep files found under a directory source whose name matches one of these fnmatch patterns."""
    exclude: list[str] = field(default_factory=list)
    """Drop files whose path relative to their directory source matches one of these fnmatch patterns."""
    text_field: str = "text"
    """Field holding the text in ``.jsonl`` records."""


# A file whose first bytes contain NUL is binary (the same heuristic git and grep use).
BINARY_SNIFF_BYTES = 8192


@dataclass(frozen=True)
class Document:
    text: str
    source: str
    """Path of the file the document came from."""
    position: int
    """Line number (1-based) inside a ``.jsonl`` file; 0 for a whole-file document."""


@dataclass
class ReadStats:
    files: int = 0
    documents: int = 0
    bytes: int = 0
    binary_files_skipped: int = 0
    invalid_utf8_documents: int = 0


def expand_variables(source: str) -> str:
    """Replace ``{stdlib}`` with the directory of the running Python's standard library."""
    return source.replace("{stdlib}", sysconfig.get_paths()["stdlib"])


def _matches(path: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatch(path, pattern) for pattern in patterns)


def expand_sources(sources: list[str], read: ReadConfig) -> list[Path]:
    """Resolve ``sources`` to a sorted, de-duplicated list of files; raise if a source yields nothing."""
    if not sources:
        raise DataPrepError("no sources given; set 'sources' in the config or pass --sources '[\"path/to/corpus\"]'")
    files: dict[str, Path] = {}
    for raw in sources:
        source = expand_variables(raw)
        path = Path(source)
        if glob.has_magic(source):
            found = [Path(p) for p in glob.glob(source, recursive=True) if Path(p).is_file()]
        elif path.is_dir():
            found = [
                p
                for p in path.rglob("*")
                if p.is_file()
                and _matches(p.name, read.include)
                and not _matches(p.relative_to(path).as_posix(), read.exclude)
            ]
        elif path.is_file():
            found = [path]
        elif path.exists():
            raise DataPrepError(f"source '{raw}' is neither a file nor a directory; pass files, directories or globs")
        else:
            raise DataPrepError(f"source '{raw}' does not exist; fix the path in 'sources' or pass --sources")
        if not found:
            raise DataPrepError(
                f"source '{raw}' matched no files (read.include={read.include}); check the path and patterns"
            )
        for file in found:
            files.setdefault(str(file), file)
    return [files[key] for key in sorted(files)]


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise DataPrepError(
            f"cannot read '{path}': {error.strerror or error}; fix its permissions or remove it from sources"
        ) from error


def _decode(data: bytes, stats: ReadStats) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        stats.invalid_utf8_documents += 1
        return data.decode("utf-8", errors="replace")


def _read_jsonl(path: Path, data: bytes, text_field: str, stats: ReadStats) -> Iterator[Document]:
    for line_number, line in enumerate(data.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataPrepError(
                f"'{path}' line {line_number}: invalid JSON ({error.msg}); fix or remove the line"
            ) from error
        if not isinstance(record, dict) or text_field not in record:
            raise DataPrepError(
                f"'{path}' line {line_number}: no '{text_field}' field; set read.text_field to the field holding the text"
            )
        text = record[text_field]
        if not isinstance(text, str):
            raise DataPrepError(
                f"'{path}' line {line_number}: field '{text_field}' is {type(text).__name__}, not a string"
            )
        stats.documents += 1
        yield Document(text=text, source=str(path), position=line_number)


def read_documents(files: list[Path], read: ReadConfig, stats: ReadStats) -> Iterator[Document]:
    """Yield the documents of ``files`` in order, counting what was read and skipped into ``stats``."""
    for path in files:
        data = _read_bytes(path)
        stats.files += 1
        stats.bytes += len(data)
        if b"\x00" in data[:BINARY_SNIFF_BYTES]:
            stats.binary_files_skipped += 1
            continue
        if path.suffix == ".jsonl":
            yield from _read_jsonl(path, data, read.text_field, stats)
        else:
            stats.documents += 1
            yield Document(text=_decode(data, stats), source=str(path), position=0)
