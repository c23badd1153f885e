"""Stage 1: find the inputs and stream them as documents.

A *source* (an entry of ``sources``) is a file, a directory (searched recursively; files filtered by
``read.include``/``read.exclude``), a glob pattern, or ``hf:NAME`` / ``hf:PATH`` for a ``datasets`` dataset.
:func:`list_inputs` resolves the sources to *inputs*, each read alone by :func:`read_input`: the pipeline
processes one input at a time (one completion marker per input; parallel workers across inputs).

The format of a file comes from its name, after a compression suffix (``.gz``, ``.zst``/``.zstd``, ``.bz2``,
``.xz``) is removed, so ``x.jsonl.gz`` is gzip-compressed JSON Lines:

============================== ============ ===================================== ==============================
name                           kind         one document per                      ``Document.position``
============================== ============ ===================================== ==============================
``*.jsonl``, ``*.ndjson``      jsonl        line (text under ``read.text_field``) line number, 1-based
``*.json``                     json         record of a top-level array           index in the array, 0-based
                                            (or the one top-level object)         (0 for a top-level object)
``*.parquet``                  parquet      row (column ``read.text_field``)      row index in the file, 0-based
``*.warc``, ``*.wet``          warc         HTML response record (text extracted  record index in the file,
                                            by resiliparse) or WET conversion     0-based, counting every record;
                                            record                                ``Document.url`` = target URI
saved ``datasets`` directory,  hf_dataset   row (column ``read.text_field``)      row index, 0-based
``hf:NAME``, ``hf:PATH``
anything else                  text         file (``read.split_documents:         0 for a whole file; paragraph
                                            file``) or blank-line separated       index, 0-based
                                            paragraph (``paragraph``)
============================== ============ ===================================== ==============================

A directory holding a dataset saved with ``Dataset.save_to_disk`` (``state.json`` + ``dataset_info.json``) or
``DatasetDict.save_to_disk`` (``dataset_dict.json``) is one input, also when found inside a directory source.
``hf:NAME`` loads ``datasets.load_dataset(NAME, read.hf_config, split=read.hf_split, streaming=True)`` (this
needs the network); ``hf:PATH`` with an existing local directory loads it with ``load_from_disk`` when it is a
saved dataset, else with ``load_dataset(PATH, streaming=True)`` (a folder of data files).

Streaming: every reader holds a bounded amount in memory whatever the size of the input (JSON Lines and
paragraphs line by line through the decompressor, JSON arrays record by record with an incremental parser,
Parquet by record batches, WARC record by record, datasets row batch by row batch), except two cases that
must hold one whole document: a text file read as one document, and a JSON file whose top level is one object.

Bad input is never lost silently: binary files (a NUL byte in the first 8 KiB, after decompression) are
skipped and counted; invalid UTF-8 is replaced by U+FFFD and the document counted; records whose text is null
are skipped and counted; WARC responses that are not a successful HTML page are skipped and counted. A corrupt
or truncated compressed file, an unreadable file, invalid JSON, a missing text field or column and a text that
is not a string raise :class:`~data_prep.errors.DataPrepError` naming the file (and line or record).
"""

from __future__ import annotations

import bz2
import codecs
import contextlib
import fnmatch
import glob
import gzip
import hashlib
import io
import json
import lzma
import os
import re
import sysconfig
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from data_prep.errors import DataPrepError

InputKind = Literal["text", "jsonl", "json", "parquet", "warc", "hf_dataset"]
SPLIT_MODES = ("file", "paragraph")


@dataclass
class ReadConfig:
    """How sources become documents."""

    include: list[str] = field(default_factory=lambda: ["*"])
    """Keep files (and saved datasets) found under a directory source whose name matches one of these fnmatch
    patterns. Compressed files keep their suffix: ``*.jsonl*`` matches ``x.jsonl.gz``."""
    exclude: list[str] = field(default_factory=list)
    """Drop files whose path relative to their directory source matches one of these fnmatch patterns."""
    text_field: str = "text"
    """Field (JSON Lines, JSON) or column (Parquet, datasets) holding the text."""
    split_documents: Literal["file", "paragraph"] = "file"
    """Plain text files only: ``file`` makes each file one document (held in memory whole); ``paragraph`` makes
    each block of lines between blank (whitespace-only) lines a document, streamed."""
    hf_split: str = "train"
    """Split read from ``hf:`` sources and from saved ``DatasetDict`` directories."""
    hf_config: str | None = None
    """Configuration name passed to ``datasets.load_dataset`` for ``hf:`` sources (``None``: the default)."""
    html_main_content: bool = True
    """WARC: keep only the main content of an HTML page (resiliparse's heuristics drop navigation, headers,
    footers and the like); ``False`` keeps all visible text."""
    html_preserve_formatting: bool = True
    """WARC: keep line breaks between paragraphs, headings and list items of an HTML page (``False`` joins all
    text into one line)."""

    def __post_init__(self) -> None:
        if self.split_documents not in SPLIT_MODES:
            raise DataPrepError(
                f"read.split_documents is '{self.split_documents}'; expected one of {list(SPLIT_MODES)}"
            )


@dataclass(frozen=True)
class Document:
    """One document and where it came from, so audits, reports and sharded workers can name it.

    ``position`` is an ``int`` whose meaning depends on the input's kind: the 1-based line number in a JSON Lines
    file; the 0-based index of the record in a JSON array, of the row in a Parquet file or dataset, of the
    record in a WARC file (counting every record, as ``warcio index`` lists them), of the paragraph in a text
    file read by paragraph; 0 for a whole-file document and for a JSON file holding a single object.
    """

    text: str
    source: str
    """The input's path (``Input.path``): the file, the dataset directory, or ``hf:NAME``."""
    position: int
    url: str | None = None
    """WARC only: the page's ``WARC-Target-URI``."""


@dataclass
class ReadStats:
    """What reading saw, added up over inputs (the pipeline keeps one per input and sums them)."""

    files: int = 0
    """Inputs opened (a dataset counts as one)."""
    documents: int = 0
    bytes: int = 0
    """Bytes of input read, after decompression (Parquet and datasets: UTF-8 bytes of the text column)."""
    binary_files_skipped: int = 0
    invalid_utf8_documents: int = 0
    """Documents in which invalid UTF-8 was replaced by U+FFFD."""
    null_texts_skipped: int = 0
    """Records (JSON Lines, JSON, Parquet, datasets) whose text field is null."""
    warc_records_skipped: int = 0
    """WARC response records that are not a successful (2xx) HTML page."""


@dataclass(frozen=True)
class Input:
    """One unit of reading: a file, a dataset directory or a hub dataset. Small and picklable."""

    id: str
    """Stable across runs and unique among inputs, safe in a file name: ``<name>-<12 hex digits of a hash of the
    absolute path (or of the hf:NAME source)>``."""
    path: str
    """Path of the file or dataset directory, or ``hf:NAME`` for a hub dataset."""
    kind: InputKind
    compression: str | None = None
    """``gzip``, ``zstd``, ``bzip2``, ``xz`` or ``None``."""


# A file whose first bytes contain NUL is binary (the same heuristic git and grep use).
BINARY_SNIFF_BYTES = 8192
COMPRESSION_SUFFIXES = {".gz": "gzip", ".zst": "zstd", ".zstd": "zstd", ".bz2": "bzip2", ".xz": "xz"}
FORMAT_SUFFIXES = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".parquet": "parquet",
    ".warc": "warc",
    ".wet": "warc",  # Common Crawl's extracted-text files: x.warc.wet.gz
}
HF_PREFIX = "hf:"
# Read-ahead of the line reader over a (decompressed) stream: large enough to amortise Python-level calls.
STREAM_BUFFER_BYTES = 1 << 20
# Compressed bytes fed to the zstd decompressor at a time (bounds its output per call, even for a zip bomb).
ZSTD_READ_BYTES = 1 << 16
# Characters read at a time from a JSON file; a record longer than this is parsed after further reads.
JSON_READ_CHARS = 1 << 20
# A JSON array record that is still incomplete at this size is treated as invalid JSON, not read to the end.
MAX_JSON_RECORD_CHARS = 1 << 28
# Rows per record batch read from Parquet files and saved datasets.
PARQUET_BATCH_ROWS = 1024


def expand_variables(source: str) -> str:
    """Replace ``{stdlib}`` with the directory of the running Python's standard library."""
    return source.replace("{stdlib}", sysconfig.get_paths()["stdlib"])


# -- listing inputs --------------------------------------------------------------------------------------------
def list_inputs(sources: list[str], read: ReadConfig) -> list[Input]:
    """Resolve ``sources`` to inputs, sorted by path and de-duplicated (a file named twice, by any path, is one
    input); raise if a source yields nothing."""
    if not sources:
        raise DataPrepError("no sources given; set 'sources' in the config or pass --sources '[\"path/to/corpus\"]'")
    inputs: dict[str, Input] = {}
    for raw in sources:
        found = _inputs_of_source(raw, read)
        if not found:
            raise DataPrepError(
                f"source '{raw}' matched no files (read.include={read.include}, read.exclude={read.exclude}); "
                "check the path and patterns"
            )
        for item in found:
            inputs.setdefault(item.id, item)
    return sorted(inputs.values(), key=lambda item: item.path)


def _inputs_of_source(raw: str, read: ReadConfig) -> list[Input]:
    source = expand_variables(raw)
    if source.startswith(HF_PREFIX):
        return [_hf_input(raw, source[len(HF_PREFIX) :])]
    path = Path(source)
    if glob.has_magic(source):
        found = []
        for match in sorted(glob.glob(source, recursive=True)):
            if Path(match).is_file():
                found.append(input_for_path(Path(match)))
            elif _is_saved_dataset(Path(match)):
                found.append(_make_input(Path(match), "hf_dataset"))
        return found
    if path.is_dir():
        return [_make_input(path, "hf_dataset")] if _is_saved_dataset(path) else _walk_directory(path, read)
    if path.is_file():
        return [input_for_path(path)]
    if path.exists():
        raise DataPrepError(f"source '{raw}' is neither a file nor a directory; pass files, directories or globs")
    raise DataPrepError(f"source '{raw}' does not exist; fix the path in 'sources' or pass --sources")


def _walk_directory(root: Path, read: ReadConfig) -> list[Input]:
    """Files under ``root`` passing include/exclude; a saved dataset inside is one input, not descended into."""
    found = []
    for directory, subdirectories, files in os.walk(root):
        here = Path(directory)
        subdirectories.sort()
        for name in list(subdirectories):
            if _excluded_directory(here / name, root, read):
                subdirectories.remove(name)  # e.g. site-packages/*: do not walk what would all be excluded
            elif _is_saved_dataset(here / name):
                subdirectories.remove(name)
                if _selected(here / name, root, read):
                    found.append(_make_input(here / name, "hf_dataset"))
        for name in sorted(files):
            path = here / name
            if path.is_file() and _selected(path, root, read):
                found.append(input_for_path(path))
    return found


def _selected(path: Path, root: Path, read: ReadConfig) -> bool:
    return _matches(path.name, read.include) and not _matches(path.relative_to(root).as_posix(), read.exclude)


def _excluded_directory(path: Path, root: Path, read: ReadConfig) -> bool:
    """True when an exclude pattern matches every possible file below ``path`` (a pattern ending in ``*``):
    probed with a one-character and a long name no real file has."""
    relative = path.relative_to(root).as_posix()
    return all(_matches(f"{relative}/{probe}", read.exclude) for probe in ("\x00", "\x00" * 64))


def _matches(path: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatch(path, pattern) for pattern in patterns)


def _is_saved_dataset(path: Path) -> bool:
    """A directory written by ``Dataset.save_to_disk`` or ``DatasetDict.save_to_disk``."""
    return path.is_dir() and (
        ((path / "state.json").is_file() and (path / "dataset_info.json").is_file())
        or (path / "dataset_dict.json").is_file()
    )


def _hf_input(raw: str, rest: str) -> Input:
    local = Path(rest).expanduser()
    if rest and local.is_dir():
        return _make_input(local, "hf_dataset")
    if rest.startswith(("/", ".", "~")) or local.exists():
        raise DataPrepError(f"source '{raw}': '{rest}' is not an existing directory; fix the path")
    if not rest:
        raise DataPrepError(f"source '{raw}' names no dataset; write hf:NAME (a hub dataset) or hf:PATH")
    return Input(id=_input_id(HF_PREFIX + rest), path=HF_PREFIX + rest, kind="hf_dataset")


def input_for_path(path: Path) -> Input:
    """The input of one file (format from its name) or dataset directory (or an ``hf:NAME`` path)."""
    text = str(path)
    if text.startswith(HF_PREFIX):
        return _hf_input(text, text[len(HF_PREFIX) :])
    if path.is_dir():
        if _is_saved_dataset(path):
            return _make_input(path, "hf_dataset")
        raise DataPrepError(f"'{path}' is a directory, not a file or a saved dataset; pass it in 'sources'")
    compression, kind = detect_format(path.name)
    if kind == "parquet" and compression is not None:
        raise DataPrepError(
            f"'{path}': compressed Parquet files are not read; decompress it (Parquet compresses inside)"
        )
    return _make_input(path, kind, compression)


def detect_format(name: str) -> tuple[str | None, InputKind]:
    """``(compression, kind)`` from a file name: ``x.jsonl.gz`` -> ``("gzip", "jsonl")``."""
    stem, suffix = os.path.splitext(name.lower())
    compression = COMPRESSION_SUFFIXES.get(suffix)
    if compression is not None:
        suffix = os.path.splitext(stem)[1]
    return compression, FORMAT_SUFFIXES.get(suffix, "text")


def _make_input(path: Path, kind: InputKind, compression: str | None = None) -> Input:
    return Input(id=_input_id(os.path.abspath(path)), path=str(path), kind=kind, compression=compression)


def _input_id(key: str) -> str:
    name = key.rstrip("/").rsplit("/", 1)[-1]
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._-")[:40] or "input"
    return f"{slug}-{hashlib.sha256(key.encode('utf-8', 'surrogateescape')).hexdigest()[:12]}"


# -- opening (and decompressing) a file as a stream ------------------------------------------------------------
class _GuardedReader(io.RawIOBase):
    """Reads from ``inner``: turns its ``errors`` into a DataPrepError (``describe`` writes the message) and adds
    the bytes read to ``stats.bytes`` (when given)."""

    def __init__(self, inner, errors: tuple, describe: Callable[[BaseException], str], stats: ReadStats | None):
        self._inner, self._errors, self._describe, self._stats = inner, errors, describe, stats

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        try:
            count = self._inner.readinto(buffer)
        except self._errors as error:
            raise DataPrepError(self._describe(error)) from error
        if self._stats is not None:
            self._stats.bytes += count
        return count


class _ZstdReader(io.RawIOBase):
    """Decompresses a (multi-frame) zstd stream; unlike ``zstandard``'s ``stream_reader``, a stream that ends
    inside a frame raises ``EOFError`` instead of ending quietly."""

    def __init__(self, raw) -> None:
        import zstandard

        self._raw, self._context = raw, zstandard.ZstdDecompressor()
        self._frame, self._in_frame, self._eof = self._context.decompressobj(), False, False
        self._pending, self._offset = b"", 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while self._offset >= len(self._pending):
            if self._eof:
                return 0
            self._decompress(self._raw.read(ZSTD_READ_BYTES))
        count = min(len(buffer), len(self._pending) - self._offset)
        buffer[:count] = self._pending[self._offset : self._offset + count]
        self._offset += count
        return count

    def _decompress(self, data: bytes) -> None:
        if not data:
            if self._in_frame:
                raise EOFError("the stream ended inside a zstd frame")
            self._eof = True
            return
        parts = []
        while data:
            self._in_frame = True
            parts.append(self._frame.decompress(data))
            if not self._frame.eof:
                break
            data = self._frame.unused_data
            self._frame, self._in_frame = self._context.decompressobj(), False
        self._pending, self._offset = b"".join(parts), 0


def _decompression_errors() -> tuple:
    errors: tuple = (EOFError, OSError, zlib.error, lzma.LZMAError)
    try:
        import zstandard
    except ImportError:
        return errors
    return (*errors, zstandard.ZstdError)


def _decompressor(compression: str, raw):
    if compression == "gzip":
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if compression == "bzip2":
        return bz2.BZ2File(raw, mode="rb")
    if compression == "xz":
        return lzma.LZMAFile(raw, mode="rb")
    if compression == "zstd":
        _require("zstandard", "zstd-compressed inputs")
        return _ZstdReader(raw)
    raise DataPrepError(f"unknown compression '{compression}'")


@contextlib.contextmanager
def open_input(item: Input, stats: ReadStats | None = None) -> Iterator[io.BufferedReader]:
    """The decompressed bytes of a file input as a buffered binary stream (iterate it for lines). Read failures
    and corrupt compressed data raise DataPrepError naming the file; bytes read are added to ``stats.bytes``."""
    path = item.path

    def unreadable(error: BaseException) -> str:
        reason = getattr(error, "strerror", None) or error
        return f"cannot read '{path}': {reason}; fix its permissions or remove it from sources"

    def corrupt(error: BaseException) -> str:
        return f"'{path}' is a corrupt or truncated {item.compression} file ({error}); re-download or remove it"

    with contextlib.ExitStack() as stack:
        try:
            handle = stack.enter_context(Path(path).open("rb", buffering=0))
        except OSError as error:
            raise DataPrepError(unreadable(error)) from error
        if item.compression is None:
            raw = _GuardedReader(handle, (OSError,), unreadable, stats)
        else:
            guarded = _GuardedReader(handle, (OSError,), unreadable, None)
            decompressor = stack.enter_context(_decompressor(item.compression, guarded))
            raw = _GuardedReader(decompressor, _decompression_errors(), corrupt, stats)
        yield io.BufferedReader(raw, buffer_size=STREAM_BUFFER_BYTES)


def _is_binary(item: Input) -> bool:
    with open_input(item) as stream:
        return b"\x00" in stream.read(BINARY_SNIFF_BYTES)


def _decode(data: bytes, stats: ReadStats) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        stats.invalid_utf8_documents += 1
        return data.decode("utf-8", errors="replace")


def _require(module: str, purpose: str):
    try:
        return __import__(module)
    except ImportError as error:
        raise DataPrepError(f"reading {purpose} needs the '{module}' package; pip install {module}") from error


# -- readers, one per kind ---------------------------------------------------------------------------------
def read_input(item: Input, read: ReadConfig, stats: ReadStats) -> Iterator[Document]:
    """Stream the documents of one input, counting what was read and skipped into ``stats``."""
    readers = {
        "text": _read_text,
        "jsonl": _read_jsonl,
        "json": _read_json,
        "parquet": _read_parquet,
        "warc": _read_warc,
        "hf_dataset": _read_hf_dataset,
    }
    if item.kind not in readers:
        raise DataPrepError(f"input '{item.path}' has unknown kind '{item.kind}'; expected one of {sorted(readers)}")
    stats.files += 1
    for document in readers[item.kind](item, read, stats):
        stats.documents += 1
        yield document


def _read_text(item: Input, read: ReadConfig, stats: ReadStats) -> Iterator[Document]:
    if read.split_documents == "paragraph":
        yield from _read_paragraphs(item, stats)
        return
    with open_input(item, stats) as stream:
        data = stream.read()
    if b"\x00" in data[:BINARY_SNIFF_BYTES]:
        stats.binary_files_skipped += 1
        return
    yield Document(text=_decode(data, stats), source=item.path, position=0)


def _read_paragraphs(item: Input, stats: ReadStats) -> Iterator[Document]:
    """Blocks of lines separated by blank (whitespace-only) lines, without their last line break."""
    if _is_binary(item):
        stats.binary_files_skipped += 1
        return
    index, lines = 0, []
    with open_input(item, stats) as stream:
        for line in stream:
            if line.strip():
                lines.append(line)
                continue
            if lines:
                yield _paragraph(lines, item, index, stats)
                index, lines = index + 1, []
        if lines:
            yield _paragraph(lines, item, index, stats)


def _paragraph(lines: list[bytes], item: Input, index: int, stats: ReadStats) -> Document:
    # Lines are split at b"\n", which never occurs inside a UTF-8 sequence, so decoding per paragraph is exact.
    return Document(text=_decode(b"".join(lines).rstrip(b"\r\n"), stats), source=item.path, position=index)


def _record_text(record, read: ReadConfig, where: str, stats: ReadStats) -> str | None:
    """The text of a JSON record; None (counted) when it is null."""
    field_name = read.text_field
    if not isinstance(record, dict) or field_name not in record:
        raise DataPrepError(f"{where}: no '{field_name}' field; set read.text_field to the field holding the text")
    text = record[field_name]
    if text is None:
        stats.null_texts_skipped += 1
        return None
    if not isinstance(text, str):
        raise DataPrepError(f"{where}: field '{field_name}' is {type(text).__name__}, not a string")
    return text


def _read_jsonl(item: Input, read: ReadConfig, stats: ReadStats) -> Iterator[Document]:
    if _is_binary(item):
        stats.binary_files_skipped += 1
        return
    with open_input(item, stats) as stream:
        for line_number, raw_line in enumerate(stream, start=1):
            if not raw_line.strip():
                continue
            where = f"'{item.path}' line {line_number}"
            try:
                line, repaired = raw_line.decode("utf-8"), False
            except UnicodeDecodeError:
                line, repaired = raw_line.decode("utf-8", errors="replace"), True
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise DataPrepError(f"{where}: invalid JSON ({error.msg}); fix or remove the line") from error
            text = _record_text(record, read, where, stats)
            if text is None:
                continue
            stats.invalid_utf8_documents += repaired
            yield Document(text=text, source=item.path, position=line_number)


# Lone surrogates: bytes that were not valid UTF-8 (decoded with "surrogateescape") or bad \\uD800 escapes.
_SURROGATE = re.compile("[\ud800-\udfff]")


def _repair_surrogates(text: str, stats: ReadStats) -> str:
    if text.isascii() or not _SURROGATE.search(text):
        return text
    stats.invalid_utf8_documents += 1
    return _SURROGATE.sub("\ufffd", text)


def _read_json(item: Input, read: ReadConfig, stats: ReadStats) -> Iterator[Document]:
    if _is_binary(item):
        stats.binary_files_skipped += 1
        return
    with open_input(item, stats) as stream:
        # surrogateescape keeps invalid bytes as lone surrogates, so each record is repaired (and counted) alone.
        text_stream = io.TextIOWrapper(stream, encoding="utf-8-sig", errors="surrogateescape")
        for index, record in _JsonRecords(text_stream, item.path):
            text = _record_text(record, read, f"'{item.path}' record {index}", stats)
            if text is not None:
                yield Document(text=_repair_surrogates(text, stats), source=item.path, position=index)


class _JsonRecords:
    """Iterates ``(index, record)`` over a top-level JSON array read in chunks: each element is parsed by the
    standard library's C decoder (``raw_decode``) once it is complete in the buffer, so memory holds about one
    chunk plus one record. A top-level object is read whole and yielded as record 0."""

    _WHITESPACE = re.compile(r"[ \t\n\r]*")

    def __init__(self, stream: io.TextIOBase, path: str) -> None:
        self._stream, self._path = stream, path
        self._decoder = json.JSONDecoder()
        self._buffer, self._pos, self._eof = "", 0, False

    def _read_more(self) -> bool:
        """Append a chunk (at least as long as what is pending, so a long record takes few re-parses)."""
        if self._eof:
            return False
        pending = len(self._buffer) - self._pos
        data = self._stream.read(max(JSON_READ_CHARS, pending))
        self._buffer, self._pos = self._buffer[self._pos :] + data, 0
        self._eof = not data
        return bool(data)

    def _peek(self) -> str:
        """The next non-whitespace character ('' at the end of the file)."""
        while True:
            self._pos = self._WHITESPACE.match(self._buffer, self._pos).end()
            if self._pos < len(self._buffer) or not self._read_more():
                return self._buffer[self._pos : self._pos + 1]

    def _error(self, what: str) -> DataPrepError:
        return DataPrepError(f"'{self._path}' {what}; fix the file (a JSON array of records, or one record)")

    def _value(self, index: int):
        while True:
            try:
                value, end = self._decoder.raw_decode(self._buffer, self._pos)
                # A value that reaches the end of the buffer may continue in the next chunk (a number).
                if end < len(self._buffer) or self._eof:
                    self._pos = end
                    return value
            except json.JSONDecodeError as error:
                if self._eof or not self._maybe_cut_off(error):
                    raise self._error(f"record {index}: invalid JSON ({error.msg})") from error
                if len(self._buffer) - self._pos > MAX_JSON_RECORD_CHARS:
                    raise self._error(
                        f"record {index}: invalid JSON or longer than {MAX_JSON_RECORD_CHARS:,} characters"
                    ) from error
            self._read_more()

    def _maybe_cut_off(self, error: json.JSONDecodeError) -> bool:
        """Whether the error can come from the record continuing past the buffer (then read on) rather than from
        invalid JSON (then fail now, without reading the rest of the file): an unterminated string, or an
        error within the last few characters (a cut ``\\uXXXX`` escape is the longest such tail)."""
        return error.msg.startswith("Unterminated string") or error.pos >= len(self._buffer) - 6

    def __iter__(self) -> Iterator[tuple[int, object]]:
        first = self._peek()
        if first == "{":
            while self._read_more():
                pass
            yield 0, self._value(0)
        elif first == "[":
            self._pos += 1
            if self._peek() == "]":
                self._pos += 1
            else:
                index = 0
                while True:
                    self._peek()
                    yield index, self._value(index)
                    separator = self._peek()
                    self._pos += 1
                    if separator == "]":
                        break
                    if separator != ",":
                        found = repr(separator) if separator else "the end of the file"
                        raise self._error(f"record {index}: expected ',' or ']' after it, found {found}")
                    index += 1
        else:
            found = repr(first) if first else "an empty file"
            raise self._error(f"is not a JSON array or object (starts with {found})")
        if self._peek():
            raise self._error("has data after the top-level JSON value")


def _check_string_column(type_, path: str, column: str) -> None:
    import pyarrow as pa

    if not (pa.types.is_string(type_) or pa.types.is_large_string(type_) or str(type_) == "string_view"):
        raise DataPrepError(f"'{path}': column '{column}' is {type_}, not a string; set read.text_field")


def _arrow_texts(column, item: Input, first_row: int, stats: ReadStats) -> Iterator[Document]:
    """Documents of one Arrow string array whose first element is row ``first_row`` of the input."""
    import pyarrow.compute as pc

    stats.bytes += int(pc.sum(pc.binary_length(column)).as_py() or 0)
    for offset, text in enumerate(column.to_pylist()):
        if text is None:
            stats.null_texts_skipped += 1
            continue
        yield Document(text=text, source=item.path, position=first_row + offset)


def _read_parquet(item: Input, read: ReadConfig, stats: ReadStats) -> Iterator[Document]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    def unreadable(error: Exception) -> DataPrepError:
        return DataPrepError(f"'{item.path}' is not a readable Parquet file ({error}); re-download or remove it")

    try:
        parquet = pq.ParquetFile(item.path)
    except (pa.ArrowException, OSError) as error:
        raise unreadable(error) from error
    with parquet:
        schema = parquet.schema_arrow
        if read.text_field not in schema.names:
            raise DataPrepError(
                f"'{item.path}' has no column '{read.text_field}' (columns: {', '.join(schema.names)}); "
                "set read.text_field to the column holding the text"
            )
        _check_string_column(schema.field(read.text_field).type, item.path, read.text_field)
        batches = parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=[read.text_field])
        row = 0
        while True:
            try:
                batch = next(batches, None)
            except (pa.ArrowException, OSError) as error:
                raise unreadable(error) from error
            if batch is None:
                return
            yield from _arrow_texts(batch.column(0), item, row, stats)
            row += batch.num_rows


def _read_hf_dataset(item: Input, read: ReadConfig, stats: ReadStats) -> Iterator[Document]:
    datasets = _require("datasets", "datasets sources")
    path = item.path
    try:
        if path.startswith(HF_PREFIX):
            dataset = datasets.load_dataset(path[len(HF_PREFIX) :], read.hf_config, split=read.hf_split, streaming=True)
        elif _is_saved_dataset(Path(path)):
            dataset = datasets.load_from_disk(path)
        else:
            dataset = datasets.load_dataset(path, read.hf_config, split=read.hf_split, streaming=True)
    except Exception as error:  # datasets raises many types (hub, network, file and format errors)
        raise DataPrepError(
            f"cannot load dataset '{path}' ({type(error).__name__}: {error}); check the name, path and "
            "read.hf_split / read.hf_config (a hub name needs the network)"
        ) from error
    if isinstance(dataset, datasets.DatasetDict):
        if read.hf_split not in dataset:
            raise DataPrepError(
                f"dataset '{path}' has no split '{read.hf_split}' (splits: {', '.join(dataset)}); set read.hf_split"
            )
        dataset = dataset[read.hf_split]
    columns = dataset.column_names
    if columns is not None and read.text_field not in columns:
        raise DataPrepError(
            f"dataset '{path}' has no column '{read.text_field}' (columns: {', '.join(columns)}); "
            "set read.text_field to the column holding the text"
        )
    if isinstance(dataset, datasets.Dataset):
        # Memory-mapped Arrow files, read a record batch at a time.
        feature = dataset.features[read.text_field]
        if getattr(feature, "dtype", None) not in ("string", "large_string"):
            raise DataPrepError(
                f"dataset '{path}': column '{read.text_field}' is {feature}, not a string; set read.text_field"
            )
        row = 0
        for table in dataset.select_columns([read.text_field]).with_format("arrow").iter(PARQUET_BATCH_ROWS):
            yield from _arrow_texts(table.column(0).combine_chunks(), item, row, stats)
            row += table.num_rows
        return
    for row, record in enumerate(dataset):  # an IterableDataset (streaming), row by row
        text = _record_text(record, read, f"dataset '{path}' row {row}", stats)
        if text is not None:
            stats.bytes += len(text.encode("utf-8", "surrogatepass"))
            yield Document(text=text, source=path, position=row)


HTML_CONTENT_TYPES = ("text/html", "application/xhtml+xml")


def _read_warc(item: Input, read: ReadConfig, stats: ReadStats) -> Iterator[Document]:
    """HTML responses (status 2xx) become their extracted text; WET ``conversion`` records their text as is."""
    _require("warcio", "WARC files")
    from warcio.archiveiterator import ArchiveIterator
    from warcio.exceptions import ArchiveLoadFailed
    from warcio.statusandheaders import StatusAndHeadersParserException

    def invalid(index: int, reason) -> DataPrepError:
        return DataPrepError(
            f"'{item.path}' record {index}: not a valid WARC record ({str(reason)[:200]}); re-download or remove the file"
        )

    with open_input(item, stats) as stream:
        records = ArchiveIterator(stream)
        index = 0
        while True:
            try:
                record = next(records, None)
            # AttributeError: warcio's HTTP header parser on a record cut short.
            except (ArchiveLoadFailed, StatusAndHeadersParserException, AttributeError) as error:
                raise invalid(index, error) from error
            if record is None:
                return
            if record.format != "warc":
                raise invalid(index, f"an {record.format.upper()} record")
            if not (record.rec_headers.get_header("Content-Length") or "").strip().isdigit():
                raise invalid(index, "no Content-Length header: the file may be truncated")
            document = _warc_document(record, index, item, read, stats)
            # warcio returns a short payload quietly at the end of the stream: a truncated (uncompressed) file.
            while record.raw_stream.read(STREAM_BUFFER_BYTES):
                pass
            missing = getattr(record.raw_stream, "limit", 0)
            if missing > 0:
                raise DataPrepError(
                    f"'{item.path}' record {index} is cut short ({missing} bytes missing): the file is truncated; "
                    "re-download or remove it"
                )
            if document is not None:
                yield document
            index += 1


def _warc_document(record, index: int, item: Input, read: ReadConfig, stats: ReadStats) -> Document | None:
    url = record.rec_headers.get_header("WARC-Target-URI")
    if record.rec_type == "conversion":
        text = _decode(record.content_stream().read(), stats)
        return Document(text=text, source=item.path, position=index, url=url)
    if record.rec_type != "response":
        return None  # warcinfo, request, metadata, ...: no document, nothing lost
    http = record.http_headers
    content_type = (
        (http.get_header("Content-Type") if http is not None else None)
        or record.rec_headers.get_header("WARC-Identified-Payload-Type")
        or ""
    )
    status = http.get_statuscode() if http is not None else ""
    if not str(status).startswith("2") or content_type.split(";")[0].strip().lower() not in HTML_CONTENT_TYPES:
        stats.warc_records_skipped += 1
        return None
    text = html_to_text(record.content_stream().read(), read, _charset(content_type))
    return Document(text=text, source=item.path, position=index, url=url)


def _charset(content_type: str) -> str | None:
    match = re.search(r"charset\s*=\s*[\"']?([\w.:-]+)", content_type, re.IGNORECASE)
    if match is None:
        return None
    try:
        return codecs.lookup(match.group(1)).name
    except LookupError:
        return None


def html_to_text(html: bytes, read: ReadConfig, charset: str | None = None) -> str:
    """Visible text of an HTML page, with resiliparse: decoded with ``charset`` (from the HTTP header) or the
    encoding resiliparse detects (``<meta charset>`` first), then extracted per ``read.html_*``."""
    _require("resiliparse", "HTML in WARC files")
    from resiliparse.extract.html2text import extract_plain_text
    from resiliparse.parse.encoding import bytes_to_str, detect_encoding
    from resiliparse.parse.html import HTMLTree

    text = bytes_to_str(html, charset or detect_encoding(html, from_html_meta=True))
    return extract_plain_text(
        HTMLTree.parse(text),
        main_content=read.html_main_content,
        preserve_formatting=read.html_preserve_formatting,
    )


# -- the file-list interface kept for existing callers --------------------------------------------------------------
def expand_sources(sources: list[str], read: ReadConfig) -> list[Path]:
    """The paths of :func:`list_inputs` (``Path("hf:NAME")`` for a hub dataset)."""
    return [Path(item.path) for item in list_inputs(sources, read)]


def read_documents(files: list[Path], read: ReadConfig, stats: ReadStats) -> Iterator[Document]:
    """Yield the documents of ``files`` (as :func:`expand_sources` returns them) in order."""
    for path in files:
        yield from read_input(input_for_path(Path(path)), read, stats)
