"""Stage 1, second half: one streaming reader per input kind (see :mod:`data_prep.read.sources` for the kinds,
what a document and its ``position`` are, and how bad input is counted or reported)."""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Iterator
from pathlib import Path

from data_prep.errors import DataPrepError
from data_prep.read import python_prose
from data_prep.read.compression import STREAM_BUFFER_BYTES, open_input, require_module
from data_prep.read.json_array import JsonRecords, restore
from data_prep.read.sources import HF_PREFIX, Document, Input, ReadConfig, ReadStats, is_saved_dataset

# A file whose first bytes contain NUL is binary (the same heuristic git and grep use).
BINARY_SNIFF_BYTES = 8192
# Rows per record batch read from Parquet files and saved datasets.
PARQUET_BATCH_ROWS = 1024


def _is_binary(item: Input) -> bool:
    with open_input(item) as stream:
        return b"\x00" in stream.read(BINARY_SNIFF_BYTES)


def _decode(data: bytes, stats: ReadStats) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        stats.invalid_utf8_documents += 1
        return data.decode("utf-8", errors="replace")


def read_input(item: Input, read: ReadConfig, stats: ReadStats) -> Iterator[Document]:
    """Stream the documents of one input, counting what was read and skipped into ``stats``."""
    readers = {
        "text": _read_text,
        "jsonl": _read_jsonl,
        "json": _read_json,
        "parquet": _read_parquet,
        "warc": _read_warc,
        "hf_dataset": _read_hf_dataset,
        "python_prose": _read_python_prose,
    }
    if item.kind not in readers:
        raise DataPrepError(f"input '{item.path}' has unknown kind '{item.kind}'; expected one of {sorted(readers)}")
    stats.files += item.first_part
    for document in readers[item.kind](item, read, stats):
        stats.documents += 1
        yield document


def _read_text(item: Input, read: ReadConfig, stats: ReadStats) -> Iterator[Document]:
    if read.split_documents == "paragraph":
        yield from _read_paragraphs(item, stats)
        return
    if _is_binary(item):  # sniffed first: a large binary file is never read whole
        stats.binary_files_skipped += 1
        return
    yield Document(text=_read_whole(item, stats), source=item.path, position=0)


def _read_whole(item: Input, stats: ReadStats) -> str:
    # A function of its own, so that the bytes are freed on return, not held beside the text while it is yielded.
    with open_input(item, stats) as stream:
        return _decode(stream.read(), stats)


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


def _record_text(record, read: ReadConfig, item: Input, at: str, stats: ReadStats) -> str | None:
    """The text of a JSON record; None when it is null (counted) or, under ``read.on_error: skip``, when the
    record is bad (counted and named)."""
    field_name = read.text_field
    if not isinstance(record, dict) or field_name not in record:
        return _bad_record(
            item, at, f"no '{field_name}' field", "set read.text_field to the field holding the text", read, stats
        )
    text = record[field_name]
    if text is None:
        stats.null_texts_skipped += 1
        return None
    if not isinstance(text, str):
        return _bad_record(
            item, at, f"field '{field_name}' is {type(text).__name__}, not a string", "fix the record", read, stats
        )
    return text


def _bad_record(item: Input, at: str, error: str, fix: str, read: ReadConfig, stats: ReadStats) -> None:
    """``read.on_error: fail``: raise, naming the file, the place and what to do; ``skip``: count and name it."""
    if read.on_error == "skip":
        stats.skip_bad_record(at, error)
        return None
    raise DataPrepError(f"'{item.path}' {at}: {error}; {fix}, or set read.on_error: skip to skip such records")


def _read_jsonl(item: Input, read: ReadConfig, stats: ReadStats) -> Iterator[Document]:
    if _is_binary(item):
        stats.binary_files_skipped += item.first_part
        return
    for line_number, raw_line in _jsonl_lines(item, stats):
        text = _jsonl_text(raw_line, line_number, item, read, stats)
        del raw_line  # not held beside the text while the document is yielded: a line can be a huge document
        if text is not None:
            yield Document(text=text, source=item.path, position=line_number)


def _jsonl_text(raw_line: bytes, line_number: int, item: Input, read: ReadConfig, stats: ReadStats) -> str | None:
    """The text of one JSON Lines line (None for a blank line, a null text or a skipped bad record)."""
    if not raw_line.strip():
        return None
    try:
        line, repaired = raw_line.decode("utf-8"), False
    except UnicodeDecodeError:
        line, repaired = raw_line.decode("utf-8", errors="replace"), True
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        return _bad_record(item, f"line {line_number}", f"invalid JSON ({error.msg})", "fix or remove the line",
                           read, stats)  # fmt: skip
    text = _record_text(record, read, item, f"line {line_number}", stats)
    if text is not None:
        stats.invalid_utf8_documents += repaired
    return text


def _jsonl_lines(item: Input, stats: ReadStats) -> Iterator[tuple[int, bytes]]:
    """(line number, line) of a JSON Lines input; of a part (``item.byte_range``), the lines that start in
    its range, numbered from ``item.first_position``, their bytes counted here."""
    if item.byte_range is None:
        with open_input(item, stats) as stream:
            yield from enumerate(stream, start=1)
        return
    start, end = item.byte_range
    with open_input(item) as stream:  # bytes counted per line below: not the skipped partial line
        position = 0
        if start > 0:
            stream.seek(start - 1)  # the line that starts before the part is the previous part's
            position = start - 1 + len(stream.readline())
        line_number = 1 if item.first_part else item.first_position
        if line_number < 2 and not item.first_part:
            raise RuntimeError(f"part {item.id} was not numbered (documents.number_parts)")
        while position < end:
            line = stream.readline()
            if not line:
                return
            stats.bytes += len(line)
            position += len(line)
            handed = [line]
            del line  # so that this suspended generator does not keep a (possibly huge) line alive
            yield line_number, handed.pop()
            line_number += 1


def count_newlines(path: str, start: int, end: int) -> int:
    """Line breaks in bytes ``[start, end)`` of a file: what a part needs to number its lines."""
    count = 0
    with open(path, "rb") as handle:
        handle.seek(start)
        remaining = end - start
        while remaining > 0:
            data = handle.read(min(remaining, STREAM_BUFFER_BYTES))
            if not data:
                break
            count += data.count(b"\n")
            remaining -= len(data)
    return count


def _read_json(item: Input, read: ReadConfig, stats: ReadStats) -> Iterator[Document]:
    if _is_binary(item):
        stats.binary_files_skipped += 1
        return
    counted = stats.bytes

    def restart() -> None:  # the repair path reads the file again from its start
        stats.bytes = counted

    for index, record, marked in JsonRecords(item.path, lambda: open_input(item, stats), restart):
        text = _record_text(record, read, item, f"record {index}", stats)
        if text is None:
            continue
        if marked:  # from a file with invalid UTF-8 or lone surrogate escapes
            text, replaced = restore(text)
            stats.invalid_utf8_documents += replaced
        yield Document(text=text, source=item.path, position=index)


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
        groups = None if item.row_groups is None else list(range(*item.row_groups))  # a part: its row groups
        batches = parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=[read.text_field], row_groups=groups)
        row = item.first_position
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
    datasets = require_module("datasets", "datasets sources")
    path = item.path
    try:
        if path.startswith(HF_PREFIX):
            dataset = datasets.load_dataset(path[len(HF_PREFIX) :], read.hf_config, split=read.hf_split, streaming=True)
        elif is_saved_dataset(Path(path)):
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
        text = _record_text(record, read, item, f"row {row}", stats)
        if text is not None:
            stats.bytes += len(text.encode("utf-8", "surrogatepass"))
            yield Document(text=text, source=path, position=row)


def _read_python_prose(item: Input, read: ReadConfig, stats: ReadStats) -> Iterator[Document]:
    """The built-in prose source's part ``item.path`` (:mod:`data_prep.read.python_prose`)."""
    for position, (_, text) in enumerate(python_prose.documents(item.path)):
        stats.bytes += len(text.encode("utf-8", "surrogatepass"))
        yield Document(text=text, source=item.path, position=position)


HTML_CONTENT_TYPES = ("text/html", "application/xhtml+xml")


def _read_warc(item: Input, read: ReadConfig, stats: ReadStats) -> Iterator[Document]:
    """HTML responses (status 2xx) become their extracted text; WET ``conversion`` records their text as is."""
    require_module("warcio", "WARC files")
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
    require_module("resiliparse", "HTML in WARC files")
    from resiliparse.extract.html2text import extract_plain_text
    from resiliparse.parse.encoding import bytes_to_str, detect_encoding
    from resiliparse.parse.html import HTMLTree

    text = bytes_to_str(html, charset or detect_encoding(html, from_html_meta=True))
    return extract_plain_text(
        HTMLTree.parse(text),
        main_content=read.html_main_content,
        preserve_formatting=read.html_preserve_formatting,
    )
