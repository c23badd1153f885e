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
