import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from data_prep import pipeline
from data_prep.config import DataPrepConfig
from data_prep.errors import DataPrepError
from data_prep.pipeline import prepare
from data_prep.shards import MANIFEST_FILE, read_manifest, read_tokens
from data_prep.tokenizer import load_tokenizer
from tests.conftest import small_prep_config

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


def test_exact_duplicates_are_dropped(tmp_path, stdlib_corpus):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    text = (stdlib_corpus / "json" / "decoder.py").read_text()
    for name in ("a.py", "b.py", "c.py"):
        (corpus / name).write_text(text)
    (corpus / "d.py").write_text((stdlib_corpus / "json" / "encoder.py").read_text())
    manifest = prepare(small_prep_config(corpus, tmp_path / "out", split=pipeline_split(0.5)), show_progress=False)
    assert manifest["stats"]["exact_duplicates"] == 2
    assert sum(info["documents"] for info in manifest["splits"].values()) == 2


def pipeline_split(val_fraction):
    from data_prep.config import SplitConfig

    return SplitConfig(val_fraction=val_fraction, seed=3)


def test_rerun_reuses_finished_output_and_config_changes_rebuild(tmp_path, stdlib_corpus, monkeypatch):
    config = small_prep_config(stdlib_corpus, tmp_path / "out")
    first = prepare(config, show_progress=False)
    stamp = (tmp_path / "out" / MANIFEST_FILE).stat().st_mtime_ns

    def must_not_build(*args, **kwargs):
        raise AssertionError("finished output was rebuilt")

    monkeypatch.setattr(pipeline, "_build", must_not_build)
    assert prepare(config, show_progress=False)["fingerprint"] == first["fingerprint"]
    assert (tmp_path / "out" / MANIFEST_FILE).stat().st_mtime_ns == stamp
    monkeypatch.undo()

    config.split.seed = 7
    second = prepare(config, show_progress=False)
    assert second["fingerprint"] != first["fingerprint"]
    assert not list(tmp_path.glob(".out.*"))  # no temporary or old directories left behind


def test_failure_midway_leaves_nothing_half_written(tmp_path, stdlib_corpus, monkeypatch):
    def explode(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(pipeline.ShardWriter, "close", explode)
    with pytest.raises(RuntimeError, match="disk full"):
        prepare(small_prep_config(stdlib_corpus, tmp_path / "out"), show_progress=False)
    assert list(tmp_path.iterdir()) == []


def test_corpus_empty_after_cleaning_is_an_error_and_writes_nothing(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "empty.py").write_text("   \n")
    with pytest.raises(DataPrepError, match="no training documents left"):
        prepare(small_prep_config(corpus, tmp_path / "out"), show_progress=False)
    assert not (tmp_path / "out").exists()


def test_unknown_config_key_is_named():
    with pytest.raises(DataPrepError, match="'tokenizer.vocab'"):
        DataPrepConfig.from_dict({"sources": ["x"], "tokenizer": {"vocab": 10}})


def run_cli(*args, cwd=REPO):
    return subprocess.run(
        [sys.executable, "-m", "data_prep", *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )


def test_cli_overrides_sources_and_output_dir(tmp_path, stdlib_corpus):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "docs.jsonl").write_text(
        "\n".join(json.dumps({"text": p.read_text()}) for p in sorted(stdlib_corpus.rglob("*.py"))[:40])
    )
    result = run_cli(
        "--config",
        "configs/data/stdlib.yaml",
        "--sources",
        json.dumps([str(corpus / "*.jsonl")]),
        "--output_dir",
        str(tmp_path / "out"),
        "--tokenizer.vocab_size",
        "300",
        "--split.val_fraction",
        "0.2",
    )
    assert result.returncode == 0, result.stderr
    manifest = read_manifest(tmp_path / "out")
    assert manifest["sources"] == [str(corpus / "*.jsonl")] and manifest["vocab_size"] == 300
    assert "train:" in result.stdout
    again = run_cli(
        "--config",
        "configs/data/stdlib.yaml",
        "--sources",
        json.dumps([str(corpus / "*.jsonl")]),
        "--output_dir",
        str(tmp_path / "out"),
        "--tokenizer.vocab_size",
        "300",
        "--split.val_fraction",
        "0.2",
    )
    assert "reusing finished dataset" in again.stdout


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
