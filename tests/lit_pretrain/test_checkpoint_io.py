"""AtomicCheckpointIO: a save that dies half-way leaves the previous checkpoint as it was, and every run gets it."""

from __future__ import annotations

import os

import pytest
import torch

from lit_pretrain import PretrainDataModule, PretrainModule
from lit_pretrain.checkpoint_io import AtomicCheckpointIO
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
