import json

import numpy as np
import pytest

from data_prep.errors import DataPrepError
from data_prep.tokens.shards import (
    MANIFEST_FILE,
    ShardWriter,
    dtype_for_vocab,
    read_document_offsets,
    read_manifest,
    read_tokens,
    sha256_file,
)


def test_dtype_follows_the_vocabulary_size():
    assert dtype_for_vocab(65536) == np.uint16
    assert dtype_for_vocab(65537) == np.uint32


@pytest.mark.parametrize("vocab_size", [4096, 100_000])
def test_tokens_written_equal_tokens_read(tmp_path, vocab_size):
    rng = np.random.default_rng(0)
    documents = [rng.integers(1, vocab_size, size=n).tolist() + [0] for n in (5, 17, 3, 40, 8)]
    writer = ShardWriter(tmp_path, "train", dtype_for_vocab(vocab_size), tokens_per_shard=30)
    writer.add_documents(documents[:2], num_bytes=10)
    writer.add_documents(documents[2:4], num_bytes=20)
    writer.add_documents(documents[4:], num_bytes=5)
    info = writer.close()

    assert info["files"] == ["train_00000.bin", "train_00001.bin"]  # rolled over after 30 tokens
    assert info["documents"] == 5 and info["bytes"] == 35
    assert info["tokens"] == sum(len(d) for d in documents)
    dtype = dtype_for_vocab(vocab_size)
    read_back = []
    for name in info["files"]:
        path = tmp_path / name
        assert info["sha256"][name] == sha256_file(path)
        offsets = read_document_offsets(path)
        tokens = read_tokens(path, dtype, 0, int(offsets[-1]))
        read_back += [tokens[a:b].tolist() for a, b in zip(offsets[:-1], offsets[1:])]
    assert read_back == documents
    assert read_tokens(tmp_path / "train_00000.bin", dtype, 6, 3).tolist() == documents[1][:3]  # doc 0 is 5 + EOT


def test_read_manifest_errors_name_the_file(tmp_path):
    with pytest.raises(DataPrepError, match="manifest.json' not found"):
        read_manifest(tmp_path)
    (tmp_path / MANIFEST_FILE).write_text("{broken")
    with pytest.raises(DataPrepError, match="unreadable"):
        read_manifest(tmp_path)
    (tmp_path / MANIFEST_FILE).write_text(json.dumps({"dtype": "uint16"}))
    with pytest.raises(DataPrepError, match="no 'splits' key"):
        read_manifest(tmp_path)


@pytest.mark.parametrize("tokens_per_shard, chunk", [(50, 3), (1, 65536), (10**9, 2), (37, 1)])
def test_shards_planned_and_written_one_task_each_equal_one_sequential_writer(
    tmp_path, monkeypatch, tokens_per_shard, chunk
):
    """pack_shards (a plan, then one engine task per shard) writes the bytes one ShardWriter fed every document
    in order writes, whatever the shard size and however the documents fall across inputs and shards."""
    from types import SimpleNamespace

    from data_prep.engines import LocalEngine
    from data_prep.read.sources import Input
    from data_prep.tokens import pack

    monkeypatch.setattr(pack, "PACK_CHUNK_DOCUMENTS", chunk)
    rng = np.random.default_rng(1)
    tokens_dir, dtype = tmp_path / "tokens", np.dtype(np.uint16)
    tokens_dir.mkdir()
    inputs, parts, documents = [], {}, []
    for i, count in enumerate([7, 0, 1, 12, 3]):  # an input with no documents in the split is skipped
        item = Input(id=f"in{i}", path=f"in{i}", kind="text")
        docs = [rng.integers(1, 4000, size=int(n)).tolist() + [0] for n in rng.integers(1, 30, size=count)]
        np.array([t for d in docs for t in d], dtype=dtype).tofile(tokens_dir / f"{item.id}.train.bin")
        np.array([len(d) for d in docs], dtype=np.int64).tofile(tokens_dir / f"{item.id}.train.len")
        inputs.append(item)
        parts[item.id] = {"train": {"documents": count, "tokens": sum(map(len, docs)), "bytes": 10 * count}}
        documents += docs
    config = SimpleNamespace(shards=SimpleNamespace(tokens_per_shard=tokens_per_shard))
    (tmp_path / "packed").mkdir()
    info = pack.pack_shards(parts, inputs, ["train"], dtype, tokens_dir, tmp_path / "packed", config, LocalEngine(1))

    (tmp_path / "sequential").mkdir()
    writer = ShardWriter(tmp_path / "sequential", "train", dtype, tokens_per_shard)
    writer.add_documents(documents, num_bytes=10 * len(documents))
    expected = writer.close()
    assert info["train"] == expected
    assert len(expected["files"]) > 1 or tokens_per_shard == 10**9
    for name in expected["files"]:
        for suffix in (".bin", ".idx"):
            path = name.replace(".bin", suffix)
            assert (tmp_path / "packed" / path).read_bytes() == (tmp_path / "sequential" / path).read_bytes()
