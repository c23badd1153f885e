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
``{python_prose}``,            python_prose installed package's long description  index in the part's sorted
``{python_prose}/PART``                     or ``pydoc_data`` topic               order, 0-based
============================== ============ ===================================== ==============================

A directory holding a dataset saved with ``Dataset.save_to_disk`` (``state.json`` + ``dataset_info.json``) or
``DatasetDict.save_to_disk`` (``dataset_dict.json``) is one input, also when found inside a directory source.
``hf:NAME`` loads ``datasets.load_dataset(NAME, read.hf_config, split=read.hf_split, streaming=True)`` (this
needs the network); ``hf:PATH`` with an existing local directory loads it with ``load_from_disk`` when it is a
saved dataset, else with ``load_dataset(PATH, streaming=True)`` (a folder of data files).

``{python_prose}`` is a built-in source of English prose (see :mod:`data_prep.read.python_prose`): two inputs,
``{python_prose}/package_descriptions`` and ``{python_prose}/pydoc_topics``, each also a source alone; the
``read.include``/``exclude``/``split_documents`` keys do not apply to it.

Streaming: every reader holds a bounded amount in memory whatever the size of the input (JSON Lines and
paragraphs line by line through the decompressor, JSON arrays record by record with ijson (see
:mod:`data_prep.read.json_array`), Parquet by record batches, WARC record by record, datasets row batch by row
batch), except two cases that must hold one whole document: a text file read as one document, and a JSON file
whose top level is one object.

Bad input is never lost silently: binary files (a NUL byte in the first 8 KiB, after decompression) are
skipped, counted and named in ``report.json``; invalid UTF-8 is replaced by U+FFFD and the document counted;
records whose text is null are skipped and counted; WARC responses that are not a successful HTML page are
skipped and counted. A corrupt or truncated compressed file, an unreadable file, a missing column and a column
that is not a string raise :class:`~data_prep.errors.DataPrepError` naming the file. So do a bad record (invalid
JSON, a record without the text field, a text that is not a string) of a JSON Lines or JSON file or a streamed
dataset, naming the line, record or row, unless ``read.on_error`` is ``skip``: then it is skipped, counted per
file, and the first few are named (where and why) in ``report.json`` and the printed funnel.
"""

from __future__ import annotations

import fnmatch
import glob
import hashlib
import os
import re
import sysconfig
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from data_prep.errors import DataPrepError
from data_prep.read import python_prose

InputKind = Literal["text", "jsonl", "json", "parquet", "warc", "hf_dataset", "python_prose"]
SPLIT_MODES = ("file", "paragraph")
ON_ERROR = ("fail", "skip")
# Bad records of one input named (where and why) in its stats; the rest are only counted.
NAMED_BAD_RECORDS = 5


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
    part_mb: float = 256.0
    """Files larger than this many MB are read as parts of about this size, each its own task on the Ray engine:
    uncompressed JSON Lines files as byte ranges cut at line ends, Parquet files as runs of row groups. 0 reads
    every file whole. The dataset is the same whatever the size (positions stay the file's line numbers and
    rows), so this key changes no fingerprint. Compressed files are always read whole."""

    on_error: Literal["fail", "skip"] = "fail"
    """What a bad record of a JSON Lines or JSON file or a streamed dataset does (invalid JSON, no ``text_field``,
    a text that is not a string): ``fail`` stops the run with one line naming the file and line; ``skip`` skips
    the record, counts it per file in ``report.json`` (``bad_records``) and names the first few there and in the
    printed funnel. Part of the dataset's fingerprint: it changes what is written when a record is bad."""

    def __post_init__(self) -> None:
        if self.on_error not in ON_ERROR:
            raise DataPrepError(f"read.on_error is '{self.on_error}'; expected one of {list(ON_ERROR)}")
        if not float(self.part_mb) >= 0:
            raise DataPrepError(f"read.part_mb must be 0 (read files whole) or more, got {self.part_mb}")
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
    """The input's path (``Input.path``): the file, the dataset directory, ``hf:NAME`` or ``{python_prose}/PART``."""
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
    bad_records_skipped: int = 0
    """Records skipped under ``read.on_error: skip`` (invalid JSON, no text field, a text that is not a string)."""
    bad_records: list[dict] = field(default_factory=list)
    """The first ``NAMED_BAD_RECORDS`` of those: ``{"at": "line 7", "error": "invalid JSON (...)"}``."""

    def skip_bad_record(self, at: str, error: str) -> None:
        """Count a bad record skipped under ``read.on_error: skip``, naming the first few."""
        self.bad_records_skipped += 1
        if len(self.bad_records) < NAMED_BAD_RECORDS:
            self.bad_records.append({"at": at, "error": error})


@dataclass(frozen=True)
class Input:
    """One unit of reading: a file, a dataset directory or a hub dataset. Small and picklable."""

    id: str
    """Stable across runs and unique among inputs, safe in a file name: ``<name>-<12 hex digits of a hash of the
    absolute path (or of the hf:NAME source)>``."""
    path: str
    """Path of the file or dataset directory, ``hf:NAME`` for a hub dataset, ``{python_prose}/PART`` for a part of
    the built-in prose source."""
    kind: InputKind
    compression: str | None = None
    """``gzip``, ``zstd``, ``bzip2``, ``xz`` or ``None``."""
    byte_range: tuple[int, int] | None = None
    """A part of a large uncompressed JSON Lines file (``read.part_mb``): the lines that start in
    ``[start, end)``. ``None``: the whole input."""
    row_groups: tuple[int, int] | None = None
    """A part of a large Parquet file (``read.part_mb``): row groups ``[start, end)``."""
    first_position: int = 0
    """A part's first position: its first line number (JSON Lines; the documents stage counts the lines before
    it) or row (Parquet; from the file's metadata), so positions stay the file's."""

    @property
    def is_part(self) -> bool:
        return self.byte_range is not None or self.row_groups is not None

    @property
    def first_part(self) -> bool:
        """Whether this input starts its file: what is counted once per file (files, binary skips) counts here."""
        start = (self.byte_range or self.row_groups or (0, 0))[0]
        return start == 0


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


def expand_variables(source: str) -> str:
    """Replace ``{stdlib}`` with the directory of the running Python's standard library."""
    return source.replace("{stdlib}", sysconfig.get_paths()["stdlib"])


# -- listing inputs --------------------------------------------------------------------------------------------
def list_inputs(sources: list[str], read: ReadConfig) -> list[Input]:
    """The inputs of :func:`list_files`, large files as their parts (``read.part_mb``), in order."""
    return [part for item in list_files(sources, read) for part in split_into_parts(item, read.part_mb)]


def list_files(sources: list[str], read: ReadConfig) -> list[Input]:
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


def split_into_parts(item: Input, part_mb: float) -> list[Input]:
    """A file over ``part_mb`` MB as consecutive parts of about that size: an uncompressed JSON Lines file as
    byte ranges (each reads the lines that start in it), a Parquet file as runs of row groups; any other input
    as itself."""
    if not part_mb or item.compression is not None or item.kind not in ("jsonl", "parquet"):
        return [item]
    size = os.path.getsize(item.path)
    part_bytes = max(1, round(part_mb * 1e6))
    if size <= part_bytes:
        return [item]
    if item.kind == "parquet":
        return _row_group_parts(item, part_bytes)
    count = -(-size // part_bytes)
    bounds = [size * k // count for k in range(count + 1)]
    return [replace(item, id=f"{item.id}-part{k:05d}", byte_range=(bounds[k], bounds[k + 1])) for k in range(count)]


def _row_group_parts(item: Input, part_bytes: int) -> list[Input]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        metadata = pq.ParquetFile(item.path).metadata
    except (pa.ArrowException, OSError):
        return [item]  # the reader reports an unreadable file, naming it
    groups = [metadata.row_group(g) for g in range(metadata.num_row_groups)]
    parts, start, size, row, first_row = [], 0, 0, 0, 0
    for g, group in enumerate(groups):
        size += sum(group.column(c).total_compressed_size for c in range(group.num_columns))
        row += group.num_rows
        if size >= part_bytes or g == len(groups) - 1:
            parts.append((start, g + 1, first_row))
            start, size, first_row = g + 1, 0, row
    if len(parts) <= 1:
        return [item]
    return [
        replace(item, id=f"{item.id}-part{k:05d}", row_groups=(lo, hi), first_position=first)
        for k, (lo, hi, first) in enumerate(parts)
    ]


def _inputs_of_source(raw: str, read: ReadConfig) -> list[Input]:
    source = expand_variables(raw)
    prose = python_prose.part_paths(source)
    if prose is not None:
        return [Input(id=_input_id(path), path=path, kind="python_prose") for path in prose]
    if source.startswith(HF_PREFIX):
        return [_hf_input(raw, source[len(HF_PREFIX) :])]
    path = Path(source)
    if glob.has_magic(source):
        found = []
        for match in sorted(glob.glob(source, recursive=True)):
            if Path(match).is_file():
                found.append(input_for_path(Path(match)))
            elif is_saved_dataset(Path(match)):
                found.append(_make_input(Path(match), "hf_dataset"))
        return found
    if path.is_dir():
        return [_make_input(path, "hf_dataset")] if is_saved_dataset(path) else _walk_directory(path, read)
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
            elif is_saved_dataset(here / name):
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


def is_saved_dataset(path: Path) -> bool:
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
        if is_saved_dataset(path):
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
