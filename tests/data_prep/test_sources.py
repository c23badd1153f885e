import json
from pathlib import Path

import pytest

from data_prep.config import ReadConfig
from data_prep.errors import DataPrepError
from data_prep.sources import ReadStats, expand_sources, expand_variables, read_documents


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def test_directory_source_applies_include_and_exclude(tmp_path):
    write(tmp_path / "a.py", "x = 1")
    write(tmp_path / "pkg" / "b.py", "y = 2")
    write(tmp_path / "pkg" / "notes.txt", "text")
    write(tmp_path / "site-packages" / "c.py", "z = 3")
    files = expand_sources([str(tmp_path)], ReadConfig(include=["*.py"], exclude=["site-packages/*"]))
    assert [f.relative_to(tmp_path).as_posix() for f in files] == ["a.py", "pkg/b.py"]


def test_glob_and_file_sources_are_merged_sorted_and_unique(tmp_path):
    a = write(tmp_path / "a.jsonl", "{}")
    b = write(tmp_path / "b.jsonl", "{}")
    files = expand_sources([str(b), str(tmp_path / "*.jsonl")], ReadConfig())
    assert files == [a, b]


def test_stdlib_variable_expands_to_an_existing_directory():
    assert Path(expand_variables("{stdlib}")).joinpath("json", "__init__.py").is_file()


@pytest.mark.parametrize("sources, message", [([], "no sources"), (["/no/such/dir"], "does not exist")])
def test_missing_sources_raise_one_line_errors(sources, message):
    with pytest.raises(DataPrepError, match=message) as info:
        expand_sources(sources, ReadConfig())
    assert "\n" not in str(info.value)


def test_directory_without_matching_files_is_an_error(tmp_path):
    write(tmp_path / "a.txt", "text")
    with pytest.raises(DataPrepError, match="matched no files"):
        expand_sources([str(tmp_path)], ReadConfig(include=["*.py"]))


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


def test_binary_files_are_skipped_and_invalid_utf8_is_replaced_and_counted(tmp_path):
    binary = write(tmp_path / "blob.py", b"\x00\x01\x02binary")
    latin1 = write(tmp_path / "latin.py", "caf\xe9 = 1".encode("latin-1"))
    stats = ReadStats()
    documents = list(read_documents([binary, latin1], ReadConfig(), stats))
    assert [d.text for d in documents] == ["caf\ufffd = 1"]
    assert stats.binary_files_skipped == 1 and stats.invalid_utf8_documents == 1


def test_unreadable_file_names_the_file(tmp_path, monkeypatch):
    path = write(tmp_path / "secret.py", "x")

    def refuse(self):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "read_bytes", refuse)
    with pytest.raises(DataPrepError, match=r"cannot read '.*secret.py': Permission denied"):
        list(read_documents([path], ReadConfig(), ReadStats()))
