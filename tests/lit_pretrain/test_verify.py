"""Shards are checked against their manifest before a run trains on them (``data.verify``): a truncated, missing
or overwritten shard, or a token id beyond the vocabulary, stops the run with one line naming the file, before any
step; a dataset is hashed once, and the verdict reaches every rank."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import data_prep.tokens.verify as verify_module
from data_prep.tokens.verify import VERIFIED_FILE
from lit_pretrain import PretrainDataModule
from lit_pretrain.errors import ConfigError


@pytest.fixture
def dataset(prepared_dataset, tmp_path) -> Path:
    """A private copy of the shared prepared dataset (without its work files), to damage."""
    copy = tmp_path / "dataset"
    shutil.copytree(prepared_dataset, copy, ignore=shutil.ignore_patterns("work", VERIFIED_FILE))
    return copy


def data_module(directory: Path, **kwargs) -> PretrainDataModule:
    return PretrainDataModule(dataset_dir=str(directory), prepare_config=None, seq_len=64, batch_size=4, **kwargs)


def overwrite(path: Path, position: int, values: np.ndarray) -> None:
    with open(path, "r+b") as handle:
        handle.seek(position)
        handle.write(values.tobytes())


def test_a_dataset_is_hashed_once_then_skipped_until_a_file_changes(dataset, monkeypatch):
    hashed = []
    real = verify_module.sha256_file
    monkeypatch.setattr(verify_module, "sha256_file", lambda path: hashed.append(Path(path).name) or real(path))
    data_module(dataset).setup("fit")
    shards = sorted(p.name for p in dataset.glob("*.bin"))
    assert sorted(hashed) == sorted([*shards, "tokenizer.json"]) and (dataset / VERIFIED_FILE).is_file()
    hashed.clear()
    data_module(dataset).setup("fit")  # a later run of the same files
    assert hashed == []
    train = dataset / "train_00000.bin"
    os.utime(train, ns=(train.stat().st_atime_ns, train.stat().st_mtime_ns + 1_000_000))  # written since
    data_module(dataset).setup("fit")
    assert "train_00000.bin" in hashed


def test_bytes_overwritten_in_place_are_found_by_the_hash_not_by_the_sizes(dataset):
    train = dataset / "train_00000.bin"
    overwrite(train, 2 * 1000, np.array([7, 7, 7, 7], dtype=np.uint16))  # same length: the permutation is unchanged
    data_module(dataset, verify="size").setup("fit")  # sizes cannot see it
    with pytest.raises(ConfigError) as refused:
        data_module(dataset).setup("fit")
    message = str(refused.value)
    assert message.startswith(f"'{train}' has SHA-256 ") and "prepare the dataset again" in message
    assert "\n" not in message and not (dataset / VERIFIED_FILE).exists()  # a failed check records nothing


@pytest.mark.parametrize("verify", ["size", "hash"])
def test_a_truncated_shard_is_refused_in_either_mode(dataset, verify):
    train = dataset / "train_00000.bin"
    os.truncate(train, train.stat().st_size - 6)  # three tokens short
    with pytest.raises(ConfigError, match=rf"^'{train}' holds [\d,]+ tokens but its index 'train_00000.idx' ends at"):
        data_module(dataset, verify=verify).setup("fit")
    os.truncate(train, train.stat().st_size - 1)  # and half a token
    with pytest.raises(ConfigError, match=rf"^'{train}' has [\d,]+ bytes, not a whole number of uint16 tokens"):
        data_module(dataset, verify=verify).setup("fit")


@pytest.mark.parametrize("verify", ["size", "hash"])
def test_a_missing_shard_is_refused_in_either_mode(dataset, verify):
    (dataset / "val_00000.bin").unlink()
    with pytest.raises(ConfigError, match=rf"^'{dataset / 'val_00000.bin'}' is missing \(listed in"):
        data_module(dataset, verify=verify).setup("fit")


def test_with_checks_off_a_missing_shard_still_fails_with_one_line(dataset):
    (dataset / "val_00000.bin").unlink()
    with pytest.raises(ConfigError, match=r"'.*val_00000.bin' is missing \(its dataset's manifest lists it\)"):
        data_module(dataset, verify="off").setup("fit")


def test_ids_beyond_the_vocabulary_stop_at_the_batch_that_holds_them_naming_the_shard(dataset):
    clean = data_module(dataset, verify="size")
    clean.setup("fit")
    assert sum(len(batch["input_ids"]) for batch in clean.val_dataloader()) == len(clean.val_dataset)
    val = dataset / "val_00000.bin"
    overwrite(val, 2 * 70, np.array([600], dtype=np.uint16))  # vocabulary 512; the second window of val
    data = data_module(dataset, verify="size")
    data.setup("fit")
    with pytest.raises(ConfigError) as stopped:
        list(data.val_dataloader())
    assert str(stopped.value).startswith(f"'{val}' holds token id 600 at token 70, beyond the vocabulary of 512 ids")
    # The hash check finds the same file before any batch is read.
    with pytest.raises(ConfigError, match=rf"^'{val}' has SHA-256"):
        data_module(dataset).setup("fit")


def _rank(rank: int, world: int, directory: str, port: int, results) -> None:
    torch.distributed.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    hashed = []
    real = verify_module.sha256_file
    verify_module.sha256_file = lambda path: hashed.append(Path(path).name) or real(path)
    data = data_module(Path(directory))
    data.trainer = SimpleNamespace(global_rank=rank, local_rank=rank, world_size=world)
    try:
        data.verify_dataset(collective=True)
        results.put((rank, None, len(hashed)))
    except ConfigError as error:
        results.put((rank, str(error), len(hashed)))
    finally:
        torch.distributed.destroy_process_group()


def run_two_ranks(dataset: Path) -> dict[int, tuple[str | None, int]]:
    """rank -> (its error or None, how many files it hashed), each rank a forked process joined by gloo."""
    import socket

    context = torch.multiprocessing.get_context("fork")  # the children inherit the imports: seconds, not tens
    results = context.Queue()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    processes = [context.Process(target=_rank, args=(r, 2, str(dataset), port, results)) for r in range(2)]
    for process in processes:
        process.start()
    verdicts = {rank: (error, hashed) for rank, error, hashed in (results.get(timeout=120) for _ in processes)}
    for process in processes:
        process.join(timeout=60)
    return verdicts


def test_rank_zero_alone_hashes_and_every_rank_stops_on_its_verdict(dataset):
    """Only global rank 0 reads the shards; rank 1 learns the verdict in the collective, passing or failing."""
    verdicts = run_two_ranks(dataset)
    assert verdicts[0][0] is None and verdicts[1] == (None, 0) and verdicts[0][1] == 3  # 2 shards + tokenizer
    (dataset / VERIFIED_FILE).unlink()
    overwrite(dataset / "train_00000.bin", 2 * 5, np.array([9], dtype=np.uint16))
    verdicts = run_two_ranks(dataset)
    assert verdicts[0][0] is not None and "has SHA-256" in verdicts[0][0]
    assert verdicts[1] == (verdicts[0][0], 0)  # the same line, without reading a shard


def test_a_rank_other_than_the_hashing_one_checks_sizes_only(dataset, monkeypatch):
    hashed = []
    monkeypatch.setattr(verify_module, "sha256_file", lambda path: hashed.append(path))
    data_module(dataset).verify_dataset(rank=1)  # what the CLI passes on global rank 1 before fit
    assert hashed == [] and not (dataset / VERIFIED_FILE).exists()
    os.truncate(dataset / "val_00000.bin", 3)
    with pytest.raises(ConfigError, match="not a whole number"):
        data_module(dataset).verify_dataset(rank=1)
