"""Small input files the source, reader and compression tests write (and a reader of them)."""

import bz2
import gzip
import io
import json
import lzma
from pathlib import Path

import datasets
import zstandard
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from data_prep.config import ReadConfig
from data_prep.read.readers import read_input
from data_prep.read.sources import (
    Document,
    ReadStats,
    list_inputs,
)


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def zstd_compress(data: bytes) -> bytes:
    # Two frames: a reader must go on past the first.
    half = len(data) // 2
    compressor = zstandard.ZstdCompressor()
    return compressor.compress(data[:half]) + compressor.compress(data[half:])


COMPRESSORS = {".gz": gzip.compress, ".bz2": bz2.compress, ".xz": lzma.compress, ".zst": zstd_compress}


def read_all(sources_: list, read: ReadConfig | None = None) -> tuple[list[Document], ReadStats]:
    read = read or ReadConfig()
    stats = ReadStats()
    documents = [d for item in list_inputs([str(s) for s in sources_], read) for d in read_input(item, read, stats)]
    return documents, stats


def jsonl(texts) -> str:
    return "".join(json.dumps({"text": t, "id": i}) + "\n" for i, t in enumerate(texts))


def save_dataset(path: Path, columns: dict) -> Path:
    datasets.Dataset.from_dict(columns).save_to_disk(str(path))
    return path


PAGE_ONE = (
    "<html><head><title>One</title></head><body><nav><a href='/'>Home</a> <a href='/about'>About</a></nav>"
    "<main><h1>First page</h1><p>Hello from the first page.</p><p>A second paragraph.</p></main>"
    "<footer>Copyright footer</footer></body></html>"
)


PAGE_TWO = "<html><head><meta charset='iso-8859-1'></head><body><p>Caf\xe9 au lait, page two.</p></body></html>"


def write_warc(path: Path, gzip_records: bool) -> Path:
    def response(url: str, status: str, content_type: str, body: bytes):
        headers = StatusAndHeaders(status, [("Content-Type", content_type)], protocol="HTTP/1.1")
        return writer.create_warc_record(url, "response", payload=io.BytesIO(body), http_headers=headers)

    with open(path, "wb") as handle:
        writer = WARCWriter(handle, gzip=gzip_records)
        writer.write_record(writer.create_warcinfo_record(path.name, {"software": "test"}))  # record 0
        writer.write_record(response("http://one.example/", "200 OK", "text/html; charset=utf-8", PAGE_ONE.encode()))
        writer.write_record(response("http://img.example/a.png", "200 OK", "image/png", b"\x89PNG\r\n\x00\x00"))
        writer.write_record(response("http://two.example/", "200 OK", "text/html", PAGE_TWO.encode("latin-1")))
        writer.write_record(response("http://gone.example/", "404 Not Found", "text/html", b"<p>Not found</p>"))
        writer.write_record(
            writer.create_warc_record(
                "http://one.example/",
                "conversion",
                payload=io.BytesIO(b"Extracted text."),
                warc_content_type="text/plain",
            )
        )
    return path


def big_jsonl_gz(path: Path, records: int = 200_000) -> tuple[Path, int]:
    data = jsonl(f"document number {i} " + "lorem ipsum dolor sit amet " * 3 for i in range(records)).encode()
    path.write_bytes(gzip.compress(data, compresslevel=1))
    return path, len(data)


BAD_LINES = [
    '{"text": "fine"}',
    "{not json",  # line 2: invalid JSON
    '{"body": "no text field"}',  # line 3
    '{"text": 42}',  # line 4: not a string
    "",  # a blank line is no record
    '{"text": null}',  # line 6: a null text, counted apart
    '{"text": "also fine"}',
]


def corpus_with_bad_input(directory: Path, binary_files: int = 22) -> Path:
    """Standard-library sources as JSON Lines (every split fills), a file with three bad records among good ones
    (lines 2, 3 and 4), and ``binary_files`` small binary files, more than report.json names."""
    from tests.conftest import STDLIB

    texts = [path.read_text() for path in sorted((STDLIB / "json").glob("*.py"))]
    texts += [path.read_text() for path in sorted((STDLIB / "email").glob("*.py"))[:10]]
    write(directory / "good.jsonl", jsonl(texts))
    write(directory / "bad.jsonl", "\n".join(BAD_LINES) + "\n")
    for index in range(binary_files):
        write(directory / "blobs" / f"blob{index:02d}.dat", b"\x00\x01" + bytes([index]))
    return directory
