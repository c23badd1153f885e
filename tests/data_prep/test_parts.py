"""Large uncompressed JSON Lines files read as byte-range parts (``read.part_mb``): every line read once, by the
part it starts in, numbered as in the whole file, counted once; the dataset is the same as reading whole."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from data_prep.config import ReadConfig
from data_prep.documents import number_parts
from data_prep.engines import LocalEngine, task_groups
from data_prep.errors import DataPrepError
from data_prep.pipeline import prepare
from data_prep.read.readers import read_input
from data_prep.read.sources import ReadStats, input_for_path, list_inputs, split_into_parts
from tests.conftest import small_prep_config
from tests.data_prep.test_ray_engine import dataset_files


def read_parts(path: Path, part_bytes: int) -> tuple[list, ReadStats, int]:
    inputs = list_inputs([str(path)], ReadConfig(part_mb=part_bytes / 1e6))
    documents, stats = [], ReadStats()
    for item in number_parts(inputs, inputs, LocalEngine(1), path.parent / "work"):
        documents += [(d.text, d.position) for d in read_input(item, ReadConfig(), stats)]
    return documents, stats, len(inputs)


def test_every_line_is_read_once_with_its_line_number_whatever_the_part_size(tmp_path):
    lines = [json.dumps({"text": "x" * (i % 7) + f"line {i}"}) for i in range(40)]
    lines[5], lines[6] = "", "   "  # blank lines are skipped, but still numbered
    lines[9] = json.dumps({"text": None})
    content = ("\n".join(lines) + "\n").encode()
    for name, data in (("a.jsonl", content), ("no_final_newline.jsonl", content.rstrip(b"\n"))):
        path = tmp_path / name
        path.write_bytes(data)
        whole_stats = ReadStats()
        whole = [(d.text, d.position) for d in read_input(input_for_path(path), ReadConfig(), whole_stats)]
        assert len(whole) == 37 and whole[5] == ("line 7", 8)
        for part_bytes in (1, 2, 3, 17, 50, 51, 52, 200, len(data) - 1):
            documents, stats, count = read_parts(path, part_bytes)
            assert count > 1
            assert documents == whole, (name, part_bytes)
            assert stats == whole_stats, (name, part_bytes)  # files counted once, every byte once


def test_only_large_uncompressed_json_lines_files_are_split(tmp_path):
    big = tmp_path / "big.jsonl"
    big.write_text("".join(json.dumps({"text": f"document {i}"}) + "\n" for i in range(1000)))
    size = big.stat().st_size
    parts = split_into_parts(input_for_path(big), part_mb=-(-size // 4) / 1e6)
    assert len(parts) == 4 and len({p.id for p in parts}) == 4
    assert parts[0].byte_range[0] == 0 and parts[-1].byte_range[1] == size
    assert all(a.byte_range[1] == b.byte_range[0] for a, b in zip(parts, parts[1:]))
    assert split_into_parts(input_for_path(big), part_mb=0) == [input_for_path(big)]
    assert split_into_parts(input_for_path(big), part_mb=size / 1e6) == [input_for_path(big)]
    (tmp_path / "big.json").write_text("[" + ",".join(['{"text": "x"}'] * 1000) + "]")
    assert split_into_parts(input_for_path(tmp_path / "big.json"), part_mb=1e-6) == [
        input_for_path(tmp_path / "big.json")
    ]


def test_parts_are_ray_task_groups_alone():
    class Item:
        def __init__(self, name, byte_range=None):
            self.name, self.is_part = name, byte_range is not None

    items = [Item("a"), Item("b"), Item("c", (0, 5)), Item("d", (5, 9)), Item("e"), Item("f"), Item("g")]
    groups = [[item.name for item in group] for group in task_groups(items, 2)]
    assert groups == [["a", "b"], ["c"], ["d"], ["e", "f"], ["g"]]


def test_reading_in_parts_writes_the_same_dataset(planted_corpus, tmp_path):
    whole = prepare(small_prep_config(planted_corpus, tmp_path / "whole"), show_progress=False)
    config = small_prep_config(planted_corpus, tmp_path / "parts")
    smallest = min(p.stat().st_size for p in planted_corpus.glob("*.jsonl"))
    config.read.part_mb = smallest / 5 / 1e6  # every input in 5 or more parts
    parted = prepare(config, show_progress=False)
    assert len(list_inputs(config.sources, config.read)) >= 5 * 9
    assert dataset_files(tmp_path / "parts") == dataset_files(tmp_path / "whole")
    assert parted["stats"] == whole["stats"] and parted["inputs"] == whole["inputs"] == 9
    whole_report = json.loads((tmp_path / "whole" / "report.json").read_text())
    parts_report = json.loads((tmp_path / "parts" / "report.json").read_text())
    assert parts_report["documents"] == whole_report["documents"]


def test_a_negative_part_size_is_refused():
    with pytest.raises(DataPrepError, match=r"read.part_mb must be 0 \(read files whole\) or more, got -1"):
        ReadConfig(part_mb=-1)


def test_a_binary_file_read_in_parts_is_skipped_and_counted_once(tmp_path):
    path = tmp_path / "binary.jsonl"
    path.write_bytes(b"\x00" + b"".join(json.dumps({"text": f"t{i}"}).encode() + b"\n" for i in range(50)))
    documents, stats, count = read_parts(path, 100)
    assert count > 3 and documents == []
    assert (stats.files, stats.binary_files_skipped) == (1, 1)


def test_a_large_parquet_file_is_read_as_runs_of_row_groups_with_its_row_numbers(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    texts = [f"row {i} " + "y" * (i % 13) if i % 11 else None for i in range(300)]
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"text": texts, "n": list(range(300))}), path, row_group_size=20)
    whole_stats = ReadStats()
    whole = [(d.text, d.position) for d in read_input(input_for_path(path), ReadConfig(), whole_stats)]
    assert whole[:2] == [("row 1 y", 1), ("row 2 yy", 2)] and len(whole) == 272
    for part_bytes in (1, 500, path.stat().st_size // 3):
        documents, stats, count = read_parts(path, part_bytes)
        assert count > 1, part_bytes
        assert documents == whole, part_bytes
        assert stats == whole_stats, part_bytes
    parts = split_into_parts(input_for_path(path), part_mb=1e-6)
    assert [p.row_groups for p in parts] == [(g, g + 1) for g in range(15)]  # one row group per part
    assert [p.first_position for p in parts] == list(range(0, 300, 20))
    one_group = tmp_path / "one.parquet"
    pq.write_table(pa.table({"text": texts}), one_group)
    assert split_into_parts(input_for_path(one_group), part_mb=1e-6) == [input_for_path(one_group)]
