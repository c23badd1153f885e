"""The data-parallel rank and size helper (``parallel.data_parallel``) that the sampler, the loss normalisation,
the MLM masks and the throughput callback read instead of the world size."""

from __future__ import annotations

from types import SimpleNamespace

import lightning as L
from lightning.pytorch.strategies import ModelParallelStrategy

from lit_pretrain.parallel import data_parallel


def test_one_process_or_no_trainer_is_rank_0_of_1(tmp_path):
    assert data_parallel(None) == (0, 1)
    assert data_parallel(L.Trainer(accelerator="cpu", devices=1, logger=False, default_root_dir=tmp_path)) == (0, 1)


def test_a_model_parallel_layout_gives_its_data_parallel_dimension_not_the_world():
    # Four processes as 2 data-parallel x 2 tensor-parallel: the strategy's sampler arguments name the
    # data-parallel rank and size, which is what splits the batches.
    strategy = SimpleNamespace(distributed_sampler_kwargs={"num_replicas": 2, "rank": 1})
    trainer = SimpleNamespace(strategy=strategy, global_rank=3, world_size=4)
    assert data_parallel(trainer) == (1, 2)


def test_a_model_parallel_strategy_before_its_mesh_exists_counts_every_process():
    strategy = ModelParallelStrategy(data_parallel_size=1, tensor_parallel_size=1)  # no device mesh until setup
    trainer = SimpleNamespace(strategy=strategy, global_rank=0, world_size=1)
    assert data_parallel(trainer) == (0, 1)
