import numpy as np
import pytest
import torch

from data_prep.tokens.shards import read_manifest, read_tokens
from lit_pretrain.data import PretrainDataModule
from lit_pretrain.errors import ConfigError
from lit_pretrain.windows import ResumableDataLoader, ResumableWindowSampler, WindowDataset


def test_windows_tile_the_shards(prepared_dataset):
    manifest = read_manifest(prepared_dataset)
    info = manifest["splits"]["train"]
    dataset = WindowDataset(prepared_dataset, info["files"], manifest["dtype"], seq_len=64)
    assert len(dataset) == info["tokens"] // 64  # one shard here
    tokens = read_tokens(prepared_dataset / info["files"][0], np.uint16, 0, 10**9)
    for index in (0, 1, len(dataset) - 1):
        item = dataset[index]
        assert item["input_ids"].dtype == torch.int64
        assert item["input_ids"].tolist() == tokens[index * 64 : (index + 1) * 64].tolist()
        assert set(item) == {"input_ids", "counted"}  # labels and masks are the objective's, per batch
        assert bool(item["counted"])
    padding = dataset[-1 - 1]  # how EvalWindowSampler asks for window 1 as padding
    assert padding["input_ids"].tolist() == dataset[1]["input_ids"].tolist() and not bool(padding["counted"])


@pytest.mark.parametrize("windows, world_size", [(10, 1), (10, 3), (11, 4), (2, 4)])
def test_eval_sampler_gives_every_rank_as_many_batches_and_counts_each_window_once(windows, world_size):
    from lit_pretrain.windows import EvalWindowSampler

    per_rank = [list(EvalWindowSampler(windows, world_size, rank)) for rank in range(world_size)]
    assert len({len(indices) for indices in per_rank}) == 1  # same number of forward passes on every rank
    assert all(
        len(indices) == len(EvalWindowSampler(windows, world_size, rank)) for rank, indices in enumerate(per_rank)
    )
    counted = sorted(i for indices in per_rank for i in indices if i >= 0)
    assert counted == list(range(windows))  # every window once, none twice
    padding = [-1 - i for indices in per_rank for i in indices if i < 0]
    assert all(0 <= i < windows for i in padding) and len(padding) == len(per_rank[0]) * world_size - windows


def test_sampler_is_seeded_and_ranks_partition_the_epoch():
    full = list(ResumableWindowSampler(101, seed=5))
    assert sorted(full) == list(range(101)) and full == list(ResumableWindowSampler(101, seed=5))
    assert full != list(ResumableWindowSampler(101, seed=6))
    ranks = [list(ResumableWindowSampler(101, seed=5, num_replicas=2, rank=r)) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == 50
    assert set(ranks[0]).isdisjoint(ranks[1]) and set(ranks[0]) | set(ranks[1]) == set(full[:100])


def test_set_epoch_keeps_a_restored_position_and_resets_on_a_new_epoch():
    sampler = ResumableWindowSampler(20, seed=0)
    sampler.start = 8
    sampler.set_epoch(0)
    assert list(sampler) == list(ResumableWindowSampler(20, seed=0))[8:]
    assert len(sampler) == 20  # the epoch's length, not what is left of it (Lightning reuses it for every epoch)
    sampler.set_epoch(1)
    assert sampler.start == 0 and list(sampler) != list(ResumableWindowSampler(20, seed=0))


def test_loader_state_resumes_with_the_next_unseen_windows(prepared_dataset):
    manifest = read_manifest(prepared_dataset)
    dataset = WindowDataset(prepared_dataset, manifest["splits"]["train"]["files"], manifest["dtype"], 32)

    def loader():
        return ResumableDataLoader(dataset, ResumableWindowSampler(len(dataset), seed=3), batch_size=4)

    uninterrupted = [batch["input_ids"] for batch in loader()][:6]
    first = loader()
    iterator = iter(first)
    for _ in range(3):
        next(iterator)
        first.mark_consumed(4)
    next(iterator)  # prefetched by the training loop but never consumed: must not count
    state = first.state_dict()
    assert state == {"epoch": 0, "consumed": 12, "seed": 3, "batch_size": 4, "processes": 1, "accumulation": 1}

    resumed = loader()
    resumed.load_state_dict(state)
    following = [batch["input_ids"] for _, batch in zip(range(3), resumed)]
    for expected, got in zip(uninterrupted[3:], following):
        assert torch.equal(expected, got)


def test_a_state_of_another_process_count_loads_when_each_step_takes_the_same_windows(prepared_dataset):
    manifest = read_manifest(prepared_dataset)
    dataset = WindowDataset(prepared_dataset, manifest["splits"]["train"]["files"], manifest["dtype"], 32)

    def loader(processes: int, rank: int, batch_size: int, accumulation: int = 1):
        sampler = ResumableWindowSampler(len(dataset), seed=3, num_replicas=processes, rank=rank)
        return ResumableDataLoader(dataset, sampler, accumulation=accumulation, batch_size=batch_size)

    two = [loader(2, rank, batch_size=4) for rank in (0, 1)]
    for rank_loader in two:
        iterator = iter(rank_loader)
        for _ in range(3):
            next(iterator)
            rank_loader.mark_consumed(8)  # global windows per micro-batch
    state = two[0].state_dict()
    assert state == two[1].state_dict() and state["consumed"] == 24 and state["processes"] == 2
    one = loader(1, 0, batch_size=8)
    one.load_state_dict(state)  # 1 x 8 takes what 2 x 4 took: continues at global window 24
    uninterrupted = [batch["input_ids"] for batch in loader(1, 0, batch_size=8)][:5]
    assert torch.equal(next(iter(one))["input_ids"], uninterrupted[3])
    for wrong in (loader(1, 0, batch_size=4), loader(1, 0, batch_size=8, accumulation=2)):
        with pytest.raises(ConfigError, match=r"2 process\(es\) x batch_size 4 x accumulation 1 and this run takes 1"):
            wrong.load_state_dict(state)


def test_datamodule_links_vocab_size_from_manifest_and_rejects_oversized_windows(prepared_dataset):
    datamodule = PretrainDataModule(dataset_dir=str(prepared_dataset), prepare_config=None, seq_len=64)
    assert datamodule.vocab_size == 512
    datamodule.setup("fit")
    assert datamodule.bytes_per_token("val") > 1.0
    too_long = PretrainDataModule(dataset_dir=str(prepared_dataset), prepare_config=None, seq_len=10**7)
    with pytest.raises(ConfigError, match="fewer than one window"):
        too_long.setup("fit")


def test_datamodule_without_dataset_or_prepare_config_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        PretrainDataModule(dataset_dir=str(tmp_path / "nothing"), prepare_config=None)
    with pytest.raises(ConfigError, match="data.prepare_config .* not found"):
        PretrainDataModule(dataset_dir=str(tmp_path / "nothing"), prepare_config=str(tmp_path / "missing.yaml"))


def test_a_node_that_does_not_see_node_zeros_dataset_says_which_option_to_change(tmp_path):
    """With ``prepare_data_per_node`` false (the default) only global rank 0 prepares; a later node that finds no
    manifest (node-local storage) is told to share the directory or prepare per node."""
    from types import SimpleNamespace

    from tests.e2e.helpers import REPO

    config = str(REPO / "configs/data/stdlib.yaml")
    node = SimpleNamespace(node_rank=1, num_devices=1, num_nodes=2, accumulate_grad_batches=1)
    shared = PretrainDataModule(dataset_dir=str(tmp_path / "absent"), prepare_config=config)
    assert shared.prepare_data_per_node is False  # what Lightning reads to call prepare_data on global rank 0 only
    shared.trainer = node
    with pytest.raises(ConfigError, match=r"node 1 does not see .*absent/manifest.json.*prepare_data_per_node true"):
        shared.setup("fit")
    per_node = PretrainDataModule(
        dataset_dir=str(tmp_path / "absent"), prepare_config=config, prepare_data_per_node=True
    )
    assert per_node.prepare_data_per_node is True
    per_node.trainer = node
    with pytest.raises(ConfigError, match=r"manifest.json' not found; run 'python -m data_prep"):
        per_node.setup("fit")


def test_special_ids_planned_before_preparation_equal_the_prepared_datasets(prepared_dataset, prepared_mlm_dataset):
    from data_prep.config import TokenizerConfig
    from data_prep.tokens.tokenizer import planned_token_ids
    from lit_pretrain.data import manifest_token_ids

    for dataset, kind in ((prepared_dataset, "bpe"), (prepared_mlm_dataset, "mlm")):
        prepared = manifest_token_ids(dataset, read_manifest(dataset))
        assert planned_token_ids(TokenizerConfig(kind=kind, vocab_size=512)) == prepared
        assert PretrainDataModule(dataset_dir=str(dataset), prepare_config=None).token_ids == prepared
    mlm = manifest_token_ids(prepared_mlm_dataset, read_manifest(prepared_mlm_dataset))
    assert (mlm["end_of_text_id"], mlm["pad_token_id"], mlm["mask_token_id"], mlm["cls_token_id"]) == (0, 1, 3, 4)
    assert mlm["eos_token_id"] == mlm["sep_token_id"] == 0 and mlm["bos_token_id"] == 4


def test_loaders_pin_their_batches_when_training_on_cuda_unless_told_otherwise(prepared_dataset):
    """Pinned batches go to the GPU asynchronously (from ordinary memory CUDA syncs before every copy)."""
    from types import SimpleNamespace

    def trainer(device: str) -> SimpleNamespace:
        strategy = SimpleNamespace(root_device=torch.device(device))
        return SimpleNamespace(strategy=strategy, global_rank=0, world_size=1, accumulate_grad_batches=1,
                               num_devices=1, num_nodes=1, node_rank=0)  # fmt: skip

    for pin_memory, device, expected in [(None, "cuda", True), (None, "cpu", False), (False, "cuda", False),
                                         (True, "cpu", True)]:  # fmt: skip
        datamodule = PretrainDataModule(dataset_dir=str(prepared_dataset), prepare_config=None, seq_len=64,
                                        pin_memory=pin_memory)  # fmt: skip
        datamodule.trainer = trainer(device)
        datamodule.setup("fit")
        loaders = [datamodule.train_dataloader(), datamodule.val_dataloader(), datamodule.test_dataloader()]
        assert [loader.pin_memory for loader in loaders] == [expected] * 3, (pin_memory, device)
    assert PretrainDataModule(dataset_dir=str(prepared_dataset), prepare_config=None).pinned is False  # no trainer


@pytest.mark.skipif(not torch.cuda.is_available(), reason="pinned memory and its asynchronous copy need CUDA")
def test_a_masked_batch_stays_pinned_and_moves_to_cuda_without_a_sync(prepared_mlm_dataset):
    from lightning.fabric.utilities.apply_func import move_data_to_device

    from lit_pretrain.objectives import build_objective
    from lit_pretrain.windows import pinned_like

    manifest_ids = PretrainDataModule(dataset_dir=str(prepared_mlm_dataset), prepare_config=None).token_ids
    objective = build_objective("mlm", manifest_ids, 512)
    input_ids = torch.randint(5, 512, (4, 64)).pin_memory()
    batch = pinned_like(objective.train_batch(input_ids, 0, 0, 0, 1), input_ids, torch.device("cuda"))
    assert set(batch) >= {"input_ids", "labels"} and all(value.is_pinned() for value in batch.values())
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        moved = move_data_to_device(batch, torch.device("cuda"))  # Lightning's transfer: non_blocking for CUDA
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert all(value.is_cuda for value in moved.values())
    cuda = torch.device("cuda")
    assert pinned_like({"x": torch.ones(2)}, torch.ones(2), cuda)["x"].is_pinned() is False  # unpinned source
    assert pinned_like({"x": torch.ones(2)}, input_ids, torch.device("cpu"))["x"].is_pinned() is False  # CPU run
