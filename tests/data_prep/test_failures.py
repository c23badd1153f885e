"""Nothing silent, nothing lost: a full disk ends in one line and a re-run resumes; splits bound to be empty fail
before the expensive stages; bad records are skipped on request, counted per file and named; binary files are
named; killed runs' temporary files are cleaned up."""

from __future__ import annotations

import errno
import json
import os

import numpy as np
import pytest

from data_prep import documents, pipeline
from data_prep.__main__ import main
from data_prep.config import DataPrepConfig
from data_prep.dedup.exact import DuplicateFinder
from data_prep.errors import DataPrepError
from data_prep.pipeline import _stage_fingerprints, prepare
from data_prep.read.sources import list_inputs
from data_prep.tokens import shards
from data_prep.tokens.shards import MANIFEST_FILE, read_manifest
from tests.conftest import copy_stdlib_corpus, small_prep_config
from tests.data_prep.corpus_files import corpus_with_bad_input


def must_not_run(*args, **kwargs):
    raise AssertionError("this stage should not have run")


def tiny_run(corpus, output, *extra: str) -> list[str]:
    """CLI arguments for the json package's five sources (seed 1 puts two of them in val) with a tiny tokenizer."""
    return [
        "--sources", json.dumps([str(corpus)]), "--output_dir", str(output), "--num_workers", "1",
        "--tokenizer.vocab_size", "300", "--split.val_fraction", "0.3", "--split.seed", "1", *extra,
    ]  # fmt: skip


def one_error_line(capsys) -> str:
    """The CLI's error: one line, the last on stderr (progress bars may come before it), no traceback."""
    lines = capsys.readouterr().err.splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0] and "Traceback" not in "".join(lines), lines
    return errors[0]


class FillingDisk:
    """``open`` for the shard writer's module: the first file written there is written whole; the next ones share
    ``room`` bytes, after which every write fails with ``ENOSPC`` (having written what still fitted, as on a
    real full disk)."""

    def __init__(self, room: int) -> None:
        self.room, self.opened = room, 0

    def __call__(self, path, mode="r", *args, **kwargs):
        handle = open(path, mode, *args, **kwargs)
        self.opened += "w" in mode
        return self._File(handle, self) if "w" in mode and self.opened > 1 else handle

    class _File:
        def __init__(self, handle, disk: "FillingDisk") -> None:
            self.handle, self.disk = handle, disk

        def write(self, data) -> int:
            data = memoryview(data).cast("B")
            if data.nbytes > self.disk.room:
                self.handle.write(data[: self.disk.room])
                self.disk.room = 0
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            self.disk.room -= data.nbytes
            return self.handle.write(data)

        def close(self) -> None:
            self.handle.close()


def test_a_full_disk_while_writing_shards_is_one_line_and_the_rerun_reuses_the_finished_work(
    tmp_path, capsys, monkeypatch
):
    corpus = copy_stdlib_corpus(tmp_path / "corpus", packages=("json",))
    output = tmp_path / "out"
    args = tiny_run(corpus, output, "--shards.tokens_per_shard", "2000")
    monkeypatch.setattr(shards, "open", FillingDisk(room=1_000), raising=False)  # full during the second shard
    assert main(args) == 1
    line = one_error_line(capsys)
    assert line.startswith(f"error: no space left on device: writing '{output / 'train_00001.bin'}'")
    assert "MB free now); free space there and run the same command again: it reuses the work already" in line
    assert not (output / MANIFEST_FILE).exists()  # not a finished dataset
    assert not list(output.rglob("*.tmp-*"))  # the half-written shard is gone, not left under any name
    finished = sorted(output.glob("*.bin"))
    assert [path.name for path in finished] == ["train_00000.bin"]  # whole: as long as its index says
    assert finished[0].stat().st_size == np.fromfile(finished[0].with_suffix(".idx"), np.uint64)[-1] * 2

    # What a killed run leaves behind, then the space is freed: the same command finishes without redoing the
    # documents or dedup stages, and deletes the leftovers.
    tokens_dir = next((output / "work").glob("tokens.*"))
    leftovers = [tokens_dir / "x.train.bin.tmp-99999", output / "work" / "tokenizer.0.tmp-99999"]
    leftovers[0].write_bytes(b"partial")
    leftovers[1].mkdir()
    monkeypatch.undo()
    monkeypatch.setattr(documents, "_process_one_input", must_not_run)
    monkeypatch.setattr(DuplicateFinder, "process_input", must_not_run)
    assert main(args) == 0
    assert read_manifest(output)["splits"]["train"]["files"][0] == "train_00000.bin"
    assert not any(path.exists() for path in leftovers) and not list(output.rglob("*.tmp-*"))


@pytest.mark.parametrize(
    "split_args, message",
    [
        (["--split.val_fraction", "0"], "split.val_fraction is 0, so the val split would be empty"),
        (["--split.test_fraction", "0.7"], "split.val_fraction + split.test_fraction is 1, which leaves nothing"),
    ],
)
def test_fractions_that_leave_a_split_empty_fail_before_reading(tmp_path, capsys, monkeypatch, split_args, message):
    monkeypatch.setattr(documents, "_process_one_input", must_not_run)
    corpus = copy_stdlib_corpus(tmp_path / "corpus", packages=("json",))
    assert main([*tiny_run(corpus, tmp_path / "out"), *split_args]) == 1
    assert one_error_line(capsys).startswith(f"error: {message}")
    assert not (tmp_path / "out").exists()


def test_a_single_file_read_as_one_document_fails_before_reading(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(documents, "_process_one_input", must_not_run)
    only = tmp_path / "only.py"
    only.write_text("print('one document')\n" * 20)
    assert main(tiny_run(only, tmp_path / "out")) == 1
    line = one_error_line(capsys)
    assert f"the only input, '{only}', is read as one document" in line and "read.split_documents" in line


def test_no_kept_document_in_the_val_split_fails_after_reading_before_dedup(tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline, "run_dedup_stage", must_not_run)
    corpus = copy_stdlib_corpus(tmp_path / "corpus", packages=("json",))
    config = small_prep_config(corpus, tmp_path / "out")
    config.split.val_fraction = 1e-9
    with pytest.raises(DataPrepError, match=r"^the val split would be empty: none of the 5 documents kept after"):
        prepare(config, show_progress=False)


def test_bad_records_fail_by_default_naming_the_line_and_the_way_to_skip(tmp_path):
    corpus = corpus_with_bad_input(tmp_path / "corpus")
    config = small_prep_config(corpus, tmp_path / "out")
    with pytest.raises(DataPrepError, match=r"bad.jsonl' line 2: invalid JSON .*set read.on_error: skip") as error:
        prepare(config, show_progress=False)
    assert "\n" not in str(error.value) and not (tmp_path / "out").exists()


def test_skipped_bad_records_and_binary_files_are_counted_and_named(tmp_path, capsys):
    corpus = corpus_with_bad_input(tmp_path / "corpus", binary_files=22)
    config = small_prep_config(corpus, tmp_path / "out")
    config.read.on_error = "skip"
    manifest = prepare(config)
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    bad = str(corpus / "bad.jsonl")
    assert report["bad_records"] == {
        bad: {
            "count": 3,
            "first": [
                {"at": "line 2", "error": "invalid JSON (Expecting property name enclosed in double quotes)"},
                {"at": "line 3", "error": "no 'text' field"},
                {"at": "line 4", "error": "field 'text' is int, not a string"},
            ],
        }
    }
    assert report["skipped"]["bad_records"] == manifest["stats"]["skipped"]["bad_records"] == 3
    assert report["skipped"]["null_texts"] == 1
    blobs = sorted(str(path) for path in (corpus / "blobs").iterdir())
    assert report["binary_files"] == {"count": 22, "first": blobs[:20]}
    funnel = capsys.readouterr().out
    assert f"bad records skipped             3  '{bad}' line 2 (invalid JSON" in funnel
    assert f"binary files skipped           22  '{blobs[0]}', '{blobs[1]}', '{blobs[2]}' ..." in funnel


def test_on_error_is_part_of_the_reading_fingerprint_and_piece_sizes_of_the_tokenizers(tmp_path):
    corpus = copy_stdlib_corpus(tmp_path / "corpus", packages=("json",))

    def fingerprints(**read_and_tokenizer) -> dict:
        config = DataPrepConfig.from_dict({"sources": [str(corpus)], **read_and_tokenizer})
        return _stage_fingerprints(config, list_inputs(config.sources, config.read))

    default = fingerprints()
    skip = fingerprints(read={"on_error": "skip"})
    assert all(skip["documents"][key] != value for key, value in default["documents"].items())
    for key in ("max_piece_chars", "sample_chars_per_document"):  # they change the sample (and forced cuts)
        changed = fingerprints(tokenizer={key: 123})
        assert changed["documents"] == default["documents"] and changed["dedup"] == default["dedup"]
        assert changed["tokenizer"] != default["tokenizer"] and changed["shards"] != default["shards"]


def test_a_broken_config_file_or_a_mistyped_key_is_one_line_naming_it(tmp_path, capsys):
    broken = tmp_path / "broken.yaml"
    broken.write_text("sources: [a\ntokenizer:\n  vocab_size: 300\n")
    with pytest.raises(SystemExit) as stopped:
        main(["--config", str(broken)])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert stopped.value.code == 2 and len(errors) == 1
    assert errors[0].startswith(f"error: config file '{broken}' is not valid YAML (line 2, column ")
    typo = tmp_path / "typo.yaml"
    typo.write_text("clean:\n  min_charz: 3\n")
    for arguments, expected in (
        (["--config", str(typo)], "error: Group 'clean' does not accept option 'min_charz'; did you mean 'clean.min_chars'?"),
        (["--tokenizer.vocab_sise", "300"], "error: unrecognized arguments: --tokenizer.vocab_sise 300; did you mean --tokenizer.vocab_size?"),
    ):  # fmt: skip
        with pytest.raises(SystemExit) as stopped:
            main(arguments)
        errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
        assert stopped.value.code == 2 and errors == [expected]
