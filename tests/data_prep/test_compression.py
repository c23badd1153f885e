"""Compressed inputs: read like plain ones, corrupt or truncated ones named, streamed in bounded memory."""

import gzip
import re
import tracemalloc
from pathlib import Path

import pytest

from data_prep.config import ReadConfig
from data_prep.errors import DataPrepError
from data_prep.read import compression, json_array, sources
from data_prep.read.readers import read_input
from data_prep.read.sources import (
    ReadStats,
    input_for_path,
    list_inputs,
)
from tests.data_prep.corpus_files import COMPRESSORS, big_jsonl_gz, jsonl, read_all, write


@pytest.mark.parametrize("suffix", list(COMPRESSORS))
def test_compressed_jsonl_and_text_read_like_uncompressed(tmp_path, suffix):
    compress = COMPRESSORS[suffix]
    write(tmp_path / f"a.jsonl{suffix}", compress(jsonl(["one", "two é"]).encode()))
    write(tmp_path / f"b.txt{suffix}", compress("whole file\n\nsecond paragraph\n".encode()))
    inputs = list_inputs([str(tmp_path)], ReadConfig())
    compression = sources.COMPRESSION_SUFFIXES[suffix]
    assert [(Path(i.path).name, i.kind, i.compression) for i in inputs] == [
        (f"a.jsonl{suffix}", "jsonl", compression),
        (f"b.txt{suffix}", "text", compression),
    ]
    documents, stats = read_all([tmp_path])
    assert [(d.text, d.position) for d in documents] == [
        ("one", 1),
        ("two é", 2),
        ("whole file\n\nsecond paragraph\n", 0),
    ]
    assert documents[0].source == inputs[0].path
    uncompressed = len(jsonl(["one", "two é"]).encode()) + len("whole file\n\nsecond paragraph\n")
    assert stats.files == 2 and stats.documents == 3 and stats.bytes == uncompressed


@pytest.mark.parametrize("suffix, name", [(".gz", "gzip"), (".bz2", "bzip2"), (".xz", "xz"), (".zst", "zstd")])
def test_truncated_compressed_file_is_a_clear_error(tmp_path, suffix, name):
    data = COMPRESSORS[suffix](jsonl(f"document {i} " * 20 for i in range(2000)).encode())
    path = write(tmp_path / f"cut.jsonl{suffix}", data[: len(data) // 2])
    with pytest.raises(DataPrepError, match=rf"cut.jsonl{re.escape(suffix)}' is a corrupt or truncated {name} file"):
        read_all([path])


def test_corrupt_gzip_names_the_file_and_says_what_to_do(tmp_path):
    path = write(tmp_path / "notgzip.txt.gz", b"this was never gzip data")
    with pytest.raises(
        DataPrepError, match=r"notgzip.txt.gz' is a corrupt or truncated gzip file .*re-download or remove it"
    ):
        read_all([path])


def test_binary_content_inside_a_compressed_file_is_skipped_and_counted(tmp_path):
    write(tmp_path / "image.bin.gz", gzip.compress(b"\x89PNG\x00\x00 binary"))
    write(tmp_path / "records.jsonl.gz", gzip.compress(b"\x00\x00\x00"))
    write(tmp_path / "ok.txt", "text")
    documents, stats = read_all([tmp_path])
    assert [d.text for d in documents] == ["text"]
    assert stats.binary_files_skipped == 2 and stats.files == 3


def test_first_document_of_a_large_compressed_jsonl_is_read_without_reading_the_file(tmp_path):
    path, size = big_jsonl_gz(tmp_path / "big.jsonl.gz")
    assert size > 20 * compression.STREAM_BUFFER_BYTES
    stats = ReadStats()
    tracemalloc.start()
    try:
        documents = read_input(input_for_path(path), ReadConfig(), stats)
        first = next(documents)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert first.text.startswith("document number 0 ") and first.position == 1
    assert stats.bytes <= 2 * compression.STREAM_BUFFER_BYTES < size // 10
    assert peak < 4 * compression.STREAM_BUFFER_BYTES
    documents.close()


def test_whole_large_inputs_stream_in_bounded_memory(tmp_path, monkeypatch):
    monkeypatch.setattr(compression, "STREAM_BUFFER_BYTES", 1 << 16)
    monkeypatch.setattr(json_array, "JSON_READ_BYTES", 1 << 16)
    path, size = big_jsonl_gz(tmp_path / "big.jsonl.gz", records=100_000)
    array_path = tmp_path / "big.json.gz"
    with gzip.open(path) as source, gzip.open(array_path, "wb", compresslevel=1) as target:
        target.write(b"[" + b",".join(line.rstrip(b"\n") for line in source) + b"]")
    for item in (input_for_path(path), input_for_path(array_path)):
        stats = ReadStats()
        tracemalloc.start()
        try:
            count = sum(1 for _ in read_input(item, ReadConfig(), stats))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert count == 100_000 and stats.bytes >= size - 100_000
        assert peak < size // 16, (item.kind, peak, size)
