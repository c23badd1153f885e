import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from data_prep import documents, pipeline
from data_prep.config import DataPrepConfig
from data_prep.dedup.exact import DuplicateFinder
from data_prep.errors import DataPrepError
from data_prep.pipeline import prepare
from data_prep.split import SplitConfig
from data_prep.tokens.shards import MANIFEST_FILE, ShardWriter, read_manifest, read_tokens
from data_prep.tokens.tokenizer import load_tokenizer
from tests.conftest import STDLIB, small_prep_config

REPO = Path(__file__).resolve().parents[2]


def test_manifest_describes_the_shards(prepared_dataset):
    manifest = read_manifest(prepared_dataset)
    assert manifest["dtype"] == "uint16"
    assert set(manifest["splits"]) == {"train", "val"}
    assert manifest["tokenizer"]["file"] == "tokenizer.json" and len(manifest["tokenizer"]["sha256"]) == 64
    assert manifest["tokenizer"]["vocab_size"] <= 512 == manifest["vocab_size"]
    assert (prepared_dataset / "hf_tokenizer" / "tokenizer.json").is_file()
    for info in manifest["splits"].values():
        assert info["documents"] > 0 and info["tokens"] > info["documents"]
        size = sum((prepared_dataset / name).stat().st_size for name in info["files"])
        assert size == info["tokens"] * np.dtype(manifest["dtype"]).itemsize


def test_shards_hold_each_document_tokenized_and_terminated(prepared_dataset, stdlib_corpus):
    manifest = read_manifest(prepared_dataset)
    tokenizer = load_tokenizer(prepared_dataset / "tokenizer.json")
    tokens = read_tokens(prepared_dataset / manifest["splits"]["val"]["files"][0], np.uint16, 0, 10**9)
    documents = np.split(tokens, np.flatnonzero(tokens == manifest["end_of_text_id"]) + 1)[:-1]
    assert len(documents) == manifest["splits"]["val"]["documents"]
    first_text = tokenizer.decode(documents[0][:-1].tolist())
    assert any(first_text == path.read_text().strip() for path in stdlib_corpus.rglob("*.py"))


def test_train_and_val_documents_are_disjoint(prepared_dataset):
    manifest = read_manifest(prepared_dataset)

    def documents(split):
        info = manifest["splits"][split]
        tokens = np.concatenate([read_tokens(prepared_dataset / f, np.uint16, 0, 10**9) for f in info["files"]])
        return {d.tobytes() for d in np.split(tokens, np.flatnonzero(tokens == 0) + 1)[:-1]}

    assert not documents("train") & documents("val")


def test_report_has_the_documented_keys_and_adds_up(prepared_dataset):
    report = json.loads((prepared_dataset / "report.json").read_text())
    documents = report["documents"]
    removed = sum(report["removed"].values())
    duplicates = report["duplicates"]["exact"] + report["duplicates"]["near"]
    assert documents["read"] == documents["kept"] + removed + duplicates
    assert report["tokens"]["train"] > report["tokens"]["val"] > 0
    assert set(report["stages"]) == {"documents", "dedup", "tokenizer", "tokens", "shards"}
    assert all(stage["seconds"] >= 0 for stage in report["stages"].values())


def test_exact_duplicates_are_dropped_and_audited(tmp_path, stdlib_corpus):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    text = (stdlib_corpus / "json" / "decoder.py").read_text()
    for name in ("a.py", "b.py", "c.py"):
        (corpus / name).write_text(text)
    (corpus / "d.py").write_text((stdlib_corpus / "json" / "encoder.py").read_text())
    config = small_prep_config(corpus, tmp_path / "out", split=SplitConfig(val_fraction=0.5, seed=3))
    manifest = prepare(config, show_progress=False)
    assert manifest["stats"]["duplicates"]["exact"] == 2
    assert sum(info["documents"] for info in manifest["splits"].values()) == 2
    audit = [json.loads(line) for line in (tmp_path / "out" / "duplicates.jsonl").read_text().splitlines()]
    assert [(Path(r["removed"]["source"]).name, Path(r["kept"]["source"]).name, r["kind"]) for r in audit] == [
        ("b.py", "a.py", "exact"),
        ("c.py", "a.py", "exact"),
    ]


def test_rerun_reuses_finished_output_and_config_changes_redo_only_affected_stages(
    tmp_path, stdlib_corpus, monkeypatch
):
    config = small_prep_config(stdlib_corpus, tmp_path / "out")
    first = prepare(config, show_progress=False)
    stamp = (tmp_path / "out" / MANIFEST_FILE).stat().st_mtime_ns

    def must_not_run(*args, **kwargs):
        raise AssertionError("this stage should have been reused")

    monkeypatch.setattr(pipeline, "_run", must_not_run)
    assert prepare(config, show_progress=False)["fingerprint"] == first["fingerprint"]
    assert (tmp_path / "out" / MANIFEST_FILE).stat().st_mtime_ns == stamp
    monkeypatch.undo()

    # A tokenizer key: reading, cleaning, filtering and dedup are reused; tokenizer and shards are redone.
    monkeypatch.setattr(documents, "_process_one_input", must_not_run)
    monkeypatch.setattr(DuplicateFinder, "process_input", must_not_run)
    config.tokenizer.vocab_size = 400
    second = prepare(config, show_progress=False)
    assert second["fingerprint"] != first["fingerprint"] and second["vocab_size"] == 400
    assert len(list((tmp_path / "out" / "work").glob("tokenizer.*"))) == 1  # the old configuration's files pruned
    monkeypatch.undo()

    # A cleaning key changes every document: that stage is redone.
    config.clean.min_chars = 2000
    third = prepare(config, show_progress=False)
    assert third["stats"]["removed"]["min_chars"] > 0
    assert third["stats"]["documents"]["kept"] < second["stats"]["documents"]["kept"]
    assert len(list((tmp_path / "out" / "work" / "documents").glob("*.jsonl"))) == third["inputs"]


def test_crash_leaves_no_finished_looking_dataset_and_the_rerun_completes(tmp_path, stdlib_corpus, monkeypatch):
    def explode(*args, **kwargs):
        raise RuntimeError("disk full")

    config = small_prep_config(stdlib_corpus, tmp_path / "out")
    monkeypatch.setattr(ShardWriter, "close", explode)
    with pytest.raises(RuntimeError, match="disk full"):
        prepare(config, show_progress=False)
    assert not (tmp_path / "out" / MANIFEST_FILE).exists()
    monkeypatch.undo()
    manifest = prepare(config, show_progress=False)
    assert read_manifest(tmp_path / "out")["fingerprint"] == manifest["fingerprint"]
    assert not list((tmp_path / "out").rglob("*.tmp-*"))


def test_corpus_empty_after_cleaning_is_an_error_and_writes_nothing(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "empty.py").write_text("   \n")
    (corpus / "blank.py").write_text("\n\n")
    with pytest.raises(DataPrepError, match="no documents left"):
        prepare(small_prep_config(corpus, tmp_path / "out"), show_progress=False)
    assert not (tmp_path / "out").exists()


def test_unknown_config_key_is_named():
    with pytest.raises(DataPrepError, match="'tokenizer.vocab'"):
        DataPrepConfig.from_dict({"sources": ["x"], "tokenizer": {"vocab": 10}})


def run_cli(*args, cwd=REPO, **kwargs):
    command = [sys.executable, "-m", "data_prep", *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300, **kwargs)


def test_cli_overrides_sources_and_output_dir(tmp_path, stdlib_corpus):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "docs.jsonl").write_text(
        "\n".join(json.dumps({"text": p.read_text()}) for p in sorted(stdlib_corpus.rglob("*.py"))[:40])
    )
    args = ["--config", "configs/data/stdlib.yaml", "--sources", json.dumps([str(corpus / "*.jsonl")])]
    args += ["--output_dir", str(tmp_path / "out"), "--tokenizer.vocab_size", "300", "--split.val_fraction", "0.2"]
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr
    manifest = read_manifest(tmp_path / "out")
    assert manifest["sources"] == [str(corpus / "*.jsonl")] and manifest["vocab_size"] == 300
    assert "data_prep funnel" in result.stdout and "train" in result.stdout
    assert "reusing finished dataset" in run_cli(*args).stdout


@pytest.mark.parametrize(
    "args, culprit",
    [
        (["--sources", '["/no/such/corpus"]'], "/no/such/corpus"),
        (["--tokenizer.vocab_sise", "10"], "vocab_sise"),
    ],
)
def test_cli_bad_input_is_one_line_and_nonzero(tmp_path, args, culprit):
    result = run_cli("--config", "configs/data/stdlib.yaml", "--output_dir", str(tmp_path / "out"), *args)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and culprit in errors[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def outputs(directory: Path) -> dict[str, bytes]:
    """Every file of a prepared dataset except the work files and this run's timings."""
    return {
        str(path.relative_to(directory)): path.read_bytes()
        for path in sorted(directory.rglob("*"))
        if path.is_file() and "work" not in path.relative_to(directory).parts and path.name != "report.json"
    }


@pytest.mark.parametrize("kill_when", ["work/documents/*.jsonl", "work/tokens.*/*.done.json"])
def test_sigkill_at_any_stage_then_rerun_gives_byte_identical_output(tmp_path, kill_when):
    corpus_args = ["--sources", json.dumps([str(STDLIB / "*.py")]), "--read.include", '["*.py"]']
    common = ["--config", "configs/data/stdlib.yaml", *corpus_args, "--tokenizer.vocab_size", "600"]
    common += ["--num_workers", "2", "--split.val_fraction", "0.05"]
    reference = run_cli(*common, "--output_dir", str(tmp_path / "reference"))
    assert reference.returncode == 0, reference.stderr

    target = tmp_path / "killed"
    process = subprocess.Popen(
        [sys.executable, "-m", "data_prep", *common, "--output_dir", str(target)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 240
    while not list(target.glob(kill_when)) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    os.killpg(process.pid, signal.SIGKILL)  # the whole group: workers die too, as with a node failure
    assert process.wait() == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (target / MANIFEST_FILE).exists()

    resumed = run_cli(*common, "--output_dir", str(target))
    assert resumed.returncode == 0, resumed.stderr
    assert outputs(target) == outputs(tmp_path / "reference")
