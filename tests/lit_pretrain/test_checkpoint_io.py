"""AtomicCheckpointIO and sharded directory saves: a save that dies half-way leaves the previous checkpoint as
it was, and every run gets it."""

from __future__ import annotations

import builtins
import errno
import os
from pathlib import Path

import pytest
import torch
from lightning.pytorch.strategies import ModelParallelStrategy

import lit_pretrain.checkpoint_io as checkpoint_io
from lit_pretrain import PretrainDataModule, PretrainModule
from lit_pretrain.checkpoint_io import AtomicCheckpointIO, make_saves_atomic
from lit_pretrain.errors import NoSpaceLeft
from lit_pretrain.resume import find_last
from tests.conftest import quiet_trainer


class Unpicklable:
    def __reduce__(self):
        raise RuntimeError("dies half-way through the save")


def test_a_failed_save_leaves_the_previous_checkpoint_and_no_partial_file(tmp_path):
    io, path = AtomicCheckpointIO(), tmp_path / "checkpoints" / "last.ckpt"
    io.save_checkpoint({"step": 1, "weights": torch.arange(1000.0)}, path)
    with pytest.raises(RuntimeError, match="half-way"):
        io.save_checkpoint({"step": 2, "weights": torch.zeros(1000), "bad": Unpicklable()}, path)
    loaded = io.load_checkpoint(path)
    assert loaded["step"] == 1 and torch.equal(loaded["weights"], torch.arange(1000.0))
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt"]


def test_a_save_into_a_full_disk_raises_one_line_and_leaves_the_last_checkpoint(tmp_path, monkeypatch):
    """A full disk, as the kernel reports it: the checkpoint's bytes go to /dev/full, which fails every write with
    ENOSPC (the CLI test with a real small filesystem is in tests/e2e/test_refusals_cli.py)."""
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system")
    io, path = AtomicCheckpointIO(), tmp_path / "last.ckpt"
    io.save_checkpoint({"step": 1, "weights": torch.arange(1000.0)}, path)
    monkeypatch.setattr(checkpoint_io, "open", lambda name, mode: builtins.open("/dev/full", mode), raising=False)
    with pytest.raises(
        NoSpaceLeft, match=rf"^no space left on device: saving '{path}' failed \([\d,]+ MB free there now\)"
    ):
        io.save_checkpoint({"step": 2, "weights": torch.zeros(100_000)}, path)
    assert torch.load(path, weights_only=True)["step"] == 1 and sorted(os.listdir(tmp_path)) == ["last.ckpt"]


def test_partial_files_of_a_killed_save_are_cleared_by_the_next_save(tmp_path):
    io, path = AtomicCheckpointIO(), tmp_path / "last.ckpt"
    (tmp_path / ".last.ckpt.partial-99999").write_bytes(b"truncated")  # what a SIGKILL mid-save leaves
    io.save_checkpoint({"step": 3}, path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]
    assert io.load_checkpoint(path)["step"] == 3
    assert not any(name.startswith(".last.ckpt.partial") for name in os.listdir(tmp_path))


def test_every_run_saves_through_it(tmp_path, prepared_dataset):
    data = PretrainDataModule(dataset_dir=str(prepared_dataset), prepare_config=None, seq_len=64, batch_size=4)
    model = PretrainModule(preset="gpt2-tiny", vocab_size=data.vocab_size, seq_len=64, warmup_steps=1)
    trainer = quiet_trainer(tmp_path, max_steps=1, limit_val_batches=0)
    trainer.fit(model, datamodule=data)
    assert type(trainer.strategy.checkpoint_io) is AtomicCheckpointIO
    trainer.save_checkpoint(tmp_path / "saved.ckpt")
    assert torch.load(tmp_path / "saved.ckpt", weights_only=True)["global_step"] == 1


class ShardWriter(ModelParallelStrategy):
    """A one-process stand-in for a sharded save: writes one file per checkpoint entry into the directory it is
    given, like DCP writes one file per rank; ``die_after`` entries it raises (a kill in the middle)."""

    die_after: int | None = None
    dies_of: BaseException = KeyboardInterrupt("killed in the middle of the save")

    def save_checkpoint(self, checkpoint, filepath, storage_options=None) -> None:
        path = Path(filepath)
        path.mkdir(parents=True, exist_ok=True)
        for index, (key, value) in enumerate(checkpoint.items()):
            if index == self.die_after:
                raise self.dies_of
            (path / key).write_text(str(value))

    def broadcast(self, obj, src=0):
        return obj

    def reduce_boolean_decision(self, decision: bool, all: bool = True) -> bool:
        return decision

    def barrier(self, name=None) -> None:
        pass

    @property
    def is_global_zero(self) -> bool:
        return True


def contents(directory: Path) -> dict[str, str]:
    return {file.name: file.read_text() for file in sorted(directory.iterdir())}


def test_a_sharded_save_killed_half_way_leaves_the_previous_directory_whole(tmp_path):
    strategy = ShardWriter()
    make_saves_atomic(strategy)
    last = tmp_path / "last.ckpt"
    strategy.save_checkpoint({"shard_0": 1, "shard_1": 1, "meta": 1}, last)
    strategy.die_after = 1
    with pytest.raises(KeyboardInterrupt):
        strategy.save_checkpoint({"shard_0": 2, "shard_1": 2, "meta": 2}, last)
    assert contents(last) == {"meta": "1", "shard_0": "1", "shard_1": "1"}  # not shard_0 of step 2 beside step 1
    strategy.die_after = None
    strategy.save_checkpoint({"shard_0": 3, "shard_1": 3, "meta": 3}, last)
    assert contents(last) == {"meta": "3", "shard_0": "3", "shard_1": "3"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]  # the dead save's partial is gone


def test_a_full_disk_during_a_sharded_save_is_one_line_and_leaves_the_previous_directory(tmp_path):
    """As torch.distributed.checkpoint reports it: a CheckpointException (a BaseException) whose failures map each
    rank to (exception, traceback)."""
    from torch.distributed.checkpoint.api import CheckpointException

    strategy = ShardWriter()
    make_saves_atomic(strategy)
    last = tmp_path / "last.ckpt"
    strategy.save_checkpoint({"shard_0": 1, "shard_1": 1, "meta": 1}, last)
    strategy.die_after = 1
    strategy.dies_of = CheckpointException("write", {1: (OSError(errno.ENOSPC, "No space left on device"), [])})
    with pytest.raises(NoSpaceLeft, match=rf"^no space left on device: saving '{last}' failed"):
        strategy.save_checkpoint({"shard_0": 2, "shard_1": 2, "meta": 2}, last)
    assert contents(last) == {"meta": "1", "shard_0": "1", "shard_1": "1"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]  # the partial shards are removed


def test_a_kill_between_the_two_renames_is_undone_before_a_resume(tmp_path, monkeypatch):
    strategy = ShardWriter()
    make_saves_atomic(strategy)
    last = tmp_path / "last.ckpt"
    strategy.save_checkpoint({"shard_0": 1, "meta": 1}, last)
    replace = os.replace

    def dies_on_the_second_rename(source, target):
        if Path(source).name == ".last.ckpt.partial":
            raise KeyboardInterrupt("killed between the renames")
        replace(source, target)

    monkeypatch.setattr(os, "replace", dies_on_the_second_rename)
    with pytest.raises(KeyboardInterrupt):
        strategy.save_checkpoint({"shard_0": 2, "meta": 2}, last)
    monkeypatch.setattr(os, "replace", replace)
    assert not last.exists()  # the old directory is aside, the new one not yet in place
    assert find_last(tmp_path) == last  # finding the last checkpoint puts the complete old one back
    assert contents(last) == {"meta": "1", "shard_0": "1"}
