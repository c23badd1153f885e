"""Finding inputs: sources, globs, directories, include/exclude, formats by name, stable ids."""

import gzip
import os
import pickle
import re
from pathlib import Path

import pytest

from data_prep.config import ReadConfig
from data_prep.errors import DataPrepError
from data_prep.read import sources
from data_prep.read.sources import (
    Input,
    expand_variables,
    list_inputs,
)
from tests.data_prep.corpus_files import jsonl, read_all, write


def expand_sources(sources: list[str], read: ReadConfig) -> list[Path]:
    """The paths of what ``list_inputs`` finds (``Path("hf:NAME")`` for a hub dataset)."""
    return [Path(item.path) for item in list_inputs(sources, read)]


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


def test_format_is_detected_after_the_compression_suffix():
    detect = sources.detect_format
    assert detect("x.jsonl.gz") == ("gzip", "jsonl")
    assert detect("x.txt.zst") == ("zstd", "text")
    assert detect("X.JSON.BZ2") == ("bzip2", "json")
    assert detect("CC-MAIN-1.warc.gz") == ("gzip", "warc")
    assert detect("CC-MAIN-1.warc.wet.gz") == ("gzip", "warc")
    assert detect("data.parquet") == (None, "parquet")
    assert detect("module.py") == (None, "text")
    assert detect("notes.gz") == ("gzip", "text")


def test_split_documents_must_be_file_or_paragraph():
    with pytest.raises(DataPrepError, match=r"read.split_documents is 'sentence'"):
        ReadConfig(split_documents="sentence")


def test_include_matches_compressed_names_and_exclude_relative_paths(tmp_path):
    write(tmp_path / "keep" / "a.jsonl.gz", gzip.compress(jsonl(["a"]).encode()))
    write(tmp_path / "keep" / "b.jsonl", jsonl(["b"]))
    write(tmp_path / "keep" / "c.txt", "not selected")
    write(tmp_path / "skip" / "d.jsonl", jsonl(["d"]))
    read = ReadConfig(include=["*.jsonl*"], exclude=["skip/*"])
    documents, _ = read_all([tmp_path], read)
    assert [d.text for d in documents] == ["a", "b"]


def test_compressed_parquet_is_refused_when_listing(tmp_path):
    path = write(tmp_path / "t.parquet.gz", gzip.compress(b"x"))
    with pytest.raises(DataPrepError, match=r"compressed Parquet files are not read"):
        list_inputs([str(path)], ReadConfig())


def test_hub_dataset_names_are_listed_without_the_network(tmp_path):
    inputs = list_inputs(["hf:org/corpus", "hf:org/corpus"], ReadConfig())
    assert inputs == [Input(id=inputs[0].id, path="hf:org/corpus", kind="hf_dataset")]
    assert inputs[0].id.startswith("corpus-")
    with pytest.raises(DataPrepError, match=r"'/no/such/dir' is not an existing directory"):
        list_inputs(["hf:/no/such/dir"], ReadConfig())


def test_list_inputs_is_sorted_deduplicated_and_ids_are_stable(tmp_path, monkeypatch):
    write(tmp_path / "b" / "x.jsonl", jsonl(["x"]))
    write(tmp_path / "a" / "y y (copy).txt", "y")
    write(tmp_path / "a" / "z.json.gz", gzip.compress(b"[]"))
    read = ReadConfig()
    first = list_inputs([str(tmp_path / "b"), str(tmp_path), str(tmp_path / "a" / "*")], read)
    again = list_inputs([str(tmp_path)], read)
    assert first == again
    assert [Path(i.path).relative_to(tmp_path).as_posix() for i in first] == [
        "a/y y (copy).txt",
        "a/z.json.gz",
        "b/x.jsonl",
    ]
    assert [i.kind for i in first] == ["text", "json", "jsonl"]
    ids = [i.id for i in first]
    assert len(set(ids)) == 3 and all(re.fullmatch(r"[A-Za-z0-9._-]+-[0-9a-f]{12}", i) for i in ids)
    assert ids[0].startswith("y_y_copy_.txt-")
    # Ids do not depend on the other inputs, nor on how the path was written.
    write(tmp_path / "a" / "new.txt", "new")
    assert {i.id for i in list_inputs([str(tmp_path)], read)} >= set(ids)
    monkeypatch.chdir(tmp_path)
    assert [i.id for i in list_inputs(["a/y y (copy).txt", "a/z.json.gz", "b"], read)] == ids
    # The same file named by two paths is one input.
    assert [i.id for i in list_inputs(["b/x.jsonl", str(tmp_path / "b" / "x.jsonl")], read)] == ids[2:]
    assert pickle.loads(pickle.dumps(first)) == first


def test_excluded_directories_are_not_walked(tmp_path, monkeypatch):
    (tmp_path / "keep").mkdir()
    (tmp_path / "keep" / "a.py").write_text("x = 1")
    (tmp_path / "site-packages" / "pkg").mkdir(parents=True)
    (tmp_path / "site-packages" / "pkg" / "b.py").write_text("y = 2")
    walked = []
    real_walk = os.walk

    def recording_walk(top, *args, **kwargs):
        for directory, subdirectories, files in real_walk(top, *args, **kwargs):
            walked.append(Path(directory).name)
            yield directory, subdirectories, files

    monkeypatch.setattr(os, "walk", recording_walk)
    files = expand_sources([str(tmp_path)], ReadConfig(include=["*.py"], exclude=["site-packages/*"]))
    assert [f.name for f in files] == ["a.py"]
    assert "site-packages" not in walked and "pkg" not in walked
