"""Reading each kind of input as documents, and the bad input each reader reports or counts."""

import bz2
import gzip
import json
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from data_prep.config import ReadConfig
from data_prep.errors import DataPrepError
from data_prep.read import compression, json_array, readers
from data_prep.read.readers import read_input
from data_prep.read.sources import (
    Input,
    ReadStats,
    input_for_path,
    list_inputs,
)
from tests.data_prep.corpus_files import jsonl, read_all, save_dataset, write, write_warc


def read_documents(files: list[Path], read: ReadConfig, stats: ReadStats):
    """The documents of these files in order, each read as the pipeline reads its input."""
    for path in files:
        yield from read_input(input_for_path(Path(path)), read, stats)


def test_jsonl_documents_carry_source_and_line(tmp_path):
    path = write(tmp_path / "c.jsonl", "\n".join(json.dumps({"text": t}) for t in ["one", "two"]) + "\n\n")
    stats = ReadStats()
    documents = list(read_documents([path], ReadConfig(), stats))
    assert [(d.text, d.position) for d in documents] == [("one", 1), ("two", 2)]
    assert all(d.source == str(path) for d in documents)
    assert stats.documents == 2 and stats.files == 1


def test_jsonl_bad_line_and_missing_field_name_the_file_and_line(tmp_path):
    bad = write(tmp_path / "bad.jsonl", '{"text": "ok"}\n{not json\n')
    with pytest.raises(DataPrepError, match=r"bad.jsonl' line 2: invalid JSON"):
        list(read_documents([bad], ReadConfig(), ReadStats()))
    missing = write(tmp_path / "missing.jsonl", '{"body": "x"}\n')
    with pytest.raises(DataPrepError, match=r"line 1: no 'text' field"):
        list(read_documents([missing], ReadConfig(), ReadStats()))


def test_on_error_skip_skips_bad_records_counting_them_and_naming_the_first_few(tmp_path):
    lines = ['{"text": "kept"}', "{not json", '{"body": 1}', '{"text": [1]}', *["oops"] * 5, '{"text": "kept too"}']
    path = write(tmp_path / "c.jsonl", "\n".join(lines) + "\n")
    records = write(tmp_path / "r.json", '[{"text": "a"}, {"body": 1}, {"text": 5}, {"text": "b"}]')
    stats = ReadStats()
    documents = list(read_documents([path, records], ReadConfig(on_error="skip"), stats))
    assert [(d.text, d.position) for d in documents] == [("kept", 1), ("kept too", 10), ("a", 0), ("b", 3)]
    assert stats.bad_records_skipped == 3 + 5 + 2 and stats.documents == 4
    assert stats.bad_records == [  # the first five of the JSON Lines file; the rest only counted
        {"at": "line 2", "error": "invalid JSON (Expecting property name enclosed in double quotes)"},
        {"at": "line 3", "error": "no 'text' field"},
        {"at": "line 4", "error": "field 'text' is list, not a string"},
        {"at": "line 5", "error": "invalid JSON (Expecting value)"},
        {"at": "line 6", "error": "invalid JSON (Expecting value)"},
    ]
    with pytest.raises(DataPrepError, match="read.on_error is 'ignore'; expected one of"):
        ReadConfig(on_error="ignore")


def test_binary_files_are_skipped_and_invalid_utf8_is_replaced_and_counted(tmp_path):
    binary = write(tmp_path / "blob.py", b"\x00\x01\x02binary")
    latin1 = write(tmp_path / "latin.py", "caf\xe9 = 1".encode("latin-1"))
    stats = ReadStats()
    documents = list(read_documents([binary, latin1], ReadConfig(), stats))
    assert [d.text for d in documents] == ["caf\ufffd = 1"]
    assert stats.binary_files_skipped == 1 and stats.invalid_utf8_documents == 1


def test_unreadable_file_names_the_file(tmp_path, monkeypatch):
    path = write(tmp_path / "secret.py", "x")

    def refuse(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "open", refuse)
    with pytest.raises(DataPrepError, match=r"cannot read '.*secret.py': Permission denied"):
        list(read_documents([path], ReadConfig(), ReadStats()))


def test_jsonl_null_text_is_skipped_and_counted_and_invalid_utf8_is_repaired(tmp_path):
    lines = [b'{"text": "ok"}', b'{"text": null}', b'{"text": "caf\xe9"}', b'{"text": 3}']
    path = write(tmp_path / "r.jsonl", b"\n".join(lines[:3]) + b"\n")
    documents, stats = read_all([path])
    assert [(d.text, d.position) for d in documents] == [("ok", 1), ("caf\ufffd", 3)]
    assert stats.null_texts_skipped == 1 and stats.invalid_utf8_documents == 1 and stats.documents == 2
    write(tmp_path / "r.jsonl", b"\n".join(lines) + b"\n")
    with pytest.raises(DataPrepError, match=r"r.jsonl' line 4: field 'text' is int, not a string"):
        read_all([path])


def test_paragraph_split_makes_blank_line_separated_blocks_documents(tmp_path):
    text = "\n\nfirst line\nsecond line\n\n  \t\nnext\r\n\r\n\n\nlast one"
    path = write(tmp_path / "doc.txt.gz", gzip.compress(text.encode()))
    documents, stats = read_all([path], ReadConfig(split_documents="paragraph"))
    assert [(d.text, d.position) for d in documents] == [
        ("first line\nsecond line", 0),
        ("next", 1),
        ("last one", 2),
    ]
    assert stats.documents == 3 and stats.files == 1 and stats.bytes == len(text.encode())


def test_paragraph_split_counts_invalid_utf8_per_paragraph_and_skips_binary(tmp_path):
    write(tmp_path / "a.txt", b"good\n\ncaf\xe9\n\nalso good\n")
    write(tmp_path / "b.dat", b"\x00binary\n\nmore\n")
    documents, stats = read_all([tmp_path], ReadConfig(split_documents="paragraph"))
    assert [d.text for d in documents] == ["good", "caf\ufffd", "also good"]
    assert stats.invalid_utf8_documents == 1 and stats.binary_files_skipped == 1


def test_json_array_records_carry_their_index(tmp_path):
    records = [{"text": "zero"}, {"text": None}, {"text": "two", "meta": {"nested": [1, 2, "]"]}}]
    path = write(tmp_path / "r.json.bz2", bz2.compress(json.dumps(records, indent=2).encode()))
    documents, stats = read_all([path])
    assert [(d.text, d.position) for d in documents] == [("zero", 0), ("two", 2)]
    assert stats.null_texts_skipped == 1


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64])
def test_json_array_parser_handles_records_split_across_reads(tmp_path, monkeypatch, chunk):
    monkeypatch.setattr(json_array, "JSON_READ_BYTES", chunk)
    # Valid files stay on ijson's fast path, escaped surrogate pairs (the emoji below) included.
    monkeypatch.setattr(json_array, "_Repairing", None)
    records = [{"text": f'record {i} \\ " \u00e9 \U0001f600', "n": 10**i} for i in range(12)]
    path = write(tmp_path / "r.json", " \n[" + " ,\n ".join(json.dumps(r) for r in records) + "]\n")
    documents, _ = read_all([path])
    assert [d.text for d in documents] == [r["text"] for r in records]
    assert [d.position for d in documents] == list(range(12))


def test_json_single_object_and_empty_array(tmp_path):
    write(tmp_path / "one.json", '\ufeff{"text": "only"}')
    write(tmp_path / "none.json", "[ ]")
    documents, stats = read_all([tmp_path])
    assert [(d.text, d.position, Path(d.source).name) for d in documents] == [("only", 0, "one.json")]
    assert stats.files == 2


def test_json_invalid_utf8_is_repaired_per_record(tmp_path):
    path = write(tmp_path / "r.json", b'[{"text": "caf\xe9"}, {"text": "fine \xc3\xa9"}, {"text": "\xff\xfe"}]')
    documents, stats = read_all([path])
    assert [d.text for d in documents] == ["caf\ufffd", "fine é", "\ufffd\ufffd"]
    assert stats.invalid_utf8_documents == 2


@pytest.mark.parametrize("chunk", [1, 5, 7, 64, 1 << 16])
def test_json_lone_surrogates_and_invalid_bytes_restart_on_the_repair_path(tmp_path, monkeypatch, chunk):
    monkeypatch.setattr(json_array, "JSON_READ_BYTES", chunk)
    good = [json.dumps({"text": f"good {i} \U0001f600"}) for i in range(40)]
    cases = [  # (record as written, its text as read, counted as invalid)
        (b'{"text": "high \\ud800 alone"}', "high \ufffd alone", True),
        (b'{"text": "low \\udc00 alone"}', "low \ufffd alone", True),
        (b'{"text": "byte \xe9 here \xff\xfe"}', "byte \ufffd here \ufffd\ufffd", True),
        (b'{"text": "pair \\ud83d\\ude00 fine", "n": 1.5}', "pair \U0001f600 fine", False),
        (b'{"text": "fast \xef\xb7\x90"}', "fast \ufdd0", False),  # U+FDD0 on the fast path
        # On the repair path (the invalid byte): U+FDD0 raw and escaped, an escaped backslash before "ud800",
        # and an escape after a run of escaped backslashes.
        (b'{"text": "mark \xef\xb7\x90r \\uFDD0r \\ufdd0g \xe9"}', "mark \ufdd0r \ufdd0r \ufdd0g \ufffd", True),
        (b'{"text": "literal \\\\ud800 \xe9"}', "literal \\ud800 \ufffd", True),
        (b'{"text": "literal pair \\\\ud800\\udc00"}', "literal pair \\ud800\ufffd", True),
        (b'{"text": "run ' + b"\\" * 7 + b'ud800 x"}', "run " + "\\" * 3 + "\ufffd x", True),
        (b'{"text": "long run ' + b"\\" * 31 + b'ud800 x"}', "long run " + "\\" * 15 + "\ufffd x", True),
    ]
    for index, (record, text, counted) in enumerate(cases):
        content = [line.encode() for line in good]
        content.insert(20, record)
        path = write(tmp_path / f"r{index}.json", b"[" + b",\n".join(content) + b"]")
        documents, stats = read_all([path])
        texts = [f"good {i} \U0001f600" for i in range(40)]
        texts.insert(20, text)
        assert [d.text for d in documents] == texts, record
        assert [d.position for d in documents] == list(range(41))
        assert stats.invalid_utf8_documents == counted
        assert stats.bytes == path.stat().st_size  # the restart does not count the first pass's bytes twice


def test_json_invalid_byte_after_a_backslash_is_an_invalid_escape(tmp_path):
    path = write(tmp_path / "r.json", b'[{"text": "a"}, {"text": "bad \\\xe9 escape"}]')
    with pytest.raises(
        DataPrepError,
        match=r"r.json' record 1: invalid JSON \(lexical error: inside a string, '\\' occurs before a character",
    ):
        read_all([path])


def test_json_errors_on_the_repair_path_name_the_record(tmp_path):
    path = write(tmp_path / "r.json", b'[{"text": "caf\xe9"}, {"text": "b"}, {"text": "c"} {"text": "d"}]')
    with pytest.raises(DataPrepError, match=r"r.json' record 3: invalid JSON \(after array element"):
        read_all([path])


def test_json_record_longer_than_the_limit_fails_without_reading_on(tmp_path, monkeypatch):
    monkeypatch.setattr(compression, "STREAM_BUFFER_BYTES", 1000)
    monkeypatch.setattr(json_array, "MAX_JSON_RECORD_BYTES", 1000)
    monkeypatch.setattr(json_array, "JSON_READ_BYTES", 100)
    path = write(tmp_path / "r.json", '[{"text": "short"}, {"text": "never closed ' + "x" * 100_000 + "]")
    stats = ReadStats()
    with pytest.raises(DataPrepError, match=r"r.json' record 1: invalid JSON or longer than 1,000 bytes"):
        list(read_input(input_for_path(path), ReadConfig(), stats))
    assert stats.bytes < 3000


@pytest.mark.parametrize(
    "content, message",
    [
        ('[{"text": "a"}, {"body": "b"}]', r"r.json' record 1: no 'text' field; set read.text_field"),
        (
            '[{"text": "a"}, {"text": "b"',
            r"r.json' is cut off inside record 1 or before its closing '\]' \(premature EOF\)",
        ),
        ('[{"text": "a"}, {"text": "b"}', r"r.json' is cut off inside record 2 or before its closing '\]'"),
        ('[{"text": "a"}, {"text": "b}]', r"r.json' is cut off inside record 1"),
        (
            '[{"text": "a"} {"text": "b"}]',
            r"r.json' record 1: invalid JSON \(after array element, I expect ',' or '\]'\)",
        ),
        ('[{"text": "a"},]', r"r.json' record 1: invalid JSON \(unallowed token"),
        ('"just a string"', r"r.json' is not a JSON array or object \(starts with '\"'\)"),
        ("", r"r.json' is not a JSON array or object \(starts with an empty file\)"),
        ('[{"text": "a"}] []', r"r.json' has data after the top-level JSON value"),
        ("[1, 2]", r"r.json' record 0: no 'text' field"),
    ],
)
def test_bad_json_names_the_file_and_record(tmp_path, content, message):
    path = write(tmp_path / "r.json", content)
    with pytest.raises(DataPrepError, match=message) as info:
        read_all([path])
    assert "\n" not in str(info.value)


def test_invalid_json_mid_file_fails_without_reading_to_the_end(tmp_path, monkeypatch):
    monkeypatch.setattr(json_array, "JSON_READ_BYTES", 64)
    records = ",".join(json.dumps({"text": "x" * 10}) for _ in range(20_000))
    path = write(tmp_path / "r.json", '[{"text": "a"}, {"text": nope}, ' + records + "]")
    stats = ReadStats()
    with pytest.raises(DataPrepError, match=r"record 1: invalid JSON \(lexical error: invalid string"):
        list(read_input(input_for_path(path), ReadConfig(), stats))
    assert stats.bytes < compression.STREAM_BUFFER_BYTES + 64


def test_parquet_rows_are_read_by_batches_with_their_row_index(tmp_path, monkeypatch):
    monkeypatch.setattr(readers, "PARQUET_BATCH_ROWS", 2)
    texts = ["a", "bb", None, "dddd", "é"]
    table = pa.table({"id": list(range(5)), "content": texts})
    path = tmp_path / "t.parquet"
    pq.write_table(table, path, row_group_size=3)
    documents, stats = read_all([path], ReadConfig(text_field="content"))
    assert [(d.text, d.position) for d in documents] == [("a", 0), ("bb", 1), ("dddd", 3), ("é", 4)]
    assert stats.null_texts_skipped == 1 and stats.documents == 4
    assert stats.bytes == sum(len(t.encode()) for t in texts if t)


def test_parquet_missing_or_non_string_column_and_corrupt_file_are_errors(tmp_path):
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"body": ["x"], "n": [1]}), path)
    with pytest.raises(
        DataPrepError, match=r"t.parquet' has no column 'text' \(columns: body, n\); set read.text_field"
    ):
        read_all([path])
    with pytest.raises(DataPrepError, match=r"column 'n' is int64, not a string"):
        read_all([path], ReadConfig(text_field="n"))
    cut = write(tmp_path / "cut.parquet", path.read_bytes()[:-20])
    with pytest.raises(DataPrepError, match=r"cut.parquet' is not a readable Parquet file"):
        read_all([cut])


def test_saved_dataset_directory_is_one_input_read_row_by_row(tmp_path, monkeypatch):
    monkeypatch.setattr(readers, "PARQUET_BATCH_ROWS", 2)
    corpus = tmp_path / "corpus"
    save_dataset(corpus / "ds", {"text": ["r0", "r1", None, "r3", "r4"], "n": [0, 1, 2, 3, 4]})
    write(corpus / "notes.txt", "notes")
    inputs = list_inputs([str(corpus)], ReadConfig())
    assert [(Path(i.path).name, i.kind) for i in inputs] == [("ds", "hf_dataset"), ("notes.txt", "text")]
    documents, stats = read_all([corpus])
    assert [(d.text, d.position, Path(d.source).name) for d in documents] == [
        ("r0", 0, "ds"),
        ("r1", 1, "ds"),
        ("r3", 3, "ds"),
        ("r4", 4, "ds"),
        ("notes", 0, "notes.txt"),
    ]
    assert stats.null_texts_skipped == 1 and stats.files == 2
    # The dataset directory itself, and the hf: prefix, name the same input.
    assert list_inputs([str(corpus / "ds")], ReadConfig()) == list_inputs([f"hf:{corpus / 'ds'}"], ReadConfig())


def test_saved_dataset_dict_reads_the_configured_split(tmp_path):
    splits = {
        name: datasets.Dataset.from_dict({"text": [f"{name} {i}" for i in range(2)]}) for name in ("train", "test")
    }
    datasets.DatasetDict(splits).save_to_disk(str(tmp_path / "dd"))
    documents, _ = read_all([tmp_path / "dd"], ReadConfig(hf_split="test"))
    assert [d.text for d in documents] == ["test 0", "test 1"]
    with pytest.raises(DataPrepError, match=r"has no split 'validation' \(splits: train, test\); set read.hf_split"):
        read_all([tmp_path / "dd"], ReadConfig(hf_split="validation"))


def test_hf_local_folder_of_data_files_streams_through_load_dataset(tmp_path):
    write(tmp_path / "data" / "part.jsonl", jsonl(["x", "y"]))
    documents, stats = read_all([f"hf:{tmp_path / 'data'}"])
    assert [(d.text, d.position) for d in documents] == [("x", 0), ("y", 1)]
    assert stats.files == 1 and stats.bytes == 2


def test_dataset_without_the_text_column_is_an_error(tmp_path):
    path = save_dataset(tmp_path / "ds", {"body": ["x"]})
    with pytest.raises(DataPrepError, match=r"ds' has no column 'text' \(columns: body\); set read.text_field"):
        read_all([path])


@pytest.mark.parametrize("name, gzip_records", [("crawl.warc.gz", True), ("crawl.warc", False)])
def test_warc_html_responses_become_text_documents_with_their_url(tmp_path, name, gzip_records):
    path = write_warc(tmp_path / name, gzip_records)
    assert [(i.kind, i.compression) for i in list_inputs([str(path)], ReadConfig())] == [
        ("warc", "gzip" if gzip_records else None)
    ]
    documents, stats = read_all([path])
    assert [(d.position, d.url) for d in documents] == [
        (1, "http://one.example/"),
        (3, "http://two.example/"),
        (5, "http://one.example/"),
    ]
    first, second, converted = (d.text for d in documents)
    assert "First page\n\nHello from the first page.\n\nA second paragraph." in first
    assert "Home" not in first and "Copyright footer" not in first  # main content only
    assert second == "Café au lait, page two."
    assert converted == "Extracted text."
    assert stats.warc_records_skipped == 2 and stats.documents == 3 and stats.files == 1


def test_warc_extraction_options_keep_boilerplate_and_join_lines(tmp_path):
    path = write_warc(tmp_path / "crawl.warc.gz", True)
    read = ReadConfig(html_main_content=False, html_preserve_formatting=False)
    first = read_all([path], read)[0][0].text
    assert "Home" in first and "Copyright footer" in first and "\n" not in first


def test_corrupt_warc_names_the_file(tmp_path):
    path = write(tmp_path / "bad.warc", b"this is not a WARC file\r\n\r\n")
    with pytest.raises(DataPrepError, match=r"bad.warc' record 0: not a valid WARC record \(an ARC record\)"):
        read_all([path])
    path = write(tmp_path / "bad.warc", b"garbage" * 100)
    with pytest.raises(DataPrepError, match=r"bad.warc' record 0: not a valid WARC record \(Unknown archive format"):
        read_all([path])
    data = write_warc(tmp_path / "cut.warc.gz", True).read_bytes()
    cut = write(tmp_path / "cut.warc.gz", data[: len(data) - 40])
    with pytest.raises(DataPrepError, match=r"cut.warc.gz' is a corrupt or truncated gzip file"):
        read_all([cut])


def test_truncated_uncompressed_warc_is_an_error_wherever_it_is_cut(tmp_path):
    data = write_warc(tmp_path / "whole.warc", False).read_bytes()
    complete, _ = read_all([tmp_path / "whole.warc"])
    for cut in range(1, len(data), 3):
        path = write(tmp_path / "cut.warc", data[:cut])
        try:
            documents, _ = read_all([path])
        except DataPrepError as error:
            assert "cut.warc' record" in str(error) and ("truncated" in str(error) or "not a valid" in str(error))
        else:  # cut between records: the records before the cut, whole
            found = [(d.text, d.position, d.url) for d in documents]
            assert found == [(d.text, d.position, d.url) for d in complete][: len(found)]


def test_read_documents_is_list_inputs_and_read_input_in_order(tmp_path):
    write(tmp_path / "a.txt", "a")
    write(tmp_path / "b.jsonl.gz", gzip.compress(jsonl(["b1", "b2"]).encode()))
    read = ReadConfig()
    stats = ReadStats()
    documents = list(read_documents([Path(i.path) for i in list_inputs([str(tmp_path)], read)], read, stats))
    assert [(d.text, d.position) for d in documents] == [("a", 0), ("b1", 1), ("b2", 2)]
    assert stats.files == 2 and stats.documents == 3


def test_unreadable_directory_input_names_the_file(tmp_path):
    item = Input(id="x", path=str(tmp_path), kind="text")
    with pytest.raises(DataPrepError, match=r"cannot read '.*': Is a directory; fix its permissions"):
        list(read_input(item, ReadConfig(), ReadStats()))
